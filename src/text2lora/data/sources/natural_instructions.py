"""Natural-Instructions v1 tasks, as shipped in the BIG-bench 1.0.0 archive (`benchmark_tasks/natural_instructions`).

Each of the 61 subtask folders is one task: examples are `input` -> `target` (a list of acceptable outputs;
the first is the completion). The task's "Definition: ..." text is its `definition`; it is *not* put in the
prompt, since in Text-to-LoRA the instruction reaches the model through the description.
"""

from __future__ import annotations

import random

from ..schema import Example, RawTask
from .archive import read_prepared_task
from .bigbench import BigBenchSource


def format_natural_instructions_example(raw: dict) -> Example | None:
    """Turn one Natural-Instructions example into an `Example`; None when input or target is empty."""
    prompt = str(raw.get("input", "")).strip()
    target = raw.get("target")
    targets = [target] if isinstance(target, str) else list(target or [])
    targets = [str(t).strip() for t in targets if str(t).strip()]
    if not prompt or not targets:
        return None
    return Example(prompt=prompt, completion=targets[0], answer=targets[0])


class NaturalInstructionsSource(BigBenchSource):
    """The Natural-Instructions v1 tasks of the BIG-bench archive (same archive and cache as `BigBenchSource`)."""

    name = "natural_instructions"
    group = "natural_instructions"

    def unsupported_tasks(self) -> dict[str, str]:
        return {}

    def load_task(self, task: str, max_examples: int, seed: int) -> RawTask:
        entry = read_prepared_task(self.prepared_dir, self.group, task)
        raw_examples = list(entry["examples"])
        random.Random(seed).shuffle(raw_examples)
        examples = []
        for raw in raw_examples:
            example = format_natural_instructions_example(raw)
            if example is not None:
                examples.append(example)
            if len(examples) >= max_examples:
                break
        return RawTask(
            source=self.name,
            name=task,
            license=self.license,
            definition=entry.get("description"),
            examples=examples,
        )
