"""Base LLMs: resolving a name to local weights (including the packaged offline SmolLM2), loading, and
reading the layout of the target modules without materialising any weights."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io_utils import atomic_directory, cache_home
from .packaged import PACKAGED_BASE_MODELS

DEFAULT_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _hub_copy_is_local(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    return isinstance(cached, str)


def resolve_base_model(name_or_path: str | os.PathLike) -> str:
    """Return something `from_pretrained` can load without network for `name_or_path`.

    A local folder is returned as is. A Hub name already in the local HF cache is returned as is. A packaged
    model (see `PACKAGED_BASE_MODELS`) is converted once from its GGUF file to a plain transformers folder
    in the text2lora cache (GGUF loading takes ~15 s; the plain copy reloads in a fraction of a second).
    Anything else is returned unchanged, so users with network use Hub names as usual.
    """
    name = str(name_or_path)
    if Path(name).is_dir() or name not in PACKAGED_BASE_MODELS or _hub_copy_is_local(name):
        return name
    packaged = PACKAGED_BASE_MODELS[name]
    target = cache_home() / "base_models" / name.replace("/", "--")
    if (target / "config.json").is_file():
        return str(target)
    gguf = packaged.path()
    if gguf is None and not _offline():
        return name  # online: transformers downloads the Hub copy as usual
    if gguf is None:
        raise ImportError(
            f"The base model {name!r} is not in the local Hugging Face cache and its offline copy is not "
            f"installed. Install it with `{packaged.pip_requirement}` (or allow Hub downloads)."
        )
    _convert_gguf_to_plain(gguf, target)
    return str(target)


def _convert_gguf_to_plain(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = quantized.config
    # The dequantised weights are plain fp32 tensors; drop the GGUF marker so the copy is an ordinary model.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    with atomic_directory(target) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def load_base_model(
    name_or_path: str | os.PathLike = DEFAULT_BASE_MODEL,
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
):
    """Load `(model, tokenizer)` for a causal LM, resolving packaged offline models first."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_base_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    if Path(path).is_relative_to(cache_home()):
        # Keep the public name on the model, so adapters record the Hub name rather than a cache path.
        model.name_or_path = str(name_or_path)
        model.config._name_or_path = str(name_or_path)
    return model, tokenizer


def load_base_config(name_or_path: str | os.PathLike):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_base_model(name_or_path))


@dataclass(frozen=True)
class TargetModuleLayout:
    """Where the target modules live in a base model and what shape they have."""

    name_or_path: str | None
    num_layers: int
    shapes: dict[str, list[int]]
    paths: dict[str, str]


LAYER_INDEX = re.compile(r"^(?P<prefix>.*\.)(?P<index>\d+)(?P<suffix>\..*)$")


def describe_target_modules(base_model: Any, target_modules: list[str]) -> TargetModuleLayout:
    """Read the layout of `target_modules` from a base model given as name, path, config or module."""
    from transformers import PreTrainedConfig

    name = None
    if isinstance(base_model, nn.Module):
        model = base_model
        name = getattr(model, "name_or_path", None) or None
    else:
        if isinstance(base_model, PreTrainedConfig):
            config = base_model
            name = getattr(config, "_name_or_path", None) or None
        else:
            name = str(base_model)
            config = load_base_config(name)
        model = _meta_instance(config)
    layout = layout_of(model, target_modules)
    return TargetModuleLayout(name_or_path=name, **layout)


def _meta_instance(config) -> nn.Module:
    """Instantiate the architecture on the meta device: shapes without memory or weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def layout_of(model: nn.Module, target_modules: list[str]) -> dict[str, Any]:
    """Find every linear `target_modules` leaf in `model` and check they form one stack of layers."""
    shapes: dict[str, list[int]] = {}
    paths: dict[str, str] = {}
    layer_sets: dict[str, list[int]] = {}
    for target in target_modules:
        templates: dict[str, list[int]] = {}
        for module_name, module in model.named_modules():
            if module_name.rsplit(".", 1)[-1] != target or not hasattr(module, "in_features"):
                continue
            match = LAYER_INDEX.match(module_name)
            if match is None:
                continue
            template = f"{match['prefix']}{{layer}}{match['suffix']}"
            templates.setdefault(template, []).append(int(match["index"]))
            shape = [int(module.in_features), int(module.out_features)]
            if shapes.setdefault(target, shape) != shape:
                raise ValueError(
                    f"Target module {target!r} has different shapes across layers ({shapes[target]} vs {shape} at "
                    f"{module_name}); T2L needs one shape per module type. Target another module."
                )
        if not templates:
            available = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ValueError(
                f"Target module {target!r} was not found in the base model. Linear layers it has: {available}."
            )
        if len(templates) > 1:
            raise ValueError(
                f"Target module {target!r} occurs in several stacks ({sorted(templates)}); T2L adapts one stack."
            )
        (template, layers), = templates.items()
        paths[target] = template
        layer_sets[target] = sorted(layers)
    first = next(iter(layer_sets.values()))
    for target, layers in layer_sets.items():
        if layers != first or layers != list(range(len(layers))):
            raise ValueError(f"Target module {target!r} is not present in every layer 0..{len(first) - 1}.")
    return {"num_layers": len(first), "shapes": shapes, "paths": paths}


def clear_cached_base_model(name: str) -> None:
    """Delete the converted copy of a packaged base model (it is rebuilt on next use)."""
    shutil.rmtree(cache_home() / "base_models" / name.replace("/", "--"), ignore_errors=True)
