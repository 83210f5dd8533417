"""Issue 17's validation curve: each checkpoint of the continued SFT run on the collection's 10 held-out
validation tasks (never trained on), with fixed examples and held-out descriptions, against fixed reference lines.

    python recipes/smollm2/learning_curve.py            # evaluate new checkpoints once, write table + plot
    python recipes/smollm2/learning_curve.py --watch    # keep doing so as training writes checkpoints
    python recipes/smollm2/learning_curve.py --seed 5 --steps 329 --out runs/smollm2/curve-seed5 \
        --results runs/smollm2/curve-seed5 --start V1_FOLDER     # one checkpoint again, on fresh examples

Every point is one `t2l eval` run (completion NLL and greedy exact match, `--collection-generate`) on the same
examples (seed 2: neither the variant choice's seed 0 nor the README's seed 1), 2 held-out descriptions per task.
Step 0 is the default the run started from (v1, shipped until checkpoint 329 replaced it; its weights are in git
at commit 44e2b14, src/text2lora/default_checkpoint/); its run also holds the reference lines: the base model, the
packaged multi-task LoRA and v1 with random strings. The default shipped now is scored too, in a folder named by
its content hash (`shipped-<sha256[:12]>`), so a replaced default is never read back stale. Differences are
paired per example, pooled as the mean of task means, with 95% bootstrap CIs stratified by task. Only validation tasks are used: no checkpoint is chosen on benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from text2lora.evaluation.paired import mean_with_ci
from text2lora.io_utils import atomic_file

RUN = Path("runs/smollm2/t2l-sft-continue")
OUT = Path("runs/smollm2/curve")
RESULTS = Path("docs/results")
DEFAULT = "text2lora/t2l-smollm2-135m-instruct"
MT_LORA = "text2lora/mt-lora-smollm2-135m-instruct"
COLLECTION = Path("~/.cache/text2lora/data/collection").expanduser()
FIRST_RUN_SEQUENCES = 650 * 16 * 4  # v1, where the run started: 650 steps of 16 tasks x 4 examples
SEQUENCES_PER_STEP = 8 * 1  # recipes/smollm2/t2l_sft_continue.yaml: 8 tasks x 1 example
REFERENCES = ("base", "mt_lora", "t2l_random")
MARKER = "hypernetwork.sha256"  # in each point's folder: the content hash of the weights it was scored with


def checkpoints(run: Path) -> dict[int, Path]:
    found = {int(m.group(1)): p for p in run.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))}
    return {step: path for step, path in sorted(found.items()) if (path / "model.safetensors").is_file()}


def evaluate(t2l: str, conditions: str, out: Path, limit: int, seed: int) -> None:
    """One point, unless `out` already holds it for these very weights: `out/hypernetwork.sha256` records the
    content hash of the hypernetwork the point was scored with, so a checkpoint retrained under the same name is
    scored again (and `t2l eval --resume` reuses only runs whose content matches)."""
    fingerprint = hypernetwork_fingerprint(t2l)
    marker = out / MARKER
    if (out / "results.json").is_file() and marker.is_file() and marker.read_text().strip() == fingerprint:
        return
    command = [
        sys.executable, "-m", "text2lora", "eval", "--t2l", t2l, "--mt-lora", MT_LORA, "--benchmarks", "none",
        "--collection", str(COLLECTION), "--collection-generate", "--limit", str(limit), "--seed", str(seed),
        "--num-descriptions", "2", "--conditions", conditions, "--threads", "1", "--quiet", "--resume",
        "--out", str(out),
    ]  # fmt: skip
    print(f"[curve] evaluating {t2l} ({conditions})", flush=True)
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    with atomic_file(marker) as handle:
        handle.write(fingerprint + "\n")


def hypernetwork_fingerprint(t2l: str) -> str:
    from text2lora.fingerprints import remembered_folder_fingerprint
    from text2lora.packaged import resolve_checkpoint

    return remembered_folder_fingerprint(resolve_checkpoint(t2l))


def shipped_point(out: Path, limit: int, seed: int) -> Path:
    """The shipped default (packaged, bfloat16) on the curve's examples, keyed by the content of its weights."""
    folder = out / f"shipped-{hypernetwork_fingerprint(DEFAULT)[:12]}"
    evaluate(DEFAULT, "t2l", folder, limit, seed)
    return folder


def per_example(run_dir: Path) -> dict[str, dict[str, dict[tuple[str, str], float]]]:
    """condition -> metric -> (task, example) -> value averaged over description variants."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with (run_dir / "examples.jsonl").open() as f:
        for line in f:
            record = json.loads(line)
            for metric in ("completion_nll", "exact_match"):
                if metric in record["metrics"]:
                    values[record["condition"]][metric][(record["task"], record["example"])].append(
                        float(record["metrics"][metric])
                    )
    return {c: {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in ms.items()} for c, ms in values.items()}


def pooled(values: dict[tuple[str, str], float]) -> float:
    by_task = defaultdict(list)
    for (task, _), v in values.items():
        by_task[task].append(v)
    return float(np.mean([np.mean(v) for v in by_task.values()]))


def paired(a: dict, b: dict) -> tuple[float, float, float, int]:
    shared = sorted(set(a) & set(b))
    mean, low, high = mean_with_ci([a[k] - b[k] for k in shared], [k[0] for k in shared])
    return mean, low, high, len(shared)


def build_table(out: Path, shipped: Path | None = None) -> list[dict]:
    """One row per evaluated checkpoint (by step), then the shipped default's row (`step` None) if given."""
    reference = per_example(out / "step-0")
    points = [(int(d.name.split("-")[1]), d) for d in out.glob("step-*") if (d / "results.json").is_file()]
    if shipped is not None and (shipped / "results.json").is_file():
        points.append((None, shipped))
    rows = []
    for step, step_dir in sorted(points, key=lambda p: float("inf") if p[0] is None else p[0]):
        t2l = per_example(step_dir)["t2l"]
        row = {"step": step, "sequences": None if step is None else FIRST_RUN_SEQUENCES + SEQUENCES_PER_STEP * step}
        for metric in ("completion_nll", "exact_match"):
            row[metric] = pooled(t2l[metric])
            for other, values in (("default", reference["t2l"][metric]), ("mt_lora", reference["mt_lora"][metric])):
                mean, low, high, n = paired(t2l[metric], values)
                row[f"{metric}_vs_{other}"] = [mean, low, high]
                row["n_" + metric] = n
        rows.append(row)
    return rows


def reference_lines(out: Path) -> dict[str, dict[str, float]]:
    reference = per_example(out / "step-0")
    return {c: {m: pooled(reference[c][m]) for m in ("completion_nll", "exact_match")} for c in REFERENCES if c in reference}


def write_outputs(rows: list[dict], references: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    fmt = lambda d, s=1: f"{d[0] * s:+.3f} [{d[1] * s:+.3f}, {d[2] * s:+.3f}]"  # noqa: E731
    lines = [
        "# Learning curve: continued T2L-SFT from v1, the default shipped before v2 (validation tasks only)",
        "",
        "Made by `recipes/smollm2/learning_curve.py`: the 10 held-out validation tasks of the collection, seed 2,",
        "2 held-out descriptions per task; completion NLL (nats/token, lower is better) and greedy exact match (%).",
        "Differences are paired per example, mean of task means, 95% bootstrap CI stratified by task. Step 0 is the",
        "default the run started from (v1: 650 GPU steps of 64 sequences = 41,600 sequences; \"vs v1\" below); each",
        "CPU step adds 8 sequences. The checkpoints are scored in float32; the last row, if any, is the default shipped",
        "now as packaged (bfloat16 weights).",
        "",
        "| step | sequences | NLL | NLL vs v1 | NLL vs multi-task LoRA | exact match | EM vs v1 | EM vs multi-task LoRA |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        step, sequences = ("shipped now", "") if r["step"] is None else (r["step"], f"{r['sequences']:,}")
        lines.append(
            f"| {step} | {sequences} | {r['completion_nll']:.3f} | {fmt(r['completion_nll_vs_default'])} | "
            f"{fmt(r['completion_nll_vs_mt_lora'])} | {100 * r['exact_match']:.1f} | "
            f"{fmt(r['exact_match_vs_default'], 100)} | {fmt(r['exact_match_vs_mt_lora'], 100)} |"
        )
    lines += ["", "Reference lines (fixed, on the same examples):", ""]
    labels = {"base": "base model", "mt_lora": "multi-task LoRA (packaged)", "t2l_random": "v1, random strings"}
    for name, values in references.items():
        lines.append(f"- {labels[name]}: NLL {values['completion_nll']:.3f}, exact match {100 * values['exact_match']:.1f}")
    with atomic_file(results / "learning_curve.md") as handle:
        handle.write("\n".join(lines) + "\n")
    with atomic_file(results / "learning_curve.json") as handle:
        json.dump({"rows": rows, "references": references}, handle, indent=1)
    plot(rows, references, results / "learning_curve.png")


def plot(rows: list[dict], references: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = [r for r in rows if r["step"] is not None]  # the checkpoints; the shipped default is one of them
    x = [r["sequences"] for r in rows]
    for ax, metric, scale, label in ((axes[0], "completion_nll", 1, "completion NLL (nats/token)"),
                                     (axes[1], "exact_match", 100, "greedy exact match (%)")):
        y = [scale * r[metric] for r in rows]
        # CI of each point from its paired difference with the default, drawn around the point.
        base_y = y[0] if rows else 0
        err_low = [scale * (r[f"{metric}_vs_default"][0] - r[f"{metric}_vs_default"][1]) for r in rows]
        err_high = [scale * (r[f"{metric}_vs_default"][2] - r[f"{metric}_vs_default"][0]) for r in rows]
        ax.errorbar(x, y, yerr=[err_low, err_high], marker="o", capsize=3, label="T2L (held-out descriptions)")
        styles = {"mt_lora": ("tab:red", "--"), "t2l_random": ("tab:gray", ":"), "base": ("black", "-.")}
        for name, values in references.items():
            color, style = styles[name]
            ax.axhline(scale * values[metric], color=color, linestyle=style, label=name.replace("_", " "))
        ax.set_xlabel("training sequences seen")
        ax.set_ylabel(label)
        ax.set_title(label.split(" (")[0] + f" (step 0 = v1 default, {base_y:.2f})")
    axes[0].legend(fontsize=8)
    fig.suptitle("Continued T2L-SFT on the CPU: 10 held-out validation tasks (error bars: 95% CI of the paired change)")
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=RUN)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--every", type=int, default=100,
                        help="evaluate a checkpoint only if it is at least this many steps from every evaluated one")
    parser.add_argument("--steps", type=lambda v: {int(x) for x in v.split(",")},
                        help="evaluate only these checkpoints (comma-separated steps), e.g. to re-check one on other examples")
    parser.add_argument("--start", type=Path, help="the hypernetwork the run started from (v1), for step 0")
    parser.add_argument("--watch", action="store_true", help="keep evaluating new checkpoints (poll every 5 min)")
    args = parser.parse_args()
    if args.start is not None or not (args.out / "step-0" / "results.json").is_file():
        if args.start is None:
            parser.error("step 0 is the v1 default, no longer packaged: extract it with `git archive 44e2b14 "
                         "src/text2lora/default_checkpoint | tar -x -C /tmp/v1` and pass "
                         "--start /tmp/v1/src/text2lora/default_checkpoint")
        evaluate(str(args.start), "t2l,t2l_random,mt_lora,base", args.out / "step-0", args.limit, args.seed)
    shipped = shipped_point(args.out, args.limit, args.seed)
    while True:
        done = [int(p.name[5:]) for p in args.out.glob("step-*") if (p / "results.json").is_file()]
        for step, path in checkpoints(args.run).items():
            # the steps asked for; else points already scored (checked against their weights' content) and new
            # ones at least `every` steps from every other point
            if args.steps is not None:
                wanted = step in args.steps
            else:
                wanted = step in done or all(abs(step - other) >= args.every for other in done)
            if wanted:
                evaluate(str(path), "t2l", args.out / f"step-{step}", args.limit, args.seed)
                done.append(step)
        rows = build_table(args.out, shipped)
        write_outputs(rows, reference_lines(args.out), args.results)
        print(f"[curve] {len(rows)} point(s): {args.results / 'learning_curve.md'}", flush=True)
        if not args.watch:
            return 0
        time.sleep(300)


if __name__ == "__main__":
    sys.exit(main())
