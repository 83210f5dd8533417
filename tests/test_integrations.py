"""The three ways a generated adapter reaches a model: PEFT folder, TextLoraConfig, load_description_adapter."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from text2lora import TextLoraConfig

IDS = torch.tensor([[5, 17, 42, 99, 7, 3]])
TASK = "Translate English sentences to French."
OTHER = "Count the number of legs of the animals listed."


def _base(tiny_base_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_base_dir).eval()


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def _peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path, description=TASK):
    folder = tiny_t2l_nonzero.save_adapter(description, tmp_path / "adapter")
    return PeftModel.from_pretrained(_base(tiny_base_dir), folder).eval()


def test_folder_changes_logits(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    base_logits = _logits(_base(tiny_base_dir))
    adapted = _logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path))
    assert (adapted - base_logits).abs().max() > 1e-3


def test_text_lora_config_matches_the_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    expected = _logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path))
    config = TextLoraConfig(description=TASK, t2l=tiny_t2l_nonzero, r=64, target_modules=["o_proj"])
    assert config.r == 8 and sorted(config.target_modules) == ["q_proj", "v_proj"], "taken from the hypernetwork"
    model = get_peft_model(_base(tiny_base_dir), config).eval()
    assert isinstance(model, PeftModel)
    torch.testing.assert_close(_logits(model), expected, rtol=0, atol=0)


def test_text_lora_save_is_a_plain_lora_loadable_without_text2lora(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    model = get_peft_model(_base(tiny_base_dir), TextLoraConfig(description=TASK, t2l=tiny_t2l_nonzero)).eval()
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    assert not {"description", "t2l", "description_weights"} & config.keys()
    torch.save(_logits(model), tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.modules["text2lora"] = None  # text2lora must not be needed
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        base = AutoModelForCausalLM.from_pretrained({str(tiny_base_dir)!r})
        model = PeftModel.from_pretrained(base, {str(tmp_path / 'saved')!r}).eval()
        with torch.no_grad():
            got = model(torch.tensor({IDS.tolist()})).logits
        torch.testing.assert_close(got, torch.load({str(tmp_path / 'expected.pt')!r}), rtol=0, atol=0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_text_lora_config_errors(tiny_t2l):
    with pytest.raises(ValueError, match="description"):
        TextLoraConfig(t2l=tiny_t2l)
    with pytest.raises(ValueError, match="empty"):
        TextLoraConfig(description="  ", t2l=tiny_t2l)
    with pytest.raises(ValueError, match="description_weights"):
        TextLoraConfig(description=[TASK, OTHER], t2l=tiny_t2l)


def test_load_description_adapter_on_transformers_model(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    expected = _logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path))
    base_logits = _logits(_base(tiny_base_dir))
    model = _base(tiny_base_dir)
    adapter = model.load_description_adapter(TASK, t2l=tiny_t2l_nonzero)
    assert adapter.description == TASK
    torch.testing.assert_close(_logits(model), expected, rtol=1e-6, atol=1e-6)

    # A second adapter side by side; switch, disable, delete, as with load_adapter.
    model.load_description_adapter(OTHER, t2l=tiny_t2l_nonzero, adapter_name="legs")
    model.set_adapter("legs")
    legs = _logits(model)
    assert (legs - expected).abs().max() > 1e-4
    model.disable_adapters()
    torch.testing.assert_close(_logits(model), base_logits, rtol=1e-6, atol=1e-6)
    model.enable_adapters()
    model.set_adapter("default")
    torch.testing.assert_close(_logits(model), expected, rtol=1e-6, atol=1e-6)
    model.delete_adapter("legs")
    assert set(model.peft_config) == {"default"}


def test_load_description_adapter_replaces_weights_in_place(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    other_expected = _logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path, description=OTHER))
    model = _base(tiny_base_dir)
    model.load_description_adapter(TASK, t2l=tiny_t2l_nonzero)
    n_params = sum(1 for _ in model.parameters())
    lora_a = model.model.layers[0].self_attn.q_proj.lora_A["default"].weight
    model.load_description_adapter(OTHER, t2l=tiny_t2l_nonzero)  # same name: replace
    assert sum(1 for _ in model.parameters()) == n_params
    assert model.model.layers[0].self_attn.q_proj.lora_A["default"].weight is lora_a
    torch.testing.assert_close(_logits(model), other_expected, rtol=1e-6, atol=1e-6)


def test_load_description_adapter_on_peft_model(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    other_expected = _logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path / "b", description=OTHER))
    model = _peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path / "a")
    first = _logits(model)
    model.load_description_adapter(OTHER, t2l=tiny_t2l_nonzero, adapter_name="legs")
    torch.testing.assert_close(_logits(model), first, rtol=0, atol=0)  # not active until set_adapter
    model.set_adapter("legs")
    torch.testing.assert_close(_logits(model), other_expected, rtol=1e-6, atol=1e-6)


def test_base_model_with_other_layer_count_is_rejected(tiny_t2l_nonzero):
    other = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2)
    )
    with pytest.raises(ValueError, match="3 layers but the hypernetwork makes adapters for 2"):
        other.load_description_adapter(TASK, t2l=tiny_t2l_nonzero)
    with pytest.raises(ValueError, match="3 layers"):
        get_peft_model(other, TextLoraConfig(description=TASK, t2l=tiny_t2l_nonzero))


def test_base_model_with_other_shapes_is_rejected(tiny_t2l_nonzero):
    other = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4)
    )
    with pytest.raises(ValueError, match=r"'v_proj' is \[64, 64\].*\[64, 32\]"):
        other.load_description_adapter(TASK, t2l=tiny_t2l_nonzero)


def test_no_default_hypernetwork_gives_a_clear_error(tiny_base_dir, monkeypatch):
    import text2lora.checkpoints as checkpoints

    monkeypatch.setattr(checkpoints, "DEFAULT_CHECKPOINT", None)
    with pytest.raises(ValueError, match="t2l init"):
        _base(tiny_base_dir).load_description_adapter(TASK)
