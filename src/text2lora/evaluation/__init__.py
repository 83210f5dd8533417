"""Evaluation of T2L against its baselines under one harness (`t2l eval`; see docs/evaluation.md).

lm-evaluation-harness is the engine (local task configs in `tasks/`, one `HFLM` around one loaded model);
this package adds the conditions, adapter switching with a record of the active adapter, the held-out
description split, sandboxed code execution for pass@1, and the report with paired differences.
"""

from .benchmarks import BENCHMARKS, resolve_benchmark_dir
from .code_execution import ExecutionResult, SandboxConfig, check_solution, run_python
from .conditions import CONDITIONS, Condition
from .descriptions import (
    DescriptionSet,
    check_no_evaluation_descriptions,
    evaluation_descriptions,
    is_evaluation_description,
    load_description_set,
    training_descriptions,
)
from .metrics import bootstrap_ci, exact_match, extract_final_number
from .report import combined_paired_report, paired_differences
from .runner import EvalConfig, EvalRunner, run_evaluation

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
