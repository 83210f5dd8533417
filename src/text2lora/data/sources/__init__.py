"""Task sources: each turns one real offline source into `RawTask`s (prompt/completion examples + provenance).

- `natural_instructions`: the 61 Natural-Instructions v1 tasks shipped in the BIG-bench archive.
- `bigbench`: the JSON tasks of the BIG-bench archive (programmatic `task.py` tasks are not supported).
- `reasoning_gym`: procedural generators of the `reasoning-gym` package.
"""

from __future__ import annotations

from .base import TaskSource, stable_seed


def get_source(name: str, **kwargs) -> TaskSource:
    """Build the source called `name` (`natural_instructions`, `bigbench`, `reasoning_gym`)."""
    if name == "bigbench":
        from .bigbench import BigBenchSource

        return BigBenchSource(**kwargs)
    if name == "natural_instructions":
        from .natural_instructions import NaturalInstructionsSource

        return NaturalInstructionsSource(**kwargs)
    if name == "reasoning_gym":
        from .reasoning_gym import ReasoningGymSource

        return ReasoningGymSource(**kwargs)
    raise ValueError(
        f"Unknown source {name!r}; choose from 'natural_instructions', 'bigbench', 'reasoning_gym'."
    )


__all__ = ["TaskSource", "get_source", "stable_seed"]
