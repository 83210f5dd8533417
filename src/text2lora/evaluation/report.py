"""Rendering an evaluation: the markdown tables, the bar chart, and the files a run writes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..io_utils import atomic_file
from .paired import BENCHMARK_SCOPE, HELDOUT_MC_SCOPE, HELDOUT_NLL_SCOPE, metric_of_scope
from .run_store import EXAMPLES_FILE, PLOT_FILE, REPORT_FILE, RESULTS_FILE

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
        *[f"\n**Note:** {note}." for note in report.get("notes", [])],
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


def write_outputs(results: dict[str, Any], examples: list[dict], output_dir: str | Path) -> dict[str, Path]:
    """Write results.json, examples.jsonl, results.md and results.png (each atomically)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in (RESULTS_FILE, EXAMPLES_FILE, REPORT_FILE, PLOT_FILE)}
    with atomic_file(paths[RESULTS_FILE]) as handle:
        json.dump(results, handle, indent=2, default=_json_default)
    with atomic_file(paths[EXAMPLES_FILE]) as handle:
        for example in examples:
            handle.write(json.dumps(example, default=_json_default) + "\n")
    with atomic_file(paths[REPORT_FILE]) as handle:
        handle.write(markdown_report(results))
    plot_results(results, paths[PLOT_FILE])
    return paths


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def format_value(value: float, metric: str, std: float | None = None) -> str:
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
                    cells.append(format_value(stats["mean"], metric, stats["std"] if entry["n_runs"] > 1 else None))
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
                cells.append(f"**{format_value(entry['mean'], metric)}**{partial}")
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
        if isinstance(description, list):  # a mix of several
            description = " + ".join(description)
        if len(description) > 70:
            description = description[:67] + "..."
        origin = f" ({run['description_origin']})" if run.get("description_origin") else ""
        adapter = run["adapter"] or {}
        checksum = adapter.get("checksum")
        lines.append(
            f"| {run['condition']} | {run['task']} | {run['variant']} | {description.replace('|', '/')}{origin} | "
            f"{adapter.get('active') or 'none'} | {'' if checksum is None else f'{checksum:.4g}'} | "
            f"{format_value(run['metrics'].get(metric, math.nan), metric)} | {run['wall_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _wrapped(name: str, width: int = 16) -> str:
    """A task name on a few short lines, broken after `.`, `_`, `:` or a space, so that long names (e.g.
    natural_instructions.subtask027_drop_answer_type_generation) neither overlap each other nor need rotating."""
    lines, line = [], ""
    for piece in re.findall(r"[^._: ]+[._: ]?|[._: ]", name):
        if line and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    return "\n".join([*lines, line.rstrip()])


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
    # free generation's exact match on the NLL tasks that measured it (--collection-generate): a panel of its own
    generated = [(n, t) for n, t in lower if "exact_match" in t.get("extra_metrics", [])]
    for members, scopes, ylabel, metric in (
        (higher, (BENCHMARK_SCOPE, HELDOUT_MC_SCOPE), "higher is better (%)", None),
        (lower, (HELDOUT_NLL_SCOPE,), "completion NLL per token (lower is better)", None),
        (generated, (f"{HELDOUT_NLL_SCOPE} [exact_match]",), "exact match of free generation (%)", "exact_match"),
    ):
        if members:
            panels.append((members, [s for s in scopes if s in results["summary"]], ylabel, metric))
    widest = max(len(members) + len(scopes) for members, scopes, _, _ in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 1.3 * widest), 4.5 * len(panels)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (members, scopes, ylabel, metric) in zip(axes[:, 0], panels):
        groups = [n for n, _ in members] + [f"avg: {s}" for s in scopes]
        width = 0.8 / max(1, len(conditions))
        scale = 1.0 if "NLL" in ylabel else 100.0
        for i, condition in enumerate(conditions):
            means, errs, partial = [], [], []
            for _, task in members:
                entry = task["conditions"].get(condition)
                stats = entry["metrics"].get(metric or task["primary_metric"]) if entry else None
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
        ax.set_xticklabels([_wrapped(g) for g in groups], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=min(4, len(conditions)), loc="lower center", bbox_to_anchor=(0.5, 1.0),
               frameon=False)
    partial = any(e["n_tasks"] < e["of"] for row in results["summary"].values() for e in row.values())
    note = " | hatched: average over only some tasks" if partial else ""
    if title is None:
        config = results["config"]
        title = f"{config['base_model']} | seed {config['seed']} | limit {config['limit']}"
    fig.suptitle(title + note, y=1.0 + 0.03 * (1 + (len(conditions) - 1) // 4) + 0.02)
    fig.tight_layout()
    with atomic_file(path, mode="wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
