"""reasoning-gym procedural generators (`pip install reasoning-gym`) as prompt/completion examples.

Every generator is a task; `reasoning_gym.create_dataset(name, size=, seed=)` makes its examples offline.
The question is the prompt and the answer is both the completion and the `answer` column.
"""

from __future__ import annotations

from ..schema import Example, RawTask
from . import TaskSource

REASONING_GYM_LICENSE = "Apache-2.0"
# Registered names that are not tasks of their own.
NOT_TASKS = {"composite": "mixes other generators; not a task of its own"}


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

    def available_tasks(self) -> list[str]:
        return sorted(set(_registry()) - set(NOT_TASKS))

    def unsupported_tasks(self) -> dict[str, str]:
        return {name: reason for name, reason in NOT_TASKS.items() if name in _registry()}

    def load_task(self, task: str, max_examples: int, seed: int) -> RawTask:
        import reasoning_gym

        dataset = reasoning_gym.create_dataset(task, size=max_examples, seed=seed)
        examples = []
        for entry in dataset:
            prompt = str(entry.get("question") or "").strip()
            answer = entry.get("answer")
            answer = "" if answer is None else str(answer).strip()
            if prompt and answer:
                examples.append(Example(prompt=prompt, completion=answer, answer=answer))
        return RawTask(source=self.name, name=task, license=self.license, definition=None, examples=examples)
