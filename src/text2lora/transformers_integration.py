"""`load_description_adapter`: `load_adapter`, but from a task description, on every transformers model.

After `import text2lora`, `PreTrainedModel` and `PeftModel` have this method, so one line in an existing
script adds a generated adapter next to (or instead of) adapters loaded from disk.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from .adapters import GeneratedLora
from .cache import resolve_cache
from .checkpoints import load_hypernetwork
from .injection import (
    check_base_model_matches,
    check_replaceable,
    set_adapter_trainable,
    set_lora_settings,
    write_lora_weights,
)
from .inputs import check_generation_inputs


def load_description_adapter(
    self,
    description: str | Sequence[str] | torch.Tensor,
    t2l: Any = None,
    adapter_name: str | None = None,
    *,
    weights: Sequence[float] | None = None,
    is_trainable: bool = False,
    cache: Any = True,
    trust_remote_code: bool = False,
) -> GeneratedLora:
    """Generate a LoRA adapter from `description` and load it into this model under `adapter_name`.

    Mirrors `load_adapter`: the adapter is added beside existing ones (use `set_adapter` to switch,
    `disable_adapters` / `delete_adapter` as usual). If `adapter_name` already exists (a plain LoRA of the same
    rank on the same modules), its weights and LoRA settings (alpha, rsLoRA, scaling, dropout, its `peft_config`
    entry) are replaced in place (no new layers), as a fresh load would set them. Returns the `GeneratedLora`.

    Args:
        description: the task, in plain language; several with `weights` to mix them; or a task embedding.
        t2l: the hypernetwork (`T2LModel`, Hub name or path); `None` for the default checkpoint.
        adapter_name: defaults to "default" (as `load_adapter` does).
        weights: mixing weights for several descriptions.
        is_trainable: leave the LoRA weights trainable (e.g. to fine-tune from the generated adapter).
        cache: reuse adapters generated before: `True` for the default on-disk `AdapterCache` (off when
            `$TEXT2LORA_DISABLE_ADAPTER_CACHE` is set), an `AdapterCache` or folder, or `False` to always generate.
        trust_remote_code: let the description encoder run code from its model folder when the hypernetwork's
            config says it needs to (`encoder_trust_remote_code`); without it such an encoder is an error.
    """
    from peft import PeftModel

    hypernetwork = load_hypernetwork(t2l, trust_remote_code=trust_remote_code)
    check_base_model_matches(self, hypernetwork.config)
    check_generation_inputs(description, hypernetwork.config)
    store = resolve_cache(cache)
    if store is not None and not (isinstance(description, (list, tuple)) and len(description) > 1 and weights is None):
        adapter = store.get_or_generate(hypernetwork, description, weights=weights)
    else:
        adapter = hypernetwork.generate_lora(description, weights=weights)
    if isinstance(adapter, list):
        if len(adapter) != 1:
            raise ValueError("load_description_adapter loads one adapter: pass one description, or several with weights.")
        adapter = adapter[0]
    adapter_name = adapter_name or "default"
    existing = getattr(self, "peft_config", None) or {}
    # Adding an adapter must not change other parameters' trainability, but PEFT skips restoring it for parameters
    # whose path merely contains the new name (adapter "0" froze layer 0 of another adapter): restore it here.
    trainability = [(parameter, parameter.requires_grad) for parameter in self.parameters()] if existing else []
    if adapter_name in existing:
        # Replaced in place (same layers): the weights, and every LoRA setting a fresh load would give them.
        _check_compatible(existing[adapter_name], adapter, adapter_name)
        check_replaceable(self, adapter_name, hypernetwork.config)
        write_lora_weights(self, adapter_name, adapter, hypernetwork.config)
        set_lora_settings(self, adapter_name, adapter.config, hypernetwork.config)
        new_config = copy.deepcopy(adapter.config)
        new_config.inference_mode = not is_trainable
        existing[adapter_name] = new_config
    elif isinstance(self, PeftModel):
        self.add_adapter(adapter_name, adapter.config)
        write_lora_weights(self, adapter_name, adapter, hypernetwork.config)
        if not is_trainable:
            self.eval()  # as PeftModel.load_adapter does for inference adapters (no LoRA dropout)
    else:
        self.load_adapter(
            adapter_name=adapter_name,
            peft_config=adapter.config,
            adapter_state_dict=adapter.state_dict,
            is_trainable=is_trainable,
        )
    for parameter, requires_grad in trainability:
        parameter.requires_grad_(requires_grad)
    set_adapter_trainable(self, adapter_name, is_trainable)  # by exact adapter name, not a substring of paths
    return adapter


def _check_compatible(existing, adapter: GeneratedLora, adapter_name: str) -> None:
    if getattr(existing, "r", None) != adapter.config.r or set(existing.target_modules or []) != set(
        adapter.config.target_modules
    ):
        raise ValueError(
            f"Adapter {adapter_name!r} already exists with rank {getattr(existing, 'r', None)} on "
            f"{sorted(existing.target_modules or [])}; the generated one has rank {adapter.config.r} on "
            f"{sorted(adapter.config.target_modules)}. Delete it first or use another adapter_name."
        )


def install_model_methods() -> None:
    """Add `load_description_adapter` to `PreTrainedModel` and `PeftModel` (idempotent)."""
    from peft import PeftModel
    from transformers import PreTrainedModel

    for cls in (PreTrainedModel, PeftModel):
        if getattr(cls, "load_description_adapter", None) is not load_description_adapter:
            cls.load_description_adapter = load_description_adapter
