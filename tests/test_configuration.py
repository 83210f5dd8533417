"""T2LConfig: shapes from any decoder architecture, validation, round trips; paper parameter counts."""

import pytest
import torch

from text2lora import T2LConfig, T2LModel


def mistral_config(variant: str) -> T2LConfig:
    """The paper's Mistral-7B hypernetwork: 32 layers, q 4096->4096, v 4096->1024, r=8, E=1024, D=128, H=512."""
    return T2LConfig(
        variant=variant,
        num_layers=32,
        target_modules=["q_proj", "v_proj"],
        module_shapes={"q_proj": [4096, 4096], "v_proj": [4096, 1024]},
        task_embedding_size=1024,
        latent_size=128,
        head_in_size=512,
        lora_r=8,
    )


@pytest.mark.parametrize("variant, expected", [("L", 55_424_000), ("M", 34_412_288), ("S", 4_994_816)])
def test_paper_parameter_counts(variant, expected):
    with torch.device("meta"):
        model = T2LModel(mistral_config(variant))
    assert model.num_parameters() == expected


def test_trunk_parameter_count_matches_paper_arithmetic():
    with torch.device("meta"):
        model = T2LModel(mistral_config("L"))
    heads = sum(p.numel() for p in model.heads.parameters())
    assert heads == 54_632_448
    assert model.num_parameters() - heads == 791_552


def test_for_base_model_reads_tiny_llama(tiny_base_dir):
    config = T2LConfig.for_base_model(str(tiny_base_dir), target_modules=["q_proj", "v_proj", "down_proj"])
    assert config.num_layers == 2
    assert config.module_shapes == {"q_proj": [64, 64], "v_proj": [64, 32], "down_proj": [128, 64]}
    assert config.module_paths["q_proj"] == "model.layers.{layer}.self_attn.q_proj"
    assert config.module_paths["down_proj"] == "model.layers.{layer}.mlp.down_proj"
    assert config.base_model_name_or_path == str(tiny_base_dir)


def _small(cls, **extra):
    return cls(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        **extra,
    )


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "gemma2", "gemma3_text", "phi3"])
def test_for_base_model_any_decoder_architecture(arch):
    import transformers

    configs = {
        "llama": lambda: _small(transformers.LlamaConfig),
        "mistral": lambda: _small(transformers.MistralConfig),
        "qwen2": lambda: _small(transformers.Qwen2Config),
        "gemma2": lambda: _small(transformers.Gemma2Config),
        "gemma3_text": lambda: _small(transformers.Gemma3TextConfig),
        "phi3": lambda: transformers.Phi3Config(
            vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, pad_token_id=0,
        ),
    }
    base_config = configs[arch]()
    targets = ["qkv_proj", "o_proj"] if arch == "phi3" else ["q_proj", "v_proj"]
    config = T2LConfig.for_base_model(base_config, target_modules=targets)
    assert config.num_layers == 3
    if arch == "phi3":
        assert config.module_shapes == {"qkv_proj": [64, 64 + 2 * 32], "o_proj": [64, 64]}
    else:
        assert config.module_shapes == {"q_proj": [64, 64], "v_proj": [64, 32]}
    assert all("{layer}" in p for p in config.module_paths.values())


def test_missing_target_module_names_available_ones(tiny_base_dir):
    with pytest.raises(ValueError, match="'gate' was not found.*'q_proj'"):
        T2LConfig.for_base_model(str(tiny_base_dir), target_modules=["gate"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "XL"}, "variant"),
        ({"target_modules": ["self_attn.q_proj"]}, "leaf name"),
        ({"target_modules": ["q_proj", "q_proj"]}, "duplicates"),
        ({"latent_size": 130}, "divisible by 4"),
        ({"lora_r": 0}, "lora_r"),
        ({"module_shapes": {"q_proj": [64, 64]}}, "lacks"),
    ],
)
def test_validation_names_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        T2LConfig(**kwargs)


def test_model_needs_module_shapes():
    with pytest.raises(ValueError, match="for_base_model"):
        T2LModel(T2LConfig())


def test_config_round_trip_through_auto_config(tmp_path, tiny_config):
    from transformers import AutoConfig

    tiny_config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is T2LConfig
    for key in ("target_modules", "module_shapes", "module_paths", "num_layers", "encoder_scale", "variant"):
        assert getattr(loaded, key) == getattr(tiny_config, key)


def test_lora_scaling_follows_rslora():
    assert T2LConfig(lora_r=8, lora_alpha=16, use_rslora=True).lora_scaling == pytest.approx(16 / 8**0.5)
    assert T2LConfig(lora_r=8, lora_alpha=16, use_rslora=False).lora_scaling == pytest.approx(2.0)
