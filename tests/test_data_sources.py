"""Task sources: BIG-bench / Natural-Instructions example formatting and the archive preparation."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from text2lora.data.schema import Example
from text2lora.data.sources import get_source, stable_seed
from text2lora.data.sources.archive import list_prepared_tasks, prepare_bigbench_archive, programmatic_tasks
from text2lora.data.sources.bigbench import format_bigbench_example, frame_prompt, with_demonstrations
from text2lora.data.sources.natural_instructions import format_natural_instructions_example

FIXTURE_TREE = Path(__file__).parent / "fixtures" / "data" / "bigbench"


@pytest.fixture(scope="module")
def fixture_archive(tmp_path_factory) -> Path:
    """The fixture tree packed like the real sdist: bigbench-1.0.0/bigbench/benchmark_tasks/..."""
    path = tmp_path_factory.mktemp("archive") / "bigbench-1.0.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(FIXTURE_TREE / "bigbench", arcname="bigbench-1.0.0/bigbench")
    return path


def test_multiple_choice_lists_options_and_answers_with_best_option():
    raw = {"input": "Which is a fruit?", "target_scores": {"stone": 0, "apple": 1, "chair": 0}}
    example = format_bigbench_example(raw)
    assert example == Example(
        prompt="Which is a fruit?\nOptions:\n- stone\n- apple\n- chair",
        completion="apple",
        choices=("stone", "apple", "chair"),
        answer="apple",
    )


def test_multiple_choice_respects_append_flag_and_choice_limit():
    raw = {"input": "Q?", "target_scores": {"yes": 0, "no": 1}}
    assert format_bigbench_example(raw, append_choices=False).prompt == "Q?"
    many = {"input": "Close the brackets: ( [", "target_scores": {f"{i})": int(i == 7) for i in range(12)}}
    example = format_bigbench_example(many, max_listed_choices=10)
    assert (
        example.prompt == "Close the brackets: ( ["
        and example.completion == "7)"
        and len(example.choices) == 12
    )


def test_multiple_choice_without_input_shows_the_options():
    raw = {
        "input": "",
        "target_scores": {"The rain made the grass wet.": 1, "The grass made the rain wet.": 0},
    }
    example = format_bigbench_example(raw, append_choices=False)
    assert example.prompt == "Options:\n- The rain made the grass wet.\n- The grass made the rain wet."
    assert example.completion == "The rain made the grass wet."


def test_free_form_target_and_mixed_example():
    assert format_bigbench_example({"input": "Spell 3.", "target": ["three", "3"]}).completion == "three"
    mixed = format_bigbench_example(
        {"input": "What is 2 plus 2?", "target": "4", "target_scores": {"4": 1, "5": 0}}
    )
    # Free-form answer in the target's words; options kept for log-likelihood scoring but not shown.
    assert (mixed.prompt, mixed.completion, mixed.choices, mixed.answer) == (
        "What is 2 plus 2?",
        "4",
        ("4", "5"),
        "4",
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"input": "", "target": "x"},
        {"input": "", "target_scores": {f"option {i}": int(i == 0) for i in range(12)}},  # too many to show
        {"input": "Q?", "target": []},
        {"input": "Q?", "target_scores": {"a": 0, "b": 0}},  # no option is better
        {"input": "Q?", "target_scores": {"a": "high", "b": 0}},
    ],
)
def test_unusable_bigbench_examples_are_dropped(raw):
    assert format_bigbench_example(raw) is None


def test_natural_instructions_example():
    example = format_natural_instructions_example({"input": " Sentence: hi. ", "target": ["HI.", "Hi!"]})
    assert example == Example(prompt="Sentence: hi.", completion="HI.", answer="HI.")
    assert format_natural_instructions_example({"input": "x", "target": []}) is None


def test_stable_seed_is_deterministic_and_distinct():
    assert stable_seed(0, "bigbench.arithmetic") == stable_seed(0, "bigbench.arithmetic")
    assert stable_seed(0, "bigbench.arithmetic") != stable_seed(1, "bigbench.arithmetic")


def test_prepare_archive_from_tarball_and_folder_agree(fixture_archive, tmp_path):
    from_tar = prepare_bigbench_archive(fixture_archive, tmp_path / "from_tar")
    from_dir = prepare_bigbench_archive(FIXTURE_TREE, tmp_path / "from_dir")
    for prepared in (from_tar, from_dir):
        assert list_prepared_tasks(prepared, "bigbench") == [
            "color_pick", "linguistic_mappings", "number_words", "undescribed_task", "winowhy",
        ]  # fmt: skip
        assert list_prepared_tasks(prepared, "natural_instructions") == [
            "subtask029_winogrande_full_object",
            "subtask900_fake_uppercase",
        ]
        assert programmatic_tasks(prepared) == ["program_task"]
    # A second call with the same archive reuses the prepared cache instead of reading the archive again.
    stamp = (from_tar / "prepared.json").stat().st_mtime_ns
    assert prepare_bigbench_archive(fixture_archive, tmp_path / "from_tar") == from_tar
    assert (from_tar / "prepared.json").stat().st_mtime_ns == stamp


def test_sources_load_pooled_subtasks_and_ni_tasks(fixture_archive, tmp_path):
    prepared = prepare_bigbench_archive(fixture_archive, tmp_path / "prepared")
    bigbench = get_source("bigbench", prepared_dir=prepared)
    assert "program_task" in bigbench.unsupported_tasks()
    task = bigbench.load_task("number_words", max_examples=100, seed=1)
    assert task.definition == "Spell numbers as words" and task.license == "Apache-2.0"
    assert len(task.examples) == 11  # both subtasks pooled, including the over-long example
    assert {"zero", "nine"} <= {e.completion for e in task.examples}
    # Seeded order: same seed, same order; the cap is honoured.
    assert bigbench.load_task("number_words", 4, seed=1).examples == task.examples[:4]
    ni = get_source("natural_instructions", prepared_dir=prepared)
    upper = ni.load_task("subtask900_fake_uppercase", max_examples=3, seed=0)
    assert len(upper.examples) == 3 and upper.definition.startswith("Definition:")
    assert all(e.completion == e.prompt.removeprefix("Sentence: ").upper() for e in upper.examples)


def test_unknown_source_and_missing_archive(tmp_path):
    with pytest.raises(ValueError, match="Unknown source"):
        get_source("wikipedia")
    with pytest.raises(FileNotFoundError, match="not found"):
        prepare_bigbench_archive(tmp_path / "missing.tar.gz", tmp_path / "prepared")


def test_reasoning_gym_source_generates_offline():
    source = get_source("reasoning_gym")
    assert "leg_counting" in source.available_tasks() and "composite" not in source.available_tasks()
    task = source.load_task("leg_counting", max_examples=5, seed=3)
    assert len(task.examples) == 5 and task.definition is None
    assert all(
        e.completion.isdigit() and e.answer == e.completion and "legs" in e.prompt for e in task.examples
    )
    assert source.load_task("leg_counting", 5, seed=3).examples == task.examples


def test_reasoning_gym_time_budget_stops_generation_and_says_so():
    from text2lora.data.sources.reasoning_gym import ReasoningGymSource

    task = ReasoningGymSource(time_budget_s=0.0).load_task("leg_counting", max_examples=5, seed=3)
    assert task.examples == [] and "time budget after 0 examples" in task.note


def test_bigbench_framing_and_demonstrations():
    fmt = {"task_prefix": "Table: a=1, b=2\n", "example_input_prefix": "Q: ", "example_output_prefix": "\nA:"}
    assert frame_prompt("What is a?", fmt) == "Table: a=1, b=2\nQ: What is a?\nA:"
    assert frame_prompt("What is a?", {}) == "What is a?"
    demos = [Example("[1, 2]", "[2]"), Example("[5, 3, 4]", "[3]")]
    framed = with_demonstrations(Example("[7, 9]", "[9]"), demos)
    assert (
        framed.prompt
        == "Input: [1, 2]\nOutput: [2]\n\nInput: [5, 3, 4]\nOutput: [3]\n\nInput: [7, 9]\nOutput:"
    )
    assert framed.completion == "[9]"


def test_tasks_needing_their_frame_keep_it(fixture_archive, tmp_path):
    prepared = prepare_bigbench_archive(fixture_archive, tmp_path / "prepared")
    task = get_source("bigbench", prepared_dir=prepared).load_task("linguistic_mappings", 10, seed=0)
    assert min((e.prompt, e.completion) for e in task.examples) == ("Today I call. Yesterday I", "called")


def test_alarm_interrupts_a_slow_example():
    import time

    from text2lora.data.sources.reasoning_gym import _alarm, _BudgetSpent

    start = time.perf_counter()
    with pytest.raises(_BudgetSpent), _alarm(0.05):
        time.sleep(5)
    assert time.perf_counter() - start < 2


def test_reasoning_gym_answers_from_metadata_are_valid():
    """graph_color has no reference answer; the one taken from metadata must be a proper colouring."""
    import json as json_module

    task = get_source("reasoning_gym").load_task("graph_color", max_examples=3, seed=0)
    assert len(task.examples) == 3
    for example in task.examples:
        colouring = {int(k): v for k, v in json_module.loads(example.completion).items()}
        edges = [
            tuple(map(int, pair))
            for pair in re.findall(r"\((\d+), (\d+)\)", example.prompt.split("Edges:")[1].split("\n")[0])
        ]
        assert edges and all(colouring[a] != colouring[b] for a, b in edges)


def test_malformed_answers_are_recognised():
    from text2lora.data.sources.reasoning_gym import MALFORMED_ANSWER

    assert MALFORMED_ANSWER["intermediate_integration"]("Integral(x*exp(x), x) + C")
    assert not MALFORMED_ANSWER["intermediate_integration"]("x*exp(x) - exp(x) + C")
