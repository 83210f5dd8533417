"""The fast paths of adapter generation give the same adapters as the plain ones (issue 18)."""

import pytest
import torch

from text2lora import T2LConfig, T2LModel

SMOLLM2_SHAPES = dict(
    num_layers=30, target_modules=["q_proj", "v_proj"], lora_r=8, task_embedding_size=384,
    module_shapes={"q_proj": [576, 576], "v_proj": [576, 192]},
)  # fmt: skip


def _random_model(variant: str, **overrides) -> T2LModel:
    torch.manual_seed(0)
    model = T2LModel(T2LConfig(variant=variant, **{**SMOLLM2_SHAPES, **overrides})).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    return model


def _assert_same_adapters(first, second) -> None:
    assert first.state_dict.keys() == second.state_dict.keys()
    for key, tensor in first.state_dict.items():
        assert torch.equal(tensor, second.state_dict[key]), key


needs_mkl = pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="pack_heads needs PyTorch's MKL")


@needs_mkl
@pytest.mark.parametrize("variant", ["L", "M", "S"])
def test_packed_heads_give_bit_identical_adapters(variant):
    model = _random_model(variant)
    embeddings = torch.randn(5, 384, generator=torch.Generator().manual_seed(1))
    plain = model.generate_lora(embeddings)
    packed = model.pack_heads().generate_lora(embeddings)
    assert all(getattr(head, "_t2l_packed", None) is not None for head in model.heads.values())
    for a, b in zip(plain, packed):
        _assert_same_adapters(a, b)


@needs_mkl
def test_packed_heads_are_not_used_once_the_weights_change():
    model = _random_model("L").pack_heads()
    embedding = torch.randn(384, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model.heads["q_proj"].weight.mul_(2.0)  # in place: same storage, new version
    fresh = T2LModel(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    _assert_same_adapters(model.generate_lora(embedding), fresh.generate_lora(embedding))
    model.unpack_heads()
    assert all("_t2l_packed" not in head.__dict__ for head in model.heads.values())


def test_pack_heads_refuses_half_precision_with_the_fix():
    model = _random_model("L").to(torch.bfloat16)
    with pytest.raises(RuntimeError, match=r"float32 heads.*model\.float\(\)"):
        model.pack_heads()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_one_layer_hypernetwork_is_batch_invariant_too(dtype):
    """One description of a 1-layer L hypernetwork is a single head row: BLAS's matrix-vector path would round it
    differently from the same row inside a batch."""
    model = _random_model("L", num_layers=1).to(dtype)
    embeddings = torch.randn(6, 384, generator=torch.Generator().manual_seed(3)).to(dtype)
    alone = model.generate_lora(embeddings[2])
    _assert_same_adapters(alone, model.generate_lora(embeddings)[2])


def test_the_heads_output_is_row_major_without_a_copy():
    """Adapters come out of the heads in the layout PEFT keeps them in: each layer's A is a contiguous block."""
    model = _random_model("L")
    out = model(torch.randn(3, 384))
    a = out.lora_A["q_proj"]
    assert a[1, 7].is_contiguous() and a.stride(-1) == 1


def test_half_precision_checkpoints_load_in_float32_on_cpus_without_bfloat16(tmp_path, monkeypatch):
    model = _random_model("L").to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    assert T2LModel.from_pretrained(tmp_path, dtype=torch.bfloat16).dtype == torch.bfloat16
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    upcast = T2LModel.from_pretrained(tmp_path)
    assert upcast.dtype == torch.float32
    assert torch.equal(upcast.heads["q_proj"].weight, model.heads["q_proj"].weight.float())
    assert T2LModel.from_pretrained(tmp_path, dtype=torch.bfloat16).dtype == torch.bfloat16  # asked for: kept
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert T2LModel.from_pretrained(tmp_path).dtype == torch.bfloat16
