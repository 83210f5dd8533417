"""`EvalRunner`: every condition on every benchmark and held-out task, in one run, with lm-eval as the engine.

The base model is loaded once and wrapped once in lm-eval's `HFLM`; each run (condition x task x
description) activates its adapter on that model (`AdapterSwitch`), calls `lm_eval.evaluator.evaluate` on
the same fixed examples, and keeps lm-eval's per-example results together with a record of the adapter the
model reported as active. `results.py` assembles them (with `paired.py`'s paired differences) and
`report.py` renders the table and the chart.

Reproducibility: `--limit N` picks N examples per task with `random.Random(f"{seed}:{task}")`, so the same
seed gives the same examples, descriptions, random strings and few-shot examples, and greedy decoding makes
the numbers identical on a rerun (tested).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .adapter_switch import PEFT_ADAPTER_FILES, AdapterSwitch
from .benchmarks import BENCHMARKS, load_task_configs, parse_benchmarks, resolve_benchmark_dir
from .conditions import CONDITIONS, Condition, RunPlanner, RunSpec, parse_conditions
from .eval_config import EvalConfig
from .run_store import RunStore, run_fingerprint
from .samples import first_prompt, mean_metrics, prediction, select_examples

CODE_TIMEOUT_ENV = "TEXT2LORA_CODE_TIMEOUT"  # read by tasks/utils.py

logger = logging.getLogger(__name__)


@dataclass
class TaskEntry:
    """A task to evaluate: a benchmark (one lm-eval config) or a held-out task (one config per row kind)."""

    name: str
    kind: str  # "benchmark" | "collection"
    configs: dict[str, dict]
    primary_metric: str
    limit: int | None
    extra_metrics: tuple[str, ...] = ()  # shown beside the primary metric (e.g. the lenient reading)
    descriptions: list[str] = field(default_factory=list)
    task_objects: dict[tuple[str, int], Any] = field(default_factory=dict)
    samples: dict[str, list[int]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


class EvalRunner:
    """Runs an `EvalConfig`. Pass `model`/`tokenizer`/`hypernetwork` to reuse objects already in memory."""

    def __init__(self, config: EvalConfig, model=None, tokenizer=None, hypernetwork=None) -> None:
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.hypernetwork = hypernetwork
        self.conditions: list[Condition] = []
        self.tasks: list[TaskEntry] = []
        self.store = RunStore(config.output_dir, config.resume)
        self._base_fingerprint: str | None = None
        self._tokenizer_fingerprint: str | None = None

    # -------------------------------------------------------------------------------------------- set-up

    def _setup(self) -> None:
        config = self.config
        if config.threads:
            torch.set_num_threads(config.threads)
        has_t2l = config.t2l is not None or self.hypernetwork is not None
        available = {"mt_lora": config.mt_lora is not None, "oracle_lora": config.oracle_loras is not None}
        available.update({name: has_t2l for name, c in CONDITIONS.items() if c.adapter == "t2l"})
        self.conditions = parse_conditions(config.conditions, available)
        if self.model is None:
            from ..base_models import load_base_model

            self.model, self.tokenizer = load_base_model(config.base_model, dtype=getattr(torch, config.dtype))
            self.model.to(config.device)
        elif self.tokenizer is None:
            raise ValueError("Pass the tokenizer together with the model.")
        if config.chat_template_file is not None:
            self.tokenizer.chat_template = Path(config.chat_template_file).read_text()
        self.model.eval()
        if self.tokenizer.eos_token_id is None:
            raise ValueError(
                f"The tokenizer of {config.base_model!r} has no eos_token; lm-eval needs one to stop generation. "
                "Set tokenizer.eos_token (e.g. to the chat template's end-of-turn token) and pass the tokenizer."
            )
        if any(c.adapter == "t2l" for c in self.conditions) and self.hypernetwork is None:
            from ..checkpoints import load_hypernetwork

            self.hypernetwork = load_hypernetwork(config.t2l, trust_remote_code=config.trust_remote_code)
        self.tasks = self._build_tasks()

    def _build_tasks(self) -> list[TaskEntry]:
        config = self.config
        tasks: list[TaskEntry] = []
        benchmarks = parse_benchmarks(config.benchmarks) if config.benchmarks is None else config.benchmarks
        needs_descriptions = any(c.uses_descriptions for c in self.conditions)
        evaluation_descriptions: dict[str, list[str]] = {}
        if benchmarks:
            resolve_benchmark_dir(config.data_dir)  # a clear error before anything else
            configs = load_task_configs(benchmarks, config.data_dir, config.protocol)
            for name in benchmarks:
                spec = BENCHMARKS[name]
                cfg = configs[name]
                if config.max_gen_toks and cfg.get("output_type") == "generate_until":
                    cfg["generation_kwargs"] = {**cfg["generation_kwargs"], "max_gen_toks": config.max_gen_toks}
                limit = config.limit
                if spec.kind != "multiple_choice" and config.generation_limit is not None:
                    limit = config.generation_limit
                primary, *extra = spec.metrics_for(config.protocol)
                tasks.append(TaskEntry(name, "benchmark", {"main": cfg}, primary, limit, extra_metrics=tuple(extra)))
        if needs_descriptions:
            from .descriptions import load_description_sets

            # Descriptions of all benchmarks feed "other task" picks, even for benchmarks not evaluated.
            sets = load_description_sets(None, config.descriptions_dir, config.data_dir) if benchmarks else {}
            missing = [name for name in benchmarks if name not in sets]
            if missing:
                raise FileNotFoundError(f"No descriptions for {missing}; the description conditions need "
                                        "<benchmark>.yaml in --descriptions-dir.")
            evaluation_descriptions.update({name: list(s.evaluation) for name, s in sets.items()})
        if config.collection is not None:
            from .collection import collection_task_configs, load_collection_tasks, select_tasks

            every_task = load_collection_tasks(config.collection, config.collection_split)
            selected = select_tasks(every_task, config.collection_tasks, config.collection_split)
            # Like the benchmarks', every held-out task's descriptions feed "other task" picks, so a run split by
            # --collection-tasks over several processes draws the same descriptions as one run over all of them.
            for task in every_task:
                evaluation_descriptions.setdefault(task.name, list(task.heldout_descriptions))
            for task in selected:
                configs = collection_task_configs(
                    task, self.tokenizer, generate=config.collection_generate, max_gen_toks=config.max_gen_toks or 128,
                    chat_template=config.chat_template,
                )
                # free generation's exact match is shown beside the completion NLL of a generation task
                extra = ("exact_match",) if "gen" in configs and task.primary_metric == "completion_nll" else ()
                entry = TaskEntry(task.name, "collection", configs, task.primary_metric, config.limit, extra_metrics=extra)
                tasks.append(entry)
                evaluation_descriptions[task.name] = list(task.heldout_descriptions)
        for entry in tasks:
            entry.descriptions = evaluation_descriptions.get(entry.name, [])
        self.planner = RunPlanner(
            evaluation_descriptions,
            seed=config.seed,
            num_descriptions=config.num_descriptions,
            num_fewshot=config.num_fewshot,
            mt_lora=config.mt_lora,
            oracle_loras=config.oracle_loras,
        )
        return tasks

    def _task_object(self, entry: TaskEntry, part: str, num_fewshot: int):
        """The lm-eval task for one config and few-shot count, built once and reused by every run."""
        key = (part, num_fewshot)
        if key not in entry.task_objects:
            from lm_eval.tasks import TaskManager

            cfg = entry.configs[part]
            task = TaskManager(include_defaults=False).load([cfg])["tasks"][cfg["task"]]
            task.set_config(key="num_fewshot", value=num_fewshot)
            entry.task_objects[key] = task
            if part not in entry.samples:
                size = len(task.eval_docs)
                entry.sizes[part] = size
                entry.samples[part] = select_examples(size, entry.limit, self.config.seed, f"{entry.name}:{part}")
        return entry.task_objects[key]

    # ----------------------------------------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        """Evaluate everything; returns the results dict (also written to `output_dir` when set)."""
        from lm_eval.models.huggingface import HFLM

        from .report import write_outputs
        from .results import build_results

        start = time.perf_counter()
        with _quiet_libraries(self.config.show_progress), _environment_variable(CODE_TIMEOUT_ENV, str(self.config.code_timeout_s)):
            self._setup()
            lm_class = _HFLMWithSystemMessage if self.config.empty_system_message else HFLM
            lm = lm_class(pretrained=self.model, tokenizer=self.tokenizer, batch_size=self.config.batch_size,
                          device=self.config.device)
            switch = AdapterSwitch(self.model, self.hypernetwork)
            plan = [(entry, spec) for condition in self.conditions for entry in self.tasks
                    for spec in self.planner.runs(condition, entry.name)]
            runs: list[dict] = []
            examples: list[dict] = []
            progress = _progress(len(plan), self.config.show_progress)
            for entry, spec in plan:
                progress.set_description(f"{spec.condition} | {entry.name} | #{spec.variant}")
                run_record, run_examples = self._run_one(lm, switch, entry, spec)
                runs.append(run_record)
                examples.extend(run_examples)
                progress.update(1)
                progress.set_postfix_str(_headline(run_record, entry.primary_metric))
            progress.close()
        results = build_results(
            config=self.config,
            tasks=self.tasks,
            conditions=self.conditions,
            runs=runs,
            examples=examples,
            missing_oracles=sorted(set(self.planner.missing_oracles)),
            wall_s=time.perf_counter() - start,
            model=self.model,
        )
        if self.config.output_dir:
            write_outputs(results, examples, self.config.output_dir)
        return results

    def _run_one(self, lm, switch: AdapterSwitch, entry: TaskEntry, spec: RunSpec) -> tuple[dict, list[dict]]:
        from lm_eval.evaluator import evaluate

        for part in entry.configs:  # builds the tasks and fixes the examples before the fingerprint
            self._task_object(entry, part, spec.num_fewshot)
        content = self._content(spec)
        fingerprint = run_fingerprint(self.config, entry, spec, content)
        cached = self.store.load(spec, fingerprint)
        if cached is not None:
            return cached
        adapter = switch.activate(spec.adapter)
        tasks = {entry.configs[part]["task"]: self._task_object(entry, part, spec.num_fewshot) for part in entry.configs}
        samples = {entry.configs[part]["task"]: entry.samples[part] for part in entry.configs}
        for task in tasks.values():
            task.set_fewshot_seed(seed=self.config.seed)
        _seed_everything(self.config.seed)
        started = time.perf_counter()
        output = evaluate(
            lm=lm,
            task_dict={"tasks": tasks},
            samples=samples,
            bootstrap_iters=0,
            log_samples=True,
            system_instruction=spec.system_instruction,
            apply_chat_template=self.config.chat_template,
            fewshot_as_multiturn=self.config.chat_template,
            confirm_run_unsafe_code=True,
        )
        wall = time.perf_counter() - started
        after = switch.describe()
        if after.get("active") != adapter.get("active"):
            raise RuntimeError(f"The active adapter changed during the run {spec.key}: {adapter} -> {after}.")
        run_examples = self._examples(entry, spec, output["samples"])
        metrics = mean_metrics(run_examples)
        prompt = first_prompt(output["samples"])
        record = {
            **spec.to_dict(),
            "adapter": adapter,
            "metrics": metrics,
            "n_examples": len(run_examples),
            "wall_s": round(wall, 3),
            "example_prompt": prompt,
            "fingerprint": fingerprint,
            "content": content,  # sha256 of the base model's weights and of the adapter / hypernetwork
        }
        self.store.save(spec, record, run_examples)
        return record, run_examples

    def _content(self, spec: RunSpec) -> dict[str, str]:
        """Content hashes of what `spec` runs on, for `run_fingerprint` (computed only when runs are saved)."""
        from ..fingerprints import (
            base_model_weights,
            files_fingerprint,
            model_fingerprint,
            tensors_fingerprint,
            tokenizer_fingerprint,
        )

        if self.store.output_dir is None:
            return {}
        if self._base_fingerprint is None:
            weights = base_model_weights(self.model)
            if any(t.is_meta for t in weights.values()):
                raise ValueError("The base model has weights on the meta device (offloaded); saved runs are keyed by "
                                 "the weights' content, so load it fully into memory or run without --out.")
            self._base_fingerprint = tensors_fingerprint(weights)
            self._tokenizer_fingerprint = tokenizer_fingerprint(self.tokenizer)
        content = {"base_model": self._base_fingerprint, "tokenizer": self._tokenizer_fingerprint}
        if spec.adapter is not None and spec.adapter.kind == "t2l":
            content["adapter"] = model_fingerprint(self.hypernetwork)
            encoder = getattr(self.hypernetwork, "description_encoder", None)
            content["encoder"] = getattr(encoder, "identity", None)  # as the adapter cache keys it
        elif spec.adapter is not None:  # the files AdapterSwitch loads (no pickled weights)
            content["adapter"] = files_fingerprint(spec.adapter.path, PEFT_ADAPTER_FILES)
        return content

    def _examples(self, entry: TaskEntry, spec: RunSpec, samples: dict[str, list[dict]]) -> list[dict]:
        by_id: dict[str, dict] = {}
        for cfg in entry.configs.values():
            for sample in samples.get(cfg["task"], []):
                doc = sample["doc"]
                example_id = str(doc["row"]) if entry.kind == "collection" else str(sample["doc_id"])
                record = by_id.setdefault(
                    example_id,
                    {"task": entry.name, "condition": spec.condition, "variant": spec.variant, "example": example_id,
                     "metrics": {}},
                )
                for metric in sample["metrics"]:
                    record["metrics"][metric] = float(sample[metric])
                record.update(prediction(cfg, sample, entry.name))
        return list(by_id.values())


# ------------------------------------------------------------------------------------------------ helpers

def _hflm_with_system_message():
    from lm_eval.models.huggingface import HFLM

    class HFLMWithSystemMessage(HFLM):
        """lm-eval's HFLM, but every chat starts with a system message (empty when the prompt has none):
        lm-eval leaves out an empty system instruction, and the paper's chat templates need one."""

        def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
            if not chat_history or chat_history[0]["role"] != "system":
                chat_history = [{"role": "system", "content": ""}, *chat_history]
            return super().apply_chat_template(chat_history, add_generation_prompt)

    return HFLMWithSystemMessage


def _HFLMWithSystemMessage(*args, **kwargs):  # noqa: N802 (builds the class on first use: lm-eval imports slowly)
    return _hflm_with_system_message()(*args, **kwargs)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _headline(record: dict, metric: str) -> str:
    value = record["metrics"].get(metric)
    return f"{metric}={value:.3f}" if isinstance(value, float) and not math.isnan(value) else ""


def _progress(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="runs", unit="run", disable=not show, dynamic_ncols=True)


@contextlib.contextmanager
def _quiet_libraries(show_progress: bool):
    """lm-eval and datasets log a lot per run; keep warnings, drop the rest, and restore on exit."""
    import datasets

    names = ("lm_eval", "lm-eval", "datasets", "transformers")
    levels = {name: logging.getLogger(name).level for name in names}
    bars = datasets.is_progress_bar_enabled()
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        datasets.disable_progress_bars()
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if bars:
            datasets.enable_progress_bars()


@contextlib.contextmanager
def _environment_variable(name: str, value: str):
    """The code tasks' scorer reads the sandbox timeout from the environment (lm-eval passes it no options)."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def run_evaluation(config: EvalConfig, **objects) -> dict[str, Any]:
    """Convenience: `EvalRunner(config, **objects).run()`."""
    return EvalRunner(config, **objects).run()


__all__ = ["EvalRunner", "TaskEntry", "run_evaluation"]
