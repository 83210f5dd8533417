"""`load_generated_adapter`: the one way a `GeneratedLora` gets into a live model.

One route for every model: a transformers `PreTrainedModel` (with or without adapters) or a `PeftModel`. The
adapter slot is created by the model's own `add_adapter` if the name is new (PEFT injects the LoRA layers), then
the generated A and B, and the LoRA settings (alpha, rsLoRA, scaling, dropout), are written into that slot in
place. Loading onto an existing name therefore replaces that adapter the same way a new one is filled.
"""

from __future__ import annotations

import copy

from torch import nn

from .adapters import GeneratedLora
from .injection import (
    adapter_module_paths,
    check_fits,
    check_replaceable,
    set_adapter_trainable,
    set_lora_settings,
    write_lora_weights,
)


def load_generated_adapter(
    model: nn.Module, adapter: GeneratedLora, adapter_name: str = "default", *, is_trainable: bool = False
) -> GeneratedLora:
    """Load `adapter` into `model` (a transformers model or a `PeftModel`) under `adapter_name`; returns it.

    Like `load_adapter`, a new adapter is added beside the existing ones without changing which is active (the
    first adapter of a model without any becomes active); `set_adapter` switches, `disable_adapters` /
    `delete_adapter` work as usual. An existing `adapter_name` (a plain LoRA of the same rank on the same modules)
    is replaced in place: its weights and every LoRA setting a fresh load would give it, and its `peft_config`
    entry. Anything that does not fit is refused before the model is changed. `is_trainable=False` (the default)
    leaves the adapter frozen and the model in eval mode, as `load_adapter` does.
    """
    from peft import PeftModel

    check_fits(model, adapter)
    paths = adapter_module_paths(adapter)
    existing = getattr(model, "peft_config", None) or {}
    if not isinstance(existing, dict):
        existing = {}
    # Adding an adapter must not change other parameters' trainability, but PEFT skips restoring it for parameters
    # whose path merely contains the new name (adapter "0" froze layer 0 of another adapter): restore it here.
    trainability = [(parameter, parameter.requires_grad) for parameter in model.parameters()] if existing else []
    if adapter_name in existing:
        _check_compatible(existing[adapter_name], adapter, adapter_name)
        check_replaceable(model, adapter_name, paths)
    else:
        active = _active_adapters(model) if existing else None
        if isinstance(model, PeftModel):
            model.add_adapter(adapter_name, copy.deepcopy(adapter.config))
        else:
            model.add_adapter(copy.deepcopy(adapter.config), adapter_name=adapter_name)  # activates it
            if active:
                model.set_adapter(active if len(active) > 1 else active[0])
    write_lora_weights(model, adapter_name, adapter)
    set_lora_settings(model, adapter_name, adapter.config, paths)
    config = copy.deepcopy(adapter.config)
    config.inference_mode = not is_trainable
    model.peft_config[adapter_name] = config
    for parameter, requires_grad in trainability:
        parameter.requires_grad_(requires_grad)
    set_adapter_trainable(model, adapter_name, is_trainable)  # by exact adapter name, not a substring of paths
    if not is_trainable:
        model.eval()  # as load_adapter does for inference adapters (no LoRA dropout)
    return adapter


def _active_adapters(model: nn.Module) -> list[str]:
    active = model.active_adapters
    return list(active() if callable(active) else active)


def _check_compatible(existing, adapter: GeneratedLora, adapter_name: str) -> None:
    if getattr(existing, "r", None) != adapter.config.r or set(existing.target_modules or []) != set(
        adapter.config.target_modules
    ):
        raise ValueError(
            f"Adapter {adapter_name!r} already exists with rank {getattr(existing, 'r', None)} on "
            f"{sorted(existing.target_modules or [])}; the generated one has rank {adapter.config.r} on "
            f"{sorted(adapter.config.target_modules)}. Delete it first or use another adapter_name."
        )


__all__ = ["load_generated_adapter"]
