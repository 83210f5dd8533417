"""Converter for the hypernetworks released with the Text-to-LoRA paper: into ordinary `T2LModel`s and folders.

Like transformers' `convert_*` scripts, this module sits beside the model and is not part of it: `T2LModel` knows
nothing of the reference format. Public functions: `convert_reference` (folder in, folder out; also
`t2l convert-reference`) and `load_reference_checkpoint` (folder in, model out).

A released folder (`SakanaAI/text-to-lora`, `trained_t2l/<run>/`) holds `hypermod.pt` (a pickled state dict
of fp32 tensors), `args.yaml` (the training arguments) and `adapter_config.json` (the PEFT config of the
adapters it generates). `load_reference_checkpoint` reads the three, derives a `T2LConfig` (shapes from the
tensors, semantics from the arguments, the description-encoder pipeline as config values), renames the
tensors to `T2LModel`'s layout, and checks that nothing is left over. The result generates the same adapters
as the reference code for the same task embedding; `convert_reference` saves it as a standard folder
(safetensors + config.json) that `T2LModel.from_pretrained` and `push_to_hub` handle like any other.

The format and its traps (module order, rank-major B, offsets, recon de-normalisation, the S variant's rank
code) are documented in docs/interop.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .configuration_t2l import T2LConfig
from .modeling_t2l import T2LModel

logger = logging.getLogger(__name__)

REFERENCE_WEIGHTS_NAME = "hypermod.pt"
REFERENCE_ARGS_NAME = "args.yaml"
REFERENCE_ADAPTER_CONFIG_NAME = "adapter_config.json"

# The reference pipeline for its description encoder (gte-large-en-v1.5): CLS pooling, full stop appended to a
# description ending in a letter, no prompt, 8192-token truncation, L2-normalised and scaled by sqrt(dim).
# gte-large-en-v1.5 runs code from its Hub repo: the converted config records that it needs trust_remote_code, which
# only the user grants when loading (`trust_remote_code=True` / `t2l generate --trust-remote-code`).
REFERENCE_ENCODER_SETTINGS: dict[str, Any] = {
    "encoder_trust_remote_code": True,
    "encoder_pooling": "cls",
    "encoder_max_length": 8192,
    "encoder_prompt": None,
    "encoder_normalize": True,
    "description_add_period": True,
}

# Reference module prefix -> T2LModel module prefix (mixer and heads keep their names).
_RENAMES: tuple[tuple[str, str], ...] = (
    ("task_encoder.mlp.0.", "task_projection."),
    ("task_encoder.mlp.1.", "task_norm."),
    ("layer_depth_encoder.0.", "layer_embedding."),
    ("layer_depth_encoder.1.", "layer_embedding_norm."),
    ("layer_type_encoder.0.", "module_embedding."),
    ("layer_type_encoder.1.", "module_embedding_norm."),
    ("mixer.1.", "mixer.1."),
    ("mixer.4.", "mixer.4."),
    ("mlp1.mlp.0.", "residual_block_1.norm."),
    ("mlp1.mlp.1.", "residual_block_1.fc_in."),
    ("mlp1.mlp.4.", "residual_block_1.fc_out."),
    ("mlp2.mlp.0.", "residual_block_2.norm."),
    ("mlp2.mlp.1.", "residual_block_2.fc_in."),
    ("mlp2.mlp.4.", "residual_block_2.fc_out."),
    ("mlp3.0.", "output_block.norm."),
    ("mlp3.1.", "output_block.fc_in."),
    ("mlp3.4.", "output_block.fc_out."),
    ("out_emb_norm.", "ab_embedding_norm."),
    ("pos_emb.0.", "rank_embedding."),
    ("pos_emb.1.", "rank_embedding_norm."),
    ("heads.", "heads."),
)
# Reference (module, A-or-B) tensors [L, r, in] / [L, out, r] -> T2LModel buffer groups.
_FACTOR_GROUPS = {
    "AB_offset": "ab_offsets",
    "mean_recon_target": "output_mean",
    "std_recon_target": "output_std",
}
# Derived buffers of the reference that hold nothing learned (the S variant's rotary frequencies).
_DERIVED_KEYS = ("rotary_emb.inv_freq",)


@dataclass
class ReferenceCheckpoint:
    """The raw contents of a released T2L folder."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    args: dict[str, Any]
    adapter_config: dict[str, Any]

    @property
    def module_order(self) -> list[str]:
        """Target modules in module-index order: the order of the `heads.*` keys in the original file.

        The reference numbered modules by iterating a Python set, so neither alphabetical order nor args.yaml
        order is right; the head keys were written in index order (fallback: adapter_config.json's list).
        """
        order: list[str] = []
        for key in self.state_dict:
            if key.startswith("heads."):
                name = key[len("heads.") :].rsplit(".", 1)[0]
                if name not in order:
                    order.append(name)
        return order or list(self.adapter_config.get("target_modules") or [])


def read_reference_checkpoint(checkpoint_dir: str | os.PathLike) -> ReferenceCheckpoint:
    """Read `hypermod.pt` (tensors only: `weights_only=True`), `args.yaml` and `adapter_config.json`."""
    path = Path(checkpoint_dir)
    if path.is_file() and path.name == REFERENCE_WEIGHTS_NAME:
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(
            f"No reference T2L folder at {str(checkpoint_dir)!r}; pass the folder that holds {REFERENCE_WEIGHTS_NAME}, "
            f"{REFERENCE_ARGS_NAME} and {REFERENCE_ADAPTER_CONFIG_NAME} (e.g. trained_t2l/mistral_7b_t2l)."
        )
    missing = [
        n
        for n in (REFERENCE_WEIGHTS_NAME, REFERENCE_ARGS_NAME, REFERENCE_ADAPTER_CONFIG_NAME)
        if not (path / n).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"The reference folder {path} lacks {missing}; download the whole run folder "
            "(hypermod.pt, args.yaml and adapter_config.json)."
        )
    try:
        state_dict = torch.load(path / REFERENCE_WEIGHTS_NAME, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated zip, or a pickle with objects other than tensors
        raise OSError(
            f"Could not read {path / REFERENCE_WEIGHTS_NAME} as a state dict of tensors ({err}). It is corrupt, "
            "truncated, or not a released T2L checkpoint; download it again."
        ) from err
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise OSError(
            f"{path / REFERENCE_WEIGHTS_NAME} is not a state dict of tensors; it is not a released T2L checkpoint."
        )
    args = _read_yaml(path / REFERENCE_ARGS_NAME)
    adapter_config = json.loads((path / REFERENCE_ADAPTER_CONFIG_NAME).read_text())
    return ReferenceCheckpoint(
        path=path, state_dict=dict(state_dict), args=args, adapter_config=adapter_config
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - pyyaml is a dependency
        raise ImportError("Reading args.yaml needs PyYAML: pip install pyyaml") from err
    try:
        args = yaml.safe_load(path.read_text()) or {}  # safe: a `!!python/...` tag is refused, never run
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise ValueError(
            f"{path} is not plain YAML training arguments ({problem}); tags such as !!python/object are refused. "
            "Remove them from the file, or use the args.yaml released with the checkpoint."
        ) from None
    if not isinstance(args, dict):
        raise ValueError(f"{path} does not hold a mapping of training arguments.")
    return args


def reference_config(
    checkpoint: ReferenceCheckpoint,
    base_model: Any = None,
    encoder_name_or_path: str | None = None,
) -> T2LConfig:
    """The `T2LConfig` of a released checkpoint: shapes from its tensors, semantics from args.yaml.

    Args:
        checkpoint: what `read_reference_checkpoint` returned.
        base_model: where to read module paths from (Hub name, folder, config or model). Defaults to the
            adapter config's `base_model_name_or_path` when its config is available (locally, or from the Hub
            when online); otherwise the Llama-style `model.layers.{layer}.self_attn.<module>` paths, which
            Mistral, Llama and Gemma-2 all use.
        encoder_name_or_path: use this copy of the description encoder (e.g. a local folder of
            gte-large-en-v1.5) instead of the name in args.yaml.
    """
    sd, args, adapter = checkpoint.state_dict, checkpoint.args, checkpoint.adapter_config
    order = checkpoint.module_order
    _require(
        sd,
        [
            "task_encoder.mlp.0.weight",
            "mixer.1.weight",
            "mlp3.4.weight",
            "layer_depth_encoder.0.weight",
            "layer_type_encoder.0.weight",
        ],
        checkpoint.path,
    )
    if args.get("use_one_hot_task_emb"):
        raise ValueError(
            f"{checkpoint.path} was trained on one-hot task ids (use_one_hot_task_emb), not on descriptions; "
            "it cannot generate adapters from text."
        )
    emb_model = encoder_name_or_path or args.get("emb_model")
    if not emb_model:
        raise ValueError(
            f"{checkpoint.path}/args.yaml names no `emb_model`: the run embedded descriptions with the base LLM "
            "itself, which text2lora does not support. Pass encoder_name_or_path= only if you know the encoder."
        )

    task_embedding_size = int(sd["task_encoder.mlp.0.weight"].shape[1])
    latent_size = 2 * int(sd["task_encoder.mlp.0.weight"].shape[0])
    if tuple(sd["mixer.1.weight"].shape) != (4 * latent_size, latent_size):
        raise ValueError(
            f"mixer.1.weight has shape {tuple(sd['mixer.1.weight'].shape)}, expected {(4 * latent_size, latent_size)} "
            "for a linear task encoder; this checkpoint uses a layout text2lora cannot convert (encoder_type?)."
        )
    head_in_size = int(sd["mlp3.4.weight"].shape[0])
    num_layers = int(sd["layer_depth_encoder.0.weight"].shape[0])
    if int(sd["layer_type_encoder.0.weight"].shape[0]) != len(order):
        raise ValueError(
            f"The checkpoint has {sd['layer_type_encoder.0.weight'].shape[0]} module embeddings but heads for {order}."
        )
    rank = int(adapter.get("r", 8))
    shapes = _factor_shapes(sd, order, rank, num_layers)

    variant = _variant(sd, order, rank, shapes, args)
    bias = {f"heads.{m}.bias" in sd for m in order}
    if len(bias) != 1:
        raise ValueError(
            f"Only some output heads have a bias in {checkpoint.path}; the checkpoint is inconsistent."
        )
    head_bias = bias.pop()
    task = args.get("training_task")
    if task not in ("sft", "recon"):
        raise ValueError(f"args.yaml `training_task` must be 'sft' or 'recon', got {task!r}.")
    pred_z_score = bool(args.get("pred_z_score", True))
    expected_bias = (task == "sft" and not args.get("mt_lora_path")) or (task == "recon" and not pred_z_score)
    if head_bias != expected_bias:
        logger.warning(
            "Head bias present=%s but args.yaml implies %s; following the tensors.", head_bias, expected_bias
        )

    offsets, zscore, divisor = _output_semantics(task, pred_z_score, args)
    ab_offset = offsets and any(
        bool(sd[f"AB_offset.{f}.{m}"].any()) for m in order for f in "AB" if f"AB_offset.{f}.{m}" in sd
    )
    rank_embedding = "learned" if "pos_emb.0.weight" in sd else "rotary"
    if variant == "S" and bool(args.get("learnable_pos_emb", False)) != (rank_embedding == "learned"):
        raise ValueError(
            f"args.yaml learnable_pos_emb={args.get('learnable_pos_emb')} disagrees with the tensors "
            f"(pos_emb present: {rank_embedding == 'learned'})."
        )

    base_name = adapter.get("base_model_name_or_path") or args.get("model_dir")
    paths = _module_paths(
        base_model if base_model is not None else base_name,
        order,
        shapes,
        num_layers,
        explicit=base_model is not None,
    )
    return T2LConfig(
        base_model_name_or_path=base_name,
        target_modules=order,
        module_shapes=shapes,
        module_paths=paths,
        num_layers=num_layers,
        lora_r=rank,
        lora_alpha=float(adapter.get("lora_alpha", 16)),
        use_rslora=bool(adapter.get("use_rslora", False)),
        lora_dropout=float(adapter.get("lora_dropout", 0.0) or 0.0),
        variant=variant,
        latent_size=latent_size,
        head_in_size=head_in_size,
        head_bias=head_bias,
        dropout=0.05,
        layer_norm_eps=1e-5,
        rope_base=10000.0,
        rank_embedding=rank_embedding,
        ab_offset=ab_offset,
        output_zscore=zscore,
        output_divisor=divisor,
        task_embedding_size=task_embedding_size,
        encoder_name_or_path=str(emb_model),
        encoder_scale=math.sqrt(task_embedding_size),
        **REFERENCE_ENCODER_SETTINGS,
    )


def _require(sd: dict, keys: Iterable[str], path: Path) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise ValueError(
            f"{path / REFERENCE_WEIGHTS_NAME} lacks {missing}; it is not a released T2L checkpoint."
        )


def _factor_shapes(sd: dict, order: list[str], rank: int, num_layers: int) -> dict[str, list[int]]:
    """(in, out) per module, from the per-layer factor tensors: A is [L, r, in], B is [L, out, r]."""
    shapes: dict[str, list[int]] = {}
    for m in order:
        group = next((g for g in _FACTOR_GROUPS if f"{g}.A.{m}" in sd and f"{g}.B.{m}" in sd), None)
        if group is None:
            raise ValueError(
                f"The checkpoint has no AB_offset / recon-target tensors for {m!r}, so its shape is unknown."
            )
        a, b = sd[f"{group}.A.{m}"].shape, sd[f"{group}.B.{m}"].shape
        if len(a) != 3 or len(b) != 3 or a[0] != num_layers or a[1] != rank or b[2] != rank:
            raise ValueError(
                f"{group}.A.{m} {tuple(a)} / {group}.B.{m} {tuple(b)} do not match {num_layers} layers and "
                f"rank {rank} (adapter_config.json r)."
            )
        shapes[m] = [int(a[2]), int(b[1])]
    return shapes


def _variant(sd: dict, order: list[str], rank: int, shapes: dict, args: dict) -> str:
    """L, M or S from the head widths, checked against args.yaml (shared_AB_head, autoreg_gen)."""
    shared = any(k.startswith("out_emb.") for k in sd)
    found = set()
    for m in order:
        d_in, d_out = shapes[m]
        rows = int(sd[f"heads.{m}.weight"].shape[0])
        if not shared:
            if rows != rank * (d_in + d_out):
                raise ValueError(
                    f"heads.{m} has {rows} outputs; an L head has r*(in+out) = {rank * (d_in + d_out)}. Heads that "
                    "emit one rank row of A and B together (autoreg_gen without shared_AB_head) are not supported."
                )
            found.add("L")
        elif rows == rank * max(d_in, d_out) and (rank > 1 or not args.get("autoreg_gen")):
            found.add("M")
        elif rows == max(d_in, d_out):
            found.add("S")
        else:
            raise ValueError(f"heads.{m} has {rows} outputs, which fits neither the M nor the S variant.")
    if len(found) != 1:
        raise ValueError(f"The heads mix variants {sorted(found)}; the checkpoint is inconsistent.")
    variant = found.pop()
    expected = "L" if not args.get("shared_AB_head") else ("S" if args.get("autoreg_gen") else "M")
    if "shared_AB_head" in args and expected != variant:
        raise ValueError(f"The tensors are a {variant} hypernetwork but args.yaml describes {expected}.")
    return variant


def _output_semantics(task: str, pred_z_score: bool, args: dict) -> tuple[bool, bool, float]:
    """(add AB_offset, undo z-scores, divisor) for the reference's post-processing of generated A and B."""
    if task == "sft":
        return True, False, 1.0
    factorized = bool(args.get("factorized", False))
    if factorized:
        return True, pred_z_score, 1.0
    if pred_z_score:
        raise ValueError(
            "args.yaml has training_task=recon, factorized=false and pred_z_score=true, a combination the reference "
            "implementation cannot generate from either."
        )
    return False, False, math.sqrt(float(args.get("delta_w_scaling", 10000)))


def _module_paths(
    base_model: Any, order: list[str], shapes: dict, num_layers: int, explicit: bool
) -> dict[str, str] | None:
    """Module path templates read from the base model's config, or `None` (Llama-style paths) when unavailable."""
    if base_model is None:
        return None
    from .base_models import describe_target_modules

    try:
        layout = describe_target_modules(base_model, order)
    except Exception as err:  # offline without a local copy, gated repo, unknown architecture...
        if explicit:
            raise
        logger.info("Base model %r unavailable (%s); using Llama-style module paths.", base_model, err)
        return None
    if layout.num_layers != num_layers or any(layout.shapes[m] != shapes[m] for m in order):
        raise ValueError(
            f"The checkpoint is for {num_layers} layers with shapes {shapes}, but base model {base_model!r} has "
            f"{layout.num_layers} layers with shapes {layout.shapes}; pass the base model it was trained for."
        )
    return dict(layout.paths)


def reference_state_dict_to_t2l(
    checkpoint: ReferenceCheckpoint, config: T2LConfig
) -> dict[str, torch.Tensor]:
    """Rename the reference's tensors to `T2LModel`'s state-dict keys (and keep only those the config uses)."""
    sd = checkpoint.state_dict
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in sd.items():
        if key in _DERIVED_KEYS or key.startswith("out_emb."):  # out_emb.{m}.A/B are stacked below
            continue
        group = key.split(".", 1)[0]
        if group in _FACTOR_GROUPS:
            _, factor, module = key.split(".", 2)
            out[f"{_FACTOR_GROUPS[group]}.{module}.{factor}"] = tensor
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                out[new + key[len(old) :]] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"Unexpected tensors in {checkpoint.path / REFERENCE_WEIGHTS_NAME}: {unknown}.")
    for m in config.target_modules if config.variant != "L" else ():
        missing = [f"out_emb.{m}.{f}" for f in "AB" if f"out_emb.{m}.{f}" not in sd]
        if missing:
            raise ValueError(f"The checkpoint lacks {missing}, which an {config.variant} hypernetwork needs.")
        out[f"ab_embeddings.{m}"] = torch.stack([sd[f"out_emb.{m}.A"], sd[f"out_emb.{m}.B"]])
    # Buffers the config does not use (zero offsets, z-score statistics of an sft run) are dropped.
    unused = {
        "ab_offsets": not config.ab_offset,
        "output_mean": not config.output_zscore,
        "output_std": not config.output_zscore,
    }
    return {k: v for k, v in out.items() if not unused.get(k.split(".", 1)[0], False)}


def load_reference_checkpoint(
    checkpoint_dir: str | os.PathLike,
    *,
    base_model: Any = None,
    encoder_name_or_path: str | None = None,
    dtype: torch.dtype | None = None,
) -> T2LModel:
    """Load a released Text-to-LoRA hypernetwork folder as a `T2LModel` (eval mode, fp32 unless `dtype`).

    Every tensor of the file must find its place and every parameter of the model must be filled, so a
    checkpoint of another layout is an error rather than a silently different model. See `reference_config`
    for `base_model` and `encoder_name_or_path`.
    """
    checkpoint = read_reference_checkpoint(checkpoint_dir)
    config = reference_config(checkpoint, base_model=base_model, encoder_name_or_path=encoder_name_or_path)
    state = reference_state_dict_to_t2l(checkpoint, config)
    with torch.device("meta"):
        model = T2LModel(config)
    expected = model.state_dict()
    problems = {
        "missing": sorted(set(expected) - set(state)),
        "unexpected": sorted(set(state) - set(expected)),
        "mis-shaped": sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape),
    }
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        raise ValueError(
            f"{checkpoint.path / REFERENCE_WEIGHTS_NAME} does not fit the derived T2LConfig: {problems}."
        )
    model.load_state_dict(
        {k: v.to(torch.float32).contiguous() for k, v in state.items()}, strict=True, assign=True
    )
    model.config._name_or_path = str(checkpoint.path)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def convert_reference(
    checkpoint_dir: str | os.PathLike,
    save_directory: str | os.PathLike,
    *,
    overwrite: bool = False,
    **kwargs: Any,
) -> Path:
    """Convert a released folder into a standard `T2LModel` folder (config.json + model.safetensors + README),
    written atomically. `kwargs` go to `load_reference_checkpoint`. Returns the folder."""
    from .io_utils import atomic_directory

    model = load_reference_checkpoint(checkpoint_dir, **kwargs)
    with atomic_directory(save_directory, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        (tmp / "README.md").write_text(_conversion_card(model, Path(checkpoint_dir)))
    return Path(save_directory)


def _conversion_card(model: T2LModel, source: Path) -> str:
    c = model.config
    modules = ", ".join(
        f"{i}: {m} {c.module_shapes[m][0]}->{c.module_shapes[m][1]}" for i, m in enumerate(c.target_modules)
    )
    return (
        "---\nlibrary_name: text2lora\ntags:\n- text-to-lora\n- hypernetwork\n- lora\n"
        f"base_model: {c.base_model_name_or_path}\n---\n\n"
        f"# Text-to-LoRA hypernetwork for {c.base_model_name_or_path}\n\n"
        f"Converted with text2lora from the released reference checkpoint `{source.name}` "
        "(Charakorn et al., *Text-to-LoRA*, ICML 2025). Its adapters equal the reference code's for the same task "
        "embedding.\n\n"
        f"- variant {c.variant}, {model.num_parameters():,} parameters, latent {c.latent_size}, head input "
        f"{c.head_in_size}\n"
        f"- {c.num_layers} layers; module index order (from the original file): {modules}\n"
        f"- LoRA r={c.lora_r}, alpha={c.lora_alpha:g}, rsLoRA={c.use_rslora}\n"
        f"- description encoder: `{c.encoder_name_or_path}` ({c.encoder_pooling} pooling, "
        f"L2-normalised x {c.encoder_scale:.4g}); it runs code from its Hub repo, so loading needs "
        "`trust_remote_code=True` (`t2l generate --trust-remote-code`)\n\n"
        "```python\nfrom text2lora.checkpoints import load_hypernetwork\n\n"
        't2l = load_hypernetwork("<this repo or folder>", trust_remote_code=True)\n'
        't2l.generate_lora("Solve grade-school math word problems step by step.").save_pretrained("math_lora")\n```\n'
    )


__all__ = [
    "REFERENCE_ENCODER_SETTINGS",
    "ReferenceCheckpoint",
    "convert_reference",
    "load_reference_checkpoint",
    "read_reference_checkpoint",
    "reference_config",
    "reference_state_dict_to_t2l",
]
