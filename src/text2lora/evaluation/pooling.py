"""Several `t2l eval` runs (e.g. seeds) pooled into one table and one set of paired differences."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .conditions import CONDITIONS
from .paired import paired_differences, per_example_values, requested_pairs
from .results import RESULTS_FORMAT, condition_label, summarize
from .run_store import EXAMPLES_FILE, RESULTS_FILE

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
        results = _read_results(run_dir / RESULTS_FILE)
        configs.append(results.get("config", {}))
        for setting, what in (("protocol", "protocols"), ("base_model", "base models")):
            values = {str(config.get(setting, "loglik" if setting == "protocol" else None)) for config in configs}
            if len(values) > 1:
                raise ValueError(f"These runs were made with different {what} ({', '.join(sorted(values))}); pool "
                                 "runs of one at a time (`t2l eval-protocols` puts the two protocols side by side).")
        for name, info in results["tasks"].items():
            known = tasks.setdefault(name, info)
            if known["primary_metric"] != info["primary_metric"]:
                raise ValueError(f"{name} is scored by {known['primary_metric']} in {run_dirs[0]} but by "
                                 f"{info['primary_metric']} in {run_dir}; pool runs of one protocol and setting.")
        before = len(examples)
        with open(run_dir / EXAMPLES_FILE, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{run_dir / EXAMPLES_FILE} line {number} is not JSON ({err.msg}); the run was "
                                     "cut short: rerun its `t2l eval` with --resume.") from None
                row["example"] = f"run{position}:{row['example']}"
                examples.append(row)
        if len(examples) == before:
            raise ValueError(f"{run_dir / EXAMPLES_FILE} holds no examples; rerun its `t2l eval` or leave it out.")

    # Runs saved before held-out generation tasks listed exact match beside their NLL still hold it per example.
    generated = {e["task"] for e in examples if "exact_match" in e["metrics"]}
    for name in generated & set(tasks):
        info = tasks[name]
        if info["primary_metric"] == "completion_nll" and "exact_match" not in info.get("extra_metrics", []):
            tasks[name] = {**info, "extra_metrics": [*info.get("extra_metrics", []), "exact_match"]}
    return examples, tasks, configs


def _read_results(path: Path) -> dict[str, Any]:
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON ({err.msg}); rerun that `t2l eval` with --resume to write it again.") from None
    if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict):
        raise ValueError(f"{path} is not a `t2l eval` results file (no 'tasks'); pass `t2l eval` output folders.")
    return results


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
    rows = paired_differences(examples, tasks, requested_pairs(pairs, names, strict=True), iterations, seed=0)
    per_run = [{e["condition"] for e in examples if e["example"].startswith(f"run{i}:")} for i in range(len(run_dirs))]
    notes = [f"{condition} is in {sum(condition in r for r in per_run)} of the {len(run_dirs)} runs only"
             for condition in names if not all(condition in r for r in per_run)]
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
        "notes": notes,
    }
