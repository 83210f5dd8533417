"""text2lora: Text-to-LoRA hypernetworks that turn a task description into a PEFT LoRA adapter.

Importing the package registers `T2LConfig`/`T2LModel` with transformers' Auto classes, teaches PEFT's LoRA
tuner about `TextLoraConfig`, and adds `load_description_adapter` to transformers and PEFT models.
"""

__version__ = "0.1.0.dev0"

from ._compat import check_transformers_peft

check_transformers_peft()  # before anything imports peft: one clear line for a transformers/peft pair that breaks

from transformers import AutoConfig, AutoModel

from .adapter_similarity import adapter_gram
from .adapters import GeneratedLora, read_adapter_metadata
from .base_models import DEFAULT_BASE_MODEL, load_base_model, resolve_base_model
from .cache import AdapterCache
from .configuration_t2l import T2LConfig
from .encoder import DescriptionEncoder
from .hub import push_adapter_to_hub, push_hypernetwork_to_hub
from .modeling_t2l import T2LModel, T2LOutput
from .peft_integration import TextLoraConfig, install_peft_hook
from .reference import convert_reference, load_reference_checkpoint
from .serving import VLLMAdapterClient, lora_request
from .transformers_integration import install_model_methods, load_description_adapter

AutoConfig.register(T2LConfig.model_type, T2LConfig, exist_ok=True)
AutoModel.register(T2LConfig, T2LModel, exist_ok=True)
T2LConfig.register_for_auto_class()
T2LModel.register_for_auto_class("AutoModel")
install_peft_hook()
install_model_methods()

# Imported on first use: training pulls in transformers' Trainer and TRL, evaluation is rarely needed.
_LAZY_EXPORTS = {
    "LoraLibrary": "training",
    "PerSampleLora": "training",
    "T2LReconstructionConfig": "training",
    "T2LReconstructionTrainer": "training",
    "T2LSFTConfig": "training",
    "T2LSFTTrainer": "training",
    "EvalConfig": "evaluation",
    "EvalRunner": "evaluation",
}


def __getattr__(name: str):
    if name in _LAZY_EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'text2lora' has no attribute {name!r}")


__all__ = [
    *_LAZY_EXPORTS,
    "AdapterCache",
    "DEFAULT_BASE_MODEL",
    "DescriptionEncoder",
    "GeneratedLora",
    "T2LConfig",
    "T2LModel",
    "T2LOutput",
    "TextLoraConfig",
    "VLLMAdapterClient",
    "adapter_gram",
    "convert_reference",
    "load_base_model",
    "load_description_adapter",
    "load_reference_checkpoint",
    "push_adapter_to_hub",
    "push_hypernetwork_to_hub",
    "lora_request",
    "read_adapter_metadata",
    "resolve_base_model",
]
