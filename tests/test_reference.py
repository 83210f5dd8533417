"""Converting the released T2L checkpoints: synthetic folders in the reference layout, checked against an
independent implementation of the reference forward pass written here from docs (not calling text2lora)."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from text2lora import T2LModel
from text2lora.cli import main as cli_main
from text2lora.convert_reference_checkpoint import convert_reference, load_reference_checkpoint

RANK, LAYERS, EMB, LATENT, HEAD_IN = 4, 3, 12, 16, 20
# Module index order of the synthetic runs: deliberately not q_proj first and not alphabetical.
ORDER = ["v_proj", "q_proj", "k_proj"]
SHAPES = {"q_proj": (24, 24), "k_proj": (24, 8), "v_proj": (24, 8)}


# ---------------------------------------------------------------------- synthetic reference checkpoints


def make_reference_run(
    root: Path,
    variant: str = "L",
    task: str = "sft",
    *,
    mt_lora: bool = False,
    pred_z_score: bool = True,
    factorized: bool = False,
    learnable_pos_emb: bool = False,
    order: list[str] = ORDER,
    shapes: dict = SHAPES,
    num_layers: int = LAYERS,
    base_model: str = "mistralai/Mistral-7B-Instruct-v0.2",
    seed: int = 0,
) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """Write hypermod.pt / args.yaml / adapter_config.json as the reference saves them (random values)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    def linear(prefix, d_in, d_out, bias=True):
        sd[f"{prefix}.weight"] = rnd(d_out, d_in, scale=1 / math.sqrt(d_in))
        if bias:
            sd[f"{prefix}.bias"] = rnd(d_out, scale=0.1)

    def norm(prefix, size):
        sd[f"{prefix}.weight"] = 1 + rnd(size, scale=0.1)
        sd[f"{prefix}.bias"] = rnd(size, scale=0.1)

    d, r = LATENT, RANK
    head_bias = (task == "sft" and not mt_lora) or (task == "recon" and not pred_z_score)
    sd: dict[str, torch.Tensor] = OrderedDict()
    # Per-module factor tensors first, in another order than the heads (the reference's ParameterDicts).
    for group in ("AB_offset", "mean_recon_target", "std_recon_target"):
        for factor in "AB":
            for m in sorted(order):
                d_in, d_out = shapes[m]
                shape = (num_layers, r, d_in) if factor == "A" else (num_layers, d_out, r)
                if group == "AB_offset":
                    value = rnd(*shape, scale=0.1) if mt_lora else torch.zeros(shape)
                elif group == "mean_recon_target":
                    value = rnd(*shape, scale=0.1) if task == "recon" else torch.zeros(shape)
                else:
                    value = rnd(*shape).abs() * 0.2 + 0.05 if task == "recon" else torch.zeros(shape)
                sd[f"{group}.{factor}.{m}"] = value
    linear("task_encoder.mlp.0", EMB, d // 2)
    norm("task_encoder.mlp.1", d // 2)
    sd["layer_depth_encoder.0.weight"] = rnd(num_layers, d // 4)
    norm("layer_depth_encoder.1", d // 4)
    sd["layer_type_encoder.0.weight"] = rnd(len(order), d // 4)
    norm("layer_type_encoder.1", d // 4)
    linear("mixer.1", d, 4 * d)
    linear("mixer.4", 4 * d, d)
    for block in ("mlp1", "mlp2"):
        norm(f"{block}.mlp.0", d)
        linear(f"{block}.mlp.1", d, 4 * d)
        linear(f"{block}.mlp.4", 4 * d, d)
    norm("mlp3.0", d)
    linear("mlp3.1", d, 4 * d)
    linear("mlp3.4", 4 * d, HEAD_IN)
    if variant == "S" and learnable_pos_emb:
        sd["pos_emb.0.weight"] = rnd(r, d)
        norm("pos_emb.1", d)
    if variant != "L":
        for m in order:
            sd[f"out_emb.{m}.A"] = rnd(d)
            sd[f"out_emb.{m}.B"] = rnd(d)
        norm("out_emb_norm", d)
    for m in order:
        d_in, d_out = shapes[m]
        width = {"L": r * (d_in + d_out), "M": r * max(d_in, d_out), "S": max(d_in, d_out)}[variant]
        sd[f"heads.{m}.weight"] = rnd(width, HEAD_IN, scale=0.05)
        if head_bias:
            sd[f"heads.{m}.bias"] = rnd(width, scale=0.1)

    folder = root / f"{variant}_{task}_{seed}"
    folder.mkdir(parents=True)
    torch.save(sd, folder / "hypermod.pt")
    args = {
        "autoreg_gen": variant == "S",
        "delta_w_scaling": 10000,
        "emb_model": "Alibaba-NLP/gte-large-en-v1.5",
        "encoder_type": "linear",
        "factorized": factorized,
        "head_in_size": HEAD_IN,
        "head_use_bias": False,  # ignored by the reference
        "hypernet_latent_size": d,
        "learnable_pos_emb": learnable_pos_emb,
        "model_dir": base_model,
        "mt_lora_path": "train_outputs/mt_lora" if mt_lora else None,
        "pred_z_score": pred_z_score,
        "shared_AB_head": variant != "L",
        "target_modules": sorted(order),  # NOT the module index order
        "training_task": task,
        "use_one_hot_task_emb": False,
    }
    (folder / "args.yaml").write_text(yaml.safe_dump(args))
    adapter_config = {
        "base_model_name_or_path": base_model,
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": 16,
        "use_rslora": True,
        "lora_dropout": 0.05,
        "target_modules": list(order),
        "some_field_from_a_newer_peft": 1,
    }
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config))
    return folder, dict(sd), args


# ---------------------------------------------------------------------- independent reference forward


def _ln(sd, prefix, x):
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=1e-5)


def _lin(sd, prefix, x):
    return F.linear(x, sd[f"{prefix}.weight"], sd.get(f"{prefix}.bias"))


def _residual(sd, prefix, x):
    return x + F.silu(
        _lin(sd, f"{prefix}.mlp.4", F.silu(_lin(sd, f"{prefix}.mlp.1", _ln(sd, f"{prefix}.mlp.0", x))))
    )


def _last_block(sd, x):
    return F.silu(_lin(sd, "mlp3.4", F.silu(_lin(sd, "mlp3.1", _ln(sd, "mlp3.0", x)))))


def _rope(x):
    """transformers-4.46 Llama rotary code over the rank axis (dim -2), dim = D, base 10000."""
    rank, dim = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    freqs = torch.arange(rank).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    return x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()


def reference_adapters(sd, args, order, shapes, task_emb):
    """{module: (A [L, r, in], B [L, out, r])} for one task embedding, module by module as the reference does."""
    r = RANK
    num_layers = sd["layer_depth_encoder.0.weight"].shape[0]
    variant = "L" if not args["shared_AB_head"] else ("S" if args["autoreg_gen"] else "M")
    enc = _ln(sd, "task_encoder.mlp.1", _lin(sd, "task_encoder.mlp.0", task_emb))
    depth = _ln(sd, "layer_depth_encoder.1", sd["layer_depth_encoder.0.weight"])
    out = {}
    for index, m in enumerate(order):
        d_in, d_out = shapes[m]
        kind = _ln(sd, "layer_type_encoder.1", sd["layer_type_encoder.0.weight"][index])
        x = torch.cat([enc.expand(num_layers, -1), depth, kind.expand(num_layers, -1)], dim=-1)
        x = F.silu(_lin(sd, "mixer.4", F.silu(_lin(sd, "mixer.1", x))))
        h = _residual(sd, "mlp1", x)
        if variant == "L":
            flat = _lin(sd, f"heads.{m}", _last_block(sd, _residual(sd, "mlp2", h)))
            flat_a, flat_b = flat[:, : r * d_in], flat[:, r * d_in :]
        else:
            flats = []
            for factor, size in (("A", d_in), ("B", d_out)):
                g = _residual(sd, "mlp2", h + _ln(sd, "out_emb_norm", sd[f"out_emb.{m}.{factor}"]))
                if variant == "M":
                    o = _lin(sd, f"heads.{m}", _last_block(sd, g)).view(num_layers, r, -1)[..., :size]
                else:
                    g = g[:, None, :].expand(num_layers, r, g.shape[-1])
                    if args["learnable_pos_emb"]:
                        g = g + _residual(sd, "mlp2", _ln(sd, "pos_emb.1", sd["pos_emb.0.weight"]))
                    else:
                        g = _residual(sd, "mlp2", _rope(g))
                    o = _lin(sd, f"heads.{m}", _last_block(sd, g))[..., :size]
                flats.append(o.reshape(num_layers, r * size))
            flat_a, flat_b = flats
        a = flat_a.reshape(num_layers, r, d_in)
        b = flat_b.reshape(num_layers, r, d_out).transpose(-1, -2)  # rank-major B
        if args["training_task"] == "sft":
            a, b = a + sd[f"AB_offset.A.{m}"], b + sd[f"AB_offset.B.{m}"]
        elif args["factorized"]:
            if args["pred_z_score"]:
                a = a * (sd[f"std_recon_target.A.{m}"] + 1e-10) + sd[f"mean_recon_target.A.{m}"]
                b = b * (sd[f"std_recon_target.B.{m}"] + 1e-10) + sd[f"mean_recon_target.B.{m}"]
            a, b = a + sd[f"AB_offset.A.{m}"], b + sd[f"AB_offset.B.{m}"]
        else:
            scale = math.sqrt(args["delta_w_scaling"])
            a, b = a / scale, b / scale
        out[m] = (a, b)
    return out


def _max_diff(model, sd, args, order, shapes, embeddings):
    with torch.no_grad():
        got = model(embeddings)
        worst = 0.0
        for i, emb in enumerate(embeddings):
            want = reference_adapters(sd, args, order, shapes, emb)
            for m, (a, b) in want.items():
                assert got.lora_A[m][i].shape == a.shape and got.lora_B[m][i].shape == b.shape
                worst = max(
                    worst,
                    (got.lora_A[m][i] - a).abs().max().item(),
                    (got.lora_B[m][i] - b).abs().max().item(),
                )
    return worst


CASES = {
    "L-sft": dict(variant="L", task="sft"),
    "L-sft-mtlora-offset": dict(variant="L", task="sft", mt_lora=True),
    "L-recon-zscore": dict(variant="L", task="recon", factorized=True, pred_z_score=True),
    "L-recon-factorized": dict(variant="L", task="recon", factorized=True, pred_z_score=False),
    "L-recon-deltaw-div100": dict(variant="L", task="recon", factorized=False, pred_z_score=False),
    "M-sft": dict(variant="M", task="sft"),
    "M-sft-mtlora-offset": dict(variant="M", task="sft", mt_lora=True),
    "M-recon-zscore": dict(variant="M", task="recon", factorized=True, pred_z_score=True),
    "S-sft": dict(variant="S", task="sft"),
    "S-sft-mtlora-offset": dict(variant="S", task="sft", mt_lora=True),
    "S-recon-zscore": dict(variant="S", task="recon", factorized=True, pred_z_score=True),
    "S-sft-learnable-pos-emb": dict(variant="S", task="sft", learnable_pos_emb=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_converted_adapters_match_independent_reference(tmp_path, case):
    folder, sd, args = make_reference_run(tmp_path, **CASES[case])
    model = load_reference_checkpoint(folder)
    assert model.config.target_modules == ORDER  # heads.* key order, not args.yaml's
    assert not model.training
    embeddings = torch.randn(2, EMB, generator=torch.Generator().manual_seed(1)) * 3
    worst = _max_diff(model, sd, args, ORDER, SHAPES, embeddings)
    assert worst < 1e-5, f"{case}: max abs difference {worst:.3g}"
    # The check can fail: a wrong module order gives clearly different adapters.
    swapped = reference_adapters(sd, args, ORDER[1:] + ORDER[:1], SHAPES, embeddings[0])  # q_proj at index 0
    with torch.no_grad():
        got = model(embeddings[:1]).lora_A["q_proj"][0]
    assert (got - swapped["q_proj"][0]).abs().max() > 1e-3


def test_config_records_reference_semantics(tmp_path):
    folder, _, _ = make_reference_run(tmp_path, "S", "recon", factorized=True, pred_z_score=True)
    config = load_reference_checkpoint(folder).config
    assert (config.variant, config.latent_size, config.head_in_size, config.num_layers) == (
        "S",
        LATENT,
        HEAD_IN,
        LAYERS,
    )
    assert config.module_shapes == {m: list(s) for m, s in SHAPES.items()}
    assert config.output_zscore and not config.head_bias and config.rank_embedding == "rotary"
    assert (config.lora_r, config.lora_alpha, config.use_rslora) == (RANK, 16.0, True)
    assert config.lora_scaling == pytest.approx(16 / math.sqrt(RANK))
    # The description pipeline of the paper's encoder, as plain config values.
    assert config.encoder_name_or_path == "Alibaba-NLP/gte-large-en-v1.5"
    assert config.encoder_trust_remote_code and config.encoder_pooling == "cls"
    assert config.encoder_max_length == 8192 and config.encoder_prompt is None
    assert config.encoder_normalize and config.description_add_period
    assert config.encoder_scale == pytest.approx(math.sqrt(EMB))
    # Base model unavailable offline: Llama-style paths, base model name recorded.
    assert config.base_model_name_or_path == "mistralai/Mistral-7B-Instruct-v0.2"
    assert config.module_paths["q_proj"] == "model.layers.{layer}.self_attn.q_proj"

    div = load_reference_checkpoint(
        make_reference_run(tmp_path, "L", "recon", factorized=False, pred_z_score=False, seed=1)[0]
    ).config
    assert div.output_divisor == pytest.approx(100.0) and not div.ab_offset and div.head_bias


def test_module_order_comes_from_the_head_keys(tmp_path):
    """adapter_config.json / args.yaml in another order must not change the module index."""
    folder, sd, args = make_reference_run(tmp_path, "L", "sft")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["target_modules"] = sorted(ORDER)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    model = load_reference_checkpoint(folder)
    assert model.config.target_modules == ORDER
    embeddings = torch.randn(1, EMB)
    assert _max_diff(model, sd, args, ORDER, SHAPES, embeddings) < 1e-5


def test_generated_peft_adapter_matches_reference(tmp_path):
    folder, sd, args = make_reference_run(tmp_path, "L", "sft", mt_lora=True)
    model = load_reference_checkpoint(folder)
    emb = torch.randn(EMB)
    adapter = model.generate_lora(emb)
    want = reference_adapters(sd, args, ORDER, SHAPES, emb)
    assert adapter.config.r == RANK and adapter.config.use_rslora and adapter.config.lora_alpha == 16
    assert len(adapter.state_dict) == 2 * LAYERS * len(ORDER)
    for layer in range(LAYERS):
        for m, (a, b) in want.items():
            key = f"base_model.model.model.layers.{layer}.self_attn.{m}"
            torch.testing.assert_close(
                adapter.state_dict[f"{key}.lora_A.weight"], a[layer], rtol=0, atol=1e-5
            )
            torch.testing.assert_close(
                adapter.state_dict[f"{key}.lora_B.weight"], b[layer], rtol=0, atol=1e-5
            )


def test_convert_round_trip_and_cli(tmp_path):
    folder, sd, args = make_reference_run(tmp_path, "M", "sft", mt_lora=True)
    out = convert_reference(folder, tmp_path / "converted")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert "v_proj" in (out / "README.md").read_text()
    reloaded = T2LModel.from_pretrained(out)
    assert reloaded.config.target_modules == ORDER and reloaded.config.encoder_pooling == "cls"
    assert _max_diff(reloaded, sd, args, ORDER, SHAPES, torch.randn(2, EMB)) < 1e-5
    with pytest.raises(FileExistsError):
        convert_reference(folder, out)

    code = cli_main(["convert-reference", str(folder), "--out", str(tmp_path / "via_cli")])
    assert code == 0
    via_cli = T2LModel.from_pretrained(tmp_path / "via_cli")
    emb = torch.randn(1, EMB)
    with torch.no_grad():
        torch.testing.assert_close(
            via_cli(emb).lora_B["k_proj"], reloaded(emb).lora_B["k_proj"], rtol=0, atol=0
        )
    assert cli_main(["convert-reference", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 1


def test_module_paths_from_a_local_base_model(tmp_path, tiny_base_dir):
    """With the base config available, paths and shapes come from it (and must agree with the tensors)."""
    shapes = {"q_proj": (64, 64), "v_proj": (64, 32)}
    folder, _, _ = make_reference_run(
        tmp_path,
        "L",
        "sft",
        order=["v_proj", "q_proj"],
        shapes=shapes,
        num_layers=2,
        base_model=str(tiny_base_dir),
    )
    config = load_reference_checkpoint(folder).config
    assert config.module_paths == {m: f"model.layers.{{layer}}.self_attn.{m}" for m in ("v_proj", "q_proj")}
    assert config.base_model_name_or_path == str(tiny_base_dir)
    # A base model whose shapes disagree with the checkpoint is an error when named explicitly.
    other, _, _ = make_reference_run(tmp_path, "L", "sft", seed=3)
    with pytest.raises(ValueError, match="base model"):
        load_reference_checkpoint(other, base_model=str(tiny_base_dir))


def test_pickle_is_read_with_weights_only(tmp_path):
    """A hypermod.pt holding anything but tensors is refused without running its pickle code."""
    folder, _, _ = make_reference_run(tmp_path, "L", "sft")
    marker = tmp_path / "pickle_code_ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"task_encoder.mlp.0.weight": Payload()}, folder / "hypermod.pt")
    with pytest.raises(OSError, match="state dict of tensors"):
        load_reference_checkpoint(folder)
    assert not marker.exists()


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="hypermod.pt"):
        load_reference_checkpoint(tmp_path)
    folder, sd, _ = make_reference_run(tmp_path, "L", "sft")
    (folder / "args.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="args.yaml"):
        load_reference_checkpoint(folder)

    folder, sd, args = make_reference_run(tmp_path, "M", "sft", seed=1)
    args["shared_AB_head"] = False
    (folder / "args.yaml").write_text(yaml.safe_dump(args))
    with pytest.raises(ValueError, match="args.yaml describes L"):
        load_reference_checkpoint(folder)

    folder, sd, args = make_reference_run(tmp_path, "L", "sft", seed=2)
    sd["mystery.weight"] = torch.zeros(3)
    torch.save(sd, folder / "hypermod.pt")
    with pytest.raises(ValueError, match="mystery.weight"):
        load_reference_checkpoint(folder)

    folder, _, args = make_reference_run(tmp_path, "L", "recon", factorized=False, pred_z_score=False, seed=4)
    args["pred_z_score"] = True
    (folder / "args.yaml").write_text(yaml.safe_dump(args))
    with pytest.raises(ValueError, match="cannot generate"):
        load_reference_checkpoint(folder)


def test_encoder_cls_pooling_is_a_config_value(tiny_encoder_dir):
    """encoder_pooling='cls' replaces the folder's mean pooling: CLS hidden state, L2-normalised x sqrt(d)."""
    from transformers import AutoModel, AutoTokenizer

    from text2lora import DescriptionEncoder

    text = "Answer questions about grade-school science"
    encoder = DescriptionEncoder(str(tiny_encoder_dir), pooling="cls", scale=math.sqrt(32))
    got = encoder.encode(text)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    bert = AutoModel.from_pretrained(tiny_encoder_dir).eval()
    with torch.no_grad():
        cls = bert(**tokenizer([text + "."], return_tensors="pt")).last_hidden_state[0, 0]
    want = F.normalize(cls, dim=-1, eps=1e-12) * math.sqrt(32)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    mean_pooled = DescriptionEncoder(str(tiny_encoder_dir), scale=math.sqrt(32)).encode(text)
    assert (mean_pooled - want).abs().max() > 1e-2
    with pytest.raises(ValueError, match="pooling"):
        DescriptionEncoder(str(tiny_encoder_dir), pooling="median").encode(text)
