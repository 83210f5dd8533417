"""How alike generated adapters are: cosine similarity of their delta W, computed from the LoRA factors.

Tells whether a hypernetwork reads its descriptions: adapters of one task should be closer to each other than
to other tasks' adapters, and adapters from random strings should not sit among them. The inner product of two
adapters' delta W (all adapted modules as one vector) is `sum over modules of sum((s1 B1^T B2 s2) * (A1 A2^T))`,
so no delta W is ever formed: a few milliseconds for dozens of adapters, whatever the model size.

    from text2lora.adapter_similarity import adapter_gram, cosine_similarity, remove_mean

    loras = t2l.generate_lora(["Translate to French.", "Translate into French.", "Add two numbers."])
    gram = adapter_gram(loras)
    cosine_similarity(gram)               # raw
    cosine_similarity(remove_mean(gram))  # the description-specific part, without what every adapter shares
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .adapters import GeneratedLora


def _factors(lora: GeneratedLora) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    state = lora.state_dict
    return [(key, state[key], state[key.replace("lora_A", "lora_B")]) for key in sorted(state) if ".lora_A." in key]


def adapter_gram(loras: Sequence[GeneratedLora]) -> np.ndarray:
    """`[n, n]` Frobenius inner products of the adapters' delta W (LoRA scaling included), in float64.

    The adapters must adapt the same modules with the same rank (e.g. come from one hypernetwork)."""
    if not loras:
        raise ValueError("No adapters given; pass at least one GeneratedLora.")
    factors = [_factors(lora) for lora in loras]
    keys = [key for key, _, _ in factors[0]]
    for lora, found in zip(loras, factors):
        if [key for key, _, _ in found] != keys:
            raise ValueError(
                f"Adapter {lora.description!r} adapts other modules than the first one; compare adapters made for "
                "the same base model and target modules."
            )
    scales = torch.tensor([lora.scaling for lora in loras], dtype=torch.float64)
    gram = torch.zeros(len(loras), len(loras), dtype=torch.float64)
    for module in range(len(keys)):
        a = torch.stack([f[module][1] for f in factors]).double()  # [n, r, in]
        b = torch.stack([f[module][2] for f in factors]).double()  # [n, out, r]
        gram += (torch.einsum("ior,jos->ijrs", b, b) * torch.einsum("iry,jsy->ijrs", a, a)).sum(dim=(-1, -2))
    return (gram * scales[:, None] * scales[None, :]).numpy()


def remove_mean(gram: np.ndarray) -> np.ndarray:
    """The Gram matrix of the same vectors after subtracting their mean (the part they all share)."""
    row = gram.mean(axis=1, keepdims=True)
    return gram - row - row.T + gram.mean()


def cosine_similarity(gram: np.ndarray) -> np.ndarray:
    """Cosine similarities from a Gram matrix (a zero vector gets similarity 0 to everything)."""
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    safe = np.where(norms > 0, norms, 1.0)
    return np.where(np.outer(norms, norms) > 0, gram / np.outer(safe, safe), 0.0)
