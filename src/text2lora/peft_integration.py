"""`TextLoraConfig`: a PEFT LoRA config whose weights come from a description instead of an initialiser.

`peft.get_peft_model(base, TextLoraConfig(description=..., t2l=...))` returns an ordinary `PeftModel` whose LoRA
layers hold the generated A and B. The config is a `LoraConfig` (PEFT type LORA), so everything PEFT does with
LoRA works, and `save_pretrained` writes a plain LoRA adapter that loads without text2lora.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

from peft import LoraConfig
from peft.tuners.lora import LoraModel

from .checkpoints import load_hypernetwork
from .encoder import format_description
from .inputs import check_generation_inputs

# LoRA settings that a hypernetwork fixes: they are taken from its config.
_FROM_HYPERNETWORK = ("r", "lora_alpha", "use_rslora", "target_modules")


@dataclass
class TextLoraConfig(LoraConfig):
    """
    A [`~peft.LoraConfig`] that carries a task description and a Text-to-LoRA hypernetwork.

    When PEFT injects the adapter, its LoRA weights are generated from `description` by `t2l`. The rank, alpha,
    rsLoRA setting and target modules are those of the hypernetwork (the values given for them are replaced).

    Args:
        description (`str` or `list[str]`):
            Plain-language description of the task; a list is mixed with `description_weights`.
        t2l (`T2LModel`, `str`, *optional*):
            The hypernetwork: an instance, a Hub name or a local folder. `None` uses the default checkpoint.
        description_weights (`list[float]`, *optional*):
            Mixing weights when `description` is a list (interpolation in task-embedding space).
        trust_remote_code (`bool`, defaults to `False`):
            Let the description encoder run code from its model folder when the hypernetwork's config says it
            needs to (`encoder_trust_remote_code`); without it such an encoder is an error. Not saved.
    """

    description: str | list[str] | None = field(
        default=None, metadata={"help": "Plain-language description of the task the adapter is for."}
    )
    t2l: Any = field(
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
        self.t2l = load_hypernetwork(self.t2l, trust_remote_code=self.trust_remote_code)
        t2l_config = self.t2l.config
        self.r = t2l_config.lora_r
        self.lora_alpha = t2l_config.lora_alpha
        self.use_rslora = t2l_config.use_rslora
        self.target_modules = list(t2l_config.target_modules)
        if self.base_model_name_or_path is None:
            self.base_model_name_or_path = t2l_config.base_model_name_or_path
        super().__post_init__()

    def generate(self):
        """The `GeneratedLora` for this config's description(s)."""
        description = self.description
        if isinstance(description, list) and len(description) == 1 and self.description_weights is None:
            description = description[0]
        return self.t2l.generate_lora(description, weights=self.description_weights)

    def to_dict(self) -> dict[str, Any]:
        """The plain LoRA config (what `save_pretrained` writes): loadable without text2lora installed."""
        shallow = copy.copy(self)
        shallow.t2l = None
        data = LoraConfig.to_dict(shallow)
        for key in ("description", "t2l", "description_weights", "trust_remote_code"):
            data.pop(key, None)
        return data

    def to_lora_config(self) -> LoraConfig:
        return LoraConfig(**{k: v for k, v in self.to_dict().items() if k != "peft_type"})

    def __deepcopy__(self, memo: dict) -> "TextLoraConfig":
        # The hypernetwork is read-only here: share it rather than copy tens of MB with every config copy.
        clone = copy.copy(self)
        for key, value in self.__dict__.items():
            if key != "t2l":
                setattr(clone, key, copy.deepcopy(value, memo))
        return clone


def _write_generated_weights(tuner: LoraModel, model, adapter_name: str) -> None:
    from .injection import write_lora_weights

    config = tuner.peft_config[adapter_name]
    write_lora_weights(model, adapter_name, config.generate(), config.t2l.config)


def install_peft_hook() -> None:
    """Make PEFT's LoRA tuner fill adapters injected from a `TextLoraConfig` with generated weights.

    PEFT picks the tuner class from the config's PEFT type, so `TextLoraConfig` (type LORA) is handled by
    `LoraModel`; this wraps its `inject_adapter` (used by `get_peft_model`, `PeftModel.add_adapter` and
    transformers' `add_adapter`) to write the generated weights right after the layers exist.
    """
    original = LoraModel.inject_adapter
    if getattr(original, "_text2lora_hook", False):
        return

    @functools.wraps(original)
    def inject_adapter(self, model, adapter_name, *args, **kwargs):
        config = self.peft_config.get(adapter_name)
        if isinstance(config, TextLoraConfig):
            from .injection import check_base_model_matches

            check_base_model_matches(model, config.t2l.config)  # before any layer is touched
        result = original(self, model, adapter_name, *args, **kwargs)
        if isinstance(self.peft_config.get(adapter_name), TextLoraConfig):
            _write_generated_weights(self, model, adapter_name)
        return result

    inject_adapter._text2lora_hook = True
    LoraModel.inject_adapter = inject_adapter
