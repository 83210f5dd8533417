"""Issue 16, item 3: T2L with descriptions that `text2lora.describe` writes from 5 examples of a task, against the
held-out human-written descriptions, random strings and the base model, on the collection's 10 held-out validation
tasks (never trained on); and whether nearest-training-task similarity predicts how much an adapter helps.

    python recipes/smollm2/describe_heldout.py                      # 2 seeds x 10 tasks, 30 examples per task part
    python recipes/smollm2/describe_heldout.py --tasks reasoning_gym.leg_counting --limit 3 --seeds 3 --out /tmp/x

For each seed: (1) per task, 5 examples that no evaluation run scores (rows outside every part's seeded sample) go to
`describe` (writer: the shipped hypernetwork's base model, SmolLM2-135M-Instruct, unless --writer), which writes 2
candidate descriptions; (2) `t2l eval`'s own runner (`EvalRunner`, the collection tasks of
`text2lora.evaluation.collection`) scores base, T2L with the 2 held-out human descriptions and T2L with random strings
of the same lengths on the original collection, and T2L with the 2 written descriptions (each, and mixed) on a copy whose
`heldout_descriptions` are the written ones (same rows, so the same seeded examples). Completion NLL (nats/token) and
greedy exact match of free generation on the non-multiple-choice tasks; acc_norm on the multiple-choice ones.
Differences are paired per example (each condition averaged over its 2 descriptions), pooled over seeds as the mean
of task means, with 95% bootstrap CIs stratified by task. Correlation: per (seed, task, description) run of T2L
(human and written descriptions), the description's cosine similarity to its nearest training-task centroid against
the run's NLL gain over the base model and over random strings (Spearman, 95% CI by resampling tasks). The two modes
of `t2l generate --from-examples`: the written candidates mixed with equal weights (the default; `t2l eval`'s
`t2l_mix` condition on the written copy) and `--pick` (the candidate nearest to the training tasks, read off its
per-description run), against each other and the average candidate (`from_examples_modes`).

Writes `docs/results/describe_heldout.{md,json,png}`; every evaluation run is cached under --out (rerun resumes).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

DEFAULT = "text2lora/t2l-smollm2-135m-instruct"
COLLECTION = Path("~/.cache/text2lora/data/collection").expanduser()
OUT = Path("runs/smollm2/describe_heldout")
RESULTS = Path("docs/results")
CONDITIONS = ("t2l_written_mix", "t2l_written", "t2l_human", "t2l_random", "base")
LABELS = {
    "t2l_written_mix": "T2L, the written descriptions mixed (`--from-examples` default)",
    "t2l_written": "T2L, descriptions written by `describe` from 5 examples",
    "t2l_human": "T2L, held-out human-written descriptions",
    "t2l_random": "T2L, random strings (same lengths)",
    "base": "base model",
}
COLORS = {"t2l_written_mix": "tab:green", "t2l_written": "tab:blue", "t2l_human": "tab:orange", "t2l_random": "tab:gray",
          "base": "tab:brown"}  # fmt: skip
PAIRS = (("t2l_written", "t2l_human"), ("t2l_written", "t2l_random"), ("t2l_written", "base"),
         ("t2l_human", "t2l_random"), ("t2l_human", "base"), ("t2l_written_mix", "t2l_written"),
         ("t2l_written_mix", "t2l_human"), ("t2l_written_mix", "base"))  # fmt: skip
METRICS = ("completion_nll", "exact_match", "acc_norm")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------ descriptions


def evaluated_rows(task, limit: int | None, seed: int, generate: bool) -> set[int]:
    """Collection row ids any evaluation run of `task` scores (the runner's own seeded sample per part)."""
    from text2lora.evaluation.samples import select_examples

    parts = []
    if task.choice_rows:
        parts.append(("mc", task.choice_rows))
    if task.completion_rows:
        parts.append(("nll", task.completion_rows))
        if generate:
            parts.append(("gen", task.completion_rows))
    rows = set()
    for part, records in parts:
        rows.update(records[i]["row"] for i in select_examples(len(records), limit, seed, f"{task.name}:{part}"))
    return rows


def describe_examples(task, exclude: set[int], seed: int, count: int = 5):
    """`count` examples of `task` that no evaluation run scores, chosen by the seed."""
    from text2lora.describe import Example

    records = [r for r in task.choice_rows + task.completion_rows if r["row"] not in exclude]
    if len(records) < count:
        raise ValueError(f"{task.name}: only {len(records)} rows outside the evaluated sample; lower --limit.")
    chosen = random.Random(f"{seed}:describe:{task.name}").sample(records, count)
    return [Example(r["prompt"], r["choices"][r["gold"]] if "choices" in r else r["completion"]) for r in chosen]


def write_descriptions(tasks, args, seed: int, folder: Path) -> dict:
    """task -> {"examples": [...], "descriptions": [...]}; cached in folder/descriptions.json."""
    from text2lora.describe import describe
    from text2lora.io_utils import atomic_file

    path = folder / "descriptions.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    settings = {"writer": args.writer, "n": args.num_descriptions, "k": args.k, "seed": seed, "limit": args.limit}
    if cached.get("settings") == settings and set(cached.get("tasks", {})) >= {t.name for t in tasks}:
        return cached["tasks"]
    written = {}
    for task in tasks:
        examples = describe_examples(task, evaluated_rows(task, args.limit, seed, True), seed, args.k)
        started = time.perf_counter()
        texts = describe(examples, args.writer, n=args.num_descriptions, k=args.k, seed=seed,
                         batch_size=args.num_descriptions, show_progress_bar=False)  # fmt: skip
        log(f"seed {seed} {task.name}: {time.perf_counter() - started:.0f} s: {texts}")
        written[task.name] = {"examples": [[e.input, e.output] for e in examples], "descriptions": texts,
                              "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        json.dump({"settings": settings, "tasks": written}, handle, indent=1, ensure_ascii=False)
    return written


def written_collection(collection: Path, written: dict, folder: Path) -> Path:
    """A copy of the validation split whose `heldout_descriptions` are the written ones (rows unchanged)."""
    import datasets

    target = folder / "collection"
    if (target / "dataset_dict.json").is_file():
        return target
    split = datasets.load_from_disk(str(collection / "dataset"))["validation"]
    replaced = split.map(lambda row: {"heldout_descriptions": written[row["task"]]["descriptions"]
                                      if row["task"] in written else row["heldout_descriptions"]})  # fmt: skip
    from text2lora.io_utils import atomic_directory

    with atomic_directory(target) as tmp:
        datasets.DatasetDict({"validation": replaced}).save_to_disk(str(tmp))
    return target


# ------------------------------------------------------------------------------------------- evaluation


def evaluate(args, collection: Path, conditions: list[str], out: Path, seed: int, objects: dict) -> None:
    from text2lora.evaluation.eval_config import EvalConfig
    from text2lora.evaluation.runner import EvalRunner

    config = EvalConfig(
        t2l=DEFAULT, benchmarks=[], conditions=conditions, collection=str(collection), collection_tasks=args.tasks,
        collection_generate=True, limit=args.limit, seed=seed, num_descriptions=args.num_descriptions,
        max_gen_toks=args.max_gen_toks, threads=args.threads, batch_size=args.batch_size, output_dir=str(out),
        resume=True, show_progress=False,
    )  # fmt: skip
    runner = EvalRunner(config, **objects)
    started = time.perf_counter()
    runner.run()
    objects.update(model=runner.model, tokenizer=runner.tokenizer, hypernetwork=runner.hypernetwork)
    log(f"seed {seed}: {', '.join(conditions)} -> {out} in {time.perf_counter() - started:.0f} s")


def load_runs(out: Path, seeds: list[int]) -> tuple[dict, list[dict]]:
    """(condition -> metric -> (seed, task, example) -> value averaged over descriptions, run records)."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    runs = []
    for seed in seeds:
        for folder, rename in (("human", {"t2l": "t2l_human"}),
                               ("written", {"t2l": "t2l_written", "t2l_mix": "t2l_written_mix"})):  # fmt: skip
            path = out / f"seed-{seed}" / folder / "examples.jsonl"
            if not path.is_file():
                continue
            with path.open() as handle:
                for line in handle:
                    record = json.loads(line)
                    condition = rename.get(record["condition"], record["condition"])
                    for metric, value in record["metrics"].items():
                        if metric in METRICS:
                            values[condition][metric][(seed, record["task"], record["example"])].append(float(value))
            for run in json.loads((path.parent / "results.json").read_text())["runs"]:
                runs.append({**run, "seed": seed, "condition": rename.get(run["condition"], run["condition"])})
    averaged = {c: {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in ms.items()} for c, ms in values.items()}
    return averaged, runs


def pooled(values: dict) -> float:
    by_task = defaultdict(list)
    for (_, task, _), value in values.items():
        by_task[task].append(value)
    return float(np.mean([np.mean(v) for v in by_task.values()])) if by_task else float("nan")


def paired(a: dict, b: dict) -> dict:
    from text2lora.evaluation.metrics import bootstrap_ci

    shared = sorted(set(a) & set(b))
    if not shared:
        return {"mean": None, "ci": [None, None], "n": 0}
    diffs = np.array([a[k] - b[k] for k in shared])
    strata = [k[1] for k in shared]
    labels = np.asarray(strata)
    mean = float(np.mean([diffs[labels == s].mean() for s in dict.fromkeys(strata)]))
    low, high = bootstrap_ci(diffs, iterations=2000, seed=0, strata=strata)
    return {"mean": mean, "ci": [float(low), float(high)], "n": len(shared), "tasks": len(set(strata))}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) if len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")


def correlation(points: list[dict], key: str) -> dict:
    """Spearman and Pearson of nearest-task similarity vs `key`, with a 95% CI from resampling tasks."""
    x = np.array([p["similarity"] for p in points])
    y = np.array([p[key] for p in points])
    tasks = sorted({p["task"] for p in points})
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(2000):
        pick = rng.choice(len(tasks), size=len(tasks), replace=True)
        idx = [i for t in pick for i, p in enumerate(points) if p["task"] == tasks[t]]
        boot.append(spearman(x[idx], y[idx]))
    boot = np.array([b for b in boot if np.isfinite(b)])
    pearson = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")
    ci = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))] if boot.size else [None, None]
    return {"spearman": spearman(x, y), "spearman_ci": ci, "pearson": pearson, "points": len(points), "tasks": len(tasks)}


def base_nll(values: dict) -> dict[tuple[int, str], float]:
    """(seed, task) -> the base model's mean completion NLL over that task's examples."""
    by_run = defaultdict(list)
    for (seed, task, _), value in values.get("base", {}).get("completion_nll", {}).items():
        by_run[(seed, task)].append(value)
    return {key: float(np.mean(v)) for key, v in by_run.items()}


def similarity_points(runs: list[dict], values: dict) -> list[dict]:
    """One point per T2L run with a task description: nearest-task similarity and its NLL gains."""
    from text2lora import T2LModel
    from text2lora.nearest_tasks import load_task_centroids, nearest_training_tasks

    t2l = T2LModel.from_pretrained(DEFAULT)
    centroids = load_task_centroids(t2l)
    base = base_nll(values)
    random_runs = defaultdict(list)
    for run in runs:
        if run["condition"] == "t2l_random" and "completion_nll" in run["metrics"]:
            random_runs[(run["seed"], run["task"])].append(run["metrics"]["completion_nll"])
    points = []
    for run in runs:
        if run["condition"] not in ("t2l_human", "t2l_written") or "completion_nll" not in run["metrics"]:
            continue
        key = (run["seed"], run["task"])
        if key not in base or not random_runs.get(key):
            continue
        nearest = nearest_training_tasks(t2l, run["description"], k=3, centroids=centroids)
        nll = run["metrics"]["completion_nll"]
        points.append({
            "seed": run["seed"], "task": run["task"], "source": run["condition"], "variant": run["variant"],
            "description": run["description"], "similarity": nearest[0].similarity,
            "nearest": [list(n) for n in nearest], "far": centroids.is_far(nearest[0].similarity),
            "gain_vs_base": base[key] - nll,
            "gain_vs_random": float(np.mean(random_runs[key])) - nll,
        })  # fmt: skip
    return points


def from_examples_modes(points: list[dict], runs: list[dict], values: dict) -> dict:
    """The two ways `t2l generate --from-examples` turns the written candidates into one adapter, per (seed, task),
    in NLL gain over the base model (positive: the first is better): `--pick` (the candidate nearest to the
    training tasks, read off its own per-description run; ties: the first) and the default mix (the `t2l_mix` run:
    the candidates' embeddings mixed with equal weights), each against the average written candidate (what
    `t2l_written` reports) and against each other."""
    groups = defaultdict(list)
    for point in points:
        if point["source"] == "t2l_written":
            groups[(point["seed"], point["task"])].append(point)
    base = base_nll(values)
    mix_gain = {
        (r["seed"], r["task"]): base[(r["seed"], r["task"])] - r["metrics"]["completion_nll"]
        for r in runs
        if r["condition"] == "t2l_written_mix" and "completion_nll" in r["metrics"] and (r["seed"], r["task"]) in base
    }
    diffs = defaultdict(list)
    for key, group in groups.items():
        if len(group) < 2:
            continue
        pick = max(group, key=lambda p: p["similarity"])["gain_vs_base"]
        average = float(np.mean([p["gain_vs_base"] for p in group]))
        diffs["pick - average"].append(pick - average)
        if key in mix_gain:
            diffs["mix - average"].append(mix_gain[key] - average)
            diffs["mix - pick"].append(mix_gain[key] - pick)
    return {
        name: {"mean": float(np.mean(d)), "better": int((np.array(d) > 0).sum()), "worse": int((np.array(d) < 0).sum()),
               "groups": len(d)}
        for name, d in diffs.items()
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ report


def report(values: dict, runs: list[dict], written: dict, args, results: Path) -> dict:
    from text2lora.io_utils import atomic_file
    from text2lora.nearest_tasks import load_task_centroids

    table = {c: {m: pooled(values.get(c, {}).get(m, {})) for m in METRICS} for c in CONDITIONS}
    diffs = {f"{a} - {b}": {m: paired(values.get(a, {}).get(m, {}), values.get(b, {}).get(m, {})) for m in METRICS}
             for a, b in PAIRS}  # fmt: skip
    per_task = defaultdict(dict)
    for c in CONDITIONS:
        by_task = defaultdict(list)
        for (_, task, _), v in values.get(c, {}).get("completion_nll", {}).items():
            by_task[task].append(v)
        for task, v in by_task.items():
            per_task[task][c] = float(np.mean(v))
    points = similarity_points(runs, values)
    corr = {key: correlation(points, key) for key in ("gain_vs_base", "gain_vs_random")} if points else {}
    data = {
        "settings": {"seeds": args.seeds, "limit": args.limit, "k": args.k, "num_descriptions": args.num_descriptions,
                     "writer": args.writer or "HuggingFaceTB/SmolLM2-135M-Instruct (default)",
                     "threshold": load_task_centroids().threshold},  # fmt: skip
        "pooled": table, "paired": diffs, "per_task_nll": per_task, "correlation": corr, "points": points,
        "from_examples_modes": from_examples_modes(points, runs, values),
        "written": written,
    }  # fmt: skip
    results.mkdir(parents=True, exist_ok=True)
    with atomic_file(results / "describe_heldout.json") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)
    with atomic_file(results / "describe_heldout.md") as handle:
        handle.write(markdown(data))
    plot(data, results / "describe_heldout.png")
    return data


def _fmt(d: dict, scale: float = 1.0) -> str:
    if d.get("mean") is None:
        return "n/a"
    return f"{d['mean'] * scale:+.3f} [{d['ci'][0] * scale:+.3f}, {d['ci'][1] * scale:+.3f}]"


def markdown(data: dict) -> str:
    s = data["settings"]
    lines = [
        "# `describe` on the held-out validation tasks",
        "",
        f"Made by `recipes/smollm2/describe_heldout.py`: the collection's 10 held-out validation tasks, seeds "
        f"{', '.join(map(str, s['seeds']))}, up to {s['limit']} examples per task part, {s['num_descriptions']} "
        f"descriptions per condition. Writer: {s['writer']}, {s['k']} examples per task (rows no run scores).",
        "Completion NLL in nats/token (lower is better; 8 non-multiple-choice tasks), greedy exact match of free "
        "generation (%; same tasks), acc_norm (%; the 2 multiple-choice tasks). Pooled as the mean of task means.",
        "",
        "| condition | completion NLL | exact match (%) | acc_norm (%) |",
        "|---|---:|---:|---:|",
    ]
    for c in CONDITIONS:
        row = data["pooled"][c]
        lines.append(f"| {LABELS[c]} | {row['completion_nll']:.3f} | {100 * row['exact_match']:.1f} | "
                     f"{100 * row['acc_norm']:.1f} |")  # fmt: skip
    lines += ["", "Paired differences (per example, 95% bootstrap CI stratified by task):", "",
              "| pair | NLL | exact match (points) | acc_norm (points) |", "|---|---:|---:|---:|"]  # fmt: skip
    for pair, d in data["paired"].items():
        lines.append(f"| {pair} | {_fmt(d['completion_nll'])} | {_fmt(d['exact_match'], 100)} | {_fmt(d['acc_norm'], 100)} |")
    if data["correlation"]:
        lines += ["", f"Nearest-training-task similarity vs NLL gain (one point per T2L run with a human or written "
                  f"description; far threshold {s['threshold']:.3f}):", ""]  # fmt: skip
        for key, c in data["correlation"].items():
            ci = c["spearman_ci"]
            ci_text = f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci[0] is not None else "n/a"
            lines.append(f"- {key.replace('_', ' ')}: Spearman {c['spearman']:+.2f} (95% CI over tasks {ci_text}), "
                         f"Pearson {c['pearson']:+.2f}, {c['points']} runs over {c['tasks']} tasks")  # fmt: skip
    modes = data.get("from_examples_modes") or {}
    if modes:
        lines += ["", "`t2l generate --from-examples`: the default mix of the written candidates, `--pick` (the "
                  "candidate nearest to the training tasks) and the average candidate, as NLL gain over the base "
                  "model per (seed, task) (positive: the first is better):", "",
                  "| comparison | mean (nats/token) | first better | first worse | (seed, task) groups |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for name, m in modes.items():
            lines.append(f"| {name} | {m['mean']:+.3f} | {m['better']} | {m['worse']} | {m['groups']} |")
    lines += ["", "Written descriptions (first seed):", ""]
    first = data["written"].get(str(s["seeds"][0]), {})
    for task, entry in first.items():
        for text in entry["descriptions"]:
            lines.append(f"- `{task}`: {text}")
    lines += ["", "Per-task completion NLL:", "", "| task | " + " | ".join(CONDITIONS) + " |",
              "|---|" + "---:|" * len(CONDITIONS)]  # fmt: skip
    for task, row in sorted(data["per_task_nll"].items()):
        lines.append(f"| {task} | " + " | ".join(f"{row[c]:.3f}" if c in row else "" for c in CONDITIONS) + " |")
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    tasks = sorted(data["per_task_nll"])
    width = 0.8 / len(CONDITIONS)
    for i, c in enumerate(CONDITIONS):
        ys = [data["per_task_nll"][t].get(c, np.nan) for t in tasks]
        axes[0].bar(np.arange(len(tasks)) + (i - (len(CONDITIONS) - 1) / 2) * width, ys, width, label=LABELS[c],
                    color=COLORS[c])  # fmt: skip
    axes[0].set_xticks(np.arange(len(tasks)), [t.split(".", 1)[1][:18] for t in tasks], rotation=60, ha="right",
                       fontsize=7)  # fmt: skip
    axes[0].set_ylabel("completion NLL (nats/token)")
    axes[0].legend(fontsize=7)
    axes[0].set_title("Held-out tasks: T2L by description source")
    for source in ("t2l_human", "t2l_written"):
        color = COLORS[source]
        pts = [p for p in data["points"] if p["source"] == source]
        axes[1].scatter([p["similarity"] for p in pts], [p["gain_vs_base"] for p in pts], color=color, s=18,
                        label=LABELS[source].split(", ")[1])  # fmt: skip
    axes[1].axvline(data["settings"]["threshold"], color="gray", linestyle=":", label="far threshold")
    axes[1].axhline(0, color="black", linewidth=0.5)
    axes[1].set_xlabel("cosine similarity to the nearest training task")
    axes[1].set_ylabel("NLL gain over the base model")
    axes[1].legend(fontsize=7)
    axes[1].set_title("Does nearest-task similarity predict the gain?")
    fig.tight_layout()
    from text2lora.io_utils import atomic_file

    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--limit", type=int, default=30, help="examples per task part (mc / nll / gen)")
    parser.add_argument("--k", type=int, default=5, help="examples the writer reads")
    parser.add_argument("--num-descriptions", type=int, default=2)
    parser.add_argument("--writer", default=None, help="chat model for describe (default: the hypernetwork's base)")
    parser.add_argument("--tasks", default=None, help="comma-separated validation tasks (default: all 10)")
    parser.add_argument("--collection", type=Path, default=COLLECTION)
    parser.add_argument("--max-gen-toks", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None

    import torch

    from text2lora.evaluation.collection import load_collection_tasks

    torch.set_num_threads(args.threads)
    tasks = load_collection_tasks(args.collection, "validation", args.tasks)
    objects: dict = {}
    written_all = {}
    for seed in args.seeds:
        folder = args.out / f"seed-{seed}"
        written = write_descriptions(tasks, args, seed, folder)
        written_all[str(seed)] = written
        evaluate(args, args.collection, ["base", "t2l", "t2l_random"], folder / "human", seed, objects)
        evaluate(args, written_collection(args.collection, written, folder), ["t2l", "t2l_mix"], folder / "written",
                 seed, objects)  # fmt: skip
    values, runs = load_runs(args.out, args.seeds)
    data = report(values, runs, written_all, args, args.results)
    log(f"wrote {args.results}/describe_heldout.md, .json, .png")
    print(markdown(data).split("\nWritten descriptions")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
