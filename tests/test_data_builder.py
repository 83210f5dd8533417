"""The collection builder on a fixture BIG-bench tree: schema, splits, caps, skips, reports, caching and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from text2lora.cli import main as cli_main
from text2lora.data.builder import (
    TaskCollectionBuilder,
    TaskCollectionConfig,
    build_task_collection,
    load_task_collection,
)
from text2lora.data.schema import COLUMNS, collection_features

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def fixture_config(tmp_path: Path, **overrides) -> TaskCollectionConfig:
    options = {
        "sources": ["natural_instructions", "bigbench"],
        "descriptions_dir": str(FIXTURES / "descriptions"),
        "bigbench_archive": str(FIXTURES / "bigbench"),
        "prepared_dir": str(tmp_path / "prepared"),
        "tokenizer_name_or_path": None,
        "max_examples_per_task": 6,
        "min_examples_per_task": 3,
        "max_tokens": 200,
        "validation_tasks": ["bigbench.color_pick"],
    }
    options.update(overrides)
    return TaskCollectionConfig(**options)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return TaskCollectionBuilder(fixture_config(tmp_path_factory.mktemp("build"))).build()


def test_schema_and_splits(built):
    dataset = built.dataset
    assert set(dataset) == {"train", "validation"}
    for split in dataset.values():
        assert tuple(split.column_names) == COLUMNS
        assert split.features == collection_features()
    assert set(dataset["train"]["task"]) == {
        "bigbench.number_words",
        "natural_instructions.subtask900_fake_uppercase",
    }
    assert set(dataset["validation"]["task"]) == {"bigbench.color_pick"}


def test_rows_carry_descriptions_and_answers(built):
    train = built.dataset["train"]
    row = next(r for r in train if r["task"] == "natural_instructions.subtask900_fake_uppercase")
    assert row["source"] == "natural_instructions" and row["license"] == "Apache-2.0"
    assert len(row["descriptions"]) == 8 and len(row["heldout_descriptions"]) == 2
    assert not set(row["descriptions"]) & set(row["heldout_descriptions"])
    assert row["completion"] == row["prompt"].removeprefix("Sentence: ").upper() == row["answer"]
    assert row["choices"] == [] and row["num_tokens"] > 0
    mc = built.dataset["validation"][0]
    assert mc["answer"] == mc["completion"] and mc["answer"] in mc["choices"] and len(mc["choices"]) == 3
    assert mc["prompt"].split("\n")[0] in {f"The ball is painted {mc['answer']}. Which colour is the ball?"}
    assert "Options:\n- " in mc["prompt"]


def test_caps_length_filter_and_counts(built):
    counts = {}
    for row in built.dataset["train"]:
        counts[row["task"]] = counts.get(row["task"], 0) + 1
    assert counts == {"bigbench.number_words": 6, "natural_instructions.subtask900_fake_uppercase": 6}
    assert all(n <= 200 for n in built.dataset["train"]["num_tokens"])
    summaries = {s.task: s for s in built.report.tasks}
    words = summaries["bigbench.number_words"]
    assert words.candidates == 11 and words.too_long == 1 and words.examples == 6 and words.split == "train"
    assert summaries["bigbench.color_pick"].multiple_choice == summaries["bigbench.color_pick"].examples == 6


def test_report_lists_every_task_left_out(built):
    report = built.report
    removed = {r["task"]: r for r in report.removed}
    assert set(removed) == {"bigbench.winowhy", "natural_instructions.subtask029_winogrande_full_object"}
    assert removed["bigbench.winowhy"]["benchmarks"] == ["winogrande"]
    skipped = {s.task: s.category for s in report.skipped}
    assert skipped == {
        "bigbench.undescribed_task": "no-descriptions",
        "bigbench.linguistic_mappings": "no-descriptions",
        "bigbench.program_task": "unsupported",
    }
    assert report.totals["train"] == {
        "tasks": 2, "examples": 12, "tasks_per_source": {"bigbench": 1, "natural_instructions": 1},
    }  # fmt: skip
    assert report.totals["validation"]["tasks"] == 1
    assert report.totals["dropped_too_long"] == 1
    text = "\n".join(report.summary_lines())
    assert (
        "bigbench.winowhy [same-construction: winogrande]" in text
        and "no-descriptions: bigbench.linguistic_mappings, bigbench.undescribed_task" in text
    )


def test_build_is_deterministic(tmp_path, built):
    again = TaskCollectionBuilder(fixture_config(tmp_path)).build()
    assert again.dataset["train"].to_list() == built.dataset["train"].to_list()
    reseeded = TaskCollectionBuilder(fixture_config(tmp_path, seed=1)).build()
    assert reseeded.dataset["train"]["prompt"] != built.dataset["train"]["prompt"]


def test_too_few_examples_and_missing_validation_task(tmp_path):
    result = TaskCollectionBuilder(
        fixture_config(tmp_path, max_tokens=30, min_examples_per_task=6, validation_tasks=["bigbench.absent"])
    ).build()
    skipped = {s.task: s for s in result.report.skipped}
    assert skipped["natural_instructions.subtask900_fake_uppercase"].category == "too-few-examples"
    assert "over 30 tokens" in skipped["natural_instructions.subtask900_fake_uppercase"].reason
    assert result.report.missing_validation_tasks == ["bigbench.absent"]
    assert len(result.dataset["validation"]) == 0
    assert result.dataset["validation"].features == collection_features()


def test_real_tokenizer_counts_chat_tokens(tmp_path, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    config = fixture_config(
        tmp_path, tokenizer_name_or_path=str(tiny_tokenizer_dir), tasks=["bigbench.number_words"]
    )
    row = TaskCollectionBuilder(config).build().dataset["train"][0]
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    chat = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
    assert row["num_tokens"] == len(
        tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]
    )


def test_reasoning_gym_tasks_build(tmp_path):
    config = fixture_config(
        tmp_path,
        sources=["reasoning_gym"],
        tasks=["reasoning_gym.leg_counting"],
        validation_tasks=[],
        max_tokens=512,
    )
    result = TaskCollectionBuilder(config).build()
    train = result.dataset["train"]
    assert len(train) == 6 and set(train["task"]) == {"reasoning_gym.leg_counting"}
    assert all(row["answer"].isdigit() and row["completion"] == row["answer"] for row in train)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sources": ["wikipedia"]}, "choose one or more"),
        ({"max_examples_per_task": 0}, ">= 1"),
        ({"min_examples_per_task": 10}, "between 1 and"),
        ({"max_tokens": 4}, "too small"),
        ({"validation_tasks": ["navigate"]}, "not a task id"),
        ({"task_overlap_threshold": 0.0}, r"\(0, 1\]"),
    ],
)
def test_config_validation(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        fixture_config(tmp_path, **change)


def test_saved_collection_reuse_and_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(
        "TEXT2LORA_HOME", str(tmp_path / "home")
    )  # the CLI's caches go here, not to the user's
    out = tmp_path / "collection"
    config = fixture_config(tmp_path)
    assert build_task_collection(config, out) == out
    for name in ("tasks.json", "report.json", "report.md", "examples_per_task.png"):
        assert (out / name).is_file()
    tasks = {t["task"]: t for t in json.loads((out / "tasks.json").read_text())}
    assert (
        tasks["bigbench.color_pick"]["split"] == "validation"
        and len(tasks["bigbench.color_pick"]["descriptions"]) == 8
    )
    loaded = load_task_collection(out)
    assert len(loaded["train"]) == 12 and len(loaded["validation"]) == 6

    stamp = (out / "report.json").stat().st_mtime_ns
    build_task_collection(config, out)  # same fingerprint: reused
    assert (out / "report.json").stat().st_mtime_ns == stamp
    build_task_collection(fixture_config(tmp_path, max_examples_per_task=4), out)  # new config: rebuilt
    assert len(load_task_collection(out)["train"]) == 8

    cli_out = tmp_path / "cli"
    code = cli_main([
        "data", "build", "--out", str(cli_out), "--sources", "bigbench", "--tokenizer", "none",
        "--descriptions-dir", str(FIXTURES / "descriptions"), "--bigbench-archive", str(FIXTURES / "bigbench"),
        "--max-examples-per-task", "5", "--min-examples-per-task", "2", "--validation-tasks", "bigbench.number_words",
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "train: 1 tasks, 5 examples" in printed and "validation: 1 tasks, 5 examples" in printed
    assert json.loads((cli_out / "report.json").read_text())["config"]["tokenizer_name_or_path"] is None
    assert cli_main(["data", "report", str(cli_out)]) == 0
    assert "removed (decontamination): 1 tasks" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="t2l data build"):
        load_task_collection(tmp_path / "nowhere")
