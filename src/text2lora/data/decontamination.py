"""Keeping the evaluation benchmarks out of training.

Text-to-LoRA is judged zero-shot on ARC-Easy, ARC-Challenge, BoolQ, GSM8K, HellaSwag, OpenBookQA, PIQA,
Winogrande, MBPP and HumanEval. A training task built from one of them would turn "unseen task" results into
memorisation, so two mechanisms keep them apart:

1. An explicit, reviewed list (`REMOVED_TASKS`): every task known to derive from a benchmark, with the rule
   that removes it and why. It always applies.
2. An n-gram scan (`BenchmarkNgramIndex`), when the benchmark files are available: each candidate example
   is compared with the benchmarks' evaluation splits by word 13-grams (n-grams that are mostly numbers or
   single characters are not indexed: MBPP's long numeric test inputs would match any list of digits). Examples that share one are dropped;
   a task where at least `task_overlap_threshold` of the scanned examples match is removed as a whole
   (rule `overlap`), since it is then evidently built from benchmark material.

The rules (`DECONTAMINATION_RULES`) are:

- `derived`: the task's examples are taken from a benchmark's dataset (e.g. the Natural-Instructions
  Winogrande tasks, or science-exam questions drawn from the ARC question pool).
- `same-construction`: the task reuses the benchmark's source material or construction closely enough that
  its items can coincide with or paraphrase benchmark items (Winograd schemas for Winogrande; WikiHow
  step/goal prediction for HellaSwag's WikiHow half; templated GSM8K questions).
- `overlap`: found by the n-gram scan (see above).

Considered and kept (recorded here so the decision is visible): QASC tasks (grade-school science, but their
own crowd-sourced questions and fact corpus, not ARC/OpenBookQA items); reasoning-gym `leg_counting`, `aiw`,
`basic_arithmetic`, `chain_sum`, `products` (templated counting and bare arithmetic, not word problems drawn
from GSM8K); `social_iqa`, `physical_intuition`, `physics_questions` (no benchmark
overlap); BIG-bench code tasks (`code_line_description`, `auto_debugging`, `cs_algorithms`) and
reasoning-gym puzzles (none asks for Python functions from docstrings as MBPP/HumanEval do); reasoning-gym
`arc_1d` / `arc_agi` / `rearc` (the Abstraction and Reasoning Corpus grid puzzles, unrelated to the AI2 ARC
science questions despite the name). The n-gram scan double-checks these.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .schema import Example

EVALUATION_BENCHMARKS = (
    "arc_easy",
    "arc_challenge",
    "boolq",
    "gsm8k",
    "hellaswag",
    "openbookqa",
    "piqa",
    "winogrande",
    "mbpp",
    "humaneval",
)

DECONTAMINATION_RULES = {
    "derived": "examples are taken from an evaluation benchmark's dataset",
    "same-construction": "built from the same source material or construction as an evaluation benchmark, so its "
    "items can coincide with or paraphrase benchmark items",
    "overlap": "the n-gram scan found benchmark text in a large share of the task's examples",
}


@dataclass(frozen=True)
class Removal:
    """Why one task is kept out of the collection."""

    task: str  # collection task id, `<source>.<task>`
    benchmarks: tuple[str, ...]
    rule: str
    reason: str

    def as_dict(self) -> dict:
        return {
            "task": self.task,
            "benchmarks": list(self.benchmarks),
            "rule": self.rule,
            "reason": self.reason,
        }


def _winogrande(task: str) -> Removal:
    return Removal(
        f"natural_instructions.{task}",
        ("winogrande",),
        "derived",
        "Natural-Instructions task built from Winogrande sentences (twin fill-in-the-blank sentences).",
    )


REMOVED_TASKS: tuple[Removal, ...] = (
    *(
        _winogrande(task)
        for task in (
            "subtask029_winogrande_full_object",
            "subtask030_winogrande_full_person",
            "subtask031_winogrande_question_generation_object",
            "subtask032_winogrande_question_generation_person",
            "subtask033_winogrande_answer_generation",
            "subtask034_winogrande_question_modification_object",
            "subtask035_winogrande_question_modification_person",
        )
    ),
    Removal(
        "natural_instructions.subtask043_essential_terms_answering_incomplete_questions",
        ("arc_easy", "arc_challenge"),
        "derived",
        "Essential-Terms questions are multiple-choice science-exam questions from the ARC question pool "
        "(with words masked).",
    ),
    Removal(
        "natural_instructions.subtask044_essential_terms_identifying_essential_words",
        ("arc_easy", "arc_challenge"),
        "derived",
        "Essential-Terms questions are multiple-choice science-exam questions from the ARC question pool.",
    ),
    Removal(
        "natural_instructions.subtask047_misc_answering_science_questions",
        ("arc_easy", "arc_challenge", "openbookqa"),
        "derived",
        "Answers lettered (A)-(D) grade-school science-exam questions of the ARC kind (same exam pool).",
    ),
    Removal(
        "natural_instructions.subtask045_miscellaneous_sentence_paraphrasing",
        ("arc_easy", "arc_challenge"),
        "overlap",
        "Paraphrases support sentences of science questions; the n-gram scan finds ARC test text in 26 of its "
        "193 examples (13%), so it is listed here to be removed even when the scan is not run.",
    ),
    Removal(
        "bigbench.winowhy",
        ("winogrande",),
        "same-construction",
        "Winograd-schema pronoun resolution (WSC sentences), the construction Winogrande scales up.",
    ),
    Removal(
        "bigbench.disambiguation_qa",
        ("winogrande",),
        "same-construction",
        "Pronoun-antecedent resolution in short sentences, the skill Winogrande tests; removed conservatively.",
    ),
    Removal(
        "bigbench.elementary_math_qa",
        ("gsm8k",),
        "same-construction",
        "Math word problems (MathQA) with arithmetic hints: not GSM8K items, but the same problem type; removed "
        "conservatively so that GSM8K stays an unseen task.",
    ),
    Removal(
        "bigbench.goal_step_wikihow",
        ("hellaswag",),
        "same-construction",
        "Predicts WikiHow steps/goals; HellaSwag's WikiHow half asks for the next WikiHow step.",
    ),
    Removal(
        "reasoning_gym.gsm_symbolic",
        ("gsm8k",),
        "same-construction",
        "GSM-Symbolic: templates made from GSM8K test questions with the numbers and names changed.",
    ),
)


def removed_task_ids() -> dict[str, Removal]:
    """The explicit removal list, keyed by collection task id."""
    return {removal.task: removal for removal in REMOVED_TASKS}


# --- n-gram scan ---------------------------------------------------------------------------------------------

# The evaluation split of each benchmark, as laid out in a benchmarks folder (one sub-folder per benchmark).
EVALUATION_FILES = {
    "arc_easy": ("arc_easy/ARC-Easy-Test.jsonl",),
    "arc_challenge": ("arc_challenge/ARC-Challenge-Test.jsonl",),
    "boolq": ("boolq/dev.jsonl",),
    "gsm8k": ("gsm8k/test.jsonl",),
    "hellaswag": ("hellaswag/hellaswag_val_full.txt.bz2",),
    "openbookqa": ("openbookqa/Main/test.jsonl",),
    "piqa": ("piqa/valid.jsonl",),
    "winogrande": ("winogrande/dev.jsonl",),
    "mbpp": ("mbpp/mbpp.jsonl", "mbpp/MbppPlus.jsonl.gz"),
    "humaneval": ("humaneval/HumanEval.jsonl.gz",),
}
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_benchmark_texts(path: Path) -> Iterator[str]:
    """One text per JSON-lines record (its string fields joined); a plain-text file as one text."""
    with _open_text(path) as handle:
        if ".jsonl" in path.name:
            for line in handle:
                if line.strip():
                    yield " ".join(_strings(json.loads(line)))
        else:
            yield handle.read()


class BenchmarkNgramIndex:
    """Word n-grams of the benchmarks' evaluation splits, for finding benchmark text inside task examples."""

    def __init__(self, ngrams: dict[int, str], n: int, files: dict[str, list[str]]):
        self.ngrams = ngrams  # hash of an n-gram -> benchmark it came from
        self.n = n
        self.files = files

    @classmethod
    def from_dir(
        cls, benchmark_dir: str | os.PathLike, n: int = 13, benchmarks: Iterable[str] = EVALUATION_BENCHMARKS
    ) -> BenchmarkNgramIndex:
        """Index the evaluation files found under `benchmark_dir` (layout of `EVALUATION_FILES`).

        Raises FileNotFoundError when none of them exists (a wrong folder should not pass silently).
        """
        if n < 5:
            raise ValueError(
                f"n={n} is too small for an overlap scan (common phrases would match); use 8 to 13."
            )
        root = Path(benchmark_dir)
        ngrams: dict[int, str] = {}
        files: dict[str, list[str]] = {}
        for benchmark in benchmarks:
            for relative in EVALUATION_FILES[benchmark]:
                path = root / relative
                if not path.is_file():
                    continue
                files.setdefault(benchmark, []).append(relative)
                for text in read_benchmark_texts(path):
                    words = _words(text)
                    wordy = [not word.isdigit() and len(word) > 1 for word in words]
                    for start in range(len(words) - n + 1):
                        # Number runs (e.g. MBPP test inputs) are not language: they would match any digit list.
                        if 2 * sum(wordy[start : start + n]) >= n:
                            ngrams.setdefault(hash(tuple(words[start : start + n])), benchmark)
        if not files:
            raise FileNotFoundError(
                f"No benchmark evaluation files under {root} (expected e.g. {EVALUATION_FILES['gsm8k'][0]}); "
                "point --benchmark-dir at the folder holding arc_easy/, boolq/, gsm8k/, ..."
            )
        return cls(ngrams, n, files)

    def match(self, text: str) -> str | None:
        """The benchmark whose n-gram occurs in `text`, or None."""
        words = _words(text)
        for start in range(len(words) - self.n + 1):
            benchmark = self.ngrams.get(hash(tuple(words[start : start + self.n])))
            if benchmark is not None:
                return benchmark
        return None

    def match_example(self, example: Example) -> str | None:
        return self.match(f"{example.prompt}\n{example.completion}")

    def __len__(self) -> int:
        return len(self.ngrams)
