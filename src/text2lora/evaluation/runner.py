"""`EvalRunner`: every condition on every benchmark and held-out task, in one run, with lm-eval as the engine.

The base model is loaded once and wrapped once in lm-eval's `HFLM`; each run (condition x task x
description) activates its adapter on that model (`AdapterSwitch`), calls `lm_eval.evaluator.evaluate` on
the same fixed examples, and keeps lm-eval's per-example results together with a record of the adapter the
model reported as active. The report (`report.py`) turns these into a table, a chart and paired differences.

Reproducibility: `--limit N` picks N examples per task with `random.Random(f"{seed}:{task}")`, so the same
seed gives the same examples, descriptions, random strings and few-shot examples, and greedy decoding makes
the numbers identical on a rerun (tested).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base_models import DEFAULT_BASE_MODEL
from ..checkpoints import resolve_adapter
from ..io_utils import atomic_file
from .adapter_switch import AdapterSwitch
from .benchmarks import BENCHMARKS, check_protocol, load_task_configs, parse_benchmarks, resolve_benchmark_dir
from .conditions import CONDITIONS, Condition, RunPlanner, RunSpec, parse_conditions
from .metrics import extract_final_number, lenient_bool, lenient_choice, paper_bool, paper_choice

CODE_TIMEOUT_ENV = "TEXT2LORA_CODE_TIMEOUT"  # read by tasks/utils.py
_DTYPES = ("float32", "bfloat16", "float16")

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
EXAMPLES_FILE = "examples.jsonl"
RUNS_DIR = "runs"


@dataclass
class EvalConfig:
    """Everything one `t2l eval` run depends on (stored in the results).

    Args:
        base_model: base LLM name or folder (the packaged SmolLM2 works offline).
        t2l: hypernetwork folder or name, for the T2L conditions.
        mt_lora: a multi-task LoRA adapter folder (PEFT), for `mt_lora`.
        oracle_loras: a folder of per-task adapter folders named by task (`arc_easy/`, ...), for `oracle_lora`.
        benchmarks: benchmark ids (default all ten); `[]` for held-out tasks only.
        protocol: how the multiple-choice benchmarks are scored: `loglik` (log-likelihood of each option) or
            `generative` (the Text-to-LoRA paper's prompt, a greedy reply, the paper's rule and a lenient one).
        conditions: condition names (default: every condition whose inputs were given).
        limit: examples per task (a fixed, seeded sample); `None` for all.
        generation_limit: examples per generation/code benchmark (they cost ~100x more); default `limit`.
        seed: fixes examples, descriptions, random strings and few-shot examples.
        num_descriptions: runs (descriptions) per description-dependent condition.
        num_fewshot: solved examples in the few-shot condition.
        data_dir: benchmark folder (default `$TEXT2LORA_BENCHMARK_DIR` or ../shared/data/benchmarks).
        descriptions_dir: benchmark description folder (default `descriptions/` beside the benchmark folder).
        collection: a task collection saved with `save_to_disk`, whose held-out tasks are evaluated too.
        collection_split: the collection split holding held-out tasks.
        collection_tasks: only these held-out tasks.
        collection_generate: also generate answers for non-multiple-choice held-out tasks (exact match).
        chat_template: format prompts with the tokenizer's chat template (as T2L trains).
        chat_template_file: a Jinja chat template to use instead of the tokenizer's (e.g. the templates the
            Text-to-LoRA paper evaluated with, which have no default system prompt).
        empty_system_message: give every prompt a system message, empty when the condition has none, as the
            paper does (its chat templates emit the BOS token only with a system message).
        dtype: the base model's dtype (`float32`, `bfloat16`, `float16`).
        trust_remote_code: let the hypernetwork's description encoder run code from its folder (the paper's
            converted checkpoints use gte-large-en-v1.5, which needs it).
        batch_size: lm-eval batch size.
        max_gen_toks: cap on generated tokens (default: each task's own setting).
        code_timeout_s: sandbox timeout per program.
        device: torch device for the base model.
        threads: torch CPU threads (`None`: torch's default).
        pairs: `"a-b"` condition pairs for paired differences (default: T2L against each other condition).
        bootstrap_iterations: resamples for the confidence intervals.
        output_dir: where results are written (`None`: nothing is written).
        resume: reuse finished runs found in `output_dir/runs/` (same settings only).
        show_progress: progress bars.
    """

    base_model: str = field(default=DEFAULT_BASE_MODEL, metadata={"help": "Base LLM name or folder."})
    t2l: str | None = field(default=None, metadata={"help": "Hypernetwork folder or name."})
    mt_lora: str | None = field(default=None, metadata={"help": "Multi-task LoRA adapter folder."})
    oracle_loras: str | None = field(default=None, metadata={"help": "Folder of per-task adapters named by task."})
    benchmarks: list[str] | None = field(default=None, metadata={"help": "Benchmark ids; default all."})
    protocol: str = field(default="loglik", metadata={"help": "Multiple choice: loglik or generative."})
    conditions: list[str] | None = field(default=None, metadata={"help": "Condition names; default all possible."})
    limit: int | None = field(default=None, metadata={"help": "Examples per task (seeded sample)."})
    generation_limit: int | None = field(default=None, metadata={"help": "Examples per generation benchmark."})
    seed: int = field(default=0, metadata={"help": "Seed for examples, descriptions and few-shot choice."})
    num_descriptions: int = field(default=3, metadata={"help": "Descriptions per description condition."})
    num_fewshot: int = field(default=3, metadata={"help": "Examples in the few-shot condition."})
    data_dir: str | None = field(default=None, metadata={"help": "Benchmark data folder."})
    descriptions_dir: str | None = field(default=None, metadata={"help": "Benchmark descriptions folder."})
    collection: str | None = field(default=None, metadata={"help": "Task collection folder (save_to_disk)."})
    collection_split: str = field(default="validation", metadata={"help": "Split with the held-out tasks."})
    collection_tasks: list[str] | None = field(default=None, metadata={"help": "Only these held-out tasks."})
    collection_generate: bool = field(default=False, metadata={"help": "Also score free generation."})
    chat_template: bool = field(default=True, metadata={"help": "Use the tokenizer's chat template."})
    chat_template_file: str | None = field(default=None, metadata={"help": "Jinja chat template file."})
    empty_system_message: bool = field(default=False, metadata={"help": "An empty system message if none."})
    dtype: str = field(default="float32", metadata={"help": "Base model dtype."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the encoder's remote code."})
    batch_size: int = field(default=8, metadata={"help": "lm-eval batch size."})
    max_gen_toks: int | None = field(default=None, metadata={"help": "Cap on generated tokens."})
    code_timeout_s: float = field(default=10.0, metadata={"help": "Sandbox timeout per program (s)."})
    device: str = field(default="cpu", metadata={"help": "Torch device."})
    threads: int | None = field(default=None, metadata={"help": "Torch CPU threads."})
    pairs: list[str] | None = field(default=None, metadata={"help": "Condition pairs 'a-b' to compare."})
    bootstrap_iterations: int = field(default=2000, metadata={"help": "Bootstrap resamples."})
    output_dir: str | None = field(default=None, metadata={"help": "Output folder."})
    resume: bool = field(default=False, metadata={"help": "Reuse finished runs in output_dir."})
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        if isinstance(self.benchmarks, str):
            self.benchmarks = [] if self.benchmarks in ("", "none") else parse_benchmarks(self.benchmarks)
        elif self.benchmarks is not None:
            self.benchmarks = parse_benchmarks(self.benchmarks) if self.benchmarks else []
        check_protocol(self.protocol)
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}.")
        if self.chat_template_file is not None and not Path(self.chat_template_file).is_file():
            raise FileNotFoundError(f"--chat-template-file {self.chat_template_file} is not a file.")
        if isinstance(self.conditions, str):
            self.conditions = [c.strip() for c in self.conditions.split(",") if c.strip()]
        for name in ("limit", "generation_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number of examples, got {value}; omit it to use all.")
        if self.num_descriptions < 1:
            raise ValueError(f"num_descriptions must be >= 1, got {self.num_descriptions}.")
        if self.num_fewshot < 1:
            raise ValueError(f"num_fewshot must be >= 1 for the few-shot condition, got {self.num_fewshot}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.benchmarks == [] and self.collection is None:
            raise ValueError("Nothing to evaluate: give benchmarks, or a --collection with held-out tasks.")
        if self.mt_lora is not None:
            self.mt_lora = resolve_adapter(self.mt_lora)  # a folder, or a packaged baseline's name
        for path_field in ("mt_lora", "oracle_loras"):
            value = getattr(self, path_field)
            if value is not None and not Path(value).is_dir():
                raise FileNotFoundError(f"--{path_field.replace('_', '-')} {value} is not a folder.")
        if self.pairs is not None:
            for pair in self.pairs:
                parts = pair.split("-") if isinstance(pair, str) else list(pair)
                if len(parts) != 2 or any(p not in CONDITIONS for p in parts):
                    raise ValueError(f"Pair {pair!r} must be 'a-b' with a and b among {', '.join(CONDITIONS)}.")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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

    # -------------------------------------------------------------------------------------------- set-up

    def _setup(self) -> None:
        config = self.config
        if config.threads:
            torch.set_num_threads(config.threads)
        available = {
            "mt_lora": config.mt_lora is not None,
            "oracle_lora": config.oracle_loras is not None,
            "t2l": config.t2l is not None or self.hypernetwork is not None,
            "t2l_other": config.t2l is not None or self.hypernetwork is not None,
            "t2l_random": config.t2l is not None or self.hypernetwork is not None,
        }
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
                entry = TaskEntry(task.name, "collection", configs, task.primary_metric, config.limit)
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

        from .report import build_results, write_outputs

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
        fingerprint = self._fingerprint(entry, spec)
        cached = self._load_cached(spec, fingerprint)
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
        metrics = _mean_metrics(run_examples)
        prompt = _first_prompt(output["samples"])
        record = {
            **spec.to_dict(),
            "adapter": adapter,
            "metrics": metrics,
            "n_examples": len(run_examples),
            "wall_s": round(wall, 3),
            "example_prompt": prompt,
            "fingerprint": fingerprint,
        }
        self._save_cached(spec, record, run_examples)
        return record, run_examples

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
                record.update(_prediction(cfg, sample, entry.name))
        return list(by_id.values())

    # --------------------------------------------------------------------------------------- resume cache

    def _fingerprint(self, entry: TaskEntry, spec: RunSpec) -> str:
        payload = {
            "spec": spec.to_dict(),
            "samples": entry.samples,
            "base_model": self.config.base_model,
            "t2l": self.config.t2l if spec.adapter is not None and spec.adapter.kind == "t2l" else None,
            "chat_template": self.config.chat_template,
            "seed": self.config.seed,
            "max_gen_toks": self.config.max_gen_toks,
            "configs": sorted(entry.configs),
        }
        # Settings added later enter only when not at their default, so runs saved before them still resume.
        if self.config.protocol != "loglik":
            payload["protocol"] = self.config.protocol
        if self.config.dtype != "float32":
            payload["dtype"] = self.config.dtype
        if self.config.empty_system_message:
            payload["empty_system_message"] = True
        if self.config.chat_template_file is not None:
            payload["chat_template_file"] = hashlib.sha256(Path(self.config.chat_template_file).read_bytes()).hexdigest()
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _cache_path(self, spec: RunSpec) -> Path | None:
        if not self.config.output_dir:
            return None
        return Path(self.config.output_dir) / RUNS_DIR / f"{spec.key}.json"

    def _load_cached(self, spec: RunSpec, fingerprint: str):
        path = self._cache_path(spec)
        if not self.config.resume or path is None or not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data["record"].get("fingerprint") != fingerprint:
            return None
        return data["record"], data["examples"]

    def _save_cached(self, spec: RunSpec, record: dict, examples: list[dict]) -> None:
        path = self._cache_path(spec)
        if path is None:
            return
        with atomic_file(path) as handle:
            json.dump({"record": record, "examples": examples}, handle, default=str)


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


def select_examples(size: int, limit: int | None, seed: int, key: str) -> list[int]:
    """The indices of the examples a run evaluates: all, or `limit` of them chosen by (`seed`, `key`), sorted."""
    if limit is None or limit >= size:
        return list(range(size))
    return sorted(random.Random(f"{seed}:{key}").sample(range(size), limit))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _prediction(cfg: dict, sample: dict, task: str) -> dict:
    """The model's answer for one example, compactly: chosen option and log-likelihoods, or generated text."""
    kind = cfg.get("output_type")
    if kind == "multiple_choice":
        logliks = [float(r[0]) for r in sample["filtered_resps"]]
        return {"prediction": int(np.argmax(logliks)), "target": sample["target"], "logliks": [round(x, 4) for x in logliks]}
    if kind == "generate_until":
        response = sample["filtered_resps"][0]
        response = response[0] if isinstance(response, list) else response
        out = {"response": str(response)[:4000]}
        doc = sample["doc"]
        if "gold_label" in doc and "labels" in doc:  # multiple choice, generative protocol
            out["extracted"] = paper_choice(str(response))
            out["extracted_lenient"] = lenient_choice(str(response), doc["labels"], doc["options"])
            out["target"] = doc["gold_label"]
        elif "gold_label" in doc and "answer" in doc:  # BoolQ, generative protocol
            out["extracted"] = paper_bool(str(response))
            out["extracted_lenient"] = lenient_bool(str(response))
            out["target"] = bool(doc["answer"])
        if "answer_number" in doc:
            out["extracted"] = extract_final_number(str(response))
            out["target"] = sample["doc"]["answer_number"]
        return out
    if kind == "loglikelihood":
        loglik = sample["filtered_resps"][0][0]
        return {"completion_loglik": round(float(loglik), 4)}
    return {}


def _first_prompt(samples: dict[str, list[dict]]) -> str | None:
    for task_samples in samples.values():
        if task_samples:
            arguments = task_samples[0]["arguments"][0]
            text = arguments[0] if isinstance(arguments, (list, tuple)) else arguments
            return str(text)[:6000]
    return None


def _mean_metrics(examples: list[dict]) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    for example in examples:
        for metric, value in example["metrics"].items():
            totals.setdefault(metric, []).append(value)
    return {metric: float(np.mean(values)) for metric, values in totals.items()}


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


__all__ = ["EvalConfig", "EvalRunner", "run_evaluation", "select_examples"]
