"""Mixing descriptions: one adapter from several descriptions, interpolated in task-embedding space."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from text2lora.cache import AdapterCache
from text2lora.cli import main as cli_main

MATH = "Solve grade-school math word problems step by step"
FRENCH = "Translate English sentences into French"


def _same(a, b, atol=0.0):
    assert a.state_dict.keys() == b.state_dict.keys()
    for key in a.state_dict:
        torch.testing.assert_close(a.state_dict[key], b.state_dict[key], rtol=0, atol=atol)


def _max_diff(a, b):
    return max((a.state_dict[k] - b.state_dict[k]).abs().max().item() for k in a.state_dict)


def test_weight_one_equals_the_description_alone(tiny_t2l_nonzero):
    alone = tiny_t2l_nonzero.generate_lora(MATH)
    _same(tiny_t2l_nonzero.mix_lora([MATH], [1.0]), alone)
    _same(tiny_t2l_nonzero.mix_lora([MATH, FRENCH], [1.0, 0.0]), alone)
    _same(tiny_t2l_nonzero.mix_lora([FRENCH, MATH], [0.0, 1.0]), alone)


def test_mix_interpolates_task_embeddings(tiny_t2l_nonzero):
    mixed = tiny_t2l_nonzero.mix_lora([MATH, FRENCH], [0.7, 0.3])
    assert mixed.mix_weights == [0.7, 0.3] and mixed.description == [MATH, FRENCH]
    embeddings = tiny_t2l_nonzero.description_encoder.encode([MATH, FRENCH])
    by_hand = tiny_t2l_nonzero.generate_lora(0.7 * embeddings[0] + 0.3 * embeddings[1])
    _same(mixed, by_hand, atol=1e-6)
    # A real mix: different from either description alone.
    assert _max_diff(mixed, tiny_t2l_nonzero.generate_lora(MATH)) > 1e-4
    assert _max_diff(mixed, tiny_t2l_nonzero.generate_lora(FRENCH)) > 1e-4


def test_bad_weights_are_clear_errors(tiny_t2l_nonzero):
    with pytest.raises(ValueError, match="one weight each"):
        tiny_t2l_nonzero.mix_lora([MATH, FRENCH], [1.0])
    with pytest.raises(ValueError, match="sum to zero"):
        tiny_t2l_nonzero.mix_lora([MATH, FRENCH], [1.0, -1.0])


@pytest.mark.parametrize("cached", [False, True])
def test_cli_weights_make_one_mixed_adapter(tmp_path, tiny_t2l_nonzero, capsys, cached):
    folder = tmp_path / "t2l"
    tiny_t2l_nonzero.save_pretrained(folder)
    out = tmp_path / "mixed"
    cache_args = ["--cache-dir", str(tmp_path / "cache")] if cached else ["--no-cache"]
    argv = ["generate", MATH, FRENCH, "--weights", "0.7", "0.3", "--t2l", str(folder), "--out", str(out)]
    assert cli_main(argv + cache_args) == 0
    assert "wrote" in capsys.readouterr().out
    saved = load_file(str(out / "adapter_model.safetensors"))
    expected = tiny_t2l_nonzero.mix_lora([MATH, FRENCH], [0.7, 0.3])
    assert saved.keys() == expected.state_dict.keys()
    for key, value in expected.state_dict.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=1e-6)
    meta = json.loads((out / "t2l_adapter.json").read_text())
    assert meta["mix_weights"] == [0.7, 0.3] and meta["description"] == [MATH, FRENCH]
    if cached:
        assert len(AdapterCache(tmp_path / "cache")) == 1
        # The same mix again is read from the cache; other weights are another entry.
        assert cli_main(argv[:-1] + [str(tmp_path / "again")] + cache_args) == 0
        assert "from the adapter cache" in capsys.readouterr().out
        other = [
            "generate",
            MATH,
            FRENCH,
            "--weights",
            "0.3",
            "0.7",
            "--t2l",
            str(folder),
            "--out",
            str(tmp_path / "o"),
        ]
        assert cli_main(other + cache_args) == 0
        assert len(AdapterCache(tmp_path / "cache")) == 2


def test_cli_rejects_mismatched_weights(tmp_path, tiny_t2l_nonzero, capsys):
    folder = tmp_path / "t2l"
    tiny_t2l_nonzero.save_pretrained(folder)
    argv = [
        "generate",
        MATH,
        FRENCH,
        "--weights",
        "1.0",
        "--t2l",
        str(folder),
        "--out",
        str(tmp_path / "x"),
        "--no-cache",
    ]
    assert cli_main(argv) == 1
    assert "one weight each" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
