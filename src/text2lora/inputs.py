"""Checks of what users hand to text2lora, each failing with one line that names the input and the fix.

`check_generation_inputs` guards `T2LModel.generate_lora` (and the entry points that pass descriptions on to it);
the rest are `argparse` types for the CLI (a saved hypernetwork folder is checked by `T2LModel.from_pretrained`).
"""

from __future__ import annotations

import argparse
import math
import operator
import sys
from collections.abc import Iterable, Iterator
from typing import Any

# Columns `text2lora.describe` reads examples from (the first present of each); here so the CLI can name them
# without importing torch.
INPUT_COLUMNS = ("input", "prompt", "question", "inputs", "source", "text")
OUTPUT_COLUMNS = ("output", "completion", "answer", "target", "targets", "label")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def _check_text(text: Any, where: str) -> None:
    if isinstance(text, (bytes, bytearray)):
        raise TypeError(
            f"{where} is {type(text).__name__} ({_short(bytes(text))}), not text; decode it first, "
            "e.g. data.decode('utf-8')."
        )
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a string, got {type(text).__name__} {_short(text)}; pass the task as text.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        raise ValueError(
            f"{where} ({_short(text)}) holds {bad!r} at position {err.start}, a lone surrogate: text that was not "
            "valid UTF-8 (e.g. a shell argument or file in another encoding); pass UTF-8 text (check the "
            "terminal's locale or the file's encoding)."
        ) from None


def check_generation_inputs(descriptions: Any, config: Any = None, *, batch_size: Any = 64) -> None:
    """Raise a `TypeError` / `ValueError` naming the bad input if `generate_lora` cannot use it.

    `descriptions`: a string, a collection of strings, or a task-embedding tensor `[E]` / `[N, E]` (E is
    `config.task_embedding_size` when `config` is given) of finite floats. `batch_size`: a positive integer.
    The items of a one-shot iterator (a generator) are not read here, as `generate_lora` reads them once.
    """
    try:
        whole = not isinstance(batch_size, bool) and operator.index(batch_size) >= 1
    except TypeError:
        whole = False
    if not whole:
        raise ValueError(f"batch_size must be a whole number of 1 or more, got {batch_size!r}.")
    torch = sys.modules.get("torch")  # not imported here: the CLI's argument types must not cost a torch import
    if torch is not None and isinstance(descriptions, torch.Tensor):
        width = getattr(config, "task_embedding_size", None)
        if descriptions.dim() not in (1, 2) or (width is not None and descriptions.shape[-1] != width):
            expected = f"this hypernetwork expects {width}-d ones, [{width}] or [N, {width}]" if width else "[E] or [N, E]"
            encoder = getattr(config, "encoder_name_or_path", None)
            raise ValueError(
                f"A task-embedding tensor has shape {list(descriptions.shape)} but {expected}; reshape it, embed "
                f"with the hypernetwork's encoder ({encoder!r}), or pass the description text instead."
            )
        if descriptions.dim() == 2 and descriptions.shape[0] == 0:
            raise ValueError(f"The task-embedding tensor has no rows (shape {list(descriptions.shape)}); pass at least one.")
        if not descriptions.is_floating_point():
            raise TypeError(f"A task-embedding tensor must hold floats, got {descriptions.dtype}; cast it with .float().")
        finite = torch.isfinite(descriptions.detach())
        if not finite.all():
            rows = (~finite).reshape(-1, descriptions.shape[-1]).any(1).nonzero().flatten().tolist()
            which = f"rows {rows}" if len(rows) <= 10 else f"{len(rows)} rows, the first {rows[:10]}"
            raise ValueError(
                f"The task embedding has NaN or inf values ({which}); the input is broken, not the "
                "hypernetwork: recompute it with the hypernetwork's description encoder."
            )
        return
    if isinstance(descriptions, (str, bytes, bytearray)):
        _check_text(descriptions, "The description")
        return
    if not isinstance(descriptions, Iterable):
        raise TypeError(
            f"descriptions must be a string, a list of strings or a task-embedding tensor, got "
            f"{type(descriptions).__name__} {_short(descriptions)}."
        )
    if isinstance(descriptions, Iterator):
        return
    for index, text in enumerate(descriptions):
        _check_text(text, f"Description {index}")


# ---------------------------------------------------------------------- argparse types (one-line CLI errors)


def positive_int(text: str) -> int:
    """An `argparse` type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """An `argparse` type: a finite number (no nan / inf)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An `argparse` type: a finite number above 0."""
    try:
        value = finite_float(text)
    except argparse.ArgumentTypeError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


__all__ = ["check_generation_inputs", "finite_float", "positive_float", "positive_int"]
