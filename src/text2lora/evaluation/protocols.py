"""The two multiple-choice protocols side by side: log-likelihood and the paper's generative scoring (its rule
and the lenient reading), as a table with paired differences and a bar chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..io_utils import atomic_file
from .paired import BENCHMARK_SCOPE
from .pooling import combined_paired_report
from .report import format_value
from .results import RESULTS_FORMAT

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
    models = {r["base_model"] for r in reports.values()}
    if len(models) > 1:
        raise ValueError(f"The two protocols' runs are of different base models ({', '.join(sorted(map(str, models)))}); "
                         "pass runs of one model.")
    benchmarks = {p: [t for t, info in r["tasks"].items() if info["kind"] == "benchmark"] for p, r in reports.items()}
    shared = [t for t in benchmarks["generative"] if t in benchmarks["loglik"]]
    if not shared:
        raise ValueError("No benchmark was measured under both protocols; pass --loglik and --generative runs of the "
                         "same benchmarks.")
    conditions = [c for c in reports["loglik"]["conditions"] if c in reports["generative"]["conditions"]]
    if not conditions:
        raise ValueError("No condition was measured under both protocols; pass runs made with the same --conditions.")
    notes = [*reports["loglik"]["notes"], *reports["generative"]["notes"]]
    for protocol, report in reports.items():
        only = [t for t in benchmarks[protocol] if t not in shared]
        only += [c for c in report["conditions"] if c not in conditions]
        if only:
            notes.append(f"left out, measured under {protocol} only: {', '.join(only)}")
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
        "notes": notes,
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
        *[f"\n**Note:** {note}." for note in report.get("notes", [])],
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
        cells = [format_value(_measure_average(report[p], benchmarks, condition, m), "acc") for p, m, _ in measures]
        lines.append(f"| {report['conditions'][condition]['label']} | " + " | ".join(cells) + " |")
    chance = [CHANCE.get(task) for task in benchmarks]
    if all(c is not None for c in chance):
        lines.append("| *guessing* | " + " | ".join([format_value(float(np.mean(chance)), "acc")] * len(measures)) + " |")
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
            cells = [format_value(_measure_mean(report[protocol], task, c, metric), "acc") for c in conditions]
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
