"""The evaluation benchmarks: where their local files are, and their lm-eval task configs.

Each benchmark is an lm-evaluation-harness task config shipped in `text2lora/evaluation/tasks/` as YAML. Its
`dataset_kwargs.data_files` are written relative to the benchmark data folder (one sub-folder per benchmark,
as in `../shared/data/benchmarks`); `load_task_configs` makes them absolute, so the same YAML works wherever
the data lives and nothing is ever downloaded.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCHMARK_DIR_ENV = "TEXT2LORA_BENCHMARK_DIR"
TASKS_DIR = Path(__file__).parent / "tasks"
# src/text2lora/evaluation/benchmarks.py -> the repository root is three folders up from this package.
_REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BENCHMARK_DIR = _REPO_ROOT.parent / "shared" / "data" / "benchmarks"
TASK_PREFIX = "t2l_"
# How the multiple-choice benchmarks are scored: by the log-likelihood of each option (`loglik`, lm-eval's usual
# way), or as the Text-to-LoRA paper does (`generative`): the paper's prompt asks for the option's label, the
# reply is generated greedily and read by the paper's rule (`acc`) and leniently (`acc_lenient`).
PROTOCOLS = ("loglik", "generative")
GENERATIVE_SUFFIX = "_generative"


@dataclass(frozen=True)
class BenchmarkSpec:
    """What the harness needs to know about one benchmark besides its lm-eval config.

    Args:
        name: the benchmark id (`arc_easy`); its lm-eval task is `t2l_<name>`, its YAML `tasks/<name>.yaml`.
        kind: `multiple_choice` (options: log-likelihood, or a generated label), `generate` (exact match of the final number)
            or `code` (pass@1 of generated code run in the sandbox).
        primary_metric: the metric shown in the main table and used for paired differences (log-likelihood
            protocol; under the generative protocol a multiple-choice benchmark's is `acc`, the paper's rule).
    """

    name: str
    kind: str
    primary_metric: str

    @property
    def task_name(self) -> str:
        return TASK_PREFIX + self.name

    @property
    def yaml_path(self) -> Path:
        return TASKS_DIR / f"{self.name}.yaml"

    def generative(self, protocol: str) -> bool:
        """Whether this benchmark is scored by its generative config under `protocol` (multiple choice only:
        GSM8K, MBPP and HumanEval are generative under both protocols)."""
        check_protocol(protocol)
        return protocol == "generative" and self.kind == "multiple_choice"

    def yaml_path_for(self, protocol: str = "loglik") -> Path:
        return TASKS_DIR / f"{self.name}{GENERATIVE_SUFFIX if self.generative(protocol) else ''}.yaml"

    def metrics_for(self, protocol: str = "loglik") -> tuple[str, ...]:
        """The metrics reported for this benchmark: the primary one first, then any shown beside it."""
        return ("acc", "acc_lenient") if self.generative(protocol) else (self.primary_metric,)


# The ten benchmarks of the Text-to-LoRA paper. Multiple choice uses length-normalised accuracy (`acc_norm`)
# everywhere as the headline number (one rule for all; `acc` is reported beside it).
BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("arc_easy", "multiple_choice", "acc_norm"),
        BenchmarkSpec("arc_challenge", "multiple_choice", "acc_norm"),
        BenchmarkSpec("boolq", "multiple_choice", "acc_norm"),
        BenchmarkSpec("gsm8k", "generate", "exact_match"),
        BenchmarkSpec("hellaswag", "multiple_choice", "acc_norm"),
        BenchmarkSpec("openbookqa", "multiple_choice", "acc_norm"),
        BenchmarkSpec("piqa", "multiple_choice", "acc_norm"),
        BenchmarkSpec("winogrande", "multiple_choice", "acc_norm"),
        BenchmarkSpec("mbpp", "code", "pass_at_1"),
        BenchmarkSpec("humaneval", "code", "pass_at_1"),
    )
}
MULTIPLE_CHOICE_BENCHMARKS = tuple(n for n, s in BENCHMARKS.items() if s.kind == "multiple_choice")


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}.")
    return protocol


def resolve_benchmark_dir(data_dir: str | os.PathLike | None = None, required: bool = True) -> Path | None:
    """The benchmark data folder: `data_dir`, else `$TEXT2LORA_BENCHMARK_DIR`, else `../shared/data/benchmarks`
    next to the repository (when it exists)."""
    candidates = [data_dir, os.environ.get(BENCHMARK_DIR_ENV), DEFAULT_BENCHMARK_DIR]
    chosen = next((Path(c).expanduser() for c in candidates if c), None)
    if chosen is not None and chosen.is_dir():
        return chosen.resolve()
    if not required:
        return None
    where = f"{chosen}" if chosen is not None else "nowhere"
    raise FileNotFoundError(
        f"No benchmark data folder found (looked at {where}). Pass --data-dir DIR (or set {BENCHMARK_DIR_ENV}) "
        "to a folder with one sub-folder per benchmark (arc_easy/, gsm8k/, ...)."
    )


def parse_benchmarks(names: str | list[str] | None, available: list[str] | None = None) -> list[str]:
    """`"arc_easy,piqa"` or a list -> validated benchmark names, in the order given (duplicates dropped)."""
    known = list(available) if available is not None else list(BENCHMARKS)
    if names is None or names == "all":
        return known
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for name in names:
        if name not in known:
            raise ValueError(f"Unknown benchmark {name!r}; choose from {', '.join(known)} (comma-separated) or 'all'.")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError(f"No benchmark selected; choose from {', '.join(known)}.")
    return out


def load_task_config(yaml_path: str | os.PathLike, data_dir: str | os.PathLike) -> dict[str, Any]:
    """Read one task YAML (resolving its `!function` references) and make its data files absolute.

    The data files must exist: a missing one is reported with the folder it was expected in.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    config = copy.deepcopy(load_yaml(yaml_path, resolve_func=True))
    data_dir = Path(data_dir)
    kwargs = dict(config.get("dataset_kwargs") or {})
    files = kwargs.get("data_files")
    if files is None:
        raise ValueError(f"{yaml_path}: the task config has no dataset_kwargs.data_files; every local task needs them.")
    absolute = {}
    for split, relative in files.items():
        paths = [relative] if isinstance(relative, str) else list(relative)
        resolved = []
        for rel in paths:
            path = data_dir / rel
            if not path.is_file():
                raise FileNotFoundError(
                    f"Benchmark file {path} (split {split!r} of {config['task']}) is missing. Check --data-dir "
                    f"(now {data_dir}); it must hold the benchmark folders as in ../shared/data/benchmarks."
                )
            resolved.append(str(path))
        absolute[split] = resolved[0] if isinstance(relative, str) else resolved
    kwargs["data_files"] = absolute
    config["dataset_kwargs"] = kwargs
    return config


def load_task_configs(
    names: list[str], data_dir: str | os.PathLike | None = None, protocol: str = "loglik"
) -> dict[str, dict[str, Any]]:
    """Benchmark name -> lm-eval task config dict over the local files (ready for `TaskManager.load`), for the
    multiple-choice benchmarks the config of `protocol`."""
    check_protocol(protocol)
    root = resolve_benchmark_dir(data_dir)
    return {name: load_task_config(BENCHMARKS[name].yaml_path_for(protocol), root) for name in parse_benchmarks(names)}
