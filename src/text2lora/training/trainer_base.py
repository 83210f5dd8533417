"""`HypernetworkTrainer`: what the SFT and reconstruction trainers share.

The module the `Trainer` optimises wraps the hypernetwork (with a frozen base LLM for SFT), but checkpoints hold
only the hypernetwork, written with `save_pretrained` so `T2LModel.from_pretrained(checkpoint)` loads it; resuming
loads those weights back strictly, and `resume_from_checkpoint=True` skips a checkpoint left half-written.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from ..io_utils import cache_home
from ..modeling_t2l import T2LModel
from .resume import last_complete_checkpoint, load_hypernetwork_weights

logger = logging.getLogger(__name__)

TRAINING_ARGS_NAME = "training_args.bin"


def resolve_cache_dir(args) -> str | None:
    """The cache folder for tokenized data and embeddings named by `args.cache_dir` ("none": no caching)."""
    value = getattr(args, "cache_dir", None)
    if isinstance(value, str) and value.lower() == "none":
        return None
    return value or str(cache_home() / "training")


def encoding_device(args) -> torch.device | None:
    """Where to embed the training descriptions: the training accelerator, or `None` (stay put) on a CPU run."""
    device = args.device
    return None if device.type == "cpu" else device


class HypernetworkTrainer(Trainer):
    """A `Trainer` whose model has a `.hypernetwork` (`T2LModel`) and whose checkpoints hold only that."""

    # Parts of the training loss returned by the model (attribute names of its output) that are logged as means.
    logged_loss_parts: tuple[str, ...] = ()

    def _init_logged_parts(self) -> None:
        self._logged_parts: dict[str, list[float]] = {name: [] for name in self.logged_loss_parts}

    @property
    def hypernetwork(self) -> T2LModel:
        """The `T2LModel` being trained (unwrapped from DDP / FSDP)."""
        return self.accelerator.unwrap_model(self.model).hypernetwork

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:
            for name in self.logged_loss_parts:
                value = getattr(outputs, name, None)
                if value is not None:
                    self._logged_parts[name].append(float(value))
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for key, values in getattr(self, "_logged_parts", {}).items():
                if values:
                    mean = torch.tensor(sum(values) / len(values), device=self.args.device)
                    logs[key] = round(float(self.accelerator.reduce(mean, reduction="mean")), 6)
                    values.clear()
        super().log(logs, start_time)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """`Trainer.evaluate`, safe to call before `train()` in distributed runs.

        An evaluation before training lets Accelerate mark the bare model as prepared (in evaluation mode), and a
        later `train()` would then skip wrapping it in DDP: ranks would silently train apart. That preparation is
        undone here, so `train()` wraps the model as usual.
        """
        fresh = not self.is_in_train and len(self.accelerator._models) == 0
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            if fresh:
                self._undo_evaluation_preparation()

    def _undo_evaluation_preparation(self) -> None:
        model = self.model
        self.accelerator._models[:] = [m for m in self.accelerator._models if m is not model]
        if model.__dict__.pop("_original_forward", None) is not None:  # autocast wrapper added for mixed precision
            model.__dict__.pop("forward", None)
        model.__dict__.pop("_is_accelerate_prepared", None)
        self.model_wrapped = model

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save only the hypernetwork, as a `T2LModel.from_pretrained` folder (plus the training arguments)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        if state_dict is not None:
            prefix = "hypernetwork."
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        self.hypernetwork.save_pretrained(output_dir, state_dict=state_dict)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
        self._save_extra(output_dir)

    def _save_extra(self, output_dir: str) -> None:
        """Hook for files a trainer keeps beside the hypernetwork."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        target = self.accelerator.unwrap_model(model) if model is not None else self.model
        load_hypernetwork_weights(target.hypernetwork, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        load_hypernetwork_weights(self.hypernetwork, self.state.best_model_checkpoint)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """`Trainer.train`; `resume_from_checkpoint=True` takes the last *complete* checkpoint in `output_dir`
        (a folder left half-written by a killed run is skipped), and `"auto"` does so only if there is one."""
        if resume_from_checkpoint is True or resume_from_checkpoint == "auto":
            found = last_complete_checkpoint(self.args.output_dir)
            if found is None and resume_from_checkpoint is True:
                raise ValueError(f"No complete checkpoint to resume from in {self.args.output_dir}.")
            if found is not None:
                logger.info("Resuming from %s", found)
            resume_from_checkpoint = found
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


__all__ = ["HypernetworkTrainer", "TRAINING_ARGS_NAME", "resolve_cache_dir"]
