"""End to end on the real packaged SmolLM2-135M-Instruct and all-MiniLM-L6-v2: a hypernetwork with known
non-zero heads generates an adapter; every loading path changes the model by exactly its delta W."""

import copy

import pytest
import torch
from peft import PeftModel, get_peft_model

from text2lora import T2LConfig, T2LModel, TextLoraConfig, initialize_text_lora_weights, load_description_adapter

pytestmark = pytest.mark.integration

DESCRIPTION = "Answer grade-school science questions by picking the correct option."


@pytest.fixture(scope="module")
def smol_t2l(smollm2):
    model, _ = smollm2
    config = T2LConfig.for_base_model(model)
    assert config.num_layers == 30
    assert config.module_shapes == {"q_proj": [576, 576], "v_proj": [576, 192]}
    torch.manual_seed(0)
    t2l = T2LModel(config).eval()
    with torch.no_grad():
        for head in t2l.heads.values():
            head.weight.normal_(0.0, 0.02)
            head.bias.normal_(0.0, 0.02)
    return t2l


@pytest.fixture(scope="module")
def inputs(smollm2):
    _, tokenizer = smollm2
    messages = [{"role": "user", "content": "Which gas do plants absorb from the air?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt")


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def test_adapter_matches_hand_computed_delta_on_one_layer(smollm2, smol_t2l, inputs, tmp_path):
    base, _ = smollm2
    adapter = smol_t2l.generate_lora(DESCRIPTION)
    assert adapter.config.base_model_name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    folder = adapter.save_pretrained(tmp_path / "adapter")
    model = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()

    layer = model.base_model.model.model.layers[3].self_attn.q_proj
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, o: seen.update(x=i[0].detach(), y=o.detach()))
    adapted = _logits(model, inputs)
    handle.remove()

    w = base.model.layers[3].self_attn.q_proj.weight
    a = adapter.state_dict["base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"]
    b = adapter.state_dict["base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight"]
    scale = 16 / 8**0.5
    expected = seen["x"] @ w.T + scale * (seen["x"] @ a.T) @ b.T
    torch.testing.assert_close(seen["y"], expected, rtol=1e-4, atol=1e-5)

    # Whole-model check: merging delta W into the base weights gives the same logits.
    merged = copy.deepcopy(base)
    with torch.no_grad():
        for layer_index in range(30):
            for name in ("q_proj", "v_proj"):
                path = f"model.layers.{layer_index}.self_attn.{name}"
                merged.get_submodule(path).weight += adapter.delta_weight(path)
    base_logits = _logits(base, inputs)
    assert (adapted - base_logits).abs().max() > 1e-2, "the adapter must change the model"
    torch.testing.assert_close(adapted, _logits(merged, inputs), rtol=1e-3, atol=1e-3)


def test_three_paths_agree(smollm2, smol_t2l, inputs, tmp_path):
    base, _ = smollm2
    folder = smol_t2l.generate_lora(DESCRIPTION).save_pretrained(tmp_path / "adapter")
    via_folder = _logits(PeftModel.from_pretrained(copy.deepcopy(base), folder).eval(), inputs)
    peft_model = get_peft_model(copy.deepcopy(base), TextLoraConfig(description=DESCRIPTION, t2l=smol_t2l))
    initialize_text_lora_weights(peft_model)
    via_config = _logits(peft_model.eval(), inputs)
    model = copy.deepcopy(base)
    load_description_adapter(model, DESCRIPTION, t2l=smol_t2l)
    via_method = _logits(model, inputs)
    plain = copy.deepcopy(base)
    plain.load_adapter(str(folder))
    via_load_adapter = _logits(plain.eval(), inputs)
    torch.testing.assert_close(via_config, via_folder, rtol=0, atol=0)
    torch.testing.assert_close(via_method, via_folder, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(via_load_adapter, via_folder, rtol=1e-5, atol=1e-5)


def test_untrained_hypernetwork_leaves_the_model_unchanged(smollm2, inputs):
    base, _ = smollm2
    torch.manual_seed(0)
    t2l = T2LModel(T2LConfig.for_base_model(base)).eval()
    model = copy.deepcopy(base)
    load_description_adapter(model, DESCRIPTION, t2l=t2l)
    torch.testing.assert_close(_logits(model, inputs), _logits(base, inputs), rtol=0, atol=0)
