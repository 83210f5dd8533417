"""Task embeddings of every training description, computed once before training (and cached on disk).

Training samples a description per task per step; looking its embedding up in a table keeps the sentence encoder
out of the training step, so a step costs only the hypernetwork and the base LLM.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..encoder import DescriptionEncoder

logger = logging.getLogger(__name__)


def embed_descriptions(
    encoder: DescriptionEncoder,
    texts: Sequence[str],
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    show_progress: bool = False,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """`[len(texts), E]` float32 embeddings; with `cache_dir`, reused across runs with the same encoder and texts.

    `device` is where the encoder runs if they have to be computed (see `DescriptionEncoder.encode`).
    """
    texts = list(texts)
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256((encoder.identity + "\x00" + "\x00".join(texts)).encode()).hexdigest()[:24]
        cache_file = Path(cache_dir) / f"descriptions-{key}.safetensors"
        if cache_file.is_file():
            from safetensors.torch import load_file

            try:
                cached = load_file(str(cache_file))["embeddings"]
                if cached.shape[0] == len(texts):
                    return cached
            except Exception:  # truncated or foreign file: compute again
                logger.warning("Ignoring unreadable description-embedding cache %s", cache_file)
    embeddings = encoder.encode(texts, batch_size=batch_size, show_progress_bar=show_progress, device=device)
    embeddings = embeddings.reshape(len(texts), -1).to(torch.float32).contiguous()
    if cache_file is not None:
        from safetensors.torch import save_file

        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.name}.tmp-{os.getpid()}")
        save_file({"embeddings": embeddings}, str(tmp))
        os.replace(tmp, cache_file)  # atomic: a reader never sees a half-written cache
    return embeddings


@dataclass
class DescriptionTable:
    """All descriptions of all tasks, embedded: task `t` owns rows `offsets[t]:offsets[t + 1]` of `embeddings`."""

    embeddings: torch.Tensor
    offsets: np.ndarray

    @classmethod
    def build(
        cls,
        task_descriptions: Sequence[Sequence[str]],
        encoder: DescriptionEncoder,
        *,
        cache_dir: str | os.PathLike | None = None,
        show_progress: bool = True,
        device: str | torch.device | None = None,
    ) -> "DescriptionTable":
        flat = [text for texts in task_descriptions for text in texts]
        counts = [len(texts) for texts in task_descriptions]
        embeddings = embed_descriptions(
            encoder, flat, cache_dir=cache_dir, show_progress=show_progress and len(flat) > 256, device=device
        )
        return cls(embeddings=embeddings, offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def num_descriptions(self, task: int) -> int:
        return int(self.offsets[task + 1] - self.offsets[task])

    def description_id(self, task: int, index: int) -> int:
        return int(self.offsets[task] + index)


def check_embedding_size(descriptions: DescriptionTable, hypernetwork, encoder: DescriptionEncoder) -> None:
    """Raise before training if the encoder's embeddings do not fit the hypernetwork's input."""
    size = descriptions.embeddings.shape[-1]
    if size != hypernetwork.config.task_embedding_size:
        raise ValueError(
            f"The description encoder {encoder.name_or_path!r} gives {size}-d embeddings but the hypernetwork expects "
            f"{hypernetwork.config.task_embedding_size}-d ones; use the encoder named in its config "
            f"({hypernetwork.config.encoder_name_or_path!r}) or build the hypernetwork for this encoder."
        )


__all__ = ["DescriptionTable", "check_embedding_size", "embed_descriptions"]
