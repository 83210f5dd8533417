"""text2lora: Text-to-LoRA hypernetworks that turn a task description into a PEFT LoRA adapter.

The walk from a description to a loaded model, one module per step (README "How it works"):
`encoder` (description -> task embedding) -> `modeling_t2l` (`T2LModel.generate_lora` / `mix_lora`: the network,
LoRA factors out) -> `adapters` (`GeneratedLora`: PEFT config + state dict) -> `pipeline` (`get_or_generate`:
the adapter cache, then the hypernetwork) -> `loading` (`load_generated_adapter`: into a live model).

`import text2lora` is light: it imports no torch, transformers or PEFT and patches nothing. Every export below is
imported on first use (PEP 562). `T2LConfig` / `T2LModel` are registered with transformers' `AutoConfig` /
`AutoModel` when first taken from here (or by `register_auto_classes()`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._compat import check_transformers_peft

__version__ = "0.1.0.dev0"

check_transformers_peft()  # reads two installed files, imports nothing: one clear line for a pair that breaks

# Public name -> the module (relative to this package) that defines it.
_EXPORTS = {
    "T2LConfig": "configuration_t2l",
    "T2LModel": "modeling_t2l",
    "T2LOutput": "modeling_t2l",
    "DescriptionEncoder": "encoder",
    "GeneratedLora": "adapters",
    "read_adapter_metadata": "adapters",
    "read_generated_lora": "adapters",
    "Mix": "pipeline",
    "adapter_key": "pipeline",
    "get_or_generate": "pipeline",
    "load_generated_adapter": "loading",
    "load_hypernetwork": "checkpoints",
    "AdapterCache": "cache",
    "DEFAULT_BASE_MODEL": "base_models",
    "load_base_model": "base_models",
    "resolve_base_model": "base_models",
    "adapter_gram": "adapter_similarity",
    "TextLoraConfig": "integrations.peft",
    "initialize_text_lora_weights": "integrations.peft",
    "load_description_adapter": "integrations.transformers",
    "VLLMAdapterClient": "integrations.vllm",
    "lora_request": "integrations.vllm",
    "convert_reference": "convert_reference_checkpoint",
    "load_reference_checkpoint": "convert_reference_checkpoint",
    "push_adapter_to_hub": "hub",
    "push_hypernetwork_to_hub": "hub",
    "LoraLibrary": "training",
    "PerSampleLora": "training",
    "T2LReconstructionConfig": "training",
    "T2LReconstructionTrainer": "training",
    "T2LSFTConfig": "training",
    "T2LSFTTrainer": "training",
    "EvalConfig": "evaluation",
    "EvalRunner": "evaluation",
}
_AUTO_CLASSES = ("T2LConfig", "T2LModel", "T2LOutput")
_registered = False


def register_auto_classes() -> None:
    """Register `T2LConfig` / `T2LModel` with `AutoConfig` / `AutoModel` (transformers' public API for custom
    models), so `AutoModel.from_pretrained(folder)` builds a `T2LModel` without remote code. Idempotent."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModel

    from .configuration_t2l import T2LConfig
    from .modeling_t2l import T2LModel

    AutoConfig.register(T2LConfig.model_type, T2LConfig, exist_ok=True)
    AutoModel.register(T2LConfig, T2LModel, exist_ok=True)
    _registered = True


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'text2lora' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    if name in _AUTO_CLASSES:
        register_auto_classes()
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .adapter_similarity import adapter_gram
    from .adapters import GeneratedLora, read_adapter_metadata, read_generated_lora
    from .base_models import DEFAULT_BASE_MODEL, load_base_model, resolve_base_model
    from .cache import AdapterCache
    from .checkpoints import load_hypernetwork
    from .configuration_t2l import T2LConfig
    from .convert_reference_checkpoint import convert_reference, load_reference_checkpoint
    from .encoder import DescriptionEncoder
    from .evaluation import EvalConfig, EvalRunner
    from .hub import push_adapter_to_hub, push_hypernetwork_to_hub
    from .integrations.peft import TextLoraConfig, initialize_text_lora_weights
    from .integrations.transformers import load_description_adapter
    from .integrations.vllm import VLLMAdapterClient, lora_request
    from .loading import load_generated_adapter
    from .modeling_t2l import T2LModel, T2LOutput
    from .pipeline import Mix, adapter_key, get_or_generate
    from .training import (
        LoraLibrary,
        PerSampleLora,
        T2LReconstructionConfig,
        T2LReconstructionTrainer,
        T2LSFTConfig,
        T2LSFTTrainer,
    )

__all__ = [*_EXPORTS, "register_auto_classes"]
