"""Helpers shared by several test files (tests/ is on sys.path under pytest: `from support import ...`)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from text2lora.fingerprints import identify
from text2lora.pipeline import adapter_key, get_or_generate

# A fixed input for the tiny base model, and two descriptions of different tasks.
IDS = torch.tensor([[5, 17, 42, 99, 7, 3]])
TASK = "Translate English sentences to French."
OTHER = "Count the number of legs of the animals listed."
DESCRIPTION = "Solve grade-school math word problems step by step"


def tiny_base(tiny_base_dir):
    """The tiny causal LM of the `tiny_base_dir` fixture, in eval mode."""
    return AutoModelForCausalLM.from_pretrained(tiny_base_dir).eval()


def logits(model):
    with torch.no_grad():
        return model(IDS).logits


def cache_key(t2l, request, dtype=None):
    """The cache key of one adapter request for a model or saved folder."""
    return adapter_key(identify(t2l), request, dtype=dtype)


def cache_entry(cache, t2l, request, **kwargs):
    """The cache entry folder of `request`, generated first on a miss."""
    get_or_generate([request], t2l, cache=cache, **kwargs)
    return cache.lookup(cache_key(t2l, request, kwargs.get("dtype")))
