"""Two versions of the shipped default, measured on the same examples: v2 - v1 per condition, per protocol.

    python recipes/smollm2/compare_versions.py \
        --old runs/smollm2/eval-protocols --new runs/smollm2/eval-protocols-v2 \
        --out docs/results/eval-protocols-v2 --names v1 v2

`eval_protocols.sh` writes one folder per (protocol, seed) under its OUT (`loglik-seed0-bfloat16`, ...,
`collection-seed1-bfloat16`). For every such folder present and complete (COMPLETE marker) under both --old and --new,
this pairs each example of each condition across the two versions (same seed, so the same examples, descriptions and
random strings) and reports the mean of new - old with a 95% bootstrap CI stratified by task (each benchmark or
held-out task weighs equally), for every measure: log-likelihood acc_norm, the generative protocol's paper rule (acc)
and lenient reading (acc_lenient), the held-out tasks' completion NLL and exact match.

The conditions that do not use the hypernetwork (base, + description, 3-shot, multi-task LoRA) are a check: with the
same base model, data and code they must come out identical, and the table says whether they did. Writes
`versions.md`, `versions.json` and `versions.png` to --out (atomically); changes nothing else.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from text2lora.evaluation.paired import mean_with_ci
from text2lora.evaluation.pooling import combine_examples
from text2lora.io_utils import atomic_file

# protocol folder prefix -> (label, [(metric, label, scale, decimals)])
MEASURES = {
    "loglik": ("log-likelihood", [("acc_norm", "acc_norm, %", 100, 1)]),
    "generative": ("generative", [("acc", "paper's rule, %", 100, 1), ("acc_lenient", "lenient, %", 100, 1)]),
    "collection": ("held-out tasks", [("completion_nll", "completion NLL, lower is better", 1, 3),
                                      ("exact_match", "exact match, %", 100, 1)]),
}
T2L_CONDITIONS = ("t2l", "t2l_other", "t2l_random")
CONDITION_LABELS = {
    "base": "base",
    "description": "base + description",
    "fewshot": "base + 3-shot",
    "mt_lora": "multi-task LoRA",
    "t2l": "T2L (held-out desc.)",
    "t2l_other": "T2L (other task's desc.)",
    "t2l_random": "T2L (random string)",
}
UNCHANGED = ("base", "description", "fewshot", "mt_lora")  # they never use the hypernetwork
# run settings that must agree for two versions' examples to be the same examples
SAME_SETTINGS = ("seed", "limit", "generation_limit", "num_descriptions", "num_fewshot", "protocol", "dtype", "base_model",
                 "benchmarks", "collection_split", "collection_tasks", "collection_generate", "chat_template",
                 "empty_system_message", "max_gen_toks")
FOLDER = re.compile(r"^(?P<protocol>loglik|generative|collection)-seed(?P<seed>\d+)-(?P<dtype>\w+)$")


def complete_runs(root: Path) -> dict[tuple[str, str], list[Path]]:
    """(protocol, dtype) -> the complete per-seed folders under `root`, by seed."""
    found: dict[tuple[str, str], dict[int, Path]] = defaultdict(dict)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        match = FOLDER.match(folder.name)
        if match and (folder / "COMPLETE").is_file() and (folder / "results.json").is_file():
            found[(match["protocol"], match["dtype"])][int(match["seed"])] = folder
    return {key: [seeds[s] for s in sorted(seeds)] for key, seeds in found.items()}


def per_example(examples: list[dict], metric: str) -> dict[tuple[str, str], dict[str, float]]:
    """(condition, task) -> example -> the metric averaged over the condition's descriptions."""
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in examples:
        if metric in row["metrics"]:
            values[(row["condition"], row["task"])][row["example"]].append(float(row["metrics"][metric]))
    return {key: {ex: float(np.mean(v)) for ex, v in by_example.items()} for key, by_example in values.items()}


def same_settings(old_dir: Path, new_dir: Path) -> None:
    """Stop when two paired runs were made with settings that would give them different examples."""
    old, new = (json.loads((d / "results.json").read_text()).get("config", {}) for d in (old_dir, new_dir))
    differing = [k for k in SAME_SETTINGS if old.get(k) != new.get(k)]
    if differing:
        raise SystemExit(f"{old_dir} and {new_dir} differ in {', '.join(differing)}: their examples are not the same "
                         "examples; compare runs made with the same settings.")


def compare(old_dirs: list[Path], new_dirs: list[Path], metric: str) -> dict[str, dict]:
    """Per condition: mean of old and new over the shared examples (mean of task means), the paired difference
    new - old with its stratified CI, how many examples differ at all, and how many only one version has."""
    old = per_example(combine_examples(old_dirs)[0], metric)
    new = per_example(combine_examples(new_dirs)[0], metric)
    rows = {}
    for condition in CONDITION_LABELS:
        old_means, new_means, diffs, strata, unpaired = [], [], [], [], 0
        for task in sorted({t for c, t in [*old, *new] if c == condition}):
            old_values, new_values = old.get((condition, task), {}), new.get((condition, task), {})
            shared = sorted(set(new_values) & set(old_values))
            unpaired += len(set(new_values) ^ set(old_values))
            if not shared:
                continue
            old_means.append(np.mean([old_values[e] for e in shared]))
            new_means.append(np.mean([new_values[e] for e in shared]))
            diffs.extend(new_values[e] - old_values[e] for e in shared)
            strata.extend([task] * len(shared))
        if not diffs:
            continue
        diffs_arr = np.asarray(diffs)
        mean, low, high = mean_with_ci(diffs_arr, strata)
        rows[condition] = {
            "old": float(np.mean(old_means)), "new": float(np.mean(new_means)), "diff": mean, "ci95": [low, high],
            "n": int(diffs_arr.size), "n_tasks": len(set(strata)), "n_changed": int(np.sum(diffs_arr != 0)),
            "n_unpaired": unpaired,
        }
    return rows


def surprises(block: dict) -> list[str]:
    """What should not happen: a condition without the hypernetwork that changed, examples only one version has."""
    found = [f"{CONDITION_LABELS[c]} changed on {row['n_changed']} example(s)"
             for c, row in block["rows"].items() if c in UNCHANGED and row["n_changed"]]
    found += [f"{CONDITION_LABELS[c]}: {row['n_unpaired']} example(s) in one version only, left out"
              for c, row in block["rows"].items() if row["n_unpaired"]]
    return found


def markdown(report: dict) -> str:
    old, new = report["names"]
    lines = [
        "# Two versions of the shipped default on the same examples",
        "",
        f"{old} (old): `{report['old']}`; {new} (new): `{report['new']}`. Per condition: the mean over tasks of each version (each "
        "example first averaged over its descriptions), and new - old paired per example with a 95% bootstrap CI "
        "stratified by task. \"changed\" counts the examples whose value differs at all: the conditions without the "
        "hypernetwork (base, + description, 3-shot, multi-task LoRA) must show 0, and a line under the table says "
        "when one does not. Plot: versions.png.",
        "",
        f"Written by `{report['command']}`.",
    ]
    for block in report["blocks"]:
        lines += ["", f"## {block['label']}: {block['measure']} ({block['dtype']}, seeds {block['seeds']})", "",
                  f"| condition | {old} | {new} | {new} − {old} [95% CI] | examples | changed |", "|---|---:|---:|---|---:|---:|"]
        scale, decimals = block["scale"], block["decimals"]
        for condition, row in block["rows"].items():
            low, high = (scale * v for v in row["ci95"])
            lines.append(
                f"| {CONDITION_LABELS[condition]} | {scale * row['old']:.{decimals}f} | {scale * row['new']:.{decimals}f} | "
                f"{scale * row['diff']:+.{decimals}f} [{low:+.{decimals}f}, {high:+.{decimals}f}] | {row['n']} | "
                f"{row['n_changed']} |"
            )
        found = surprises(block)
        lines += ["", "**Check failed:** " + "; ".join(found) + "." if found else
                  "Check: every condition without the hypernetwork is identical in both versions."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """One panel per measure: new - old per condition with its 95% CI (the conditions without the hypernetwork sit
    at 0 when the check holds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = report["blocks"]
    fig, axes = plt.subplots(1, len(blocks), figsize=(3.2 * len(blocks) + 1, 4.2), squeeze=False)
    for ax, block in zip(axes[0], blocks):
        names = list(block["rows"])
        scale = block["scale"]
        diffs = [scale * block["rows"][c]["diff"] for c in names]
        low = [d - scale * block["rows"][c]["ci95"][0] for d, c in zip(diffs, names)]
        high = [scale * block["rows"][c]["ci95"][1] - d for d, c in zip(diffs, names)]
        colors = ["tab:purple" if c in T2L_CONDITIONS else "tab:gray" for c in names]
        ax.bar(range(len(names)), diffs, yerr=[low, high], color=colors, capsize=3)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([CONDITION_LABELS[c] for c in names], rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{block['label']}\n{block['measure']}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    old, new = report["names"]
    axes[0][0].set_ylabel(f"{new} − {old} (95% CI)")
    fig.suptitle(f"{new} − {old}, paired on the same examples ({report['new']} − {report['old']})", fontsize=10)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="eval_protocols.sh OUT of the old version")
    parser.add_argument("--new", type=Path, required=True, help="eval_protocols.sh OUT of the new version")
    parser.add_argument("--out", type=Path, required=True, help="folder for versions.md / .json / .png")
    parser.add_argument("--names", nargs=2, metavar=("OLD", "NEW"), default=("old", "new"),
                        help="what to call the two versions in the table and plot (e.g. v1 v2)")
    args = parser.parse_args(argv)
    old_runs, new_runs = complete_runs(args.old), complete_runs(args.new)
    blocks = []
    for (protocol, dtype), new_dirs in sorted(new_runs.items(), key=lambda kv: list(MEASURES).index(kv[0][0])):
        old_by_name = {d.name: d for d in old_runs.get((protocol, dtype), [])}
        pairs = [(old_by_name[d.name], d) for d in new_dirs if d.name in old_by_name]
        if not pairs:
            continue
        for old_dir, new_dir in pairs:
            same_settings(old_dir, new_dir)
        label, measures = MEASURES[protocol]
        seeds = ", ".join(FOLDER.match(new.name)["seed"] for _, new in pairs)
        for metric, measure, scale, decimals in measures:
            rows = compare([o for o, _ in pairs], [n for _, n in pairs], metric)
            if rows:
                blocks.append({"protocol": protocol, "label": label, "measure": measure, "metric": metric,
                               "dtype": dtype, "seeds": seeds, "scale": scale, "decimals": decimals, "rows": rows,
                               "runs": [[str(o), str(n)] for o, n in pairs]})
    if not blocks:
        raise SystemExit(f"No complete (protocol, seed) folder is under both {args.old} and {args.new}.")
    names = " ".join(args.names)
    report = {"old": str(args.old), "new": str(args.new), "names": list(args.names), "blocks": blocks,
              "command": f"python recipes/smollm2/compare_versions.py --old {args.old} --new {args.new} --out {args.out}"
                         f" --names {names}"}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "versions.json", "w") as handle:
        json.dump(report, handle, indent=2)
    with atomic_file(args.out / "versions.md", "w") as handle:
        handle.write(markdown(report))
    plot(report, args.out / "versions.png")
    print(f"{len(blocks)} measure(s) compared; wrote {args.out / 'versions.md'}")
    for block in blocks:
        for problem in surprises(block):
            print(f"  check failed ({block['label']}, {block['measure']}): {problem}")
        t2l = block["rows"].get("t2l")
        if t2l:
            s, d = block["scale"], block["decimals"]
            print(f"  {block['label']}, {block['measure']}: T2L {s * t2l['old']:.{d}f} -> {s * t2l['new']:.{d}f} "
                  f"({s * t2l['diff']:+.{d}f} [{s * t2l['ci95'][0]:+.{d}f}, {s * t2l['ci95'][1]:+.{d}f}])")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
