"""Checks of what users hand to text2lora, each failing with one line that names the input and the fix.

`check_generation_inputs` guards `T2LModel.generate_lora` (and the entry points that pass descriptions on to it);
`check_hypernetwork_folder` guards loading a saved hypernetwork; the rest are `argparse` types for the CLI.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch


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
    if isinstance(descriptions, torch.Tensor):
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


def check_hypernetwork_folder(folder: str | os.PathLike) -> None:
    """Raise if the local `folder` is not a loadable saved hypernetwork: no `config.json` (FileNotFoundError),
    or weights whose shapes differ from what its `config.json` describes (ValueError, before transformers
    re-initialises them and prints a report)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no config.json, so it is not a saved hypernetwork; pass the folder that "
            "T2LModel.save_pretrained or `t2l init` wrote."
        )
    from .configuration_t2l import T2LConfig
    from .modeling_t2l import T2LModel

    config_file = folder / "config.json"
    try:
        data = json.loads(config_file.read_text())
        model_type = data.get("model_type") if isinstance(data, dict) else None
        if model_type != T2LConfig.model_type:
            raise ValueError(f"its model_type is {model_type!r}, not {T2LConfig.model_type!r}")
        with torch.device("meta"):
            expected = {k: list(v.shape) for k, v in T2LModel(T2LConfig.from_pretrained(folder)).state_dict().items()}
    except ValueError as err:
        raise ValueError(
            f"{str(config_file)!r} is not a usable hypernetwork config ({err}); pass a folder saved by "
            "T2LModel.save_pretrained or `t2l init`."
        ) from None
    shapes = _saved_shapes(folder)  # empty without safetensors weights: transformers then says what is missing
    wrong = [f"{k} {shapes[k]} (config: {expected[k]})" for k in expected if k in shapes and shapes[k] != expected[k]]
    if wrong:
        raise ValueError(
            f"The weights in {str(folder)!r} do not fit its config.json: {len(wrong)} tensor(s) have other shapes: "
            f"{'; '.join(wrong)}. The config was edited or belongs to another checkpoint; restore the config.json "
            "saved with these weights."
        )


def _saved_shapes(folder: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from the safetensors headers (no tensor data is read)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):  # a broken index: loading it reports that
            return {}
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return {}
    shapes: dict[str, list[int]] = {}
    try:
        for name in files:
            with safe_open(str(folder / name), framework="pt") as handle:
                for key in handle.keys():
                    shapes[key] = list(handle.get_slice(key).get_shape())
    except Exception:  # a corrupt or truncated file: loading it reports that (T2LModel.from_pretrained)
        return {}
    return shapes


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


__all__ = ["check_generation_inputs", "check_hypernetwork_folder", "finite_float", "positive_float", "positive_int"]
