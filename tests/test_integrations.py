"""The ways a generated adapter reaches a model: PEFT folder, TextLoraConfig + initialize_text_lora_weights,
load_description_adapter; and that importing text2lora patches nothing in PEFT or transformers."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from text2lora import load_description_adapter
from text2lora import TextLoraConfig, initialize_text_lora_weights
from support import IDS, OTHER, TASK, logits, tiny_base



def _peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path, description=TASK):
    folder = tiny_t2l_nonzero.generate_lora(description).save_pretrained(tmp_path / "adapter")
    return PeftModel.from_pretrained(tiny_base(tiny_base_dir), folder).eval()


def test_folder_changes_logits(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    base_logits = logits(tiny_base(tiny_base_dir))
    adapted = logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path))
    assert (adapted - base_logits).abs().max() > 1e-3


def test_text_lora_config_matches_the_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    expected = logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path))
    config = TextLoraConfig(description=TASK, t2l=tiny_t2l_nonzero, r=64, target_modules=["o_proj"])
    assert config.r == 8 and sorted(config.target_modules) == ["q_proj", "v_proj"], "taken from the hypernetwork"
    model = get_peft_model(tiny_base(tiny_base_dir), config).eval()
    assert isinstance(model, PeftModel)
    torch.testing.assert_close(logits(model), logits(tiny_base(tiny_base_dir)), rtol=0, atol=0)  # B = 0 until initialised
    initialize_text_lora_weights(model)
    torch.testing.assert_close(logits(model), expected, rtol=0, atol=0)
    assert type(model.peft_config["default"]).__name__ == "LoraConfig"  # the plain config of the generated adapter


def test_text_lora_config_is_pure_data(tiny_base_dir, tiny_t2l_nonzero, tmp_path, monkeypatch):
    """Making the config loads nothing; the hypernetwork is loaded by initialize_text_lora_weights."""
    import text2lora.integrations.peft as integration

    loads = []
    monkeypatch.setattr(integration, "load_hypernetwork", lambda t2l, **kw: loads.append(t2l) or tiny_t2l_nonzero)
    tiny_t2l_nonzero.save_pretrained(tmp_path / "t2l")
    config = TextLoraConfig(description=TASK, t2l=str(tmp_path / "t2l"), r=8, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(tiny_base(tiny_base_dir), config)
    assert loads == []
    initialize_text_lora_weights(model)
    assert loads == [str(tmp_path / "t2l")]
    expected = logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path / "f"))
    torch.testing.assert_close(logits(model.eval()), expected, rtol=0, atol=0)


def test_text_lora_config_by_name_with_other_rank_is_refused(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    tiny_t2l_nonzero.save_pretrained(tmp_path / "t2l")
    model = get_peft_model(tiny_base(tiny_base_dir), TextLoraConfig(description=TASK, t2l=str(tmp_path / "t2l"), r=4))
    with pytest.raises(ValueError, match="rank 4 .* hypernetwork makes rank 8"):
        initialize_text_lora_weights(model)


def test_importing_text2lora_patches_nothing():
    """PEFT's LoraModel.inject_adapter and transformers/PEFT model classes are left as they are."""
    script = textwrap.dedent(
        """
        from peft import PeftModel
        from peft.tuners.lora import LoraModel
        from transformers import PreTrainedModel
        before = LoraModel.inject_adapter
        import text2lora
        from text2lora import T2LModel, TextLoraConfig, load_description_adapter  # the heavy exports too
        assert LoraModel.inject_adapter is before
        assert not hasattr(PreTrainedModel, "load_description_adapter")
        assert not hasattr(PeftModel, "load_description_adapter")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_method_form_is_an_explicit_opt_in(tiny_base_dir, tiny_t2l_nonzero):
    from transformers import PreTrainedModel

    from text2lora.integrations.transformers import add_model_methods

    add_model_methods()
    try:
        model = tiny_base(tiny_base_dir)
        adapter = model.load_description_adapter(TASK, t2l=tiny_t2l_nonzero, cache=False)
        assert adapter.description == TASK and "default" in model.peft_config
    finally:
        del PreTrainedModel.load_description_adapter
        from peft import PeftModel

        del PeftModel.load_description_adapter


def test_text_lora_save_is_a_plain_lora_loadable_without_text2lora(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    model = get_peft_model(tiny_base(tiny_base_dir), TextLoraConfig(description=TASK, t2l=tiny_t2l_nonzero)).eval()
    initialize_text_lora_weights(model)
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    assert not {"description", "t2l", "description_weights"} & config.keys()
    torch.save(logits(model), tmp_path / "expected.pt")
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
    expected = logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path))
    base_logits = logits(tiny_base(tiny_base_dir))
    model = tiny_base(tiny_base_dir)
    adapter = load_description_adapter(model, TASK, t2l=tiny_t2l_nonzero)
    assert adapter.description == TASK
    torch.testing.assert_close(logits(model), expected, rtol=1e-6, atol=1e-6)

    # A second adapter side by side; switch, disable, delete, as with load_adapter.
    load_description_adapter(model, OTHER, t2l=tiny_t2l_nonzero, adapter_name="legs")
    model.set_adapter("legs")
    legs = logits(model)
    assert (legs - expected).abs().max() > 1e-4
    model.disable_adapters()
    torch.testing.assert_close(logits(model), base_logits, rtol=1e-6, atol=1e-6)
    model.enable_adapters()
    model.set_adapter("default")
    torch.testing.assert_close(logits(model), expected, rtol=1e-6, atol=1e-6)
    model.delete_adapter("legs")
    assert set(model.peft_config) == {"default"}


def test_load_description_adapter_replaces_weights_in_place(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    other_expected = logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path, description=OTHER))
    model = tiny_base(tiny_base_dir)
    load_description_adapter(model, TASK, t2l=tiny_t2l_nonzero)
    n_params = sum(1 for _ in model.parameters())
    lora_a = model.model.layers[0].self_attn.q_proj.lora_A["default"].weight
    load_description_adapter(model, OTHER, t2l=tiny_t2l_nonzero)  # same name: replace
    assert sum(1 for _ in model.parameters()) == n_params
    assert model.model.layers[0].self_attn.q_proj.lora_A["default"].weight is lora_a
    torch.testing.assert_close(logits(model), other_expected, rtol=1e-6, atol=1e-6)


def test_load_description_adapter_on_peft_model(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    other_expected = logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path / "b", description=OTHER))
    model = _peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path / "a")
    first = logits(model)
    load_description_adapter(model, OTHER, t2l=tiny_t2l_nonzero, adapter_name="legs")
    torch.testing.assert_close(logits(model), first, rtol=0, atol=0)  # not active until set_adapter
    model.set_adapter("legs")
    torch.testing.assert_close(logits(model), other_expected, rtol=1e-6, atol=1e-6)


def test_base_model_with_other_layer_count_is_rejected(tiny_t2l_nonzero):
    other = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2)
    )
    with pytest.raises(ValueError, match="3 layers but the hypernetwork makes adapters for 2"):
        load_description_adapter(other, TASK, t2l=tiny_t2l_nonzero)
    with pytest.raises(ValueError, match="3 layers"):
        initialize_text_lora_weights(get_peft_model(other, TextLoraConfig(description=TASK, t2l=tiny_t2l_nonzero)))


def test_base_model_with_other_shapes_is_rejected(tiny_t2l_nonzero):
    other = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4)
    )
    with pytest.raises(ValueError, match=r"'v_proj' is \[64, 64\].*\[64, 32\]"):
        load_description_adapter(other, TASK, t2l=tiny_t2l_nonzero)


def test_no_default_hypernetwork_gives_a_clear_error(tiny_base_dir, monkeypatch):
    import text2lora.packaged as packaged

    monkeypatch.setattr(packaged, "DEFAULT_CHECKPOINT", None)
    with pytest.raises(ValueError, match="t2l init"):
        load_description_adapter(tiny_base(tiny_base_dir), TASK)


def test_text_lora_config_through_transformers_add_adapter(tiny_base_dir, tiny_t2l_nonzero, tmp_path):
    """transformers' own `add_adapter` injects the layers; the same explicit call fills them."""
    expected = logits(_peft_from_folder(tiny_base_dir, tiny_t2l_nonzero, tmp_path))
    model = tiny_base(tiny_base_dir)
    model.add_adapter(TextLoraConfig(description=TASK, t2l=tiny_t2l_nonzero), adapter_name="task")
    initialize_text_lora_weights(model, "task")
    model.set_adapter("task")
    torch.testing.assert_close(logits(model.eval()), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="not from a TextLoraConfig"):
        initialize_text_lora_weights(model, "task")  # already initialised: a plain LoraConfig now
