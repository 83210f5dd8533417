"""Results of an evaluation run: the JSON document, paired per-example differences, a markdown table and a
bar chart.

Per-condition numbers are means over the fixed examples; conditions run with several descriptions report
the mean and the standard deviation over those runs. Paired differences compare two conditions example by
example (each condition's value for an example being its mean over that condition's runs), with a
percentile-bootstrap 95% CI; pooled over benchmarks, examples are resampled within each benchmark and the
benchmarks weigh equally. Rows of several `t2l eval` runs (e.g. different seeds) can be pooled with
`combine_examples`.
"""

from __future__ import annotations

import json
import math
import platform
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..io_utils import atomic_file
from .conditions import CONDITIONS
from .metrics import bootstrap_ci

RESULTS_FORMAT = "text2lora-eval/1"
LOWER_IS_BETTER = {"completion_nll", "timeout", "sandbox_denied"}
DEFAULT_PAIRS = (
    ("t2l", "t2l_random"),
    ("t2l", "t2l_other"),
    ("t2l", "base"),
    ("t2l", "description"),
    ("t2l", "fewshot"),
    ("t2l", "mt_lora"),
    ("t2l", "oracle_lora"),
    ("description", "base"),
    ("fewshot", "base"),
    ("mt_lora", "base"),
)
BENCHMARK_SCOPE = "benchmarks"
HELDOUT_MC_SCOPE = "held-out tasks (multiple choice)"
HELDOUT_NLL_SCOPE = "held-out tasks (completion NLL)"


# ------------------------------------------------------------------------------------------- assembling


def condition_label(name: str, num_fewshot: int = 3) -> str:
    label = CONDITIONS[name].label
    return label.replace("3-shot", f"{num_fewshot}-shot")


def build_results(*, config, tasks, conditions, runs, examples, missing_oracles, wall_s, model=None) -> dict[str, Any]:
    """The results document: settings, per-task and per-condition numbers, summaries, pairs and every run."""
    names = [c.name for c in conditions]
    task_results: dict[str, Any] = {}
    for entry in tasks:
        per_condition: dict[str, Any] = {}
        for name in names:
            task_runs = [r for r in runs if r["task"] == entry.name and r["condition"] == name]
            if not task_runs:
                continue
            metrics = sorted({m for r in task_runs for m in r["metrics"]})
            per_condition[name] = {
                "n_runs": len(task_runs),
                "metrics": {m: _spread([r["metrics"].get(m, math.nan) for r in task_runs]) for m in metrics},
            }
        task_results[entry.name] = {
            "kind": entry.kind,
            "primary_metric": entry.primary_metric,
            "extra_metrics": list(entry.extra_metrics),
            "higher_is_better": entry.primary_metric not in LOWER_IS_BETTER,
            "n_examples": sum(len(v) for v in entry.samples.values()),
            "n_available": sum(entry.sizes.values()),
            "example_indices": entry.samples,
            "conditions": per_condition,
        }
    pairs = _pairs(config.pairs, names)
    results = {
        "format": RESULTS_FORMAT,
        "config": config.to_dict(),
        "environment": _environment(config, model),
        "conditions": {c.name: {"label": condition_label(c.name, config.num_fewshot)} for c in conditions},
        "tasks": task_results,
        "summary": summarize(task_results, names),
        "paired": paired_differences(examples, task_results, pairs, config.bootstrap_iterations, config.seed),
        "missing_oracles": missing_oracles,
        "runs": runs,
        "wall_s": round(wall_s, 1),
    }
    return results


def _spread(values: list[float]) -> dict[str, Any]:
    clean = [v for v in values if not math.isnan(v)]
    mean = float(np.mean(clean)) if clean else math.nan
    std = float(np.std(clean, ddof=1)) if len(clean) > 1 else 0.0
    return {"mean": mean, "std": std, "runs": values}


def _scope(task: dict) -> str:
    if task["kind"] == "benchmark":
        return BENCHMARK_SCOPE
    return HELDOUT_NLL_SCOPE if task["primary_metric"] == "completion_nll" else HELDOUT_MC_SCOPE


def summarize(task_results: dict[str, Any], condition_names: list[str]) -> dict[str, Any]:
    """Per scope (benchmarks, held-out MC, held-out NLL), each condition's mean of the tasks' primary metric.

    A metric shown beside the primary one (`extra_metrics`, e.g. `acc_lenient` under the generative protocol) gets
    its own entry, `"<scope> [<metric>]"`, averaged over the tasks that report it; for the others of the scope
    (e.g. GSM8K's exact match) their primary metric stands in, so both averages cover the same tasks."""
    summary: dict[str, Any] = {}
    for scope in (BENCHMARK_SCOPE, HELDOUT_MC_SCOPE, HELDOUT_NLL_SCOPE):
        members = {name: t for name, t in task_results.items() if _scope(t) == scope}
        if not members:
            continue
        summary[scope] = _summary_row(members, condition_names, None)
        for extra in dict.fromkeys(m for t in members.values() for m in t.get("extra_metrics", [])):
            summary[f"{scope} [{extra}]"] = _summary_row(members, condition_names, extra)
    return summary


def _summary_row(members: dict[str, Any], condition_names: list[str], extra: str | None) -> dict[str, Any]:
    row = {}
    for condition in condition_names:
        values = []
        for task in members.values():
            if condition not in task["conditions"]:
                continue
            metric = extra if extra in task.get("extra_metrics", []) else task["primary_metric"]
            values.append(task["conditions"][condition]["metrics"][metric]["mean"])
        if values:
            row[condition] = {"mean": float(np.mean(values)), "n_tasks": len(values), "of": len(members)}
    return row


def metric_of_scope(scope: str) -> str:
    """The metric a summary entry averages: the bracketed extra metric, NLL, or each task's primary metric."""
    if scope.endswith("]") and " [" in scope:
        return scope.rsplit(" [", 1)[1][:-1]
    return "completion_nll" if "NLL" in scope else "primary"


def _pairs(requested, names: list[str]) -> list[tuple[str, str]]:
    if requested:
        pairs = [tuple(p.split("-")) if isinstance(p, str) else tuple(p) for p in requested]
    else:
        pairs = list(DEFAULT_PAIRS)
    return [(a, b) for a, b in pairs if a in names and b in names]


# ---------------------------------------------------------------------------------- paired differences


def per_example_values(
    examples: list[dict], task_results: dict[str, Any], metric: str | None = None
) -> dict[tuple[str, str], dict[str, float]]:
    """(task, condition) -> example id -> the primary metric (or `metric`, for the tasks that report it)
    averaged over the condition's runs."""
    collected: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for example in examples:
        task = task_results.get(example["task"])
        if task is None:
            continue
        if metric is not None and metric not in task.get("extra_metrics", []):
            continue
        value = example["metrics"].get(metric or task["primary_metric"])
        if value is not None:
            collected[(example["task"], example["condition"])][example["example"]].append(float(value))
    return {key: {ex: float(np.mean(v)) for ex, v in values.items()} for key, values in collected.items()}


def paired_differences(
    examples: list[dict], task_results: dict[str, Any], pairs: list[tuple[str, str]], iterations: int = 2000, seed: int = 0
) -> list[dict[str, Any]]:
    """For each pair (a, b): per task and pooled per scope, the mean of a - b over shared examples with a 95%
    bootstrap CI and a two-sided bootstrap p-value. Positive means a scored higher (for NLL: a was *worse*).

    Metrics shown beside the primary one (`extra_metrics`) get rows of their own, per task and pooled over the
    tasks that report them."""
    extras = list(dict.fromkeys(m for info in task_results.values() for m in info.get("extra_metrics", [])))
    out: list[dict[str, Any]] = []
    for metric in [None, *extras]:
        values = per_example_values(examples, task_results, metric)
        for a, b in pairs:
            pooled: dict[str, tuple[list[float], list[str]]] = defaultdict(lambda: ([], []))
            for task, info in task_results.items():
                va, vb = values.get((task, a)), values.get((task, b))
                if not va or not vb:
                    continue
                shared = sorted(set(va) & set(vb), key=_natural)
                if not shared:
                    continue
                diffs = [va[e] - vb[e] for e in shared]
                out.append(_difference(a, b, task, metric or info["primary_metric"], diffs, None, iterations, seed))
                scope_diffs, scope_tasks = pooled[_scope(info)]
                scope_diffs.extend(diffs)
                scope_tasks.extend([task] * len(diffs))
            for scope, (diffs, strata) in pooled.items():
                if len(set(strata)) > 1:
                    if metric is not None:
                        label = metric
                    else:
                        label = "primary" if scope == BENCHMARK_SCOPE else ("completion_nll" if "NLL" in scope else "acc_norm")
                    out.append(_difference(a, b, f"all {scope}", label, diffs, strata, iterations, seed))
    return out


def _difference(a, b, scope, metric, diffs, strata, iterations, seed) -> dict[str, Any]:
    diffs_arr = np.asarray(diffs, dtype=float)
    if strata is None:
        mean = float(diffs_arr.mean())
    else:
        labels = np.asarray(strata)
        mean = float(np.mean([diffs_arr[labels == s].mean() for s in dict.fromkeys(strata)]))
    low, high = bootstrap_ci(diffs_arr, iterations=iterations, seed=seed, strata=strata)
    p_value = _bootstrap_p(diffs_arr, strata, iterations, seed)
    return {"a": a, "b": b, "scope": scope, "metric": metric, "n": int(diffs_arr.size), "mean_diff": mean,
            "ci95": [low, high], "p_boot": p_value, "n_tasks": len(set(strata)) if strata is not None else 1}


def _bootstrap_p(diffs: np.ndarray, strata, iterations: int, seed: int) -> float:
    """Two-sided bootstrap p-value of mean difference = 0 (resampling the centred differences)."""
    if diffs.size < 2 or np.allclose(diffs, diffs[0]):
        return 1.0 if np.allclose(diffs, 0) else 0.0
    labels = np.asarray(strata) if strata is not None else np.zeros(diffs.size, dtype=int).astype(str)
    groups = [diffs[labels == s] for s in dict.fromkeys(labels)]
    observed = np.mean([g.mean() for g in groups])
    rng = np.random.default_rng(seed + 1)
    stats = np.zeros(iterations)
    for g in groups:
        centred = g - g.mean()
        stats += centred[rng.integers(0, g.size, size=(iterations, g.size))].mean(axis=1)
    stats /= len(groups)
    return float(min(1.0, (np.sum(np.abs(stats) >= abs(observed)) + 1) / (iterations + 1)))


def _natural(key: str):
    return (0, int(key)) if str(key).isdigit() else (1, str(key))


def combine_examples(run_dirs: list[str | Path]) -> tuple[list[dict], dict[str, Any], list[dict[str, Any]]]:
    """Pool the per-example rows of several runs (e.g. seeds) so `paired_differences` can use them all.

    Each run's examples are kept apart (ids prefixed with the run's position): an example that two seeds both
    drew was evaluated twice, with different descriptions, and counts twice. Returns the examples, the tasks
    and each run's settings.
    """
    examples: list[dict] = []
    tasks: dict[str, Any] = {}
    configs: list[dict[str, Any]] = []
    for position, run_dir in enumerate(run_dirs):
        run_dir = Path(run_dir)
        results = json.loads((run_dir / "results.json").read_text())
        configs.append(results.get("config", {}))
        for name, info in results["tasks"].items():
            tasks.setdefault(name, info)
        with open(run_dir / "examples.jsonl", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                row["example"] = f"run{position}:{row['example']}"
                examples.append(row)
    return examples, tasks, configs


def pooled_means(examples: list[dict], tasks: dict[str, Any], condition_names: list[str]) -> dict[str, Any]:
    """Per task and condition, the primary metric's mean over every pooled example (each example first averaged
    over the condition's descriptions), in the shape of a results document's "tasks" entry.

    For completion NLL this is the mean of per-example NLLs, which can differ from a single run's token-weighted
    figure."""
    extras = list(dict.fromkeys(m for info in tasks.values() for m in info.get("extra_metrics", [])))
    values = {metric: per_example_values(examples, tasks, metric) for metric in [None, *extras]}
    pooled: dict[str, Any] = {}
    for name, info in tasks.items():
        per_condition = {}
        for condition in condition_names:
            by_example = values[None].get((name, condition))
            if by_example:
                metrics = {info["primary_metric"]: {"mean": float(np.mean(list(by_example.values()))), "std": 0.0}}
                for extra in info.get("extra_metrics", []):
                    extra_values = values[extra].get((name, condition), {})
                    metrics[extra] = {"mean": float(np.mean(list(extra_values.values()))) if extra_values else math.nan,
                                      "std": 0.0}
                per_condition[condition] = {"n_runs": 1, "n_examples": len(by_example), "metrics": metrics}
        if per_condition:
            pooled[name] = {
                "kind": info["kind"],
                "primary_metric": info["primary_metric"],
                "extra_metrics": list(info.get("extra_metrics", [])),
                "higher_is_better": info["higher_is_better"],
                "n_examples": max(c["n_examples"] for c in per_condition.values()),
                "conditions": per_condition,
            }
    return pooled


def combined_paired_report(run_dirs: list[str | Path], pairs: list[str] | None = None, iterations: int = 2000) -> dict:
    """Means and paired differences pooled over several `t2l eval` runs (e.g. seeds 0, 1, 2): more examples,
    and descriptions / random strings drawn anew for each seed."""
    examples, tasks, configs = combine_examples(run_dirs)
    names = sorted({e["condition"] for e in examples}, key=lambda n: list(CONDITIONS).index(n))
    num_fewshot = configs[0].get("num_fewshot", 3)
    pooled = pooled_means(examples, tasks, names)
    rows = paired_differences(examples, tasks, _pairs(pairs, names), iterations, seed=0)
    return {
        "format": RESULTS_FORMAT + "-combined",
        "runs": [str(d) for d in run_dirs],
        "seeds": [config.get("seed") for config in configs],
        "protocols": sorted({config.get("protocol", "loglik") for config in configs}),
        "base_model": configs[0].get("base_model"),
        "conditions": {name: {"label": condition_label(name, num_fewshot)} for name in names},
        "tasks": pooled,
        "summary": summarize(pooled, names),
        "paired": rows,
    }


def combined_markdown(report: dict[str, Any]) -> str:
    """The pooled means table and the pooled paired differences of `combined_paired_report`."""
    seeds = ", ".join(str(s) for s in report["seeds"])
    lines = [
        f"# Pooled over {len(report['runs'])} runs (seeds {seeds})",
        "",
        (
            "Means over every pooled example (an example drawn by two seeds counts twice), in %; completion NLL in "
            "nats per token (mean of per-example values)."
        ),
        "",
        *main_table_lines(report),
        "",
        "## Paired per-example differences",
        "",
        *paired_markdown(report["paired"]).rstrip("\n").split("\n"),
    ]
    return "\n".join(lines) + "\n"


def paired_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| a | b | scope | metric | n | mean diff | 95% CI | p (bootstrap) |",
        "|---|---|---|---|---:|---:|---|---:|",
    ]
    for row in rows:
        scale = 1.0 if row["metric"] == "completion_nll" else 100.0
        low, high = row["ci95"]
        lines.append(
            f"| {row['a']} | {row['b']} | {row['scope']} | {row['metric']} | {row['n']} | "
            f"{scale * row['mean_diff']:+.2f} | [{scale * low:+.2f}, {scale * high:+.2f}] | {row['p_boot']:.3f} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the two protocols side by side

# (protocol, metric, label): the measures of a multiple-choice benchmark the side-by-side table shows.
PROTOCOL_MEASURES = (
    ("loglik", "primary", "log-likelihood (acc_norm)"),
    ("generative", "primary", "generative, paper's rule (acc)"),
    ("generative", "acc_lenient", "generative, lenient (acc_lenient)"),
)


def protocols_report(
    loglik_dirs: list[str | Path], generative_dirs: list[str | Path], pairs: list[str] | None = None, iterations: int = 2000
) -> dict[str, Any]:
    """The same conditions measured under both protocols (each pooled over its runs, e.g. seeds), side by side:
    per benchmark and condition the log-likelihood accuracy, the paper's-rule accuracy and the lenient one, and
    the paired differences of each. Only benchmarks measured under both protocols are kept."""
    reports = {"loglik": combined_paired_report(loglik_dirs, pairs, iterations),
               "generative": combined_paired_report(generative_dirs, pairs, iterations)}
    for protocol, report in reports.items():
        if report["protocols"] != [protocol]:
            raise ValueError(f"The --{protocol} runs were measured under {report['protocols']}, not {protocol!r}.")
    shared = [t for t in reports["generative"]["tasks"] if t in reports["loglik"]["tasks"]
              and reports["generative"]["tasks"][t]["kind"] == "benchmark"]
    if not shared:
        raise ValueError("No benchmark was measured under both protocols.")
    conditions = [c for c in reports["loglik"]["conditions"] if c in reports["generative"]["conditions"]]
    return {
        "format": RESULTS_FORMAT + "-protocols",
        "base_model": reports["loglik"]["base_model"],
        "seeds": {p: r["seeds"] for p, r in reports.items()},
        "runs": {p: r["runs"] for p, r in reports.items()},
        "benchmarks": shared,
        "conditions": {c: reports["loglik"]["conditions"][c] for c in conditions},
        "measures": [{"protocol": p, "metric": m, "label": label} for p, m, label in PROTOCOL_MEASURES],
        "loglik": reports["loglik"],
        "generative": reports["generative"],
    }


def _measure_mean(report: dict[str, Any], task: str, condition: str, metric: str) -> float:
    info = report["tasks"].get(task, {})
    entry = info.get("conditions", {}).get(condition)
    if entry is None:
        return math.nan
    name = info["primary_metric"] if metric == "primary" else metric
    return entry["metrics"].get(name, {"mean": math.nan})["mean"]


def _measure_average(report: dict[str, Any], benchmarks: list[str], condition: str, metric: str) -> float:
    values = [_measure_mean(report, task, condition, metric) for task in benchmarks]
    return float(np.mean(values)) if values and not any(math.isnan(v) for v in values) else math.nan


def _measure_pair(report: dict[str, Any], a: str, b: str, scope: str, metric: str) -> dict[str, Any] | None:
    for row in report["paired"]:
        if row["a"] == a and row["b"] == b and row["scope"] == scope:
            if (metric == "primary" and row["metric"] not in EXTRA_PAIR_METRICS) or row["metric"] == metric:
                return row
    return None


EXTRA_PAIR_METRICS = ("acc_lenient",)
# Accuracy of guessing uniformly (ARC has a few 3- and 5-option questions; 4 is the rule).
CHANCE = {"arc_easy": 0.25, "arc_challenge": 0.25, "openbookqa": 0.25, "hellaswag": 0.25, "piqa": 0.5,
          "winogrande": 0.5, "boolq": 0.5}


def protocols_markdown(report: dict[str, Any]) -> str:
    """Both protocols side by side: the benchmark average per condition, each benchmark, and the paired
    differences (mean over benchmarks, each weighing equally; 95% bootstrap CIs)."""
    measures = [(m["protocol"], m["metric"], m["label"]) for m in report["measures"]]
    conditions = list(report["conditions"])
    benchmarks = report["benchmarks"]
    seeds = "; ".join(f"{p}: seeds {', '.join(str(s) for s in v)}" for p, v in report["seeds"].items())
    n = {p: report[p]["tasks"][benchmarks[0]]["n_examples"] for p in ("loglik", "generative")}
    lines = [
        f"# Both protocols side by side: {report['base_model']}",
        "",
        f"{len(benchmarks)} multiple-choice benchmarks ({', '.join(benchmarks)}); {seeds}; examples per benchmark "
        f"pooled over the seeds: {n['loglik']} (log-likelihood), {n['generative']} (generative). Accuracy in %.",
        "",
        "- **log-likelihood**: the option whose text the model finds most likely after the question (length-"
        "normalised); it never asks the model to answer, so format cannot cost points.",
        "- **generative, paper's rule**: the Text-to-LoRA paper's prompt asks for the option's label, the model "
        "replies greedily, and the reply counts only when it *starts* with the gold label (after stripping quotes, "
        "colons, brackets, full stops); BoolQ replies are read as booleans (1/0, yes/no, true/false, ...). This is how "
        "the paper's tables are measured.",
        "- **generative, lenient**: the same replies, with the label also found after a preamble (\"The answer is "
        "B\"), in markdown, or as the only option the reply names. Lenient minus paper's rule is how much is format.",
        "",
        "## Mean over the benchmarks",
        "",
        "| condition | " + " | ".join(label for _, _, label in measures) + " |",
        "|---|" + "---:|" * len(measures),
    ]
    for condition in conditions:
        cells = [_fmt(_measure_average(report[p], benchmarks, condition, m), "acc") for p, m, _ in measures]
        lines.append(f"| {report['conditions'][condition]['label']} | " + " | ".join(cells) + " |")
    chance = [CHANCE.get(task) for task in benchmarks]
    if all(c is not None for c in chance):
        lines.append("| *guessing* | " + " | ".join([_fmt(float(np.mean(chance)), "acc")] * len(measures)) + " |")
    pairs = [(row["a"], row["b"]) for row in report["loglik"]["paired"] if row["scope"] == f"all {BENCHMARK_SCOPE}"]
    pairs = list(dict.fromkeys(pairs))
    if pairs:
        lines += [
            "",
            "## Paired differences, pooled over the benchmarks",
            "",
            "Mean of a − b over the same examples (each condition averaged over its descriptions first), benchmarks "
            "weighing equally, in points; [95% bootstrap CI].",
            "",
            "| a − b | " + " | ".join(label for _, _, label in measures) + " |",
            "|---|" + "---|" * len(measures),
        ]
        for a, b in pairs:
            cells = [_pair_cell(_measure_pair(report[p], a, b, f"all {BENCHMARK_SCOPE}", m)) for p, m, _ in measures]
            lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Each benchmark",
        "",
        "| benchmark | measure | " + " | ".join(report["conditions"][c]["label"] for c in conditions) + " |",
        "|---|---|" + "---:|" * len(conditions),
    ]
    for task in benchmarks:
        for protocol, metric, label in measures:
            cells = [_fmt(_measure_mean(report[protocol], task, c, metric), "acc") for c in conditions]
            lines.append(f"| {task} | {label} | " + " | ".join(cells) + " |")
    if pairs:
        lines += [
            "",
            "## Paired differences per benchmark",
            "",
            "| a − b | benchmark | " + " | ".join(label for _, _, label in measures) + " |",
            "|---|---|" + "---|" * len(measures),
        ]
        for a, b in pairs:
            for task in benchmarks:
                cells = [_pair_cell(_measure_pair(report[p], a, b, task, m)) for p, m, _ in measures]
                lines.append(f"| {a} − {b} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pair_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    low, high = row["ci95"]
    return f"{100 * row['mean_diff']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def plot_protocols(report: dict[str, Any], path: str | Path) -> None:
    """Two panels: each condition's mean over the benchmarks under the three measures, and the pooled paired
    differences (a − b) with their 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [(m["protocol"], m["metric"], m["label"]) for m in report["measures"]]
    conditions = list(report["conditions"])
    benchmarks = report["benchmarks"]
    pairs = list(dict.fromkeys((r["a"], r["b"]) for r in report["loglik"]["paired"]
                               if r["scope"] == f"all {BENCHMARK_SCOPE}"))
    fig, axes = plt.subplots(2 if pairs else 1, 1, figsize=(max(9, 1.3 * len(conditions)), 9 if pairs else 4.5),
                             squeeze=False)
    colors = plt.get_cmap("tab10")
    width = 0.8 / len(measures)
    ax = axes[0, 0]
    for i, (protocol, metric, label) in enumerate(measures):
        x = np.arange(len(conditions)) + (i - (len(measures) - 1) / 2) * width
        means = [100 * _measure_average(report[protocol], benchmarks, c, metric) for c in conditions]
        ax.bar(x, means, width, label=label, color=colors(i))
    ax.set_xticks(np.arange(len(conditions)))
    ax.set_xticklabels([report["conditions"][c]["label"] for c in conditions], rotation=25, ha="right")
    chance = [CHANCE.get(task) for task in benchmarks]
    if all(c is not None for c in chance):  # guessing, averaged over the benchmarks as the bars are
        ax.axhline(100 * float(np.mean(chance)), color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_ylabel(f"mean accuracy over {len(benchmarks)} benchmarks (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(measures) + 1, frameon=False)
    if pairs:
        ax = axes[1, 0]
        for i, (protocol, metric, label) in enumerate(measures):
            x = np.arange(len(pairs)) + (i - (len(measures) - 1) / 2) * width
            rows = [_measure_pair(report[protocol], a, b, f"all {BENCHMARK_SCOPE}", metric) for a, b in pairs]
            means = [100 * r["mean_diff"] if r else np.nan for r in rows]
            errs = np.array([[100 * (r["mean_diff"] - r["ci95"][0]), 100 * (r["ci95"][1] - r["mean_diff"])] if r
                             else [0.0, 0.0] for r in rows]).T
            ax.bar(x, means, width, yerr=errs, capsize=2, label=label, color=colors(i))
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(pairs)))
        ax.set_xticklabels([f"{a} − {b}" for a, b in pairs], rotation=25, ha="right")
        ax.set_ylabel("paired difference, points (95% CI)")
        ax.grid(axis="y", alpha=0.3)
    seeds = sorted({s for v in report["seeds"].values() for s in v})
    fig.suptitle(f"{report['base_model']} | both protocols | seeds {', '.join(str(s) for s in seeds)}", y=1.03)
    fig.tight_layout()
    with atomic_file(path, mode="wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ outputs


def write_outputs(results: dict[str, Any], examples: list[dict], output_dir: str | Path) -> dict[str, Path]:
    """Write results.json, examples.jsonl, results.md and results.png (each atomically)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("results.json", "examples.jsonl", "results.md", "results.png")}
    with atomic_file(paths["results.json"]) as handle:
        json.dump(results, handle, indent=2, default=_json_default)
    with atomic_file(paths["examples.jsonl"]) as handle:
        for example in examples:
            handle.write(json.dumps(example, default=_json_default) + "\n")
    with atomic_file(paths["results.md"]) as handle:
        handle.write(markdown_report(results))
    plot_results(results, paths["results.png"])
    return paths


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _fmt(value: float, metric: str, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric == "completion_nll":
        return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")
    return f"{100 * value:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def main_table_lines(results: dict[str, Any]) -> list[str]:
    """Markdown rows of the tasks x conditions table with one average row per scope."""
    conditions = list(results["conditions"])
    labels = [results["conditions"][c]["label"] for c in conditions]
    lines = [
        "| task | metric | n | " + " | ".join(labels) + " |",
        "|---|---|---:|" + "---:|" * len(labels),
    ]
    for name, task in results["tasks"].items():
        for metric in [task["primary_metric"], *task.get("extra_metrics", [])]:
            cells = []
            for condition in conditions:
                entry = task["conditions"].get(condition)
                if entry is None:
                    cells.append("–")
                else:
                    stats = entry["metrics"].get(metric, {"mean": math.nan, "std": 0.0})
                    cells.append(_fmt(stats["mean"], metric, stats["std"] if entry["n_runs"] > 1 else None))
            lines.append(f"| {name} | {metric} | {task['n_examples']} | " + " | ".join(cells) + " |")
    for scope, row in results["summary"].items():
        metric = metric_of_scope(scope)
        cells = []
        for condition in conditions:
            entry = row.get(condition)
            if entry is None:
                cells.append("–")
            else:
                partial = "" if entry["n_tasks"] == entry["of"] else f" ({entry['n_tasks']}/{entry['of']})"
                cells.append(f"**{_fmt(entry['mean'], metric)}**{partial}")
        lines.append(f"| **average: {scope}** | {metric} | | " + " | ".join(cells) + " |")
    return lines


def _protocol_note(protocol: str) -> str:
    if protocol == "generative":
        return ("the paper's prompt, greedy reply; `acc`: the paper's rule, the reply starts with the gold label; "
                "`acc_lenient`: the label read leniently, e.g. from \"The answer is B\"")
    return "log-likelihood of each option; `acc_norm` per character"


def markdown_report(results: dict[str, Any]) -> str:
    """The main table (tasks x conditions), summaries, paired differences and the list of runs."""
    config = results["config"]
    lines = [
        "# text2lora evaluation",
        "",
        (
            f"- base model: `{config['base_model']}`; hypernetwork: `{config['t2l']}`; multi-task LoRA: "
            f"`{config['mt_lora']}`; oracle LoRAs: `{config['oracle_loras']}`"
        ),
        f"- multiple-choice protocol: `{config.get('protocol', 'loglik')}` ({_protocol_note(config.get('protocol', 'loglik'))})",
        (
            f"- seed {config['seed']}; limit {config['limit']} examples per task (generation benchmarks: "
            f"{config['generation_limit'] or config['limit']}); chat template: {config['chat_template']}; "
            f"{config['num_descriptions']} descriptions per description condition; wall time {results['wall_s']:.0f} s"
        ),
        (
            "- Accuracy-type metrics in %, mean over the examples; `± x`: standard deviation over the condition's "
            "descriptions. Completion NLL: nats per token (lower is better)."
        ),
        "",
        *main_table_lines(results),
    ]
    if results.get("missing_oracles"):
        lines += ["", f"No oracle LoRA for: {', '.join(results['missing_oracles'])}."]
    if results["paired"]:
        lines += [
            "",
            "## Paired per-example differences",
            "",
            (
                "Mean over shared examples of (a - b), each condition averaged over its descriptions first; 95% "
                "percentile-bootstrap CI; pooled rows resample within each task and weigh tasks equally."
            ),
            "",
        ]
        lines += paired_markdown(results["paired"]).rstrip("\n").split("\n")
    lines += [
        "",
        "## Runs and the adapter each one had active",
        "",
        "| condition | task | # | description (origin) | active adapter | checksum | primary | s |",
        "|---|---|---:|---|---|---:|---:|---:|",
    ]
    for run in results["runs"]:
        task = results["tasks"].get(run["task"], {})
        metric = task.get("primary_metric", "")
        description = run.get("description") or ""
        if len(description) > 70:
            description = description[:67] + "..."
        origin = f" ({run['description_origin']})" if run.get("description_origin") else ""
        adapter = run["adapter"] or {}
        checksum = adapter.get("checksum")
        lines.append(
            f"| {run['condition']} | {run['task']} | {run['variant']} | {description.replace('|', '/')}{origin} | "
            f"{adapter.get('active') or 'none'} | {'' if checksum is None else f'{checksum:.4g}'} | "
            f"{_fmt(run['metrics'].get(metric, math.nan), metric)} | {run['wall_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot_results(results: dict[str, Any], path: str | Path, title: str | None = None) -> None:
    """Grouped bars: one group per task (and per scope average), one bar per condition; error bars are the
    standard deviation over descriptions. NLL tasks get their own panel (lower is better). `title` defaults to
    the run's base model, seed and limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(results["conditions"])
    panels = []
    higher = [(n, t) for n, t in results["tasks"].items() if t["primary_metric"] != "completion_nll"]
    lower = [(n, t) for n, t in results["tasks"].items() if t["primary_metric"] == "completion_nll"]
    for members, scopes, ylabel in (
        (higher, (BENCHMARK_SCOPE, HELDOUT_MC_SCOPE), "higher is better (%)"),
        (lower, (HELDOUT_NLL_SCOPE,), "completion NLL per token (lower is better)"),
    ):
        if members:
            panels.append((members, [s for s in scopes if s in results["summary"]], ylabel))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 1.1 * (len(higher) + 2) * 1.2), 4.5 * len(panels)),
                             squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (members, scopes, ylabel) in zip(axes[:, 0], panels):
        groups = [n for n, _ in members] + [f"avg: {s}" for s in scopes]
        width = 0.8 / max(1, len(conditions))
        scale = 1.0 if "NLL" in ylabel else 100.0
        for i, condition in enumerate(conditions):
            means, errs, partial = [], [], []
            for _, task in members:
                entry = task["conditions"].get(condition)
                stats = entry["metrics"].get(task["primary_metric"]) if entry else None
                means.append(scale * stats["mean"] if stats else np.nan)
                errs.append(scale * stats["std"] if stats else 0.0)
                partial.append(False)
            for scope in scopes:
                entry = results["summary"][scope].get(condition)
                means.append(scale * entry["mean"] if entry else np.nan)
                errs.append(0.0)
                partial.append(bool(entry) and entry["n_tasks"] < entry["of"])
            x = np.arange(len(groups)) + (i - (len(conditions) - 1) / 2) * width
            bars = ax.bar(x, means, width, yerr=errs if any(errs) else None, label=results["conditions"][condition]["label"],
                          color=colors(i % 10), capsize=2)
            for bar, is_partial in zip(bars, partial):
                if is_partial:  # an average over only some of the tasks (e.g. oracle LoRAs for a few)
                    bar.set_hatch("//")
                    bar.set_alpha(0.5)
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels(groups, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=min(4, len(conditions)), loc="upper left", bbox_to_anchor=(0, 1.25))
    partial = any(e["n_tasks"] < e["of"] for row in results["summary"].values() for e in row.values())
    note = " | hatched: average over only some tasks" if partial else ""
    if title is None:
        config = results["config"]
        title = f"{config['base_model']} | seed {config['seed']} | limit {config['limit']}"
    fig.suptitle(title + note, y=1.02)
    fig.tight_layout()
    with atomic_file(path, mode="wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _environment(config, model) -> dict[str, Any]:
    import lm_eval
    import peft
    import torch
    import transformers

    import text2lora

    return {
        "text2lora": text2lora.__version__,
        "lm_eval": getattr(lm_eval, "__version__", "unknown"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": config.device,
        "base_model_class": type(model).__name__ if model is not None else None,
        "base_model_name_or_path": getattr(model, "name_or_path", None),
    }
