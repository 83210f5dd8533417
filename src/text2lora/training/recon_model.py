"""`T2LReconstructionModel`: the module `T2LReconstructionTrainer` trains: hypernetwork output vs. library LoRAs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..modeling_t2l import T2LModel


@dataclass
class T2LReconstructionOutput(ModelOutput):
    """`loss`: mean L1 reconstruction error over target modules (see `T2LReconstructionConfig.loss_target`)."""

    loss: torch.Tensor | None = None


class T2LReconstructionModel(nn.Module):
    """Generates factors for a batch of library tasks and measures the L1 error against the library's adapters.

    Args:
        hypernetwork: the `T2LModel` being trained.
        loss_target: "delta_w" (compare `scale * B @ A`) or "factors" (compare A and B).
        zscore: divide factor errors by the hypernetwork's `output_std` (its heads then predict z-scores).
    """

    accepts_loss_kwargs = False

    def __init__(self, hypernetwork: T2LModel, *, loss_target: str = "delta_w", zscore: bool = False) -> None:
        super().__init__()
        if zscore and hypernetwork.output_std is None:
            raise ValueError(
                "zscore=True needs a hypernetwork with output_zscore=True (it stores the library's per-element mean "
                "and std); build it with T2LConfig(..., output_zscore=True)."
            )
        self.hypernetwork = hypernetwork
        self.loss_target = loss_target
        self.zscore = zscore

    def forward(
        self,
        task_embeddings: torch.Tensor,
        target_A: dict[str, torch.Tensor],
        target_B: dict[str, torch.Tensor],
        target_scaling: torch.Tensor,
        return_loss: bool = True,  # tells the Trainer's evaluation loop that this model computes its own loss
    ) -> T2LReconstructionOutput:
        generated = self.hypernetwork(task_embeddings)
        scaling = self.hypernetwork.config.lora_scaling
        errors = []
        for module in self.hypernetwork.config.target_modules:
            a, b = generated.lora_A[module], generated.lora_B[module]
            ta, tb = target_A[module].to(a.dtype), target_B[module].to(b.dtype)
            if self.loss_target == "delta_w":
                delta = scaling * (b @ a)
                target = target_scaling.to(a.dtype)[:, None, None, None] * (tb @ ta)
                errors.append((delta - target).abs().mean())
            else:
                diff_a, diff_b = a - ta, b - tb
                if self.zscore:
                    diff_a = diff_a / (self.hypernetwork.output_std[module].A + 1e-10)
                    diff_b = diff_b / (self.hypernetwork.output_std[module].B + 1e-10)
                errors.append(diff_a.abs().mean() + diff_b.abs().mean())
        return T2LReconstructionOutput(loss=torch.stack(errors).mean())


__all__ = ["T2LReconstructionModel", "T2LReconstructionOutput"]
