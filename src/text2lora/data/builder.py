"""Building the multi-task training collection (`t2l data build`).

Sources -> reviewed descriptions -> decontamination -> length filter and cap -> one `datasets.DatasetDict`
(schema: `schema.py`), saved with a per-task table, a report and a plot. Every task that is not in the result
is listed in the report with the reason, so the collection's contents are never a surprise.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..io_utils import atomic_directory, cache_home
from .decontamination import BenchmarkNgramIndex, removed_task_ids
from .description_files import SOURCES, TaskDescriptions, load_source_descriptions
from .build_report import BuildReport, SkippedTask, TaskSummary, write_report
from .schema import (
    COLLECTION_VERSION,
    COLUMNS,
    TRAIN_SPLIT,
    VALIDATION_SPLIT,
    Example,
    collection_features,
    task_id,
)
from .sources import TaskSource, get_source, stable_seed

# Held-out validation tasks: different sources and answer formats, no close sibling in training
# (e.g. no other task of the same Natural-Instructions dataset family among them).
DEFAULT_VALIDATION_TASKS = (
    "bigbench.sports_understanding",
    "bigbench.navigate",
    "bigbench.word_unscrambling",
    "bigbench.tense",
    "natural_instructions.subtask051_multirc_correct_answer_single_sentence",
    "natural_instructions.subtask039_qasc_find_overlapping_words",
    "natural_instructions.subtask027_drop_answer_type_generation",
    "reasoning_gym.leg_counting",
    "reasoning_gym.caesar_cipher",
    "reasoning_gym.number_sorting",
)
DEFAULT_TOKENIZER = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class TaskCollectionConfig:
    """How to build the collection.

    Args:
        sources: which sources to read.
        max_examples_per_task: cap on examples kept per task (seeded random sample).
        min_examples_per_task: a task left with fewer examples (after decontamination and the length
            filter) is skipped and reported.
        max_tokens: examples whose prompt + completion, rendered as a chat, exceed this many tokens are
            dropped (and counted). 512 is the paper's training cap.
        tokenizer_name_or_path: tokenizer used for `max_tokens` and the `num_tokens` column (its chat template
            is applied when it has one). None: estimate tokens as characters / 3 (fast, conservative).
        validation_tasks: task ids held out as the `validation` split (never trained on).
        descriptions_dir: folder of reviewed description files (default: the ones shipped with text2lora).
        bigbench_archive: the `bigbench-1.0.0.tar.gz` sdist or an extracted folder (default: download once).
        prepared_dir: cache folder for the compact per-task BIG-bench data.
        benchmark_dir: folder with the evaluation benchmarks (arc_easy/, boolq/, ...) for the n-gram scan;
            None skips the scan (the explicit removal list always applies).
        ngram_size: word n-gram size of the scan (13, as in the GPT-3 contamination study).
        task_overlap_threshold: share of a task's examples matching a benchmark above which the whole task
            is removed.
        candidate_factor: examples drawn per task = factor x cap, so that the cap is still reached after the
            length filter drops some (a source may set its own, e.g. reasoning-gym draws 1.25 x cap).
        generator_time_budget_s: seconds a reasoning-gym generator may spend on one task; when spent, the task
            keeps the examples made so far (reported). A few generators need seconds per example.
        tasks: restrict the build to these task ids (for quick builds and tests); None builds all.
        seed: seed of every sample and generator.
    """

    sources: list[str] = field(default_factory=lambda: list(SOURCES), metadata={"help": "sources to read"})
    max_examples_per_task: int = field(default=256, metadata={"help": "examples kept per task"})
    min_examples_per_task: int = field(default=16, metadata={"help": "skip tasks with fewer usable examples"})
    max_tokens: int = field(default=512, metadata={"help": "drop examples longer than this (chat-rendered)"})
    tokenizer_name_or_path: str | None = field(
        default=DEFAULT_TOKENIZER, metadata={"help": "tokenizer for lengths; None estimates chars/3"}
    )
    validation_tasks: list[str] = field(
        default_factory=lambda: list(DEFAULT_VALIDATION_TASKS),
        metadata={"help": "held-out validation task ids"},
    )
    descriptions_dir: str | None = field(default=None, metadata={"help": "reviewed description files"})
    bigbench_archive: str | None = field(default=None, metadata={"help": "bigbench-1.0.0.tar.gz or folder"})
    prepared_dir: str | None = field(default=None, metadata={"help": "cache of the prepared BIG-bench tasks"})
    benchmark_dir: str | None = field(
        default=None, metadata={"help": "benchmarks folder for the n-gram scan"}
    )
    ngram_size: int = field(default=13, metadata={"help": "word n-gram size of the overlap scan"})
    task_overlap_threshold: float = field(default=0.05, metadata={"help": "remove a task above this overlap"})
    candidate_factor: float = field(
        default=2.0, metadata={"help": "examples drawn per task, as a multiple of the cap"}
    )
    generator_time_budget_s: float | None = field(
        default=120.0,
        metadata={"help": "seconds per reasoning-gym task before generation stops (None: no limit)"},
    )
    tasks: list[str] | None = field(default=None, metadata={"help": "only build these task ids"})
    seed: int = field(default=0, metadata={"help": "seed of samples and generators"})

    def __post_init__(self):
        self.sources = list(self.sources)
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"sources={self.sources!r}: choose one or more of {list(SOURCES)}.")
        if self.max_examples_per_task < 1:
            raise ValueError(f"max_examples_per_task={self.max_examples_per_task} must be >= 1.")
        if not 1 <= self.min_examples_per_task <= self.max_examples_per_task:
            raise ValueError(
                f"min_examples_per_task={self.min_examples_per_task} must be between 1 and "
                f"max_examples_per_task={self.max_examples_per_task}."
            )
        if self.max_tokens < 16:
            raise ValueError(f"max_tokens={self.max_tokens} is too small to hold an example; use e.g. 512.")
        if not 0.0 < self.task_overlap_threshold <= 1.0:
            raise ValueError(f"task_overlap_threshold={self.task_overlap_threshold} must be in (0, 1].")
        if self.candidate_factor < 1.0:
            raise ValueError(f"candidate_factor={self.candidate_factor} must be >= 1.")
        for name in list(self.validation_tasks) + list(self.tasks or []):
            if "." not in name:
                raise ValueError(
                    f"{name!r} is not a task id; write '<source>.<task>', e.g. 'bigbench.navigate'."
                )
        self.validation_tasks = list(self.validation_tasks)

    def fingerprint(self, descriptions_digest: str) -> str:
        """Identifies a build: the config, the description files, the builder's code and the collection format."""
        payload = json.dumps(
            {
                "config": asdict(self),
                "descriptions": descriptions_digest,
                "code": _code_digest(),
                "version": COLLECTION_VERSION,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_collection_dir() -> Path:
    return cache_home() / "data" / "collection"


class _TokenCounter:
    """Token length of an example as the trainer will see it: a user/assistant chat, template included."""

    def __init__(self, tokenizer_name_or_path: str | None):
        self.tokenizer = None
        if tokenizer_name_or_path is not None:
            from transformers import AutoTokenizer

            from ..base_models import resolve_base_model

            self.tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(tokenizer_name_or_path))

    def __call__(self, examples: list[Example]) -> list[int]:
        if self.tokenizer is None:
            return [-(-(len(e.prompt) + len(e.completion) + 32) // 3) for e in examples]
        if self.tokenizer.chat_template:
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.completion}],
                    tokenize=False,
                )
                for e in examples
            ]
        else:
            texts = [f"{e.prompt}\n{e.completion}" for e in examples]
        encoded = self.tokenizer(texts, add_special_tokens=not self.tokenizer.chat_template)["input_ids"]
        return [len(ids) for ids in encoded]


@dataclass
class BuildResult:
    """What `TaskCollectionBuilder.build` returns: the dataset, the per-task table and the report."""

    dataset: Any  # datasets.DatasetDict
    report: BuildReport


class TaskCollectionBuilder:
    """Turns the configured sources into the collection. `build()` does the work; nothing is written."""

    def __init__(self, config: TaskCollectionConfig | None = None):
        self.config = config or TaskCollectionConfig()
        self._sources: dict[str, TaskSource] = {}

    def source(self, name: str) -> TaskSource:
        if name not in self._sources:
            kwargs: dict[str, Any] = {}
            if name in ("bigbench", "natural_instructions"):
                kwargs = {
                    "archive": self.config.bigbench_archive,
                    "prepared_dir": self._shared_prepared_dir(),
                }
            elif name == "reasoning_gym":
                kwargs = {"time_budget_s": self.config.generator_time_budget_s}
            self._sources[name] = get_source(name, **kwargs)
        return self._sources[name]

    def _shared_prepared_dir(self) -> str | None:
        # BIG-bench and Natural-Instructions read the same archive: prepare it once for both.
        for other in ("bigbench", "natural_instructions"):
            if other in self._sources:
                return str(self._sources[other].prepared_dir)  # type: ignore[attr-defined]
        return self.config.prepared_dir

    def load_descriptions(self) -> dict[str, TaskDescriptions]:
        """All reviewed descriptions of the configured sources, keyed by collection task id."""
        found = {}
        for name in self.config.sources:
            for descriptions in load_source_descriptions(name, self.config.descriptions_dir).values():
                found[descriptions.task_id] = descriptions
        return found

    def build(self) -> BuildResult:
        config = self.config
        start = time.perf_counter()
        descriptions = self.load_descriptions()
        removals = removed_task_ids()
        wanted = set(config.tasks) if config.tasks is not None else None
        report = BuildReport(config=asdict(config))

        index = None
        if config.benchmark_dir is not None:
            index = BenchmarkNgramIndex.from_dir(config.benchmark_dir, n=config.ngram_size)
            report.ngram_scan = {"n": index.n, "ngrams": len(index), "files": index.files}
            print(f"n-gram scan: {len(index):,} {index.n}-grams from {sum(map(len, index.files.values()))} "
                  "benchmark files", file=sys.stderr)  # fmt: skip
        else:
            report.ngram_scan = None

        candidates: list[tuple[str, str]] = []  # (source, task) to load
        for name in config.sources:
            source = self.source(name)
            available = source.available_tasks()
            for task, reason in sorted(source.unsupported_tasks().items()):
                tid = task_id(name, task)
                if wanted is None or tid in wanted:
                    report.skipped.append(SkippedTask(tid, "unsupported", reason))
            for task in available:
                tid = task_id(name, task)
                if wanted is not None and tid not in wanted:
                    continue
                if tid in removals:
                    report.removed.append(removals[tid].as_dict())
                elif tid not in descriptions:
                    report.skipped.append(
                        SkippedTask(
                            tid,
                            "no-descriptions",
                            "no reviewed description file (see descriptions/FORMAT.md)",
                        )
                    )
                else:
                    candidates.append((name, task))
            listed = {task_id(name, task) for task in available}
            for tid in sorted(t for t, d in descriptions.items() if d.source == name and t not in listed):
                if wanted is None or tid in wanted:
                    report.orphan_descriptions.append(tid)

        counter = _TokenCounter(config.tokenizer_name_or_path)
        rows = {TRAIN_SPLIT: [], VALIDATION_SPLIT: []}
        validation = set(config.validation_tasks)
        progress = tqdm(candidates, desc="Building tasks", unit="task")
        for name, task in progress:
            tid = task_id(name, task)
            progress.set_postfix_str(tid[-40:])
            summary, kept, skip = self._build_task(name, task, descriptions[tid], counter, index)
            if skip is not None:
                if skip.category == "removed":
                    report.removed.append(skip.as_removal())
                else:
                    report.skipped.append(skip)
                continue
            split = VALIDATION_SPLIT if tid in validation else TRAIN_SPLIT
            summary.split = split
            report.tasks.append(summary)
            rows[split].extend(kept)

        built = {s.task for s in report.tasks}
        report.missing_validation_tasks = sorted(
            t for t in validation if t not in built and (wanted is None or t in wanted)
        )
        dataset = _to_dataset_dict(rows)
        report.build_seconds = time.perf_counter() - start
        report.finalise()
        return BuildResult(dataset=dataset, report=report)

    def _build_task(self, name, task, descriptions: TaskDescriptions, counter, index):
        config = self.config
        tid = task_id(name, task)
        cap = config.max_examples_per_task
        source = self.source(name)
        draws = math.ceil(cap * (source.oversample or config.candidate_factor))
        try:
            raw = source.load_task(task, draws, seed=stable_seed(config.seed, tid))
        except Exception as err:  # noqa: BLE001 (a broken generator must not abort a build of hundreds of tasks)
            return None, [], SkippedTask(tid, "load-error", f"{type(err).__name__}: {err}"[:300])
        seen, unique = set(), []
        for example in raw.examples:
            key = (example.prompt, example.completion)
            if key not in seen:
                seen.add(key)
                unique.append(example)
        summary = TaskSummary(
            task=tid,
            source=name,
            license=raw.license,
            definition=raw.definition,
            num_descriptions=len(descriptions.descriptions),
            num_heldout_descriptions=len(descriptions.validation_descriptions),
            candidates=len(raw.examples),
            duplicates=len(raw.examples) - len(unique),
            note=raw.note,
        )
        if index is not None and unique:
            clean = []
            hits: dict[str, int] = {}
            for example in unique:
                benchmark = index.match_example(example)
                if benchmark is None:
                    clean.append(example)
                else:
                    hits[benchmark] = hits.get(benchmark, 0) + 1
            summary.benchmark_overlap = hits
            share = sum(hits.values()) / len(unique)
            if share >= config.task_overlap_threshold:
                worst = max(hits, key=hits.get)
                return (
                    summary,
                    [],
                    SkippedTask(
                        tid,
                        "removed",
                        f"{sum(hits.values())}/{len(unique)} examples share a {index.n}-gram with benchmark evaluation "
                        f"data ({', '.join(f'{b}: {c}' for b, c in sorted(hits.items()))})",
                        benchmarks=tuple(sorted(hits)),
                        rule="overlap",
                        main_benchmark=worst,
                    ),
                )
            unique = clean
        lengths = counter(unique) if unique else []
        fitting = [(e, n) for e, n in zip(unique, lengths) if n <= config.max_tokens]
        summary.too_long = len(unique) - len(fitting)
        fitting = fitting[:cap]
        if len(fitting) < config.min_examples_per_task:
            return (
                summary,
                [],
                SkippedTask(
                    tid,
                    "too-few-examples",
                    f"{len(fitting)} examples left (of {len(raw.examples)} drawn; {summary.too_long} over "
                    f"{config.max_tokens} tokens); need {config.min_examples_per_task}",
                ),
            )
        summary.examples = len(fitting)
        summary.multiple_choice = sum(bool(e.choices) for e, _ in fitting)
        token_counts = sorted(n for _, n in fitting)
        summary.mean_tokens = sum(token_counts) / len(token_counts)
        summary.max_tokens = token_counts[-1]
        training, heldout = list(descriptions.descriptions), list(descriptions.validation_descriptions)
        rows = [
            {
                "task": tid,
                "source": name,
                "license": raw.license,
                "descriptions": training,
                "heldout_descriptions": heldout,
                "prompt": example.prompt,
                "completion": example.completion,
                "choices": list(example.choices),
                "answer": example.answer,
                "num_tokens": length,
            }
            for example, length in fitting
        ]
        return summary, rows, None


def _to_dataset_dict(rows: dict[str, list[dict]]):
    from datasets import Dataset, DatasetDict

    features = collection_features()
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {column: [row[column] for row in split_rows] for column in COLUMNS}, features=features
            )
            for split, split_rows in rows.items()
        }
    )


def _code_digest() -> str:
    """A hash of this package's source, so a build made by other code is not reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def descriptions_digest(descriptions_dir: str | os.PathLike | None = None) -> str:
    """A hash of every description file, so editing one invalidates a cached build."""
    from .description_files import default_descriptions_dir

    root = Path(descriptions_dir or default_descriptions_dir())
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.yaml")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_task_collection(
    config: TaskCollectionConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Build the collection and save it to `out_dir` (default: `<cache_home>/data/collection`); return the path.

    The folder holds `dataset/` (`DatasetDict.save_to_disk`), `tasks.json` (one entry per task with its counts
    and descriptions), `report.json`, `report.md` and `examples_per_task.png`. An existing build with the same
    fingerprint (config, description files and builder code) is reused unless `overwrite` is set.
    """
    config = config or TaskCollectionConfig()
    out_dir = Path(out_dir or default_collection_dir())
    fingerprint = config.fingerprint(descriptions_digest(config.descriptions_dir))
    stamp = out_dir / "report.json"
    if not overwrite and stamp.is_file():
        previous = json.loads(stamp.read_text())
        if previous.get("fingerprint") == fingerprint:
            print(f"Collection is up to date in {out_dir} (fingerprint {fingerprint}); use --overwrite to rebuild.",
                  file=sys.stderr)  # fmt: skip
            return out_dir
    result = TaskCollectionBuilder(config).build()
    result.report.fingerprint = fingerprint
    with atomic_directory(out_dir) as tmp:
        result.dataset.save_to_disk(str(tmp / "dataset"))
        write_report(result.report, tmp, descriptions=TaskCollectionBuilder(config).load_descriptions())
    return out_dir


def load_task_collection(path: str | os.PathLike | None = None):
    """Load a built collection (`DatasetDict` with `train` and `validation`); default: the cached build."""
    from datasets import load_from_disk

    path = Path(path or default_collection_dir())
    if not (path / "dataset").is_dir():
        raise FileNotFoundError(f"No task collection in {path}; build it with `t2l data build --out {path}`.")
    return load_from_disk(str(path / "dataset"))
