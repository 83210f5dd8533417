"""`TextLoraConfig`: a PEFT LoRA config whose weights come from a task description, filled in by an explicit call.

    model = get_peft_model(base, TextLoraConfig(description="Solve arithmetic word problems.", t2l=t2l))
    initialize_text_lora_weights(model)     # generates the adapter and writes it into the LoRA layers

This is PEFT's own pattern for data-driven LoRA initialisation (`initialize_lora_eva_weights` after
`get_peft_model` with an EVA config): PEFT injects ordinary LoRA layers (standard init, so B = 0 and the model is
unchanged until initialised), and the initialisation call loads the hypernetwork and writes the generated A and B
through `loading.load_generated_adapter`. Nothing in PEFT is patched. The config is a `LoraConfig` (PEFT type
LORA), so everything PEFT does with LoRA works, and `save_pretrained` writes a plain LoRA adapter that loads
without text2lora.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from peft import LoraConfig
from torch import nn

from ..checkpoints import HypernetworkLike, load_hypernetwork
from ..encoder import format_description
from ..injection import check_base_model_matches
from ..inputs import check_generation_inputs
from ..loading import load_generated_adapter

# LoRA settings that a hypernetwork fixes: taken from its config.
_FROM_HYPERNETWORK = ("r", "lora_alpha", "use_rslora", "target_modules")
_TEXT_FIELDS = ("description", "t2l", "description_weights", "trust_remote_code")


@dataclass
class TextLoraConfig(LoraConfig):
    """
    A [`~peft.LoraConfig`] that carries a task description and names a Text-to-LoRA hypernetwork.

    Pure data: nothing is loaded when it is made. After `get_peft_model(base, config)` (or `add_adapter`), call
    `initialize_text_lora_weights(model)` to generate the adapter from `description` and write it into the LoRA
    layers. The rank, alpha, rsLoRA setting and target modules are those of the hypernetwork: taken from it here
    when `t2l` is a loaded `T2LModel`, otherwise checked (rank, target modules) or set (alpha, rsLoRA) when the
    weights are initialised.

    Args:
        description (`str` or `list[str]`):
            Plain-language description of the task; a list is mixed with `description_weights`.
        t2l (`T2LModel`, `str`, *optional*):
            The hypernetwork: an instance, a Hub name or a local folder. `None` uses the shipped default.
        description_weights (`list[float]`, *optional*):
            Mixing weights when `description` is a list (interpolation in task-embedding space).
        trust_remote_code (`bool`, defaults to `False`):
            Let the description encoder run code from its model folder when the hypernetwork's config says it
            needs to (`encoder_trust_remote_code`); without it such an encoder is an error. Not saved.
    """

    description: str | list[str] | None = field(
        default=None, metadata={"help": "Plain-language description of the task the adapter is for."}
    )
    t2l: HypernetworkLike = field(
        default=None,
        repr=False,
        compare=False,
        metadata={"help": "The T2L hypernetwork (T2LModel instance, Hub name or path); None for the default."},
    )
    description_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights for mixing several descriptions into one adapter."}
    )
    trust_remote_code: bool = field(
        default=False,
        repr=False,
        compare=False,
        metadata={"help": "Allow the description encoder to run code from its folder if the hypernetwork needs it."},
    )

    def __post_init__(self) -> None:
        if self.description is None:
            raise ValueError("TextLoraConfig needs `description=`: the task the adapter should be good at.")
        check_generation_inputs(self.description)
        texts = [self.description] if isinstance(self.description, str) else list(self.description)
        for text in texts:
            format_description(text)
        if isinstance(self.description, list) and self.description_weights is None and len(texts) > 1:
            raise ValueError("Several descriptions need `description_weights` (one weight each) to be mixed.")
        hypernetwork_config = getattr(self.t2l, "config", None)  # a loaded T2LModel: read its settings, load nothing
        if hypernetwork_config is not None:
            self.r = hypernetwork_config.lora_r
            self.lora_alpha = hypernetwork_config.lora_alpha
            self.use_rslora = hypernetwork_config.use_rslora
            self.target_modules = list(hypernetwork_config.target_modules)
            if self.base_model_name_or_path is None:
                self.base_model_name_or_path = hypernetwork_config.base_model_name_or_path
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        """The plain LoRA config (what `save_pretrained` writes): loadable without text2lora installed."""
        shallow = copy.copy(self)
        shallow.t2l = None
        data = LoraConfig.to_dict(shallow)
        for key in _TEXT_FIELDS:
            data.pop(key, None)
        return data

    def to_lora_config(self) -> LoraConfig:
        return LoraConfig(**{k: v for k, v in self.to_dict().items() if k != "peft_type"})

    def __deepcopy__(self, memo: dict) -> TextLoraConfig:
        # The hypernetwork is read-only here: share it rather than copy tens of MB with every config copy.
        clone = copy.copy(self)
        for key, value in self.__dict__.items():
            if key != "t2l":
                setattr(clone, key, copy.deepcopy(value, memo))
        return clone


def initialize_text_lora_weights(model: nn.Module, adapter_name: str = "default") -> None:
    """Generate the adapter that `model.peft_config[adapter_name]` (a `TextLoraConfig`) describes and write it into
    the LoRA layers PEFT injected for it; the entry becomes the plain `LoraConfig` of the generated adapter.

    `model` is the `PeftModel` from `get_peft_model` (or a transformers model after `add_adapter`). The adapter
    stays trainable unless the config is in inference mode. A hypernetwork made for another base model, or one whose
    rank or target modules differ from the injected layers', is refused before anything is written.
    """
    config = (getattr(model, "peft_config", None) or {}).get(adapter_name)
    if not isinstance(config, TextLoraConfig):
        raise ValueError(
            f"The adapter {adapter_name!r} is not from a TextLoraConfig (found {type(config).__name__}); "
            "create it with get_peft_model(base, TextLoraConfig(description=..., t2l=...)) first."
        )
    t2l = load_hypernetwork(config.t2l, trust_remote_code=config.trust_remote_code)
    check_base_model_matches(model, t2l.config)
    settings = t2l.config
    if config.r != settings.lora_r or set(config.target_modules or []) != set(settings.target_modules):
        raise ValueError(
            f"The adapter {adapter_name!r} was injected with rank {config.r} on {sorted(config.target_modules or [])}, "
            f"but the hypernetwork makes rank {settings.lora_r} on {sorted(settings.target_modules)}; pass the loaded "
            "hypernetwork (TextLoraConfig(t2l=T2LModel...)), whose settings the config then takes, or those values."
        )
    if config.description_weights is not None:
        texts = [config.description] if isinstance(config.description, str) else list(config.description)
        adapter = t2l.mix_lora(texts, config.description_weights)
    else:
        description = config.description
        adapter = t2l.generate_lora(description if isinstance(description, str) else description[0])
    load_generated_adapter(model, adapter, adapter_name, is_trainable=not config.inference_mode)


__all__ = ["TextLoraConfig", "initialize_text_lora_weights"]
