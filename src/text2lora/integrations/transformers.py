"""`load_description_adapter`: `load_adapter`, but from a task description, for any transformers or PEFT model.

    from text2lora import load_description_adapter

    load_description_adapter(model, "Answer trivia questions.", t2l=t2l, adapter_name="trivia")
    model.set_adapter("trivia")

A thin shell over the pipeline: `pipeline.get_or_generate` (adapter cache, then the hypernetwork) and
`loading.load_generated_adapter`. `add_model_methods()` is the explicit opt-in for the method form
(`model.load_description_adapter(...)`) on `PreTrainedModel` and `PeftModel`; importing text2lora adds nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from ..adapters import GeneratedLora
from ..cache import AdapterCache
from ..checkpoints import HypernetworkLike
from ..injection import check_base_model_matches
from ..inputs import check_generation_inputs
from ..loading import load_generated_adapter
from ..pipeline import AdapterRequest, LazyHypernetwork, Mix, get_or_generate


def load_description_adapter(
    model: nn.Module,
    description: str | Sequence[str] | torch.Tensor,
    t2l: HypernetworkLike = None,
    adapter_name: str | None = None,
    *,
    weights: Sequence[float] | None = None,
    is_trainable: bool = False,
    cache: AdapterCache | bool | str | os.PathLike | None = True,
    trust_remote_code: bool = False,
) -> GeneratedLora:
    """Generate a LoRA adapter from `description` (or read it from the adapter cache) and load it into `model`
    under `adapter_name` with `load_generated_adapter` (see there: added beside existing adapters, or replacing
    one of that name in place). Returns the `GeneratedLora`.

    Args:
        model: a transformers `PreTrainedModel` or a `PeftModel`.
        description: the task, in plain language; several with `weights` to mix them; or a task embedding `[E]`.
        t2l: the hypernetwork (`T2LModel`, Hub name or path); `None` for the shipped default.
        adapter_name: defaults to "default" (as `load_adapter` does).
        weights: mixing weights for several descriptions.
        is_trainable: leave the LoRA weights trainable (e.g. to fine-tune from the generated adapter).
        cache: reuse adapters generated before: `True` for the default on-disk `AdapterCache` (off when
            `$TEXT2LORA_DISABLE_ADAPTER_CACHE` is set), an `AdapterCache` or folder, or `False` to always generate.
        trust_remote_code: let the description encoder run code from its model folder when the hypernetwork's
            config says it needs to (`encoder_trust_remote_code`); without it such an encoder is an error.
    """
    request = as_request(description, weights)
    source = LazyHypernetwork(t2l, trust_remote_code=trust_remote_code)
    check_base_model_matches(model, source.config())  # before any generation or change to the model
    (adapter,) = get_or_generate([request], source, cache=cache)
    return load_generated_adapter(model, adapter, adapter_name or "default", is_trainable=is_trainable)


def as_request(description: str | Sequence[str] | torch.Tensor, weights: Sequence[float] | None) -> AdapterRequest:
    """One adapter request from the arguments of a one-adapter call: a description, several with `weights` (a
    `Mix`), or a task embedding."""
    check_generation_inputs(description)
    if weights is not None:
        if isinstance(description, (str, torch.Tensor)):
            raise ValueError("weights mix several descriptions: pass a list of descriptions, one weight each.")
        return Mix(list(description), weights)
    if isinstance(description, (str, torch.Tensor)):
        return description
    texts = list(description)
    if len(texts) != 1:
        raise ValueError("One adapter is loaded at a time: pass one description, or several with weights to mix them.")
    return texts[0]


def add_model_methods() -> None:
    """Opt-in: make `load_description_adapter` a method of `PreTrainedModel` and `PeftModel` (idempotent), for
    scripts written as `model.load_description_adapter(...)`. text2lora never calls this itself."""
    from peft import PeftModel
    from transformers import PreTrainedModel

    for cls in (PreTrainedModel, PeftModel):
        if getattr(cls, "load_description_adapter", None) is not load_description_adapter:
            cls.load_description_adapter = load_description_adapter


__all__ = ["add_model_methods", "as_request", "load_description_adapter"]
