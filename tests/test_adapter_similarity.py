"""Adapter similarity from LoRA factors equals the similarity of the explicit delta W vectors."""

import numpy as np
import pytest
import torch

from text2lora.adapter_similarity import adapter_gram, cosine_similarity, remove_mean


def _flat_delta_w(lora):
    keys = sorted(k for k in lora.state_dict if ".lora_A." in k)
    return torch.cat([
        (lora.scaling * lora.state_dict[k.replace("lora_A", "lora_B")] @ lora.state_dict[k]).reshape(-1) for k in keys
    ]).double()


def test_gram_from_factors_matches_explicit_delta_w(tiny_t2l_nonzero):
    descriptions = ["Translate English to French.", "Translate into French, please.", "Add two numbers.", "xq zzv"]
    loras = tiny_t2l_nonzero.generate_lora(descriptions)
    vectors = torch.stack([_flat_delta_w(lora) for lora in loras])

    gram = adapter_gram(loras)
    np.testing.assert_allclose(gram, (vectors @ vectors.T).numpy(), rtol=1e-6, atol=1e-12)

    centred = vectors - vectors.mean(dim=0)
    np.testing.assert_allclose(remove_mean(gram), (centred @ centred.T).numpy(), rtol=1e-6, atol=1e-10)

    cos = cosine_similarity(gram)
    expected = torch.nn.functional.cosine_similarity(vectors[:, None], vectors[None, :], dim=-1).numpy()
    np.testing.assert_allclose(cos, expected, rtol=1e-6, atol=1e-9)
    assert np.allclose(np.diag(cos), 1.0) and not np.allclose(cos, 1.0)  # different descriptions, different adapters


def test_zero_adapters_and_mismatched_modules(tiny_t2l, tiny_t2l_nonzero):
    zero = tiny_t2l.generate_lora(["Translate English to French.", "Add two numbers."])  # untrained: B = 0
    assert np.array_equal(cosine_similarity(adapter_gram(zero)), np.zeros((2, 2)))

    first = tiny_t2l_nonzero.generate_lora("Translate English to French.")
    first = first[0] if isinstance(first, list) else first
    other = first.to(torch.float32)
    dropped = next(k for k in other.state_dict if ".lora_A." in k)
    del other.state_dict[dropped], other.state_dict[dropped.replace("lora_A", "lora_B")]
    with pytest.raises(ValueError, match="other modules"):
        adapter_gram([first, other])
    with pytest.raises(ValueError, match="at least one"):
        adapter_gram([])
