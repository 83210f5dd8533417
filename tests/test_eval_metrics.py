"""Known-answer checks of the scoring code: final-number extraction, exact match, code extraction, the
task-file scorers, bootstrap CIs, paired differences, the description split and the run planner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from text2lora.evaluation.conditions import CONDITIONS, RunPlanner, parse_conditions
from text2lora.evaluation.descriptions import (
    is_evaluation_description,
    load_description_set,
    normalize_description,
    random_description,
)
from text2lora.evaluation.metrics import (
    bootstrap_ci,
    exact_match,
    extract_code,
    extract_final_number,
    normalize_answer,
    numbers_equal,
)
from text2lora.evaluation.paired import paired_differences
from text2lora.evaluation.samples import select_examples

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Janet sells 9 eggs.\nShe makes 9 * 2 = $18 a day.\n#### 18", "18"),
        ("The answer is 1,234.", "1234"),
        ("so she pays $1,234.50 in total", "1234.5"),
        ("First 3 + 4 = 7, then 7 * 2 = 14", "14"),
        ("#### -5\nand later 100", "-5"),  # the marker wins over a later number
        ("Final answer: 3/4 of the cake", "3/4"),
        ("It is 12.0 dollars.", "12"),
        ("\\boxed{42}", "42"),
        ("x2 and 5th are not numbers on their own, but 8 is", "8"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected


def test_numbers_equal_is_numeric_and_rejects_missing():
    assert numbers_equal("18", "18.00")
    assert numbers_equal("1234.5", "1234.50")
    assert numbers_equal("0.5", "1/2")
    assert not numbers_equal("18", "19")
    assert not numbers_equal(None, "18")
    assert not numbers_equal("abc", "18")


def test_exact_match_normalises_case_space_and_final_stop_only():
    assert normalize_answer("  Paris.  ") == "paris"
    assert exact_match("Paris.", "paris") == 1.0
    assert exact_match("New   York", "new york") == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0
    assert exact_match("", "Paris") == 0.0


def test_extract_code_from_fences_prefix_and_plain_text():
    assert extract_code("def f():\n    return 1\n```\nmore text", prefix="```python\n") == "def f():\n    return 1\n"
    assert extract_code("Here you go:\n```python\nx = 1\n```\nDone.") == "x = 1\n"
    assert extract_code("x = 2") == "x = 2\n"
    # a reply cut off by the token limit inside the block still yields the code so far
    assert extract_code("def g():\n    pass", prefix="```python\n") == "def g():\n    pass\n"


def _task_utils():
    path = Path(__import__("text2lora.evaluation.tasks", fromlist=["x"]).__file__).parent / "utils.py"
    spec = importlib.util.spec_from_file_location("t2l_task_utils_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gsm8k_scorer_known_answers():
    utils = _task_utils()
    doc = {"answer_number": "18"}
    assert utils.gsm8k_process_results(doc, ["She makes 9 * 2 = 18 dollars. #### 18"]) == {"exact_match": 1.0}
    assert utils.gsm8k_process_results(doc, ["The answer is $18.00"]) == {"exact_match": 1.0}
    assert utils.gsm8k_process_results(doc, ["#### 17"]) == {"exact_match": 0.0}
    assert utils.gsm8k_process_results(doc, ["I do not know"]) == {"exact_match": 0.0}


def test_code_scorers_pass_correct_and_fail_wrong_solutions():
    utils = _task_utils()
    mbpp_doc = {"tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0"}
    assert utils.mbpp_process_results(mbpp_doc, ["def add(a, b):\n    return a + b\n"])["pass_at_1"] == 1.0
    assert utils.mbpp_process_results(mbpp_doc, ["def add(a, b):\n    return a * b\n"])["pass_at_1"] == 0.0
    humaneval_doc = {
        "prompt": 'def double(x):\n    """Return twice x."""\n',
        "tests": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(0) == 0\n\ncheck(double)",
    }
    assert utils.humaneval_process_results(humaneval_doc, ["    return 2 * x\n"])["pass_at_1"] == 1.0
    assert utils.humaneval_process_results(humaneval_doc, ["    return x + 2\n"])["pass_at_1"] == 0.0
    full_function = 'def double(x):\n    """Return twice x."""\n    return x * 2\n```\nThis doubles x.'
    assert utils.humaneval_process_results(humaneval_doc, [full_function])["pass_at_1"] == 1.0


def test_reference_solutions_of_the_real_code_benchmarks_pass():
    """The scorers must accept the benchmarks' own reference solutions (checked on the first problems of
    each; all 164 HumanEval and 378 MBPP+ references pass when run in full)."""
    from text2lora.evaluation.benchmarks import DEFAULT_BENCHMARK_DIR, load_task_configs

    if not (DEFAULT_BENCHMARK_DIR / "mbpp").is_dir():
        pytest.skip(f"benchmark data not present at {DEFAULT_BENCHMARK_DIR}")
    utils = _task_utils()
    configs = load_task_configs(["mbpp", "humaneval"], DEFAULT_BENCHMARK_DIR)
    humaneval = utils.load_humaneval(configs["humaneval"]["dataset_kwargs"]["data_files"])["test"]
    mbpp = utils.load_mbpp(configs["mbpp"]["dataset_kwargs"]["data_files"])["test"]
    for doc in list(humaneval.select(range(4))):
        assert utils.humaneval_process_results(doc, [doc["reference"]])["pass_at_1"] == 1.0, doc["task_id"]
    for doc in [d for d in mbpp if d["task_id"] in ("Mbpp/2", "Mbpp/120", "Mbpp/3")]:
        assert utils.mbpp_process_results(doc, [doc["reference"]])["pass_at_1"] == 1.0, doc["task_id"]


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(0.3, 1.0, size=30)
    large = rng.normal(0.3, 1.0, size=3000)
    low_s, high_s = bootstrap_ci(small, seed=1)
    low_l, high_l = bootstrap_ci(large, seed=1)
    assert low_s < small.mean() < high_s
    assert low_l < 0.3 < high_l
    assert (high_l - low_l) < (high_s - low_s) / 5
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)


def test_paired_differences_pairs_examples_and_averages_variants():
    tasks = {"a": {"kind": "benchmark", "primary_metric": "acc"}, "b": {"kind": "benchmark", "primary_metric": "acc"}}
    examples = []
    for task in ("a", "b"):
        for ex in range(20):
            # condition x: two variants averaging to 1.0 on even examples, 0.5 on odd; y: always 0.5
            examples += [
                {"task": task, "condition": "x", "variant": 0, "example": str(ex), "metrics": {"acc": 1.0}},
                {"task": task, "condition": "x", "variant": 1, "example": str(ex),
                 "metrics": {"acc": 1.0 if ex % 2 == 0 else 0.0}},
                {"task": task, "condition": "y", "variant": 0, "example": str(ex), "metrics": {"acc": 0.5}},
            ]
    rows = paired_differences(examples, tasks, [("x", "y")], iterations=500, seed=0)
    per_task = {r["scope"]: r for r in rows}
    assert per_task["a"]["n"] == 20
    assert per_task["a"]["mean_diff"] == pytest.approx(0.25)  # (0.5 + 0.0) / 2 over examples
    assert per_task["all benchmarks"]["n_tasks"] == 2
    low, high = per_task["all benchmarks"]["ci95"]
    assert low <= 0.25 <= high
    assert per_task["a"]["p_boot"] < 0.05


def test_select_examples_is_seeded_sorted_and_complete_without_limit():
    first = select_examples(100, 10, seed=3, key="arc_easy:main")
    assert first == select_examples(100, 10, seed=3, key="arc_easy:main")
    assert first == sorted(first) and len(set(first)) == 10
    assert first != select_examples(100, 10, seed=4, key="arc_easy:main")
    assert select_examples(5, 10, seed=0, key="x") == [0, 1, 2, 3, 4]
    assert select_examples(5, None, seed=0, key="x") == [0, 1, 2, 3, 4]


def test_description_split_is_the_documented_hash_rule():
    group = load_description_set("arc_easy", FIXTURES / "descriptions")
    assert group.evaluation and group.training
    assert not set(group.evaluation) & set(group.training)
    assert all(is_evaluation_description("arc_easy", d) for d in group.evaluation)
    assert not any(is_evaluation_description("arc_easy", d) for d in group.training)
    # the rule depends on the normalised text only
    text = group.evaluation[0]
    assert is_evaluation_description("arc_easy", "  " + text.replace(" ", "   ") + "\n")
    assert normalize_description(" a \n b ") == "a b"


def test_planner_draws_held_out_other_and_random_descriptions_reproducibly():
    descriptions = {"arc_easy": ["e1", "e2", "e3", "e4"], "arc_challenge": ["c1"], "gsm8k": ["g1", "g2"], "piqa": ["p1"]}
    planner = RunPlanner(descriptions, seed=0, num_descriptions=3)
    matched = planner.runs(CONDITIONS["t2l"], "arc_easy")
    assert [r.variant for r in matched] == [0, 1, 2]
    assert {r.description for r in matched} <= set(descriptions["arc_easy"])
    assert all(r.adapter.kind == "t2l" and r.system_instruction is None for r in matched)
    other = planner.runs(CONDITIONS["t2l_other"], "arc_easy")
    assert {r.description_origin for r in other} <= {"gsm8k", "piqa"}  # arc_challenge is a related task
    random_runs = planner.runs(CONDITIONS["t2l_random"], "arc_easy")
    assert all(r.description_origin == "random" for r in random_runs)
    assert [r.description for r in random_runs] == [r.description for r in planner.runs(CONDITIONS["t2l_random"], "arc_easy")]
    prompt = planner.runs(CONDITIONS["description"], "arc_easy")
    assert [r.system_instruction for r in prompt] == [r.description for r in matched]
    assert planner.runs(CONDITIONS["fewshot"], "arc_easy")[0].num_fewshot == 3
    assert planner.runs(CONDITIONS["oracle_lora"], "arc_easy") == []  # no oracle folder: no run
    assert random_description(0, "k", 40) == random_description(0, "k", 40)
    assert random_description(0, "k", 40) != random_description(1, "k", 40)
    (mix,) = planner.runs(CONDITIONS["t2l_mix"], "arc_easy")  # one run: the matched descriptions, mixed
    assert mix.description == tuple(r.description for r in matched) and mix.adapter.description == mix.description
    assert mix.adapter.weights == (1 / 3, 1 / 3, 1 / 3) and mix.description_origin == "arc_easy" and mix.variant == 0
    assert mix.to_dict()["description"] == list(mix.description)  # as results.json holds it
    assert "weights" not in matched[0].to_dict()["adapter"]  # unset: runs saved before mixes keep their fingerprint


def test_parse_conditions_names_the_missing_input():
    assert [c.name for c in parse_conditions("base,fewshot")] == ["base", "fewshot"]
    with pytest.raises(ValueError, match="--t2l"):
        parse_conditions("t2l", {"t2l": False})
    with pytest.raises(ValueError, match="Unknown condition"):
        parse_conditions("bogus")
    assert "t2l" not in [c.name for c in parse_conditions(None, {"t2l": False, "t2l_other": False, "t2l_random": False})]
    everything = [c.name for c in parse_conditions("all")]
    assert "t2l_mix" not in everything and "t2l_random" in everything  # the mix runs only when named
    assert [c.name for c in parse_conditions("t2l,t2l_mix")] == ["t2l", "t2l_mix"]


def _collection_row(task, prompt, completion, choices=(), answer=""):
    return {"task": task, "source": "fixture", "license": "Apache-2.0", "descriptions": ["d1"],
            "heldout_descriptions": ["held out one", "held out two"], "prompt": prompt, "completion": completion,
            "choices": list(choices), "answer": answer, "num_tokens": 10}


def test_collection_tasks_are_grouped_by_task_and_row_kind():
    from datasets import Dataset

    from text2lora.evaluation.collection import load_collection_tasks

    rows = [
        _collection_row("a.mc", "Pick one", "blue", ["red", "blue"], "blue"),
        _collection_row("b.free", "Say hi", "hi", answer=""),
        _collection_row("a.mc", "Pick again", "red", ["red", "blue"], "red"),
        _collection_row("b.free", "Count", "Three, I think.", answer="3"),
    ]
    tasks = {t.name: t for t in load_collection_tasks(Dataset.from_list(rows))}
    assert list(tasks) == ["a.mc", "b.free"]
    assert tasks["a.mc"].multiple_choice and [r["gold"] for r in tasks["a.mc"].choice_rows] == [1, 0]
    assert tasks["a.mc"].primary_metric == "acc_norm"
    free = tasks["b.free"]
    assert not free.multiple_choice and free.primary_metric == "completion_nll"
    assert [r["target"] for r in free.completion_rows] == ["hi", "3"]  # the answer when given, else the completion
    assert free.heldout_descriptions == ["held out one", "held out two"]
    only = load_collection_tasks(Dataset.from_list(rows), tasks=["b.free"])
    assert [t.name for t in only] == ["b.free"]


def test_collection_errors_name_the_task_and_the_fix():
    from datasets import Dataset

    from text2lora.evaluation.collection import load_collection_tasks

    with pytest.raises(ValueError, match="not one of its choices"):
        load_collection_tasks(Dataset.from_list([_collection_row("a", "Pick", "green", ["red", "blue"], "green")]))
    with pytest.raises(ValueError, match="lacks column"):
        load_collection_tasks(Dataset.from_list([{"task": "a", "prompt": "p"}]))
    with pytest.raises(ValueError, match="not in the"):
        load_collection_tasks(Dataset.from_list([_collection_row("a", "p", "c")]), tasks=["zzz"])
