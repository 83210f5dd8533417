"""Smoke tests: each example in examples/ runs (in-process, on the tiny fixture models) and does what it says."""

from __future__ import annotations

import importlib
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from text2lora import T2LModel

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def examples():
    """Import examples by module name (they import their sibling `default_hypernetwork`, as when run as scripts)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2LORA_ADAPTER_CACHE_DIR", str(tmp_path / "adapter_cache"))


@pytest.fixture(scope="module")
def t2l_dir(tiny_config, tmp_path_factory) -> str:
    """A saved tiny hypernetwork with non-zero heads: its adapters change the tiny base model's answers."""
    torch.manual_seed(0)
    model = T2LModel(tiny_config)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0.0, 0.05)
            head.bias.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("example_t2l") / "t2l"
    model.save_pretrained(path)
    return str(path)


def test_generate_and_chat(examples, t2l_dir, tmp_path):
    answers = examples("generate_and_chat").main(
        ["--t2l", t2l_dir, "--prompt", "hello there", "--prompt", "what now?", "--max-new-tokens", "6",
         "--save-adapter", str(tmp_path / "adapter")]
    )
    assert len(answers["base"]) == len(answers["adapted"]) == 2
    assert all(answers["base"]) and answers["adapted"] != answers["base"]
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["peft_type"] == "LORA"


def test_existing_transformers_script(examples, t2l_dir):
    answers = examples("existing_transformers_script").main(["--t2l", t2l_dir, "--max-new-tokens", "6"])
    assert set(answers) == {"sentiment", "french", "base"}
    assert answers["sentiment"] != answers["base"] and answers["french"] != answers["sentiment"]


def test_peft_text_lora_config(examples, t2l_dir):
    result = examples("peft_text_lora_config").main(["--t2l", t2l_dir, "--finetune-steps", "3"])
    assert result["last_loss"] < result["first_loss"]
    assert result["reload_difference"] < 1e-5


def test_serve_with_vllm_format_checks(examples, t2l_dir, tmp_path):
    module = examples("serve_with_vllm")
    served = module.main(["--t2l", t2l_dir, "--adapter-dir", str(tmp_path / "served")])
    assert len(served) == 2 and served[0]["name"] != served[1]["name"]
    folder = Path(served[0]["path"])
    assert any("rank 8 <= --max-lora-rank 8" in c for c in served[0]["checks"])
    assert any("BF16" in c for c in served[0]["checks"])

    # the checks fail where vLLM would refuse the adapter
    with pytest.raises(ValueError, match="rank 8 > --max-lora-rank 1"):
        module.check_vllm_format(folder, max_lora_rank=1)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "modules_to_save": ["lm_head"]}))
    with pytest.raises(ValueError, match="modules_to_save"):
        module.check_vllm_format(broken, max_lora_rank=8)


@pytest.mark.integration
def test_generate_and_chat_on_the_embedded_default(examples):
    """No --t2l: the shipped hypernetwork, or an untrained SmolLM2 one (adapted answer = base answer)."""
    from text2lora import packaged

    answers = examples("generate_and_chat").main(["--max-new-tokens", "8"])
    assert answers["base"][0].strip()
    if packaged.DEFAULT_CHECKPOINT is None:
        assert answers["adapted"] == answers["base"]
    else:  # the shipped hypernetwork is trained: the adapter changes the model's answer
        assert answers["adapted"] != answers["base"]


@pytest.fixture(scope="module")
def untrained_t2l_dir(tiny_config, tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("example_untrained") / "t2l"
    T2LModel(tiny_config).save_pretrained(path)
    return str(path)


def test_train_sft(examples, untrained_t2l_dir, tiny_base_dir, tmp_path):
    result = examples("train_sft").main(
        ["--base-model", str(tiny_base_dir), "--t2l", untrained_t2l_dir, "--output-dir", str(tmp_path / "sft"),
         "--max-steps", "6", "--tasks-per-batch", "2", "--max-length", "32"]
    )
    assert all(math.isfinite(v) for v in result.values())
    assert (tmp_path / "sft" / "README.md").read_text().startswith("---\n")
    assert (tmp_path / "sft" / "loss_curve.png").is_file()
    trained = T2LModel.from_pretrained(tmp_path / "sft")
    untrained = T2LModel.from_pretrained(untrained_t2l_dir)
    changed = [not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), untrained.state_dict().values())]
    assert any(changed)


def test_train_reconstruction(examples, untrained_t2l_dir, tiny_base_dir, tmp_path):
    result = examples("train_reconstruction").main(
        ["--base-model", str(tiny_base_dir), "--t2l", untrained_t2l_dir, "--output-dir", str(tmp_path / "recon"),
         "--tasks", "add_numbers,double_number", "--oracle-steps", "2", "--max-steps", "40"]
    )
    assert result["before"] == pytest.approx(1.0)  # untrained: B = 0, so the generated update is 0
    assert result["after"] < 0.95 * result["before"]
    assert len(list((tmp_path / "recon" / "library").glob("*/adapter_model.safetensors"))) == 2
    assert (tmp_path / "recon" / "t2l" / "README.md").is_file()
