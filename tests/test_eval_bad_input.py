"""Bad input to `t2l eval`, `t2l eval-combine` and `t2l eval-protocols` gets one line that names the problem and the
fix, before any compute is spent; runs that do not belong together are refused, and nothing is dropped silently."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from text2lora.cli import main
from text2lora.evaluation import EvalConfig


def _run(folder: Path, protocol: str = "loglik", conditions=("base", "t2l"), base_model: str = "tiny",
         metric: str | None = None) -> Path:
    metric = metric or ("acc_norm" if protocol == "loglik" else "acc")
    folder.mkdir(parents=True)
    task = {"kind": "benchmark", "primary_metric": metric, "extra_metrics": [], "higher_is_better": True}
    config = {"seed": 0, "protocol": protocol, "base_model": base_model, "num_fewshot": 3}
    (folder / "results.json").write_text(json.dumps({"config": config, "tasks": {"arc_easy": task}}))
    rows = [{"task": "arc_easy", "condition": c, "variant": 0, "example": str(i), "metrics": {metric: float(i % 2)}}
            for c in conditions for i in range(4)]
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_combine_refuses_runs_of_two_protocols_instead_of_dropping_one(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", protocol="generative")
    err = _error(capsys, ["eval-combine", str(a), str(b), "--out", str(tmp_path / "out")])
    assert "different" in err and "t2l eval-protocols" in err
    assert not (tmp_path / "out").exists()


def test_combine_refuses_runs_of_two_base_models(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", base_model="other")
    assert "different base models (other, tiny)" in _error(capsys, ["eval-combine", str(a), str(b), "--out", str(tmp_path / "o")])


def test_combine_names_a_damaged_file(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    (b / "results.json").write_text("{not json")
    err = _error(capsys, ["eval-combine", str(a), str(b), "--out", str(tmp_path / "o")])
    assert str(b / "results.json") in err and "rerun" in err
    (b / "results.json").write_text((a / "results.json").read_text())
    (b / "examples.jsonl").write_text('{"task": "arc_easy", "cond')  # cut short
    err = _error(capsys, ["eval-combine", str(a), str(b), "--out", str(tmp_path / "o")])
    assert f"{b / 'examples.jsonl'} line 1 is not JSON" in err
    (b / "examples.jsonl").write_text("")
    assert "holds no examples" in _error(capsys, ["eval-combine", str(a), str(b), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_combine_checks_pairs_and_out_before_writing(tmp_path, capsys):
    a = _run(tmp_path / "a")
    err = _error(capsys, ["eval-combine", str(a), "--pairs", "t2l-mt_lora", "--out", str(tmp_path / "o")])
    assert "'t2l-mt_lora'" in err and "(base, t2l)" in err
    (tmp_path / "file").write_text("mine")
    assert "is a file" in _error(capsys, ["eval-combine", str(a), "--out", str(tmp_path / "file")])
    assert (tmp_path / "file").read_text() == "mine"


def test_combine_says_when_a_condition_is_in_some_runs_only(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", conditions=("base",))
    assert main(["eval-combine", str(a), str(b), "--out", str(tmp_path / "o")]) == 0
    assert "note: t2l is in 1 of the 2 runs only" in capsys.readouterr().err
    assert "**Note:** t2l is in 1 of the 2 runs only." in (tmp_path / "o" / "paired.md").read_text()


def test_protocols_need_a_shared_condition_and_say_what_they_leave_out(tmp_path, capsys):
    loglik, generative = _run(tmp_path / "l", conditions=("base",)), _run(tmp_path / "g", "generative", ("t2l",))
    err = _error(capsys, ["eval-protocols", "--loglik", str(loglik), "--generative", str(generative), "--out", str(tmp_path / "o")])
    assert "No condition was measured under both protocols" in err
    generative = _run(tmp_path / "g2", "generative", ("base", "t2l"))
    assert main(["eval-protocols", "--loglik", str(loglik), "--generative", str(generative), "--out", str(tmp_path / "o")]) == 0
    assert "note: left out, measured under generative only: t2l" in capsys.readouterr().err


def test_eval_config_checks_paths_before_any_model_loads(tmp_path):
    common = {"base_model": "unused", "benchmarks": ["arc_easy"]}
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match="is a file"):
        EvalConfig(**common, output_dir=str(tmp_path / "file"))
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    (lora / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="no adapter_model.safetensors .*pickle"):
        EvalConfig(**common, mt_lora=str(lora))
    with pytest.raises(FileNotFoundError, match="--collection .* is not a folder"):
        EvalConfig(**common, collection=str(tmp_path / "missing"))


def test_a_saved_run_from_other_settings_is_named_when_scored_again(tmp_path, caplog):
    from text2lora.evaluation.run_store import RunStore

    class Spec:
        key = "base__arc_easy"

    store = RunStore(tmp_path, resume=True)
    store.save(Spec(), {"fingerprint": "old"}, [])
    assert store.load(Spec(), "old") == ({"fingerprint": "old"}, [])
    with caplog.at_level(logging.WARNING):
        assert store.load(Spec(), "new") is None
    assert "other settings" in caplog.text and "base__arc_easy" in caplog.text
