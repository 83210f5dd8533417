"""Completion-only causal-LM loss, computing vocabulary logits only where there is a completion token.

The output projection of a small LLM is a large share of its cost (SmolLM2-135M: 576 x 49,152, a fifth of the
FLOPs and, at 8 x 512 tokens, 800 MB of fp32 logits). Prompt positions carry no loss, so the decoder's hidden
states are gathered at completion positions first and only those go through the LM head.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .collators import IGNORE_INDEX

logger = logging.getLogger(__name__)


def _softcap(model: nn.Module) -> float | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text_config, "final_logit_softcapping", None)


def completion_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    completion_only: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits `[N, V]` at the N positions that predict a completion token, and those N target ids."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    if completion_only:
        decoder = model.get_decoder()
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        logits = model.get_output_embeddings()(hidden[:, :-1][mask])
        softcap = _softcap(model)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1][mask]
    return logits, targets[mask]


def completion_loss(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    completion_only: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of the completion tokens (`labels != -100`), mean over tokens (or "sum")."""
    logits, targets = completion_logits(model, input_ids, attention_mask, labels, completion_only=completion_only)
    if targets.numel() == 0:
        raise ValueError("The batch has no completion token to learn from; check the labels (all are -100).")
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing, reduction=reduction)


@torch.no_grad()
def supports_completion_only_logits(model: nn.Module) -> bool:
    """Whether `get_decoder()` + `get_output_embeddings()` reproduce the model's own logits (checked on a few
    tokens); models with extra output processing fall back to full logits."""
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return False
    if decoder is None or head is None or decoder is model:
        return False
    param = next(model.parameters())
    vocab = int(getattr(head, "out_features", 0) or getattr(model.config, "vocab_size", 0))
    if vocab <= 1:
        return False
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab, (1, 6), generator=generator).to(param.device)
    labels = input_ids.clone()
    was_training = model.training
    model.eval()
    try:
        fast, _ = completion_logits(model, input_ids, None, labels, completion_only=True)
        full, _ = completion_logits(model, input_ids, None, labels, completion_only=False)
    except Exception as err:  # an architecture whose decoder cannot be called this way
        logger.info("Completion-only logits unavailable for %s (%s); using full logits.", type(model).__name__, err)
        return False
    finally:
        model.train(was_training)
    same = torch.allclose(fast.float(), full.float(), atol=1e-3, rtol=1e-3)
    if not same:
        logger.warning("%s post-processes its logits; computing full logits for the loss.", type(model).__name__)
    return same


__all__ = ["completion_logits", "completion_loss", "supports_completion_only_logits"]
