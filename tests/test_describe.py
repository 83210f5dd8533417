"""`describe` / `t2l describe`: examples -> task descriptions. Loading examples from every accepted source, one-line
errors for bad files, and determinism (same seed, any batch size) on the real packaged SmolLM2 writer."""

from __future__ import annotations

import json

import pytest

from text2lora.describe import Example, build_messages, clean_description, describe, load_examples

ROWS = [
    {"input": "Calculate 948 - 664.", "output": "284"},
    {"input": "Calculate 12 * 3.", "output": "36"},
    {"input": "Calculate 7 + 8.", "output": "15"},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize(
    "columns", [("input", "output"), ("prompt", "completion"), ("question", "answer"), ("text", "label")]
)
def test_jsonl_with_any_accepted_column_names(tmp_path, columns):
    rows = [{columns[0]: r["input"], columns[1]: r["output"], "extra": 1} for r in ROWS]
    assert load_examples(_jsonl(tmp_path / "ex.jsonl", rows)) == [Example(r["input"], r["output"]) for r in ROWS]


def test_csv_tsv_json_lists_pairs_and_datasets_give_the_same_examples(tmp_path):
    import datasets

    expected = [Example(r["input"], r["output"]) for r in ROWS]
    (tmp_path / "ex.csv").write_text('input,output\n"Calculate 948 - 664.",284\nCalculate 12 * 3.,36\nCalculate 7 + 8.,15\n')
    (tmp_path / "ex.tsv").write_text("prompt\tanswer\n" + "".join(f"{r['input']}\t{r['output']}\n" for r in ROWS))
    (tmp_path / "ex.json").write_text(json.dumps(ROWS))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "saved"))
    for source in (tmp_path / "ex.csv", tmp_path / "ex.tsv", tmp_path / "ex.json", str(tmp_path / "saved"), ROWS,
                   [(r["input"], r["output"]) for r in ROWS], datasets.Dataset.from_list(ROWS)):
        assert load_examples(source) == expected, source
    assert load_examples(ROWS, input_column="output", output_column="input")[0] == Example("284", "Calculate 948 - 664.")


@pytest.mark.parametrize(
    "name, content, error, message",
    [
        ("empty.jsonl", "", ValueError, "is empty; add examples"),
        ("blank.jsonl", "\n  \n", ValueError, "is empty"),
        ("broken.jsonl", '{"input": "a", "output": "b"}\n{"input": "a", "output\n', ValueError,
         "line 2 is not valid JSON"),
        ("list.jsonl", '["a", "b"]\n', ValueError, "line 1 is a JSON list, not an object"),
        ("nooutput.jsonl", '{"input": "a", "reply": "b"}\n', ValueError,
         r"has no output column \(it has \['input', 'reply'\]\); name it one of output, completion"),
        ("emptyoutput.jsonl", '{"input": "a", "output": "b"}\n{"input": "c", "output": " "}\n', ValueError,
         "example 1 has an empty 'output'"),
        ("noheader.csv", "\n", ValueError, "is empty"),
        ("noinput.csv", "x,output\n1,2\n", ValueError, "has no input column"),
        ("ragged.csv", "input,output\na,b,c\n", ValueError, "line 2 has more fields than the header"),
        ("obj.json", '{"a": 1, "b": 2}', ValueError, "must hold a JSON list of examples"),
        ("bad.json", "[{", ValueError, "is not valid JSON"),
        ("notes.txt", "hello", ValueError, "unknown file type '.txt'; use .jsonl, .json, .csv or .tsv"),
    ],
)
def test_bad_example_files_get_one_line_naming_the_problem_and_the_fix(tmp_path, name, content, error, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(error, match=message) as caught:
        load_examples(tmp_path / name)
    assert "\n" not in str(caught.value) and name in str(caught.value)


def test_missing_files_and_empty_lists(tmp_path):
    with pytest.raises(FileNotFoundError, match="No examples file at"):
        load_examples(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="has no examples"):
        load_examples([])
    with pytest.raises(ValueError, match="n must be a whole number"):
        describe(ROWS, "unused", n=0)


def test_prompt_and_cleaning():
    messages = build_messages([Example("Calculate 1 + 1.", "2")])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Input: Calculate 1 + 1.\nOutput: 2" in messages[-1]["content"]
    assert len(build_messages([Example("a", "b")], demonstrations=True)) == 6
    assert clean_description('Description: "Add the numbers and answer with the sum."\n\nExample 1') == (
        "Add the numbers and answer with the sum."
    )
    assert clean_description("In this task, you add. Then answer. Then more. And more.") == "In this task, you add. Then answer."


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    from text2lora.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\nnot json\n')
    assert main(["describe", "--examples", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("t2l describe: error: ") and "line 2 is not valid JSON" in err
    assert "Traceback" not in err
    with pytest.raises(ValueError):
        main(["describe", "--examples", str(bad), "--debug"])
    with pytest.raises(SystemExit) as usage:
        main(["describe", "--examples", str(bad), "-n", "0"])
    assert usage.value.code == 2


# ------------------------------------------------------------------------------ the real packaged writer


@pytest.mark.integration
def test_describe_is_deterministic_and_batch_size_invariant_on_the_packaged_smollm2(smollm2):
    model, tokenizer = smollm2
    examples = [Example(f"Spell this word backward: {w}", w[::-1]) for w in ("sun", "apple", "river", "stone")]
    kwargs = dict(n=3, k=2, seed=7, max_new_tokens=8, tokenizer=tokenizer)
    first = describe(examples, model, batch_size=3, **kwargs)
    assert len(first) == 3 and all(isinstance(d, str) and d.startswith("In this task, you") for d in first)
    assert describe(examples, model, batch_size=3, **kwargs) == first
    assert describe(examples, model, batch_size=1, **kwargs) == first
    assert describe(examples, model, batch_size=2, **kwargs) == first
    assert describe(examples, model, batch_size=3, **{**kwargs, "seed": 8}) != first
    greedy = describe(examples, model, n=2, k=4, max_new_tokens=8, temperature=0, tokenizer=tokenizer)
    assert len(greedy) == 2  # k covers all examples: candidates differ only by example order


@pytest.mark.integration
def test_cli_describe_writes_json_with_the_default_writer(tmp_path, capsys, smollm2):
    from text2lora.cli import main

    examples = _jsonl(tmp_path / "ex.jsonl", ROWS)
    out = tmp_path / "descriptions.json"
    assert main(["describe", "--examples", str(examples), "-n", "2", "-k", "2", "--max-new-tokens", "6",
                 "--quiet", "--out", str(out)]) == 0  # fmt: skip
    data = json.loads(out.read_text())
    assert len(data["descriptions"]) == 2 and data["settings"]["k"] == 2
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == data["descriptions"]


def test_text2lora_describe_is_callable_as_the_package_api():
    import sys

    import text2lora.describe  # noqa: F401  (the submodule, as `t2l describe` imports it)

    module = sys.modules["text2lora.describe"]
    with pytest.raises(ValueError, match="k must be a whole number"):
        module(ROWS, "unused", k=0)
