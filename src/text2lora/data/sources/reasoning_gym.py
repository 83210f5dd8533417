"""reasoning-gym procedural generators (`pip install reasoning-gym`) as prompt/completion examples.

Every generator is a task; `reasoning_gym.create_dataset(name, size=, seed=)` makes its examples offline.
The question is the prompt and the answer is both the completion and the `answer` column.

Generators differ in speed by four orders of magnitude (most make 100 examples in well under a second; a few,
like `knight_swap` or `zebra_puzzles`, take seconds per example), so each task has a time budget: generation
stops when it is spent, even in the middle of an example (SIGALRM, where available), and the task keeps what
it has (the builder reports it). Examples are generated one index at a time, so a budget-limited task holds
the same first examples on every machine.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time

from ..schema import Example, RawTask
from .base import TaskSource

REASONING_GYM_LICENSE = "Apache-2.0"
# Registered names that are not tasks of their own.
NOT_TASKS = {"composite": "mixes other generators; not a task of its own"}
# Generators whose `answer` is None (any valid answer scores) but whose metadata holds one valid answer.
ANSWER_FROM_METADATA = {
    "graph_color": lambda metadata: json.dumps({str(k): v for k, v in metadata["possible_answer"].items()}),
    "propositional_logic": lambda metadata: str(metadata["example_answer"]),
}
# Answers a generator sometimes produces malformed; such examples are dropped.
MALFORMED_ANSWER = {"intermediate_integration": lambda answer: "Integral(" in answer}  # unevaluated SymPy


class _BudgetSpent(Exception):
    pass


@contextlib.contextmanager
def _alarm(seconds: float | None):
    """Interrupt the block after `seconds` (main thread on Unix only; elsewhere the per-example check remains)."""
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def interrupt(signum, frame):
        raise _BudgetSpent

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _registry() -> dict:
    try:
        from reasoning_gym.factory import DATASETS
    except ImportError as err:
        raise ImportError(
            "The reasoning_gym source needs the reasoning-gym package: `pip install reasoning-gym==0.1.25` "
            "(or `pip install text2lora[data]`), or leave it out with --sources natural_instructions bigbench."
        ) from err
    return DATASETS


class ReasoningGymSource(TaskSource):
    """All registered reasoning-gym generators (except `NOT_TASKS`)."""

    name = "reasoning_gym"
    license = REASONING_GYM_LICENSE
    # Generated examples are homogeneous in length, so a small surplus suffices for the length filter.
    oversample = 1.25

    def __init__(self, time_budget_s: float | None = 120.0):
        self.time_budget_s = time_budget_s

    def available_tasks(self) -> list[str]:
        return sorted(set(_registry()) - set(NOT_TASKS))

    def unsupported_tasks(self) -> dict[str, str]:
        return {name: reason for name, reason in NOT_TASKS.items() if name in _registry()}

    def load_task(self, task: str, max_examples: int, seed: int) -> RawTask:
        import reasoning_gym

        dataset = reasoning_gym.create_dataset(task, size=max_examples, seed=seed)
        examples = []
        note = ""
        index = 0
        start = time.perf_counter()
        try:
            with _alarm(self.time_budget_s):
                for index in range(len(dataset)):
                    if self.time_budget_s is not None and time.perf_counter() - start > self.time_budget_s:
                        raise _BudgetSpent
                    entry = dataset[index]
                    prompt = str(entry.get("question") or "").strip()
                    answer = entry.get("answer")
                    if answer is None and task in ANSWER_FROM_METADATA:
                        answer = ANSWER_FROM_METADATA[task](entry.get("metadata", {}))
                    answer = "" if answer is None else str(answer).strip()
                    if task in MALFORMED_ANSWER and MALFORMED_ANSWER[task](answer):
                        continue
                    if prompt and answer:
                        examples.append(Example(prompt=prompt, completion=answer, answer=answer))
        except _BudgetSpent:
            note = f"generation stopped by the {self.time_budget_s:g} s time budget after {index} examples"
        return RawTask(
            source=self.name, name=task, license=self.license, definition=None, examples=examples, note=note
        )
