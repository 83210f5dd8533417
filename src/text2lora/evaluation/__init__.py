"""Evaluation of T2L against its baselines under one harness (`t2l eval`; see docs/evaluation.md).

lm-evaluation-harness is the engine (local task configs in `tasks/`, one `HFLM` around one loaded model);
this package adds the conditions, adapter switching with a record of the active adapter, the held-out
description split, sandboxed code execution for pass@1, and the report with paired differences.
"""

from __future__ import annotations

import importlib

# Public name -> its module; imported on first use (PEP 562), so `t2l --help` and the condition list cost no torch.
_EXPORTS = {
    "BENCHMARKS": "benchmarks",
    "resolve_benchmark_dir": "benchmarks",
    "ExecutionResult": "code_execution",
    "SandboxConfig": "code_execution",
    "check_solution": "code_execution",
    "run_python": "code_execution",
    "CONDITIONS": "conditions",
    "Condition": "conditions",
    "DescriptionSet": "descriptions",
    "check_no_evaluation_descriptions": "descriptions",
    "evaluation_descriptions": "descriptions",
    "is_evaluation_description": "descriptions",
    "load_description_set": "descriptions",
    "training_descriptions": "descriptions",
    "bootstrap_ci": "metrics",
    "exact_match": "metrics",
    "extract_final_number": "metrics",
    "combined_paired_report": "pooling",
    "paired_differences": "paired",
    "EvalConfig": "eval_config",
    "EvalRunner": "runner",
    "run_evaluation": "runner",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BENCHMARKS",
    "CONDITIONS",
    "Condition",
    "DescriptionSet",
    "EvalConfig",
    "EvalRunner",
    "ExecutionResult",
    "SandboxConfig",
    "bootstrap_ci",
    "check_no_evaluation_descriptions",
    "check_solution",
    "combined_paired_report",
    "evaluation_descriptions",
    "exact_match",
    "extract_final_number",
    "is_evaluation_description",
    "load_description_set",
    "paired_differences",
    "resolve_benchmark_dir",
    "run_evaluation",
    "run_python",
    "training_descriptions",
]
