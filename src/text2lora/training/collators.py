"""Collators: a list of examples -> the tensors one training step needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100


@dataclass
class T2LSFTCollator:
    """Pads token ids (right), masks everything but the completion in `labels`, and gathers task embeddings.

    Each distinct description in the batch is embedded once: `task_embeddings` is `[U, E]` for the `U` distinct
    descriptions and `embedding_index[b]` says which of them sample `b` uses, so the hypernetwork makes one adapter
    per task (not per example) and the per-sample factors are gathered from those.

    Args:
        pad_token_id: id written into padded positions (they are masked out of attention and loss).
        description_embeddings: `[N, E]` embeddings of all descriptions, indexed by description id.
        pad_to_multiple_of: round the padded length up to a multiple of this (e.g. 8 for tensor cores).
    """

    pad_token_id: int
    description_embeddings: torch.Tensor
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        length = max(lengths)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(features)
        input_ids = torch.full((batch, length), int(self.pad_token_id), dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        for i, feature in enumerate(features):
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = 1
            start = int(feature["completion_start"])
            labels[i, start : len(ids)] = ids[start:]
        description_ids = torch.as_tensor([int(f["description_id"]) for f in features], dtype=torch.long)
        unique_ids, embedding_index = torch.unique(description_ids, sorted=True, return_inverse=True)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "task_embeddings": self.description_embeddings[unique_ids],
            "embedding_index": embedding_index,
        }


__all__ = ["IGNORE_INDEX", "T2LSFTCollator"]
