"""BIG-bench JSON tasks (from the `bigbench==1.0.0` source archive) as prompt/completion examples.

A JSON task's examples have an `input` and either `target` (free-form; a string or a list of acceptable
strings) or `target_scores` (multiple choice: option -> score). All subtasks of a task are pooled into one
task. Multiple-choice options are listed in the prompt when the task itself shows them to the model
(`append_choices_to_input`, BIG-bench's default) and there are at most `max_listed_choices` of them;
the completion is always the correct option's text (or the first target).

The prompt is normally the example's input alone: the task's instruction reaches the model through the
description. Two kinds of tasks cannot be solved that way, and get BIG-bench's own framing instead:
`WITH_TASK_PROMPT` tasks, whose task prefix or example prefixes hold data the examples depend on (a
vocabulary, a table, the rules of a symbol world, the text to edit, a sentence frame), and `FEW_SHOT` tasks,
made of many subtasks that each follow a different hidden rule shown only by examples, which get
demonstrations from the same subtask as BIG-bench's few-shot evaluation does.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from ..schema import Example, RawTask
from .base import TaskSource
from .archive import (
    BIGBENCH_LICENSE,
    list_prepared_tasks,
    prepare_bigbench_archive,
    programmatic_tasks,
    read_prepared_task,
)

MAX_LISTED_CHOICES = 10
# JSON tasks that are not tasks: BIG-bench's examples for task authors.
NOT_TASKS = {
    name: "template for BIG-bench task authors (a few toy arithmetic examples), not a task"
    for name in (
        "simple_arithmetic_json",
        "simple_arithmetic_json_multiple_choice",
        "simple_arithmetic_json_subtasks",
        "simple_arithmetic_multiple_targets_json",
    )
}


WITH_TASK_PROMPT = frozenset(
    {
        "conlang_translation",  # the made-up language's example sentences are in each subtask's prefix
        "penguins_in_a_table",  # the table is in the task prefix
        "symbol_interpretation",  # the symbol world's rules are in the task prefix
        "key_value_maps",  # the definitions the statements use are in the task prefix
        "simple_text_editing",  # the text to edit is in the input prefix
        "linguistic_mappings",  # the sentence frame ('Heute ... wir. Gestern') is in the prefixes
        "polish_sequence_labeling",  # the label inventory is in the task prefix
    }
)
# Tasks whose question exists only in the options (e.g. "The crow is the rightmost."): always list them.
SHOW_OPTIONS = frozenset({"logical_deduction"})
FEW_SHOT = {"list_functions": 3, "mult_data_wrangling": 3, "unnatural_in_context_learning": 3}


def frame_prompt(prompt: str, fmt: dict) -> str:
    """BIG-bench's own framing of an example: task prefix, input prefix, input, output prefix."""
    text = f"{fmt.get('task_prefix') or ''}{fmt.get('example_input_prefix') or ''}{prompt}"
    return f"{text}{fmt.get('example_output_prefix') or ''}".strip()


def with_demonstrations(query: Example, demonstrations: list[Example]) -> Example:
    """Prefix `query` with solved examples of the same subtask (Input/Output pairs)."""
    shots = "".join(f"Input: {d.prompt}\nOutput: {d.completion}\n\n" for d in demonstrations)
    return Example(f"{shots}Input: {query.prompt}\nOutput:", query.completion, query.choices, query.answer)


def format_choices(choices: list[str] | tuple[str, ...]) -> str:
    """The options block appended to a multiple-choice prompt."""
    return "Options:\n" + "\n".join(f"- {choice}" for choice in choices)


def format_bigbench_example(
    raw: dict, append_choices: bool = True, max_listed_choices: int = MAX_LISTED_CHOICES
) -> Example | None:
    """Turn one BIG-bench example into an `Example`; None when it has no usable input or answer."""
    prompt = str(raw.get("input", "")).strip()
    scores = raw.get("target_scores") or {}
    if not prompt and not scores:
        return None
    choices: tuple[str, ...] = ()
    best = ""
    if scores:
        try:
            numeric = {str(option).strip(): float(score) for option, score in scores.items()}
        except (TypeError, ValueError):
            return None
        choices = tuple(numeric)
        best = max(choices, key=lambda option: numeric[option])  # first of the best on ties
        if numeric[best] <= min(numeric.values()) and len(choices) > 1:
            return None  # no option is better than the others: nothing to learn
    target = raw.get("target")
    targets = [target] if isinstance(target, str) else list(target or [])
    targets = [str(t).strip() for t in targets if str(t).strip()]
    if targets:
        # Free-form example (possibly with scored options too, e.g. arithmetic): answer in the target's words.
        completion = targets[0]
        answer = best or completion
    elif choices:
        completion = answer = best
        if not prompt:
            # Some tasks compare the options themselves ("which sentence makes more sense?"): show them.
            if len(choices) > max_listed_choices:
                return None
            prompt = format_choices(choices)
        elif append_choices and len(choices) <= max_listed_choices:
            prompt = f"{prompt}\n{format_choices(choices)}"
    else:
        return None
    if not completion:
        return None
    return Example(prompt=prompt, completion=completion, choices=choices, answer=answer)


class BigBenchSource(TaskSource):
    """The JSON tasks of the BIG-bench archive (except its `natural_instructions` collection)."""

    name = "bigbench"
    license = BIGBENCH_LICENSE
    group = "bigbench"

    def __init__(
        self, archive: str | os.PathLike | None = None, prepared_dir: str | os.PathLike | None = None
    ):
        self.archive = archive
        self._prepared_dir = Path(prepared_dir) if prepared_dir is not None else None

    @property
    def prepared_dir(self) -> Path:
        """The compact per-task cache, prepared from the archive on first use."""
        if self._prepared_dir is None or not (self._prepared_dir / "prepared.json").is_file():
            self._prepared_dir = prepare_bigbench_archive(self.archive, self._prepared_dir)
        return self._prepared_dir

    def available_tasks(self) -> list[str]:
        return [task for task in list_prepared_tasks(self.prepared_dir, self.group) if task not in NOT_TASKS]

    def unsupported_tasks(self) -> dict[str, str]:
        unsupported = {
            task: "programmatic BIG-bench task (task.py, no task.json): examples are generated by code"
            for task in programmatic_tasks(self.prepared_dir)
        }
        present = set(list_prepared_tasks(self.prepared_dir, self.group))
        unsupported.update({task: reason for task, reason in NOT_TASKS.items() if task in present})
        return unsupported

    def load_task(self, task: str, max_examples: int, seed: int) -> RawTask:
        entry = read_prepared_task(self.prepared_dir, self.group, task)
        raw_examples = list(entry["examples"])
        rng = random.Random(seed)
        rng.shuffle(raw_examples)
        formats = entry.get("formats", {})
        top = formats.get("", {})
        by_subtask: dict[str, list[Example]] = {}
        examples = []
        for raw in raw_examples:
            fmt = {**top, **formats.get(raw.get("subtask") or "", {})}
            append = task in SHOW_OPTIONS or fmt.get("append_choices_to_input", True)
            example = format_bigbench_example(raw, append_choices=append)
            if example is None:
                continue
            if task in WITH_TASK_PROMPT:
                example = Example(
                    frame_prompt(example.prompt, fmt), example.completion, example.choices, example.answer
                )
            by_subtask.setdefault(raw.get("subtask") or "", []).append(example)
            examples.append((raw.get("subtask") or "", example))
        if task in FEW_SHOT:
            shots = FEW_SHOT[task]
            framed = []
            for subtask, example in examples:
                pool = [other for other in by_subtask[subtask] if other is not example]
                if len(pool) >= shots:
                    framed.append((subtask, with_demonstrations(example, rng.sample(pool, shots))))
            examples = framed
        return RawTask(
            source=self.name,
            name=task,
            license=self.license,
            definition=entry.get("description"),
            examples=[example for _, example in examples[:max_examples]],
        )
