"""Paired per-example differences between two conditions of an evaluation, with percentile-bootstrap 95% CIs.

Each condition's value for an example is its mean over that condition's runs (descriptions); pooled over
benchmarks, examples are resampled within each benchmark and the benchmarks weigh equally.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np

from .metrics import bootstrap_ci

logger = logging.getLogger(__name__)

DEFAULT_PAIRS = (
    ("t2l", "t2l_random"),
    ("t2l", "t2l_other"),
    ("t2l", "base"),
    ("t2l", "description"),
    ("t2l", "fewshot"),
    ("t2l", "mt_lora"),
    ("t2l", "oracle_lora"),
    ("t2l_mix", "t2l"),
    ("description", "base"),
    ("fewshot", "base"),
    ("mt_lora", "base"),
)


BENCHMARK_SCOPE = "benchmarks"


HELDOUT_MC_SCOPE = "held-out tasks (multiple choice)"


HELDOUT_NLL_SCOPE = "held-out tasks (completion NLL)"


def scope_of(task: dict) -> str:
    if task["kind"] == "benchmark":
        return BENCHMARK_SCOPE
    return HELDOUT_NLL_SCOPE if task["primary_metric"] == "completion_nll" else HELDOUT_MC_SCOPE


def metric_of_scope(scope: str) -> str:
    """The metric a summary entry averages: the bracketed extra metric, NLL, or each task's primary metric."""
    if scope.endswith("]") and " [" in scope:
        return scope.rsplit(" [", 1)[1][:-1]
    return "completion_nll" if "NLL" in scope else "primary"


def requested_pairs(requested, names: list[str], strict: bool = False) -> list[tuple[str, str]]:
    """The (a, b) condition pairs to compare: `requested` ('a-b' strings or tuples), else `DEFAULT_PAIRS`; only
    pairs whose conditions are among `names` (those measured). A requested pair that cannot be compared raises
    with `strict` (pooling saved runs: nothing has been computed yet), else is named in a warning."""
    if not requested:
        return [(a, b) for a, b in DEFAULT_PAIRS if a in names and b in names]
    pairs = []
    for pair in requested:
        parts = tuple(pair.split("-")) if isinstance(pair, str) else tuple(pair)
        if len(parts) == 2 and all(p in names for p in parts):
            pairs.append(parts)
            continue
        message = (f"Pair {pair!r} is not 'a-b' with a and b among the conditions measured here "
                   f"({', '.join(names)}); choose --pairs among them.")
        if strict:
            raise ValueError(message)
        logger.warning("%s It is left out.", message)
    return pairs


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
                scope_diffs, scope_tasks = pooled[scope_of(info)]
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


def mean_with_ci(diffs, strata=None, iterations: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The mean of per-example differences (with `strata`, e.g. the task of each: the mean of the strata's means, so
    each weighs equally) and its 95% percentile-bootstrap CI, resampled within each stratum."""
    diffs_arr = np.asarray(diffs, dtype=float)
    if strata is None:
        mean = float(diffs_arr.mean())
    else:
        labels = np.asarray(strata)
        mean = float(np.mean([diffs_arr[labels == s].mean() for s in dict.fromkeys(strata)]))
    low, high = bootstrap_ci(diffs_arr, iterations=iterations, seed=seed, strata=strata)
    return mean, low, high


def _difference(a, b, scope, metric, diffs, strata, iterations, seed) -> dict[str, Any]:
    diffs_arr = np.asarray(diffs, dtype=float)
    mean, low, high = mean_with_ci(diffs_arr, strata, iterations, seed)
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
