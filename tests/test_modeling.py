"""T2LModel: HyperInit, the batched forward, factor layout, determinism, saving/loading, errors."""

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from text2lora import GeneratedLora, T2LConfig, T2LModel


def _model(tiny_config, variant="L", **overrides) -> T2LModel:
    torch.manual_seed(0)
    config = T2LConfig(**{**tiny_config.to_dict(), "variant": variant, "ab_offset": None, **overrides})
    return T2LModel(config).eval()


@pytest.mark.parametrize("variant", ["L", "M", "S"])
def test_untrained_model_emits_lora_init_with_zero_delta(tiny_config, variant):
    model = _model(tiny_config, variant)
    out = model(torch.randn(3, 32))
    for name, (d_in, d_out) in tiny_config.module_shapes.items():
        a, b = out.lora_A[name], out.lora_B[name]
        assert a.shape == (3, tiny_config.num_layers, 8, d_in)
        assert b.shape == (3, tiny_config.num_layers, d_out, 8)
        assert torch.count_nonzero(b) == 0, "B must start at zero so delta W = 0"
        bound = 1 / math.sqrt(d_in)  # PEFT's kaiming_uniform(a=sqrt(5)) bound for lora_A
        assert a.abs().max() <= bound and a.abs().max() > 0.5 * bound
        # A does not depend on the description at step 0 (heads have zero weights).
        torch.testing.assert_close(a[0], a[1], rtol=0, atol=0)


def test_l_head_bias_holds_the_flattened_lora_init(tiny_config):
    model = _model(tiny_config, "L")
    for name, (d_in, d_out) in tiny_config.module_shapes.items():
        head = model.heads[name]
        assert torch.count_nonzero(head.weight) == 0
        assert torch.count_nonzero(head.bias[8 * d_in :]) == 0
        out = model(torch.randn(1, 32))
        torch.testing.assert_close(out.lora_A[name][0, 0].flatten(), head.bias[: 8 * d_in])


def test_b_is_rank_major_in_the_head_output(tiny_config):
    """Flat head output holds B as [r, out]: B[o, k] = flat[r*in + k*out + o]."""
    model = _model(tiny_config, "L")
    name = "v_proj"
    d_in, d_out = tiny_config.module_shapes[name]
    with torch.no_grad():
        model.heads[name].bias.copy_(torch.arange(model.heads[name].bias.numel(), dtype=torch.float32))
    b = model(torch.randn(1, 32)).lora_B[name][0, 0]
    for o, k in [(0, 1), (5, 3), (d_out - 1, 7)]:
        assert b[o, k].item() == 8 * d_in + k * d_out + o


@pytest.mark.parametrize("variant", ["L", "M", "S"])
def test_batch_is_one_forward_and_matches_single(tiny_config, variant):
    model = _model(tiny_config, variant)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0, 0.1)
    import text2lora.modeling_t2l as modeling

    calls = []
    original = modeling.apply_head

    def counting(head, features):
        if head is model.heads["q_proj"]:
            calls.append(features.shape)
        return original(head, features)

    emb = torch.randn(5, 32)
    modeling.apply_head = counting
    try:
        batched = model(emb)
    finally:
        modeling.apply_head = original
    assert len(calls) == 1, "all descriptions and layers of a module go through its head in one call"
    single = model(emb[2:3])
    for name in tiny_config.target_modules:
        torch.testing.assert_close(batched.lora_A[name][2], single.lora_A[name][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(batched.lora_B[name][2], single.lora_B[name][0], rtol=1e-5, atol=1e-6)


def test_generation_is_bit_identical(tiny_t2l_nonzero):
    first = tiny_t2l_nonzero.generate_lora("Classify the sentiment of a movie review.")
    second = tiny_t2l_nonzero.generate_lora("Classify the sentiment of a movie review.")
    assert first.state_dict.keys() == second.state_dict.keys()
    for key in first.state_dict:
        assert torch.equal(first.state_dict[key], second.state_dict[key])


def test_different_descriptions_give_different_adapters(tiny_t2l_nonzero):
    a, b = tiny_t2l_nonzero.generate_lora(["Translate to French.", "Count the legs of animals."])
    key = next(k for k in a.state_dict if k.endswith("lora_B.weight"))
    assert not torch.allclose(a.state_dict[key], b.state_dict[key])


def test_generated_lora_is_peft_shaped(tiny_t2l_nonzero, tiny_config):
    adapter = tiny_t2l_nonzero.generate_lora("Answer trivia questions.")
    assert isinstance(adapter, GeneratedLora)
    assert adapter.config.r == 8 and adapter.config.use_rslora and adapter.config.lora_alpha == 16
    assert sorted(adapter.config.target_modules) == ["q_proj", "v_proj"]
    assert not adapter.config.modules_to_save and not adapter.config.use_dora
    a = adapter.state_dict["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]
    b = adapter.state_dict["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    assert a.shape == (8, 64) and b.shape == (32, 8)
    assert len(adapter.state_dict) == 2 * 2 * tiny_config.num_layers
    delta = adapter.delta_weight("model.layers.1.self_attn.v_proj")
    torch.testing.assert_close(delta, (16 / math.sqrt(8)) * b @ a)


def test_precomputed_embeddings_equal_text(tiny_t2l_nonzero):
    text = "Sort a list of words alphabetically."
    embedding = tiny_t2l_nonzero.description_encoder.encode(text)
    from_text = tiny_t2l_nonzero.generate_lora(text)
    from_embedding = tiny_t2l_nonzero.generate_lora(embedding)
    for key, value in from_text.state_dict.items():
        assert torch.equal(value, from_embedding.state_dict[key])
    assert from_embedding.description is None


def test_mixing_weight_one_equals_single(tiny_t2l_nonzero):
    alone = tiny_t2l_nonzero.generate_lora("Translate to French.")
    mixed = tiny_t2l_nonzero.mix_lora(["Translate to French.", "Count legs."], [1.0, 0.0])
    for key, value in alone.state_dict.items():
        torch.testing.assert_close(mixed.state_dict[key], value)
    assert mixed.mix_weights == [1.0, 0.0]


@pytest.mark.parametrize("bad", ["", "   \n\t", ["ok description", " "]])
def test_empty_description_is_an_error(tiny_t2l, bad):
    with pytest.raises(ValueError, match="empty"):
        tiny_t2l.generate_lora(bad)


def test_non_finite_weights_are_an_error(tiny_t2l):
    with torch.no_grad():
        tiny_t2l.heads["v_proj"].bias[3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        tiny_t2l.generate_lora("Summarise an article.")


def test_wrong_embedding_size_is_an_error(tiny_t2l):
    with pytest.raises(ValueError, match="expects 32"):
        tiny_t2l.generate_lora(torch.randn(2, 17))


# ---------------------------------------------------------------- saving and loading


def _assert_same_weights(a: T2LModel, b: T2LModel):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("variant", ["L", "S"])
def test_save_load_round_trip(tmp_path, tiny_config, variant):
    from transformers import AutoModel

    model = _model(tiny_config, variant)
    model.save_pretrained(tmp_path / "t2l")
    loaded = T2LModel.from_pretrained(tmp_path / "t2l")
    _assert_same_weights(model, loaded)
    auto = AutoModel.from_pretrained(tmp_path / "t2l")
    assert type(auto) is T2LModel
    _assert_same_weights(model, auto)
    assert json.loads((tmp_path / "t2l" / "config.json").read_text())["auto_map"]["AutoModel"].endswith("T2LModel")


def test_hub_name_resolves_from_local_cache_offline(tmp_path, tiny_t2l_nonzero, monkeypatch):
    """A Hub-style name loads from an HF cache folder with HF_HUB_OFFLINE=1 (no network)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hub" / "models--acme--t2l-tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    tiny_t2l_nonzero.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    loaded = T2LModel.from_pretrained("acme/t2l-tiny", cache_dir=str(tmp_path / "hub"))
    _assert_same_weights(tiny_t2l_nonzero, loaded)
    assert loaded.name_or_path == "acme/t2l-tiny"


def test_trust_remote_code_copy_loads_without_the_package(tmp_path, tiny_t2l_nonzero):
    """The saved folder carries the modeling code, so `trust_remote_code=True` works without text2lora."""
    tiny_t2l_nonzero.save_pretrained(tmp_path / "t2l")
    for name in ("modeling_t2l.py", "configuration_t2l.py", "adapters.py", "encoder.py"):
        assert (tmp_path / "t2l" / name).is_file()
    emb = torch.randn(1, 32)
    torch.save(emb, tmp_path / "emb.pt")
    expected = tiny_t2l_nonzero(emb).lora_B["q_proj"]
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.modules["text2lora"] = None  # make `import text2lora` fail: only the folder's code may be used
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / 't2l')!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        out = model(torch.load({str(tmp_path / 'emb.pt')!r})).lora_B["q_proj"]
        torch.save(out, {str(tmp_path / 'out.pt')!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**_env(), "HF_HUB_OFFLINE": "1"})
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected)


def _env():
    import os

    return dict(os.environ)


def test_partial_checkpoint_is_an_error(tmp_path, tiny_t2l):
    tiny_t2l.save_pretrained(tmp_path / "t2l")
    weights = tmp_path / "t2l" / "model.safetensors"
    state = load_file(weights)
    del state["heads.v_proj.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(OSError, match="does not match.*heads.v_proj.weight"):
        T2LModel.from_pretrained(tmp_path / "t2l")


def test_corrupt_checkpoint_is_an_error(tmp_path, tiny_t2l):
    tiny_t2l.save_pretrained(tmp_path / "t2l")
    weights = tmp_path / "t2l" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(OSError, match="corrupt or truncated"):
        T2LModel.from_pretrained(tmp_path / "t2l")


# ---------------------------------------------------------------- adapters on disk


def test_save_adapter_writes_a_plain_peft_folder(tmp_path, tiny_t2l_nonzero):
    out = tiny_t2l_nonzero.generate_lora("Solve arithmetic problems.").save_pretrained(tmp_path / "adapter")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "t2l_adapter.json"
    ]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["use_rslora"] is True and config["r"] == 8
    assert not config.get("modules_to_save") and config["use_dora"] is False
    meta = json.loads((out / "t2l_adapter.json").read_text())
    assert meta["description"] == "Solve arithmetic problems."
    assert not list(tmp_path.glob(".adapter*")), "no temporary folders left behind"


def test_saved_dtype_halves_size(tmp_path, tiny_t2l_nonzero):
    adapter = tiny_t2l_nonzero.generate_lora("Write a haiku.")
    adapter.save_pretrained(tmp_path / "fp32")
    adapter.save_pretrained(tmp_path / "bf16", dtype="bf16")
    fp32 = load_file(tmp_path / "fp32" / "adapter_model.safetensors")
    bf16 = load_file(tmp_path / "bf16" / "adapter_model.safetensors")
    assert {t.dtype for t in fp32.values()} == {torch.float32}
    assert {t.dtype for t in bf16.values()} == {torch.bfloat16}
    assert sum(t.nbytes for t in bf16.values()) * 2 == sum(t.nbytes for t in fp32.values())
    with pytest.raises(ValueError, match="Unknown dtype"):
        adapter.save_pretrained(tmp_path / "x", dtype="int3")


def test_failed_save_leaves_nothing_half_written(tmp_path, tiny_t2l_nonzero, monkeypatch):
    import safetensors.torch

    adapter = tiny_t2l_nonzero.generate_lora("Write a haiku.")
    adapter.save_pretrained(tmp_path / "adapter")
    before = (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", explode)
    other = tiny_t2l_nonzero.generate_lora("Translate to German.")
    with pytest.raises(RuntimeError, match="disk full"):
        other.save_pretrained(tmp_path / "adapter")
    with pytest.raises(RuntimeError, match="disk full"):
        other.save_pretrained(tmp_path / "new")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_remote_code_copy_can_save_again(tmp_path, tiny_t2l_nonzero):
    """Saving from a trust_remote_code copy (no card templates beside the code) still writes the weights."""
    tiny_t2l_nonzero.save_pretrained(tmp_path / "t2l")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["text2lora"] = None
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / 't2l')!r}, trust_remote_code=True)
        model.save_pretrained({str(tmp_path / 'again')!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**_env(), "HF_HUB_OFFLINE": "1"})
    again = T2LModel.from_pretrained(tmp_path / "again")
    _assert_same_weights(tiny_t2l_nonzero, again)


@pytest.mark.parametrize("variant", ["L", "M", "S"])
def test_an_adapter_does_not_depend_on_the_other_descriptions_in_its_batch(variant):
    """A description's adapter alone equals its adapter generated beside others, to float32 rounding (SmolLM2
    shapes, trained-like non-zero heads): BLAS may round a matrix product differently for another row count, so
    this is a tolerance, not bitwise."""
    config = T2LConfig(
        variant=variant, num_layers=30, target_modules=["q_proj", "v_proj"], lora_r=8, lora_alpha=16,
        module_shapes={"q_proj": [576, 576], "v_proj": [576, 192]}, task_embedding_size=384,
        module_paths={"q_proj": "model.layers.{layer}.self_attn.q_proj", "v_proj": "model.layers.{layer}.self_attn.v_proj"},
    )
    torch.manual_seed(0)
    model = T2LModel(config).eval()
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0.0, 0.02)
    embeddings = torch.randn(5, 384)
    alone = model.generate_lora(embeddings[0])
    for batch in (embeddings[:2], embeddings):
        together = model.generate_lora(batch)[0]
        for key, value in alone.state_dict.items():
            torch.testing.assert_close(together.state_dict[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("variant", ["L", "M", "S"])
def test_an_adapter_is_bit_identical_alone_and_inside_batches_of_any_size(variant, dtype):
    """Same description, same adapter, whatever else is generated with it (SmolLM2 shapes, random weights: with
    bias-HyperInit's zero heads every adapter would be trivially the same)."""
    config = T2LConfig(
        variant=variant, target_modules=["q_proj", "v_proj"], lora_r=8, num_layers=30,
        module_shapes={"q_proj": [576, 576], "v_proj": [576, 192]}, task_embedding_size=384,
    )  # fmt: skip
    torch.manual_seed(0)
    model = T2LModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    model.to(dtype)
    embeddings = torch.randn(64, 384, generator=torch.Generator().manual_seed(1))
    for index in (0, 3):
        alone = model.generate_lora(embeddings[index])
        for n in (2, 4, 5, 8, 17) + ((64,) if variant == "L" else ()):
            if index >= n:
                continue
            in_batch = model.generate_lora(embeddings[:n])[index]
            for key, tensor in alone.state_dict.items():
                assert torch.equal(tensor, in_batch.state_dict[key]), (variant, dtype, index, n, key)
