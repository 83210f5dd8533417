"""What a collection build produced and left out: per-task counts, removals, skips, a markdown table and a plot."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io_utils import atomic_file


@dataclass
class TaskSummary:
    """Counts for one built task (one row of `tasks.json`)."""

    task: str
    source: str
    license: str
    definition: str | None
    num_descriptions: int
    num_heldout_descriptions: int
    candidates: int = 0  # examples drawn from the source
    duplicates: int = 0  # identical prompt + completion, dropped
    benchmark_overlap: dict[str, int] = field(default_factory=dict)  # examples dropped by the n-gram scan
    too_long: int = 0  # examples over max_tokens, dropped
    examples: int = 0  # examples kept
    multiple_choice: int = 0  # of which multiple choice
    mean_tokens: float = 0.0
    max_tokens: int = 0
    split: str = ""
    note: str = ""


@dataclass
class SkippedTask:
    """A task of a source that is not in the collection, and why."""

    task: str
    category: str  # unsupported | no-descriptions | load-error | too-few-examples | removed
    reason: str
    benchmarks: tuple[str, ...] = ()
    rule: str = ""
    main_benchmark: str = ""

    def as_removal(self) -> dict:
        return {
            "task": self.task,
            "benchmarks": list(self.benchmarks),
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass
class BuildReport:
    """Everything a build decided, for people (report.md, the plot) and for code (report.json)."""

    config: dict[str, Any]
    tasks: list[TaskSummary] = field(default_factory=list)
    skipped: list[SkippedTask] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    orphan_descriptions: list[str] = field(
        default_factory=list
    )  # description files with no task in the source
    missing_validation_tasks: list[str] = field(default_factory=list)
    ngram_scan: dict | None = None
    build_seconds: float = 0.0
    fingerprint: str = ""
    totals: dict[str, Any] = field(default_factory=dict)

    def finalise(self) -> None:
        self.tasks.sort(key=lambda t: t.task)
        self.skipped.sort(key=lambda s: s.task)
        self.removed.sort(key=lambda r: r["task"])
        totals: dict[str, Any] = {}
        for split in ("train", "validation"):
            tasks = [t for t in self.tasks if t.split == split]
            totals[split] = {
                "tasks": len(tasks),
                "examples": sum(t.examples for t in tasks),
                "tasks_per_source": dict(sorted(Counter(t.source for t in tasks).items())),
            }
        built = self.tasks
        totals["descriptions_per_task"] = _spread([t.num_descriptions for t in built])
        totals["heldout_descriptions_per_task"] = _spread([t.num_heldout_descriptions for t in built])
        totals["examples_per_task"] = _spread([t.examples for t in built])
        totals["dropped_too_long"] = sum(t.too_long for t in built)
        totals["dropped_benchmark_overlap"] = sum(sum(t.benchmark_overlap.values()) for t in built)
        totals["dropped_duplicates"] = sum(t.duplicates for t in built)
        totals["removed_tasks"] = len(self.removed)
        totals["skipped_tasks"] = dict(sorted(Counter(s.category for s in self.skipped).items()))
        self.totals = totals

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BuildReport:
        data = dict(data)
        data["tasks"] = [TaskSummary(**t) for t in data.get("tasks", [])]
        data["skipped"] = [
            SkippedTask(**{**s, "benchmarks": tuple(s.get("benchmarks", ()))})
            for s in data.get("skipped", [])
        ]
        return cls(**data)

    def summary_lines(self) -> list[str]:
        """The short report printed at the end of `t2l data build`."""
        t = self.totals
        lines = [
            f"train: {t['train']['tasks']} tasks, {t['train']['examples']:,} examples {t['train']['tasks_per_source']}",
            (
                f"validation: {t['validation']['tasks']} tasks, {t['validation']['examples']:,} examples "
                f"{t['validation']['tasks_per_source']}"
            ),
            f"descriptions per task: {t['descriptions_per_task']}; held-out: {t['heldout_descriptions_per_task']}",
            f"examples per task: {t['examples_per_task']}",
            (
                f"dropped examples: {t['dropped_too_long']:,} over {self.config.get('max_tokens')} tokens, "
                f"{t['dropped_benchmark_overlap']:,} matching benchmark text, {t['dropped_duplicates']:,} duplicates"
            ),
            f"removed (decontamination): {len(self.removed)} tasks",
        ]
        lines += [
            f"  - {r['task']} [{r['rule']}: {', '.join(r['benchmarks'])}] {r['reason']}" for r in self.removed
        ]
        lines.append(f"skipped: {t['skipped_tasks']}")
        for category in ("no-descriptions", "too-few-examples", "load-error"):
            names = [s.task for s in self.skipped if s.category == category]
            if names:
                shown = ", ".join(names[:12]) + (f", ... (+{len(names) - 12})" if len(names) > 12 else "")
                lines.append(f"  {category}: {shown}")
        noted = [f"{s.task} ({s.note})" for s in self.tasks if s.note]
        if noted:
            lines.append(f"notes: {'; '.join(noted)}")
        if self.missing_validation_tasks:
            lines.append(f"validation tasks not built: {self.missing_validation_tasks}")
        if self.orphan_descriptions:
            lines.append(f"description files without a task in the source: {self.orphan_descriptions}")
        if self.ngram_scan is None:
            lines.append("n-gram scan: skipped (no --benchmark-dir); the explicit removal list was applied")
        else:
            lines.append(
                f"n-gram scan: {self.ngram_scan['n']}-grams, {self.ngram_scan['ngrams']:,} benchmark n-grams"
            )
        lines.append(f"build time: {self.build_seconds:.0f} s")
        return lines

    def to_markdown(self) -> str:
        t = self.totals
        out = ["# Task collection build report", ""]
        out += [f"- {line}" if not line.startswith("  ") else line for line in self.summary_lines()]
        out += ["", "## Tasks", "",
                "| task | split | examples | multiple choice | too long | benchmark overlap | mean tokens | descriptions | note |",
                "|---|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for s in self.tasks:
            overlap = sum(s.benchmark_overlap.values())
            out.append(
                f"| {s.task} | {s.split} | {s.examples} | {s.multiple_choice} | {s.too_long} | {overlap} | "
                f"{s.mean_tokens:.0f} | {s.num_descriptions}+{s.num_heldout_descriptions} | {s.note} |"
            )
        out += [
            "",
            "## Removed (decontamination)",
            "",
            "| task | rule | benchmarks | reason |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {r['task']} | {r['rule']} | {', '.join(r['benchmarks'])} | {r['reason']} |"
            for r in self.removed
        ]
        out += ["", "## Skipped", "", "| task | category | reason |", "|---|---|---|"]
        out += [f"| {s.task} | {s.category} | {s.reason} |" for s in self.skipped]
        out += ["", f"Totals: `{json.dumps(t)}`", ""]
        return "\n".join(out)


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": min(values), "mean": round(sum(values) / len(values), 1), "max": max(values)}


def plot_report(report: BuildReport, path: str | os.PathLike) -> None:
    """Examples per task (sorted, coloured by source, validation tasks hatched) and tasks per outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = {"natural_instructions": "tab:blue", "bigbench": "tab:orange", "reasoning_gym": "tab:green"}
    tasks = sorted(report.tasks, key=lambda t: (-t.examples, t.task))
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    bars = left.bar(range(len(tasks)), [t.examples for t in tasks], width=1.0,
                    color=[colours.get(t.source, "grey") for t in tasks])  # fmt: skip
    for bar, summary in zip(bars, tasks):
        if summary.split == "validation":
            bar.set_hatch("//")
            bar.set_edgecolor("black")
    left.set_xlabel(f"task ({len(tasks)} built; hatched: validation)")
    left.set_ylabel("examples kept")
    left.set_title("Examples per task")
    left.set_xlim(-0.5, max(len(tasks), 1) - 0.5)
    left.legend(
        handles=[Patch(color=colour, label=source) for source, colour in colours.items()], loc="upper right"
    )

    sources = list(colours)
    outcomes = {
        "train": [sum(t.source == s and t.split == "train" for t in report.tasks) for s in sources],
        "validation": [sum(t.source == s and t.split == "validation" for t in report.tasks) for s in sources],
        "removed": [sum(r["task"].startswith(s + ".") for r in report.removed) for s in sources],
        "skipped": [sum(k.task.startswith(s + ".") for k in report.skipped) for s in sources],
    }
    bottom = [0] * len(sources)
    for (outcome, counts), colour in zip(
        outcomes.items(), ["tab:gray", "tab:purple", "tab:red", "lightgray"]
    ):
        right.bar(range(len(sources)), counts, bottom=bottom, color=colour, label=outcome)
        bottom = [b + c for b, c in zip(bottom, counts)]
    right.set_xticks(range(len(sources)), [s.replace("_", "\n") for s in sources])
    right.set_ylabel("tasks")
    right.set_title("Tasks per source and outcome")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: BuildReport, folder: str | os.PathLike, descriptions: dict | None = None) -> None:
    """Write `tasks.json`, `report.json`, `report.md` and `examples_per_task.png` into `folder`."""
    folder = Path(folder)
    table = []
    for summary in report.tasks:
        entry = asdict(summary)
        if descriptions is not None and summary.task in descriptions:
            entry["descriptions"] = list(descriptions[summary.task].descriptions)
            entry["heldout_descriptions"] = list(descriptions[summary.task].validation_descriptions)
        table.append(entry)
    with atomic_file(folder / "tasks.json") as handle:
        json.dump(table, handle, indent=1)
    with atomic_file(folder / "report.json") as handle:
        json.dump(report.to_dict(), handle, indent=1)
    with atomic_file(folder / "report.md") as handle:
        handle.write(report.to_markdown())
    plot_report(report, folder / "examples_per_task.png")


def read_report(folder: str | os.PathLike) -> BuildReport:
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"No build report in {folder}; build the collection with `t2l data build --out {folder}`."
        )
    return BuildReport.from_dict(json.loads(path.read_text()))
