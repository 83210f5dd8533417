"""The schema of the multi-task training collection built by `t2l data build`.

The collection is a `datasets.DatasetDict` saved with `save_to_disk`:

- split `train`: examples of the training tasks;
- split `validation`: examples of the held-out validation tasks (never trained on; used to choose
  checkpoints and to measure generalisation to unseen tasks).

One row per example, with these columns:

| column                 | type        | meaning                                                                       |
|------------------------|-------------|-------------------------------------------------------------------------------|
| `task`                 | str         | task id `<source>.<task>`, e.g. `bigbench.date_understanding`, `reasoning_gym.leg_counting`, `natural_instructions.subtask002_quoref_answer_generation` |
| `source`               | str         | `bigbench`, `natural_instructions` or `reasoning_gym`                         |
| `license`              | str         | SPDX id of the example's license (all current sources: `Apache-2.0`)          |
| `descriptions`         | list[str]   | the task's training descriptions (reviewed files, >= 8)                        |
| `heldout_descriptions` | list[str]   | the task's held-out descriptions (>= 2), for validation only                   |
| `prompt`               | str         | the user turn: the example's input; multiple-choice options are listed in it  |
| `completion`           | str         | the assistant turn to train on                                                |
| `choices`              | list[str]   | answer options of a multiple-choice example; `[]` otherwise                   |
| `answer`               | str         | the correct option's text (multiple choice) or the reference answer           |
| `num_tokens`           | int         | length of prompt + completion as a chat with the build's tokenizer            |

The task's instruction is deliberately *not* in `prompt`: in Text-to-LoRA it reaches the model through the
description and the generated adapter. Descriptions are repeated on every row so that a row is
self-contained; `tasks.json` next to the dataset lists each task once with its counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"
COLUMNS = (
    "task",
    "source",
    "license",
    "descriptions",
    "heldout_descriptions",
    "prompt",
    "completion",
    "choices",
    "answer",
    "num_tokens",
)
COLLECTION_VERSION = 1


def task_id(source: str, task: str) -> str:
    """The collection-wide task id: `<source>.<task>` (task as its source names it)."""
    return f"{source}.{task}"


def split_task_id(full_id: str) -> tuple[str, str]:
    """Inverse of `task_id`: `"bigbench.arithmetic"` -> `("bigbench", "arithmetic")`."""
    source, sep, task = full_id.partition(".")
    if not sep or not task:
        raise ValueError(
            f"{full_id!r} is not a task id; expected '<source>.<task>', e.g. 'bigbench.arithmetic'."
        )
    return source, task


@dataclass(frozen=True)
class Example:
    """One example as a source yields it, before descriptions and lengths are attached."""

    prompt: str
    completion: str
    choices: tuple[str, ...] = ()
    answer: str = ""


@dataclass
class RawTask:
    """A task read from a source: its identity, provenance and examples (not yet filtered or capped)."""

    source: str
    name: str
    license: str
    definition: str | None
    examples: list[Example] = field(default_factory=list)
    note: str = ""  # anything the report should mention, e.g. generation stopped by a time budget

    @property
    def task_id(self) -> str:
        return task_id(self.source, self.name)


def collection_features():
    """The `datasets.Features` of both splits (fixed, so empty splits and concatenations agree)."""
    from datasets import Features, List, Value

    return Features(
        {
            "task": Value("string"),
            "source": Value("string"),
            "license": Value("string"),
            "descriptions": List(Value("string")),
            "heldout_descriptions": List(Value("string")),
            "prompt": Value("string"),
            "completion": Value("string"),
            "choices": List(Value("string")),
            "answer": Value("string"),
            "num_tokens": Value("int32"),
        }
    )
