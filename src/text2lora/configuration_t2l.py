"""`T2LConfig`: every shape and choice needed to generate an adapter, without the base LLM."""

from __future__ import annotations

import math
from typing import Any

from transformers import PreTrainedConfig

VARIANTS = ("L", "M", "S")
RANK_EMBEDDINGS = ("rotary", "learned")
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
PAPER_ENCODER = "Alibaba-NLP/gte-large-en-v1.5"


def lora_scaling(r: int, alpha: float, use_rslora: bool) -> float:
    """The factor LoRA multiplies `B @ A` by: `alpha / sqrt(r)` with rsLoRA, else `alpha / r` (as PEFT does)."""
    return alpha / (math.sqrt(r) if use_rslora else r)


class T2LConfig(PreTrainedConfig):
    r"""
    Configuration of a Text-to-LoRA hypernetwork ([`T2LModel`]).

    It records the layout of the base model's target modules (so an adapter can be generated and saved
    without loading the base LLM), the LoRA convention of the generated adapters, the hypernetwork's
    shapes, and the description-encoder pipeline that turns text into the task embedding.

    Args:
        base_model_name_or_path (`str`, *optional*):
            Hub name or path of the base LLM the adapters are for. Written into every adapter's config.
        target_modules (`list[str]`, defaults to `["q_proj", "v_proj"]`):
            Leaf names of the adapted linear layers. The order is the module index of the hypernetwork's
            module embedding (row `i` belongs to `target_modules[i]`).
        module_shapes (`dict[str, list[int]]`):
            `(in_features, out_features)` of each target module.
        module_paths (`dict[str, str]`, *optional*):
            Path template of each target module inside the causal-LM model, with a `{layer}` field, e.g.
            `"model.layers.{layer}.self_attn.q_proj"`. Defaults to the Llama layout.
        num_layers (`int`): Number of decoder layers that receive an adapter.
        lora_r (`int`, defaults to 8): Rank of the generated LoRA.
        lora_alpha (`float`, defaults to 16): LoRA alpha.
        use_rslora (`bool`, defaults to `True`): Scale by `alpha / sqrt(r)` (rsLoRA) rather than `alpha / r`.
        lora_dropout (`float`, defaults to 0.05): Dropout written into the adapter config (used when training).
        variant (`str`, defaults to `"L"`):
            Output head: `"L"` emits A and B at once, `"M"` emits one of them per pass, `"S"` one rank row per
            pass.
        latent_size (`int`, defaults to 128): Trunk width D.
        head_in_size (`int`, defaults to 512): Width H of the features the heads read.
        head_bias (`bool`, defaults to `True`): Whether output heads have a bias (bias-HyperInit uses it).
        dropout (`float`, defaults to 0.05): Dropout inside the trunk while training.
        layer_norm_eps (`float`, defaults to 1e-5): Epsilon of every LayerNorm.
        rope_base (`float`, defaults to 10000.0): Base of the rotary rank code of the S variant.
        rank_embedding (`str`, defaults to `"rotary"`):
            How the S variant tells rank rows apart: `"rotary"` (a parameter-free rotary code of the rank index,
            applied before a second pass through the second residual block) or `"learned"` (an embedding of the
            rank index, LayerNorm-ed and passed through the second residual block, added to the latent; the
            reference's `learnable_pos_emb`).
        ab_offset (`bool`, *optional*):
            Keep per-layer offsets that are added to the generated A and B (a warm start from a trained LoRA, or
            the LoRA initialisation for M and S). Defaults to `True` for M and S, `False` for L.
        output_zscore (`bool`, defaults to `False`):
            The heads predict z-scores; outputs are mapped back with stored per-element mean and std.
        output_divisor (`float`, defaults to 1.0): Generated A and B are divided by this value.
        task_embedding_size (`int`, defaults to 384): Size E of the description embedding.
        encoder_name_or_path (`str`, defaults to `"sentence-transformers/all-MiniLM-L6-v2"`):
            sentence-transformers model that embeds descriptions (the paper uses `Alibaba-NLP/gte-large-en-v1.5`).
        encoder_trust_remote_code (`bool`, defaults to `False`):
            The encoder needs to run Python code from its model folder (gte-large-en-v1.5 does). A request, not
            a permission: the code runs only when the caller passes `trust_remote_code=True` (`load_hypernetwork`,
            `load_description_adapter`, `TextLoraConfig`, `t2l generate --trust-remote-code`); otherwise loading
            the encoder is an error naming it.
        encoder_pooling (`str`, *optional*):
            Pooling of the encoder's token embeddings (`"cls"`, `"mean"`, `"max"`, `"lasttoken"`, ...), overriding
            the sentence-transformers folder's own; unset keeps the folder's. The paper's gte-large-en-v1.5
            pipeline uses `"cls"`.
        encoder_max_length (`int`, *optional*): Token limit of the encoder (its own default when unset).
        encoder_prompt (`str`, *optional*): Text put before every description before encoding.
        encoder_normalize (`bool`, defaults to `True`): L2-normalise the embedding.
        encoder_scale (`float`, *optional*): Multiply the embedding by this; defaults to `sqrt(task_embedding_size)`.
        description_add_period (`bool`, defaults to `True`): Append "." to a description that ends in a letter.
    """

    model_type = "t2l"
    _auto_class = "AutoConfig"  # save_pretrained records the code in config.json (auto_map), as register_for_auto_class()

    base_model_name_or_path: str | None = None
    target_modules: list[str] | None = None
    module_shapes: dict[str, list[int]] | None = None
    module_paths: dict[str, str] | None = None
    num_layers: int = 32

    lora_r: int = 8
    lora_alpha: float = 16.0
    use_rslora: bool = True
    lora_dropout: float = 0.05

    variant: str = "L"
    latent_size: int = 128
    head_in_size: int = 512
    head_bias: bool = True
    dropout: float = 0.05
    layer_norm_eps: float = 1e-5
    rope_base: float = 10000.0
    rank_embedding: str = "rotary"
    ab_offset: bool | None = None
    output_zscore: bool = False
    output_divisor: float = 1.0

    task_embedding_size: int = 384
    encoder_name_or_path: str = DEFAULT_ENCODER
    encoder_trust_remote_code: bool = False
    encoder_pooling: str | None = None
    encoder_max_length: int | None = None
    encoder_prompt: str | None = None
    encoder_normalize: bool = True
    encoder_scale: float | None = None
    description_add_period: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        if self.target_modules is None:
            self.target_modules = ["q_proj", "v_proj"]
        self.target_modules = list(self.target_modules)
        if self.module_paths is None:
            self.module_paths = {m: _llama_path(m) for m in self.target_modules}
        if self.module_shapes is not None:
            self.module_shapes = {m: [int(v) for v in shape] for m, shape in self.module_shapes.items()}
        if self.ab_offset is None:
            self.ab_offset = self.variant != "L"
        if self.encoder_scale is None:
            self.encoder_scale = math.sqrt(self.task_embedding_size)
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self) -> None:
        """Raise a `ValueError` that names the bad value and the fix."""
        if self.variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}, got {self.variant!r}.")
        if not self.target_modules:
            raise ValueError("`target_modules` is empty: name at least one linear layer, e.g. ['q_proj', 'v_proj'].")
        if len(set(self.target_modules)) != len(self.target_modules):
            raise ValueError(f"`target_modules` has duplicates: {self.target_modules}.")
        for name in self.target_modules:
            if "." in name or not name:
                raise ValueError(
                    f"Target module {name!r} must be a leaf name such as 'q_proj' (the path goes in `module_paths`)."
                )
            if "{layer}" not in self.module_paths.get(name, ""):
                raise ValueError(
                    f"`module_paths[{name!r}]` must be a template with a '{{layer}}' field, "
                    f"got {self.module_paths.get(name)!r}."
                )
        if self.module_shapes is not None:
            missing = [m for m in self.target_modules if m not in self.module_shapes]
            if missing:
                raise ValueError(f"`module_shapes` lacks {missing}; give (in_features, out_features) for each.")
            for name, shape in self.module_shapes.items():
                if len(shape) != 2 or min(shape) <= 0:
                    raise ValueError(f"`module_shapes[{name!r}]` must be [in_features, out_features], got {shape}.")
        for field_name in ("num_layers", "lora_r", "latent_size", "head_in_size", "task_embedding_size"):
            if int(getattr(self, field_name)) <= 0:
                raise ValueError(f"`{field_name}` must be a positive integer, got {getattr(self, field_name)}.")
        if self.latent_size % 4 != 0:
            raise ValueError(f"`latent_size` must be divisible by 4 (task D/2 + layer D/4 + module D/4), got {self.latent_size}.")
        if self.rank_embedding not in RANK_EMBEDDINGS:
            raise ValueError(f"`rank_embedding` must be one of {RANK_EMBEDDINGS}, got {self.rank_embedding!r}.")
        if self.rank_embedding == "learned" and self.variant != "S":
            raise ValueError("`rank_embedding='learned'` only applies to the S variant; use variant='S' or 'rotary'.")
        if self.variant == "S" and self.latent_size % 2 != 0:
            raise ValueError("The S variant's rotary rank code needs an even `latent_size`.")
        if self.output_divisor == 0:
            raise ValueError("`output_divisor` must be non-zero (1.0 leaves outputs unchanged).")

    @property
    def lora_scaling(self) -> float:
        """The factor PEFT multiplies `B @ A` by: alpha/sqrt(r) with rsLoRA, alpha/r without."""
        return lora_scaling(self.lora_r, self.lora_alpha, self.use_rslora)

    def head_output_size(self, module: str) -> int:
        """Width of the output head of `module` for this variant."""
        d_in, d_out = self.module_shapes[module]
        if self.variant == "L":
            return self.lora_r * (d_in + d_out)
        if self.variant == "M":
            return self.lora_r * max(d_in, d_out)
        return max(d_in, d_out)

    @classmethod
    def for_base_model(
        cls,
        base_model: Any,
        target_modules: list[str] | tuple[str, ...] = ("q_proj", "v_proj"),
        **kwargs: Any,
    ) -> "T2LConfig":
        """Build a config for `base_model` (Hub name, path, `PreTrainedConfig` or model instance).

        The target modules' shapes and paths are read from a meta-device instantiation of the architecture,
        so any decoder-only model in transformers works and nothing is downloaded beyond its config.
        """
        try:  # absolute: reading a base model's layout is the package's, not part of a saved folder's remote code
            from text2lora.base_models import describe_target_modules
        except ImportError as err:
            raise ImportError("T2LConfig.for_base_model needs the text2lora package: pip install text2lora") from err
        layout = describe_target_modules(base_model, list(target_modules))
        kwargs.setdefault("base_model_name_or_path", layout.name_or_path)
        return cls(
            target_modules=list(target_modules),
            module_shapes=layout.shapes,
            module_paths=layout.paths,
            num_layers=layout.num_layers,
            **kwargs,
        )


def _llama_path(module: str) -> str:
    group = "mlp" if module in ("gate_proj", "up_proj", "down_proj") else "self_attn"
    return f"model.layers.{{layer}}.{group}.{module}"


__all__ = ["T2LConfig"]
