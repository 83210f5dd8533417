"""`T2LSFTModel`: the module `T2LSFTTrainer` trains: hypernetwork + frozen base LLM + per-sample LoRA.

Its forward generates the adapters from task embeddings and runs the base model with them, so the whole step is
one module call: DDP / FSDP / DeepSpeed wrap it and see the hypernetwork's parameters and their gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ..modeling_t2l import T2LModel
from .losses import completion_loss
from .per_sample_lora import PerSampleLora, enable_activation_checkpointing


@dataclass
class T2LSFTOutput(ModelOutput):
    """`loss`: the training objective (smoothed completion cross-entropy + L2 penalty while training; plain
    completion cross-entropy in eval mode). `completion_loss` and `lora_l2` are its parts, detached."""

    loss: torch.Tensor | None = None
    completion_loss: torch.Tensor | None = None
    lora_l2: torch.Tensor | None = None


def generated_lora_l2(lora_A: dict[str, torch.Tensor], lora_B: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over target modules of `mean(A^2) + mean(B^2)`: the paper's penalty on the generated factors."""
    terms = [lora_A[m].float().pow(2).mean() + lora_B[m].float().pow(2).mean() for m in lora_A]
    return torch.stack(terms).mean()


class T2LSFTModel(nn.Module):
    """Hypernetwork + frozen base causal LM; `forward` returns the SFT loss of a batch (see `T2LSFTOutput`).

    Args:
        hypernetwork: the `T2LModel` being trained.
        base_model: the causal LM the adapters are for; frozen here (`requires_grad_(False)`).
        label_smoothing: label smoothing of the training cross-entropy (0.1 in the paper).
        lora_l2_penalty: weight of the L2 penalty on generated A and B (1e-3 in the paper).
        lora_dropout: dropout on the inputs of the adapted modules while training.
        description_dropout: dropout on the elements of the task embedding while training.
        completion_logits_only: compute vocabulary logits only at completion positions (see `losses`).
    """

    accepts_loss_kwargs = False  # the loss is a per-batch mean; the Trainer scales it for gradient accumulation

    def __init__(
        self,
        hypernetwork: T2LModel,
        base_model: nn.Module,
        *,
        label_smoothing: float = 0.0,
        lora_l2_penalty: float = 0.0,
        lora_dropout: float = 0.0,
        description_dropout: float = 0.0,
        completion_logits_only: bool = True,
    ) -> None:
        super().__init__()
        self.hypernetwork = hypernetwork
        self.base_model = base_model
        self.base_model.requires_grad_(False)
        if getattr(self.base_model, "config", None) is not None:
            self.base_model.config.use_cache = False
        self.per_sample_lora = PerSampleLora(base_model, hypernetwork.config)
        self.label_smoothing = float(label_smoothing)
        self.lora_l2_penalty = float(lora_l2_penalty)
        self.lora_dropout = float(lora_dropout)
        self.description_dropout = float(description_dropout)
        self.completion_logits_only = bool(completion_logits_only)

    # Trainer integration: NEFTune hooks the base model's input embeddings; checkpointing goes to the base model.
    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict | None = None, every_n_layers: int = 1, offload: bool = False
    ) -> None:
        if offload:
            raise ValueError("Activation offloading is not supported with per-sample LoRA; leave `offload` off.")
        enable_activation_checkpointing(
            self.base_model, self.per_sample_lora, every_n_layers=every_n_layers, **(activation_checkpointing_kwargs or {})
        )

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **kwargs: Any) -> None:
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    def generate_factors(self, task_embeddings: torch.Tensor, embedding_index: torch.Tensor | None = None):
        """Per-task factors from the hypernetwork, and per-sample views of them (`embedding_index` maps samples
        to rows of `task_embeddings`)."""
        if self.training and self.description_dropout > 0:
            task_embeddings = F.dropout(task_embeddings, p=self.description_dropout, training=True)
        factors = self.hypernetwork(task_embeddings)
        if embedding_index is None:
            return factors, factors.lora_A, factors.lora_B
        per_sample_A = {m: a[embedding_index] for m, a in factors.lora_A.items()}
        per_sample_B = {m: b[embedding_index] for m, b in factors.lora_B.items()}
        return factors, per_sample_A, per_sample_B

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        task_embeddings: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        embedding_index: torch.Tensor | None = None,
    ) -> T2LSFTOutput:
        factors, lora_A, lora_B = self.generate_factors(task_embeddings, embedding_index)
        dropout = self.lora_dropout if self.training else 0.0
        with self.per_sample_lora.apply(lora_A, lora_B, dropout=dropout):
            ce = completion_loss(
                self.base_model,
                input_ids,
                attention_mask,
                labels,
                label_smoothing=self.label_smoothing if self.training else 0.0,
                completion_only=self.completion_logits_only,
            )
        loss = ce
        l2 = None
        if self.training and self.lora_l2_penalty > 0:
            l2 = generated_lora_l2(factors.lora_A, factors.lora_B)
            loss = ce + self.lora_l2_penalty * l2
        return T2LSFTOutput(loss=loss, completion_loss=ce.detach(), lora_l2=None if l2 is None else l2.detach())


__all__ = ["T2LSFTModel", "T2LSFTOutput", "generated_lora_l2"]
