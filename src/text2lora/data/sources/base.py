"""`TaskSource`, the interface every task source implements, and `stable_seed` (seeds identical across machines)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import ClassVar

from ..schema import RawTask


def stable_seed(*parts: object) -> int:
    """A seed derived from its parts that is identical across runs and machines (unlike `hash()`)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class TaskSource(ABC):
    """A source of tasks. Subclasses name themselves and their license, and read tasks by name."""

    name: ClassVar[str]
    license: ClassVar[str]
    # Candidates drawn per task as a multiple of the cap; None uses the build's `candidate_factor`.
    oversample: ClassVar[float | None] = None

    @abstractmethod
    def available_tasks(self) -> list[str]:
        """Task names (as the source names them) this source can load."""

    def unsupported_tasks(self) -> dict[str, str]:
        """Tasks the source has but cannot load, with the reason (reported by the builder)."""
        return {}

    @abstractmethod
    def load_task(self, task: str, max_examples: int, seed: int) -> RawTask:
        """Up to `max_examples` examples of `task`, in a seeded random order (the builder filters and caps)."""
