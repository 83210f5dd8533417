"""`recipes/smollm2/package_default.py` replaces the shipped default in place inside the package: it must swap in
exactly the new weights and keep everything it does not write (the packaged multi-task LoRA, the centroids)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from text2lora.fingerprints import folder_fingerprint, model_fingerprint
from text2lora.nearest_tasks import centroids_from_embeddings

RECIPE = Path(__file__).parents[1] / "recipes" / "smollm2" / "package_default.py"


@pytest.fixture
def packaging(tiny_t2l_nonzero, tmp_path, monkeypatch):
    """The recipe pointed at a stand-in for the package's default folder, which holds what a release holds."""
    spec = importlib.util.spec_from_file_location("package_default", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    target = tmp_path / "package" / "default_checkpoint"
    (target / "mt_lora").mkdir(parents=True)
    (target / "mt_lora" / "adapter_model.safetensors").write_bytes(b"the packaged multi-task LoRA")
    (target / "model.safetensors").write_bytes(b"the old weights")
    (target / "eval_results.json").write_text('{"old": "results"}')
    monkeypatch.setattr(recipe, "TARGET", target)
    checkpoint = tmp_path / "checkpoint-329"
    tiny_t2l_nonzero.save_pretrained(checkpoint)
    return recipe, target, checkpoint, tiny_t2l_nonzero


def _centroids(target: Path, encoder: str) -> bytes:
    centroids = centroids_from_embeddings(["a", "b"], torch.randn(4, 8), [0, 2, 4], encoder=encoder)
    return centroids.save(target).read_bytes()


def test_packaging_swaps_in_the_weights_and_keeps_what_it_does_not_write(packaging):
    recipe, target, checkpoint, model = packaging
    centroids = _centroids(target, model.description_encoder.identity)
    recipe.main(str(checkpoint))
    assert folder_fingerprint(target) == model_fingerprint(copy.deepcopy(model).to(torch.bfloat16))
    assert (target / "mt_lora" / "adapter_model.safetensors").read_bytes() == b"the packaged multi-task LoRA"
    assert (target / "task_centroids.safetensors").read_bytes() == centroids
    assert not (target / "eval_results.json").exists()  # the old results do not describe the new weights
    assert {oct(p.stat().st_mode & 0o777) for p in target.rglob("*") if p.is_file()} == {"0o644"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["default_checkpoint"]  # no temporary folder left


def test_packaging_refuses_centroids_of_another_encoder_and_changes_nothing(packaging):
    recipe, target, checkpoint, _ = packaging
    centroids = _centroids(target, "another-encoder|True|1.0|True|None|None|None")
    with pytest.raises(RuntimeError, match="rebuild them for it. Nothing was replaced"):
        recipe.main(str(checkpoint))
    assert (target / "model.safetensors").read_bytes() == b"the old weights"
    assert (target / "task_centroids.safetensors").read_bytes() == centroids
    assert (target / "eval_results.json").read_text() == '{"old": "results"}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["default_checkpoint"]
