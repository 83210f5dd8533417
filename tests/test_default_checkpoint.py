"""The hypernetwork that ships inside the package: found by name with no download, small, trained, and its
adapters depend on the description."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from text2lora import T2LModel, packaged

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shipped() -> T2LModel:
    assert packaged.DEFAULT_CHECKPOINT is not None
    return T2LModel.from_pretrained(packaged.DEFAULT_CHECKPOINT).eval()


def test_the_default_ships_inside_the_package_within_25_mb():
    folder = Path(packaged.resolve_checkpoint(packaged.DEFAULT_CHECKPOINT))
    assert folder.is_dir() and folder.is_relative_to(Path(packaged.__file__).parent)
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 25 * 2**20
    card = (folder / "README.md").read_text()
    assert "library_name: text2lora" in card and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card


def test_the_default_is_the_trained_smollm2_hypernetwork(shipped):
    config = shipped.config
    assert (config.base_model_name_or_path, config.variant) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "L")
    assert config.encoder_name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    adapter = shipped.generate_lora("Sort a list of numbers in ascending order.")
    b_norm = sum(t.float().norm() for k, t in adapter.state_dict.items() if "lora_B" in k)
    assert b_norm > 0  # an untrained (HyperInit) hypernetwork would give B = 0


def test_its_adapters_depend_on_the_description(shipped):
    texts = ["Count the legs of the animals in the list.", "Decrypt the Caesar-cipher text.",
             "Count the legs of the animals in the list."]
    first, other, again = shipped.generate_lora(texts)
    diff = sum((first.state_dict[k].float() - other.state_dict[k].float()).abs().sum() for k in first.state_dict)
    assert diff > 0
    assert all(torch.equal(first.state_dict[k], again.state_dict[k]) for k in first.state_dict)
