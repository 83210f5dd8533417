"""`EvalConfig`: everything one `t2l eval` run depends on, checked when it is made (run by `runner.EvalRunner`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..base_models import DEFAULT_BASE_MODEL
from ..checkpoints import resolve_adapter
from .benchmarks import check_protocol, parse_benchmarks
from .conditions import CONDITIONS

_DTYPES = ("float32", "bfloat16", "float16")


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
        if self.mt_lora is not None:  # checked now, not after the runs before it
            from .adapter_switch import check_peft_folder

            check_peft_folder(self.mt_lora, "--mt-lora")
        if isinstance(self.collection, (str, os.PathLike)) and not Path(self.collection).is_dir():
            raise FileNotFoundError(f"--collection {self.collection} is not a folder; build one with `t2l data build` "
                                    "or check the path.")
        if self.output_dir is not None and Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise FileExistsError(f"--out {self.output_dir} is a file; give a folder (new or existing) for the results.")
        if self.pairs is not None:
            for pair in self.pairs:
                parts = pair.split("-") if isinstance(pair, str) else list(pair)
                if len(parts) != 2 or any(p not in CONDITIONS for p in parts):
                    raise ValueError(f"Pair {pair!r} must be 'a-b' with a and b among {', '.join(CONDITIONS)}.")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
