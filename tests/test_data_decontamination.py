"""Decontamination: the explicit removal list and the n-gram scan against benchmark evaluation files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from text2lora.data.builder import TaskCollectionBuilder, TaskCollectionConfig
from text2lora.data.decontamination import (
    DECONTAMINATION_RULES,
    EVALUATION_BENCHMARKS,
    REMOVED_TASKS,
    BenchmarkNgramIndex,
    removed_task_ids,
)
from text2lora.data.schema import Example

FIXTURES = Path(__file__).parent / "fixtures" / "data"
RED_HOUSE = "Sentence: the red house is on the hill."


def test_removal_list_is_explicit_and_well_formed():
    removed = removed_task_ids()
    assert len(removed) == len(REMOVED_TASKS)  # no duplicates
    winogrande = {t for t, r in removed.items() if "winogrande" in r.benchmarks}
    assert {f"natural_instructions.subtask0{n}_" for n in range(29, 36)} == {
        t[:32] for t in winogrande if "natural" in t
    }
    assert "reasoning_gym.gsm_symbolic" in removed and removed["reasoning_gym.gsm_symbolic"].benchmarks == (
        "gsm8k",
    )
    for removal in REMOVED_TASKS:
        assert removal.rule in DECONTAMINATION_RULES and removal.reason
        assert set(removal.benchmarks) <= set(EVALUATION_BENCHMARKS)
        assert removal.task.split(".", 1)[0] in {"natural_instructions", "bigbench", "reasoning_gym"}


@pytest.fixture
def benchmark_dir(tmp_path) -> Path:
    """A fake benchmarks folder: PIQA holds the text of one fixture example, GSM8K unrelated text."""
    (tmp_path / "piqa").mkdir()
    (tmp_path / "piqa" / "valid.jsonl").write_text(
        json.dumps({"goal": RED_HOUSE, "sol1": "THE RED HOUSE IS ON THE HILL.", "sol2": "Paint it blue."})
        + "\n"
    )
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(
        json.dumps(
            {
                "question": "Natalia sold clips to 48 of her friends in April and then half as many in May.",
                "answer": "72",
            }
        )
        + "\n"
    )
    return tmp_path


def test_ngram_index_matches_benchmark_text_only(benchmark_dir):
    index = BenchmarkNgramIndex.from_dir(benchmark_dir, n=8)
    assert index.files == {"gsm8k": ["gsm8k/test.jsonl"], "piqa": ["piqa/valid.jsonl"]}
    assert index.match("Q: natalia SOLD clips to 48 of her friends in April, and then?") == "gsm8k"
    assert (
        index.match_example(Example(prompt=RED_HOUSE, completion="THE RED HOUSE IS ON THE HILL.")) == "piqa"
    )
    assert (
        index.match("Natalia sold clips to 48 of her neighbours in April") is None
    )  # 8 consecutive words differ
    assert index.match("the red house") is None


def test_ngram_index_rejects_empty_folder_and_tiny_n(tmp_path):
    with pytest.raises(FileNotFoundError, match="--benchmark-dir"):
        BenchmarkNgramIndex.from_dir(tmp_path)
    with pytest.raises(ValueError, match="too small"):
        BenchmarkNgramIndex.from_dir(tmp_path, n=3)


def config(tmp_path: Path, benchmark_dir: Path | None, threshold: float) -> TaskCollectionConfig:
    return TaskCollectionConfig(
        sources=["natural_instructions", "bigbench"],
        descriptions_dir=str(FIXTURES / "descriptions"),
        bigbench_archive=str(FIXTURES / "bigbench"),
        prepared_dir=str(tmp_path / "prepared"),
        tokenizer_name_or_path=None,
        max_examples_per_task=8,
        min_examples_per_task=3,
        validation_tasks=[],
        benchmark_dir=str(benchmark_dir) if benchmark_dir else None,
        ngram_size=8,
        task_overlap_threshold=threshold,
    )


def test_builder_applies_removal_list_without_scan(tmp_path):
    result = TaskCollectionBuilder(config(tmp_path, None, 0.5)).build()
    tasks = set(result.dataset["train"]["task"])
    assert (
        "bigbench.winowhy" not in tasks
        and "natural_instructions.subtask029_winogrande_full_object" not in tasks
    )
    assert {r["task"] for r in result.report.removed} == {
        "bigbench.winowhy", "natural_instructions.subtask029_winogrande_full_object",
    }  # fmt: skip
    assert result.report.ngram_scan is None
    assert RED_HOUSE in result.dataset["train"]["prompt"]


def test_scan_drops_matching_examples_below_threshold(tmp_path, benchmark_dir):
    result = TaskCollectionBuilder(config(tmp_path, benchmark_dir, 0.5)).build()
    train = result.dataset["train"]
    assert RED_HOUSE not in train["prompt"]
    upper = next(t for t in result.report.tasks if t.task == "natural_instructions.subtask900_fake_uppercase")
    assert upper.benchmark_overlap == {"piqa": 1} and upper.examples == 7
    assert result.report.totals["dropped_benchmark_overlap"] == 1
    assert result.report.ngram_scan["files"]["piqa"] == ["piqa/valid.jsonl"]


def test_scan_removes_task_above_threshold(tmp_path, benchmark_dir):
    result = TaskCollectionBuilder(config(tmp_path, benchmark_dir, 0.1)).build()  # 1 of 8 examples = 12.5%
    assert "natural_instructions.subtask900_fake_uppercase" not in set(result.dataset["train"]["task"])
    removal = {r["task"]: r for r in result.report.removed}["natural_instructions.subtask900_fake_uppercase"]
    assert removal["rule"] == "overlap" and removal["benchmarks"] == ["piqa"]
    assert "1/8 examples share a 8-gram" in removal["reason"]
    assert "bigbench.number_words" in set(result.dataset["train"]["task"])
