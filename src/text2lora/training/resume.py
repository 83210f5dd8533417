"""Finding a complete checkpoint to resume from, and loading hypernetwork weights from one."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Written by Trainer._save_checkpoint; trainer_state.json comes last, so its presence marks a finished save.
_REQUIRED = ("trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt")


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    if not all((folder / name).is_file() and (folder / name).stat().st_size > 0 for name in _REQUIRED):
        return False
    return any(folder.glob("rng_state*.pth"))


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The highest-numbered `checkpoint-N` in `output_dir` whose save finished (a run killed while saving leaves
    an incomplete folder, which is skipped with a warning); None if there is none."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    candidates = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    )
    for _, path in reversed(candidates):
        if is_complete_checkpoint(path):
            return str(path)
        logger.warning("Skipping incomplete checkpoint %s (a save was interrupted).", path)
    return None


def load_hypernetwork_weights(hypernetwork: torch.nn.Module, checkpoint_dir: str | os.PathLike) -> None:
    """Load `model.safetensors` of a checkpoint into `hypernetwork`, strictly (every weight and buffer must match)."""
    from safetensors.torch import load_file

    path = Path(checkpoint_dir) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"No hypernetwork weights (model.safetensors) in checkpoint {checkpoint_dir}.")
    state = load_file(str(path))
    result = hypernetwork.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"Checkpoint {checkpoint_dir} does not match this hypernetwork (missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}); resume with the same hypernetwork config."
        )


__all__ = ["is_complete_checkpoint", "last_complete_checkpoint", "load_hypernetwork_weights"]
