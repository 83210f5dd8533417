"""Config-file training runs: `t2l train sft|recon|mt-lora|oracle-lora CONFIG.yaml [--set key=value ...]`.

A run config is a YAML or JSON mapping; see `configs/train/*.yaml` and docs/training.md. The common keys:

    base_model: HuggingFaceTB/SmolLM2-135M-Instruct   # name or folder (sft / mt-lora / oracle-lora)
    hypernetwork: path/to/t2l                         # an existing hypernetwork, or a mapping of T2LConfig
                                                      # fields for a new one (e.g. {variant: L, lora_r: 8})
    train_dataset: path/to/tasks                      # save_to_disk folder, JSON/JSONL file or a list of files
    eval_dataset: path/to/heldout                     # optional
    training: {...}                                   # T2LSFTConfig / T2LReconstructionConfig / trl.SFTConfig
    resume: auto                                      # auto (default) | a checkpoint folder | none

`--set training.max_steps=100` overrides one key (dotted path; the value is parsed as YAML).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUN_KINDS = ("sft", "recon", "mt-lora", "oracle-lora")


# ---------------------------------------------------------------------------------------------- config files


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"training.max_steps=100"` -> `(["training", "max_steps"], 100)` (the value parsed as YAML)."""
    import yaml

    if "=" not in text:
        raise ValueError(f"Override {text!r} must look like key=value (e.g. training.max_steps=100).")
    key, value = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ValueError(f"Override {text!r} has an empty key.")
    return path, _number_if_numeric(yaml.safe_load(value)) if value.strip() else None


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _number_if_numeric(value: Any) -> Any:
    """YAML 1.1 reads `2e-4` (no dot in the mantissa) as a string; a learning rate given that way would reach
    the optimizer as text. Such values become floats, everywhere in a run config."""
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _number_if_numeric(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_number_if_numeric(v) for v in value]
    return value


def load_run_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a YAML/JSON run config and apply `key.sub=value` overrides."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No run config at {str(path)!r}.")
    text = path.read_text()
    config = json.loads(text) if path.suffix == ".json" else _number_if_numeric(yaml.safe_load(text))
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ValueError(f"{path} must hold a mapping of settings, got {type(config).__name__}.")
    config = _expand_home(copy.deepcopy(dict(config)))
    for override in overrides:
        keys, value = parse_override(override)
        node = config
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ValueError(f"Cannot set {override!r}: {key!r} is not a mapping in the config.")
            node = child
        node[keys[-1]] = _expand_home(value)
    return config


def _expand_home(value: Any) -> Any:
    """`~/...` strings (at any depth) -> the user's home folder."""
    if isinstance(value, str) and value.startswith("~"):
        return os.path.expanduser(value)
    if isinstance(value, dict):
        return {k: _expand_home(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_home(v) for v in value]
    return value


def _dataclass_from(cls, values: Mapping[str, Any] | None, what: str):
    import dataclasses

    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {what} setting(s) {unknown}; see {cls.__name__} for the valid names.")
    if "output_dir" not in values:
        raise ValueError(f"Set training.output_dir (where checkpoints and the {what} result go).")
    return cls(**values)


def _resume(config: Mapping[str, Any]) -> str | None:
    value = config.get("resume", "auto")
    if value in (None, False) or str(value).lower() == "none":
        return None
    return "auto" if value is True or str(value).lower() == "auto" else str(value)


def _load_data(config: Mapping[str, Any], key: str, required: bool = True):
    from .task_data import load_task_dataset

    source = config.get(key)
    if source is None:
        if required:
            raise ValueError(f"Set `{key}` in the run config (a dataset folder or JSON/JSONL file(s)).")
        return None
    return load_task_dataset(source, split=config.get(f"{key.split('_')[0]}_split"))


def build_hypernetwork(spec: Any, *, base_model: Any = None, seed: int = 0, **forced: Any):
    """An existing hypernetwork (path / name) or a new one from T2LConfig fields for `base_model`."""
    import torch

    from ..configuration_t2l import T2LConfig
    from ..modeling_t2l import T2LModel

    if isinstance(spec, (str, os.PathLike)):
        # Trained further in float32 whatever it was stored in (the shipped default is bfloat16): optimiser steps
        # on bfloat16 weights would round most updates away. `forced` settings apply to new hypernetworks only.
        return T2LModel.from_pretrained(spec, dtype=torch.float32)
    settings = dict(spec or {})
    settings.update(forced)
    torch.manual_seed(seed)
    if "module_shapes" in settings:
        return T2LModel(T2LConfig(**settings))
    if base_model is None:
        raise ValueError("A new hypernetwork needs `base_model` in the run config (for the target modules' shapes).")
    target_modules = settings.pop("target_modules", ("q_proj", "v_proj"))
    return T2LModel(T2LConfig.for_base_model(base_model, target_modules=target_modules, **settings))


# ---------------------------------------------------------------------------------------------- runs


def run_sft(config: Mapping[str, Any]):
    """Train a hypernetwork by SFT; returns the trainer."""
    from .sft_config import T2LSFTConfig
    from .sft_trainer import T2LSFTTrainer, resolve_base_and_tokenizer

    args = _dataclass_from(T2LSFTConfig, config.get("training"), "SFT training")
    train = _load_data(config, "train_dataset")
    evaluation = _load_data(config, "eval_dataset", required=False)
    base_name = config.get("base_model")
    forced = {"ab_offset": True} if args.warm_start_lora else {}
    hypernetwork = build_hypernetwork(config.get("hypernetwork"), base_model=base_name, seed=args.seed, **forced)
    base, tokenizer = resolve_base_and_tokenizer(base_name, None, hypernetwork)
    trainer = T2LSFTTrainer(
        hypernetwork, base, args=args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
        task_descriptions=config.get("task_descriptions"),
    )
    trainer.train(resume_from_checkpoint=_resume(config))
    trainer.save_model()
    return trainer


def run_recon(config: Mapping[str, Any]):
    """Train a hypernetwork to reconstruct a LoRA library; returns the trainer."""
    from .lora_library import LoraLibrary
    from .recon_config import T2LReconstructionConfig
    from .recon_trainer import T2LReconstructionTrainer

    args = _dataclass_from(T2LReconstructionConfig, config.get("training"), "reconstruction training")
    if not config.get("library"):
        raise ValueError("Set `library` in the run config: the folder of PEFT LoRA adapters to reconstruct.")
    library = LoraLibrary.load(config["library"], require_descriptions=not args.one_hot_task_ids)
    spec = config.get("hypernetwork")
    if isinstance(spec, (str, os.PathLike)):
        hypernetwork = build_hypernetwork(spec)
    else:
        settings = {**library.t2l_config_kwargs(), **dict(spec or {})}
        if args.zscore:
            settings["output_zscore"] = True
        if args.one_hot_task_ids:
            settings["task_embedding_size"] = max(int(settings.get("task_embedding_size", 0) or 0), len(library))
        hypernetwork = build_hypernetwork(settings, seed=args.seed)
    trainer = T2LReconstructionTrainer(hypernetwork, library, args=args)
    trainer.train(resume_from_checkpoint=_resume(config))
    trainer.save_model()
    return trainer


def _lora_config(config: Mapping[str, Any], base_model: Any):
    from peft import LoraConfig

    from .baselines import lora_config_for

    if config.get("lora") is not None:
        settings = dict(config["lora"])
        settings.setdefault("task_type", "CAUSAL_LM")
        return LoraConfig(**settings)
    spec = config.get("hypernetwork")
    if isinstance(spec, (str, os.PathLike)):
        from ..configuration_t2l import T2LConfig

        return lora_config_for(T2LConfig.from_pretrained(spec))
    from ..configuration_t2l import T2LConfig

    settings = dict(spec or {})
    target_modules = settings.pop("target_modules", ("q_proj", "v_proj"))
    allowed = {k: v for k, v in settings.items() if k in ("lora_r", "lora_alpha", "use_rslora", "lora_dropout")}
    return lora_config_for(T2LConfig.for_base_model(base_model, target_modules=target_modules, **allowed))


def _sft_config(config: Mapping[str, Any]):
    from trl import SFTConfig

    return _dataclass_from(SFTConfig, config.get("training"), "LoRA training")


def run_multitask_lora(config: Mapping[str, Any]):
    """Train the multi-task LoRA baseline; returns the TRL trainer."""
    from ..base_models import load_base_model
    from .baselines import train_multitask_lora

    args = _sft_config(config)
    if not config.get("base_model"):
        raise ValueError("Set `base_model` in the run config.")
    base, tokenizer = load_base_model(config["base_model"])
    lora = _lora_config(config, base)
    if _resume(config) is not None and args.resume_from_checkpoint is None:
        args.resume_from_checkpoint = _resume(config)
    return train_multitask_lora(
        base, tokenizer, _load_data(config, "train_dataset"), args, lora,
        eval_dataset=_load_data(config, "eval_dataset", required=False),
        use_chat_template=config.get("use_chat_template", True),
    )


def run_oracle_loras(config: Mapping[str, Any]):
    """Train one LoRA per task into a library folder; returns the `LoraLibrary`."""
    from ..base_models import load_base_model
    from .baselines import train_oracle_loras

    args = _sft_config(config)
    if not config.get("base_model") or not config.get("library_dir"):
        raise ValueError("Set `base_model` and `library_dir` (where the per-task adapters go) in the run config.")
    base, tokenizer = load_base_model(config["base_model"])
    return train_oracle_loras(
        base, tokenizer, _load_data(config, "train_dataset"), config["library_dir"], args, _lora_config(config, base),
        tasks=config.get("tasks"), use_chat_template=config.get("use_chat_template", True),
        task_descriptions=config.get("task_descriptions"), overwrite=bool(config.get("overwrite", False)),
    )


RUNNERS = {"sft": run_sft, "recon": run_recon, "mt-lora": run_multitask_lora, "oracle-lora": run_oracle_loras}


def run_from_config(kind: str, config: Mapping[str, Any]):
    if kind not in RUNNERS:
        raise ValueError(f"Unknown run kind {kind!r}; choose one of {RUN_KINDS}.")
    return RUNNERS[kind](config)


__all__ = ["RUN_KINDS", "build_hypernetwork", "load_run_config", "parse_override", "run_from_config"]
