"""Warm start: begin T2L training from a trained LoRA (e.g. the multi-task LoRA baseline).

The LoRA's A and B go into the hypernetwork's `ab_offsets` buffers, which are added to every generated adapter,
and the output heads' biases are zeroed. With bias-HyperInit's zero head weights, every description then
generates exactly that LoRA at step 0, and training learns per-task offsets from it.
"""

from __future__ import annotations

import os

import torch

from ..modeling_t2l import T2LModel
from .lora_library import check_factors_match, read_peft_adapter


@torch.no_grad()
def warm_start_from_lora(hypernetwork: T2LModel, adapter_dir: str | os.PathLike) -> None:
    """Load the PEFT LoRA at `adapter_dir` into `hypernetwork.ab_offsets` and zero the head biases (in place)."""
    if hypernetwork.ab_offsets is None:
        raise ValueError(
            "This hypernetwork has no `ab_offsets` buffers to warm-start into; build it with "
            "T2LConfig(..., ab_offset=True) (t2l train creates new hypernetworks that way when warm_start_lora is set)."
        )
    factors = read_peft_adapter(adapter_dir)
    check_factors_match(factors, hypernetwork.config, str(adapter_dir), same_scaling=True)
    for module in hypernetwork.config.target_modules:
        offsets = hypernetwork.ab_offsets[module]
        offsets.A.copy_(factors.lora_A[module].to(offsets.A))
        offsets.B.copy_(factors.lora_B[module].to(offsets.B))
    for head in hypernetwork.heads.values():
        if head.bias is not None:
            head.bias.zero_()


__all__ = ["warm_start_from_lora"]
