"""One evaluation run's results document: per-condition means (and the spread over a condition's several
descriptions), the summary rows, the paired differences and the environment it ran in."""

from __future__ import annotations

import math
import platform
from typing import Any

import numpy as np

from .conditions import CONDITIONS
from .paired import BENCHMARK_SCOPE, HELDOUT_MC_SCOPE, HELDOUT_NLL_SCOPE, paired_differences, requested_pairs, scope_of

RESULTS_FORMAT = "text2lora-eval/1"


LOWER_IS_BETTER = {"completion_nll", "timeout", "sandbox_denied"}


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
    pairs = requested_pairs(config.pairs, names)
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


def summarize(task_results: dict[str, Any], condition_names: list[str]) -> dict[str, Any]:
    """Per scope (benchmarks, held-out MC, held-out NLL), each condition's mean of the tasks' primary metric.

    A metric shown beside the primary one (`extra_metrics`, e.g. `acc_lenient` under the generative protocol) gets
    its own entry, `"<scope> [<metric>]"`, averaged over the tasks that report it; for the others of the scope
    (e.g. GSM8K's exact match) their primary metric stands in, so both averages cover the same tasks."""
    summary: dict[str, Any] = {}
    for scope in (BENCHMARK_SCOPE, HELDOUT_MC_SCOPE, HELDOUT_NLL_SCOPE):
        members = {name: t for name, t in task_results.items() if scope_of(t) == scope}
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
