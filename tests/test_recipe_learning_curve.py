"""`recipes/smollm2/learning_curve.py` scores each checkpoint once, keyed by the content of its weights: a point
is scored again when the checkpoint behind it changes, never read back stale from a folder of the same name."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

RECIPE = Path(__file__).parents[1] / "recipes" / "smollm2" / "learning_curve.py"


def _recipe(monkeypatch):
    spec = importlib.util.spec_from_file_location("learning_curve", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    calls = []

    def fake_eval(command, check, env):  # stands in for `t2l eval`: records the call, writes results.json
        calls.append(command[command.index("--t2l") + 1])
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"scored": len(calls)}))

    monkeypatch.setattr(recipe.subprocess, "run", fake_eval)
    return recipe, calls


def test_a_point_is_scored_again_only_when_its_checkpoint_changes(tiny_t2l_nonzero, tmp_path, monkeypatch):
    recipe, calls = _recipe(monkeypatch)
    checkpoint, point = tmp_path / "checkpoint-100", tmp_path / "curve" / "step-100"
    tiny_t2l_nonzero.save_pretrained(checkpoint)
    recipe.evaluate(str(checkpoint), "t2l", point, 20, 2)
    recipe.evaluate(str(checkpoint), "t2l", point, 20, 2)
    assert calls == [str(checkpoint)]  # the second call found the point, for these weights

    with torch.no_grad():
        next(iter(tiny_t2l_nonzero.heads.values())).bias.add_(0.01)
    tiny_t2l_nonzero.save_pretrained(checkpoint)  # retrained under the same name
    recipe.evaluate(str(checkpoint), "t2l", point, 20, 2)
    assert len(calls) == 2
    assert (point / recipe.MARKER).read_text().strip() == recipe.hypernetwork_fingerprint(str(checkpoint))
