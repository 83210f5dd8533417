"""`t2l init`, `t2l generate`, `t2l info` on the tiny models."""

import json

import pytest
from safetensors.torch import load_file

from text2lora.cli import main


@pytest.fixture
def t2l_dir(tmp_path, tiny_base_dir, tiny_encoder_dir):
    out = tmp_path / "t2l"
    code = main(
        ["init", "--base", str(tiny_base_dir), "--out", str(out), "--encoder", str(tiny_encoder_dir),
         "--latent-size", "16", "--head-in-size", "32"]
    )
    assert code == 0
    return out


def test_init_writes_a_loadable_hypernetwork(t2l_dir, capsys):
    assert (t2l_dir / "config.json").is_file() and (t2l_dir / "model.safetensors").is_file()
    assert main(["info", str(t2l_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_layers"] == 2 and info["variant"] == "L" and info["task_embedding_size"] == 32
    assert info["target_modules"] == {"q_proj": [64, 64], "v_proj": [64, 32]}
    assert info["adapter_parameters"] == 2 * 8 * (64 + 64 + 64 + 32)


def test_generate_one_adapter(t2l_dir, tmp_path, capsys):
    out = tmp_path / "adapter"
    assert main(["generate", "Translate English to French", "--t2l", str(t2l_dir), "--out", str(out)]) == 0
    assert json.loads((out / "t2l_adapter.json").read_text())["description"] == "Translate English to French"
    tensors = load_file(out / "adapter_model.safetensors")
    assert len(tensors) == 8
    assert "wrote" in capsys.readouterr().out


def test_generate_several_from_a_file(t2l_dir, tmp_path):
    listing = tmp_path / "tasks.txt"
    listing.write_text("Summarise news articles.\n\nCount legs of animals.\n")
    out = tmp_path / "many"
    assert main(["generate", "Write haiku.", "--file", str(listing), "--t2l", str(t2l_dir), "--out", str(out)]) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["000-write-haiku", "001-summarise-news-articles", "002-count-legs-of-animals"]
    descriptions = [json.loads((out / f / "t2l_adapter.json").read_text())["description"] for f in folders]
    assert descriptions == ["Write haiku.", "Summarise news articles.", "Count legs of animals."]


def test_generate_mixed_and_bf16(t2l_dir, tmp_path):
    out = tmp_path / "mixed"
    args = ["generate", "Translate to French.", "Count legs.", "--weights", "0.7", "0.3", "--dtype", "bf16"]
    assert main(args + ["--t2l", str(t2l_dir), "--out", str(out)]) == 0
    meta = json.loads((out / "t2l_adapter.json").read_text())
    assert meta["mix_weights"] == [0.7, 0.3]
    assert {str(t.dtype) for t in load_file(out / "adapter_model.safetensors").values()} == {"torch.bfloat16"}


def test_errors_are_one_line_messages(t2l_dir, tmp_path, capsys):
    assert main(["generate", "   ", "--t2l", str(t2l_dir), "--out", str(tmp_path / "x")]) == 1
    assert "empty" in capsys.readouterr().err
    assert main(["generate", "A task.", "--t2l", str(tmp_path / "nope"), "--out", str(tmp_path / "y")]) == 1
    assert "nope" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert main(["generate", "A task.", "--t2l", str(t2l_dir), "--out", str(tmp_path / "exists")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
