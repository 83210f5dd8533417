"""`load_t2l`: the hypernetwork the examples use when none is named on the command line.

text2lora's shipped default (`text2lora.packaged.DEFAULT_CHECKPOINT`); in a build without one, an untrained
hypernetwork for SmolLM2-135M-Instruct, created once in text2lora's cache (what
`t2l init --base HuggingFaceTB/SmolLM2-135M-Instruct` makes). Its adapters are the LoRA initialisation
(B = 0), so the adapted model answers exactly like the base model: train one, or pass `--t2l`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from text2lora import DEFAULT_BASE_MODEL, DescriptionEncoder, T2LConfig, T2LModel, load_hypernetwork, packaged
from text2lora.configuration_t2l import DEFAULT_ENCODER
from text2lora.io_utils import atomic_directory, cache_home


def load_t2l(name_or_path: str | None = None) -> T2LModel:
    """A named hypernetwork (Hub name or folder), else the default (see the module docstring)."""
    if name_or_path is not None or packaged.DEFAULT_CHECKPOINT is not None:
        return load_hypernetwork(name_or_path)
    folder = cache_home() / "untrained" / DEFAULT_BASE_MODEL.replace("/", "--")
    if not (folder / "config.json").is_file():
        _create_untrained(folder)
    print(f"note: no trained hypernetwork ships yet; using an untrained one ({folder}): its adapters do not "
          "change the model. Pass --t2l to use a trained one.")
    return T2LModel.from_pretrained(folder).eval()


def _create_untrained(folder: Path) -> None:
    size = DescriptionEncoder(DEFAULT_ENCODER).embedding_size
    config = T2LConfig.for_base_model(DEFAULT_BASE_MODEL, encoder_name_or_path=DEFAULT_ENCODER, task_embedding_size=size)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = T2LModel(config)
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
