"""`recipes/smollm2/compare_versions.py` pairs two versions' runs example by example, per condition and measure,
and shows whether the conditions without the hypernetwork came out identical."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

RECIPE = Path(__file__).parents[1] / "recipes" / "smollm2" / "compare_versions.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("compare_versions", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def _run(root: Path, name: str, rows: list[dict], complete: bool = True, limit: int = 100) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    tasks = {t: {"kind": "benchmark", "primary_metric": "acc_norm", "extra_metrics": [], "higher_is_better": True}
             for t in {r["task"] for r in rows}}
    (folder / "results.json").write_text(json.dumps({"config": {"seed": 0, "limit": limit}, "tasks": tasks}))
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if complete:
        (folder / "COMPLETE").touch()


def _rows(t2l_scores: dict[str, list[float]], base: list[float]) -> list[dict]:
    rows = []
    for task, scores in t2l_scores.items():
        for example, (score, base_score) in enumerate(zip(scores, base)):
            rows.append({"task": task, "condition": "base", "variant": 0, "example": str(example),
                         "metrics": {"acc_norm": base_score}})
            for variant in (0, 1):  # two descriptions; the second scores the same, so the mean is `score`
                rows.append({"task": task, "condition": "t2l", "variant": variant, "example": str(example),
                             "metrics": {"acc_norm": score}})
    return rows


def test_new_minus_old_per_condition_with_the_unchanged_ones_flagged(tmp_path, capsys):
    recipe = _recipe()
    base = [1.0, 0.0, 1.0, 0.0]
    _run(tmp_path / "v1", "loglik-seed0-bfloat16", _rows({"a": [1, 1, 0, 0], "b": [0, 0, 0, 0]}, base))
    _run(tmp_path / "v2", "loglik-seed0-bfloat16", _rows({"a": [1, 1, 1, 1], "b": [0, 1, 0, 0]}, base))
    _run(tmp_path / "v2", "generative-seed0-bfloat16", _rows({"a": [1, 1, 1, 1]}, base))  # v1 has none: left out
    _run(tmp_path / "v1", "loglik-seed1-bfloat16", _rows({"a": [0, 0, 0, 0]}, base), complete=False)
    _run(tmp_path / "v2", "loglik-seed1-bfloat16", _rows({"a": [1, 1, 1, 1]}, base), complete=False)

    assert recipe.main(["--old", str(tmp_path / "v1"), "--new", str(tmp_path / "v2"), "--out", str(tmp_path / "out"),
                        "--names", "v1", "v2"]) == 0
    assert (tmp_path / "out" / "versions.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((tmp_path / "out" / "versions.json").read_text())
    assert [(b["protocol"], b["seeds"]) for b in report["blocks"]] == [("loglik", "0")]  # complete pairs only
    rows = report["blocks"][0]["rows"]
    assert rows["base"]["diff"] == 0 and rows["base"]["n_changed"] == 0
    t2l = rows["t2l"]
    assert t2l["old"] == pytest.approx((0.5 + 0.0) / 2) and t2l["new"] == pytest.approx((1.0 + 0.25) / 2)
    assert t2l["diff"] == pytest.approx((0.5 + 0.25) / 2)  # mean of task means: each task weighs equally
    assert t2l["n"] == 8 and t2l["n_changed"] == 3 and t2l["ci95"][0] <= t2l["diff"] <= t2l["ci95"][1]
    table = (tmp_path / "out" / "versions.md").read_text()
    assert "| condition | v1 | v2 | v2 − v1 [95% CI] |" in table and "| T2L (held-out desc.) | 25.0 | 62.5 | +37.5 [" in table and "| base | 50.0 | 50.0 | +0.0 [+0.0, +0.0] | 8 | 0 |" in table
    assert "T2L 25.0 -> 62.5" in capsys.readouterr().out


def test_nothing_to_compare_says_so(tmp_path):
    recipe = _recipe()
    _run(tmp_path / "v2", "loglik-seed0-bfloat16", _rows({"a": [1]}, [1.0]))
    with pytest.raises(SystemExit, match="No complete"):
        recipe.main(["--old", str(tmp_path / "v1"), "--new", str(tmp_path / "v2"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_changed_condition_without_the_hypernetwork_is_flagged(tmp_path, capsys):
    recipe = _recipe()
    _run(tmp_path / "v1", "loglik-seed0-bfloat16", _rows({"a": [1, 0]}, [1.0, 0.0]))
    _run(tmp_path / "v2", "loglik-seed0-bfloat16", _rows({"a": [1, 0]}, [1.0, 1.0]))
    recipe.main(["--old", str(tmp_path / "v1"), "--new", str(tmp_path / "v2"), "--out", str(tmp_path / "out")])
    assert "check failed (log-likelihood, acc_norm, %): base changed on 1 example(s)" in capsys.readouterr().out
    assert "**Check failed:** base changed on 1 example(s)." in (tmp_path / "out" / "versions.md").read_text()


def test_runs_with_other_settings_are_not_paired(tmp_path):
    recipe = _recipe()
    _run(tmp_path / "v1", "loglik-seed0-bfloat16", _rows({"a": [1, 0]}, [1.0, 0.0]), limit=50)
    _run(tmp_path / "v2", "loglik-seed0-bfloat16", _rows({"a": [1, 0]}, [1.0, 0.0]))
    with pytest.raises(SystemExit, match="differ in limit"):
        recipe.main(["--old", str(tmp_path / "v1"), "--new", str(tmp_path / "v2"), "--out", str(tmp_path / "out")])
