"""Description files: the validator accepts good files and rejects each kind of bad one with a useful message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from text2lora.cli import main as cli_main
from text2lora.data.description_files import (
    DescriptionFileError,
    check_description_files,
    default_descriptions_dir,
    load_description_file,
    load_source_descriptions,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data" / "descriptions"

GOOD = {
    "task": "toy_task",
    "source": "bigbench",
    "definition": "Do the toy task",
    "descriptions": [
        "Sort the given words alphabetically.",
        "Put a list of words into dictionary order.",
        "You will be given several words; return them sorted from A to Z.",
        "Alphabetise the words.",
        "Arrange these words in alphabetical order, separated by spaces.",
        "Dictionary ordering of a word list.",
        "Reorder the input words so they appear alphabetically.",
        "I have some words; list them in A-Z order for me.",
    ],
    "validation_descriptions": ["Order the words alphabetically.", "Return the words sorted A to Z."],
}


def write(tmp_path: Path, data: dict, name: str = "toy_task", source: str = "bigbench") -> Path:
    path = tmp_path / source / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_good_file_loads(tmp_path):
    loaded = load_description_file(write(tmp_path, GOOD), source="bigbench")
    assert loaded.task == "toy_task" and loaded.task_id == "bigbench.toy_task"
    assert loaded.descriptions == tuple(GOOD["descriptions"])
    assert loaded.validation_descriptions == tuple(GOOD["validation_descriptions"])
    assert loaded.definition == "Do the toy task"
    assert load_source_descriptions("bigbench", tmp_path)["toy_task"] == loaded


@pytest.mark.parametrize(
    "change, message",
    [
        ({"descriptions": GOOD["descriptions"][:7]}, "at least 8"),
        ({"validation_descriptions": ["Only one held-out description."]}, "at least 2"),
        (
            {"descriptions": GOOD["descriptions"][:7] + ["  sort the given words ALPHABETICALLY!  "]},
            "duplicates",
        ),
        (
            {"validation_descriptions": ["Alphabetise the words", "Return the words sorted A to Z."]},
            "duplicates",
        ),
        ({"descriptions": GOOD["descriptions"][:7] + ["   "]}, "is empty"),
        ({"descriptions": GOOD["descriptions"][:7] + ["Too short"]}, "characters"),
        (
            {"descriptions": GOOD["descriptions"][:7] + ["Sort the words in {order} order."]},
            "template leftover",
        ),
        (
            {"descriptions": GOOD["descriptions"][:7] + [{"Note": "a colon made this a mapping"}]},
            "must be a string",
        ),
        ({"descriptions": "Sort the words."}, "YAML list"),
        ({"task": "other_name"}, "must equal the file name"),
        ({"source": "somewhere"}, "must be one of"),
        ({"definition": ""}, "definition"),
        ({"extra": 1}, "unknown key"),
    ],
)
def test_bad_files_are_rejected(tmp_path, change, message):
    with pytest.raises(DescriptionFileError, match=message):
        load_description_file(write(tmp_path, {**GOOD, **change}))


def test_missing_key_and_missing_file(tmp_path):
    data = dict(GOOD)
    del data["validation_descriptions"]
    with pytest.raises(DescriptionFileError, match="missing key"):
        load_description_file(write(tmp_path, data))
    with pytest.raises(DescriptionFileError, match="not found"):
        load_description_file(tmp_path / "bigbench" / "absent.yaml")


def test_file_in_wrong_source_folder(tmp_path):
    path = write(tmp_path, GOOD, source="reasoning_gym")
    with pytest.raises(DescriptionFileError, match="does not match its folder"):
        load_description_file(path, source="reasoning_gym")


def test_check_command_reports_errors(tmp_path, capsys):
    write(tmp_path, GOOD)
    write(tmp_path, {**GOOD, "task": "bad_task", "descriptions": GOOD["descriptions"][:3]}, name="bad_task")
    valid, errors = check_description_files([tmp_path])
    assert valid == 1 and len(errors) == 1 and "bad_task.yaml" in errors[0]
    assert cli_main(["data", "check-descriptions", str(tmp_path)]) == 1
    assert "1 valid description file(s), 1 with errors" in capsys.readouterr().out
    assert cli_main(["data", "check-descriptions", str(FIXTURES)]) == 0


def test_shipped_description_files_are_valid():
    """Every reviewed file shipped with text2lora passes the validator (the builder would refuse it otherwise)."""
    root = default_descriptions_dir()
    files = sorted(root.rglob("*.yaml"))
    assert len(files) > 0
    valid, errors = check_description_files([root])
    assert errors == []
    assert valid == len(files)
