"""Reviewed task descriptions: loading and validating the YAML files under `text2lora/data/descriptions/`.

The hypernetwork learns from descriptions, so their quality decides what it learns. Each task therefore has
one human-reviewed file (format: `descriptions/FORMAT.md`), and a file that breaks a rule is rejected with an
error naming the file, the key and the fix, rather than silently producing a weaker training set.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SOURCES = ("natural_instructions", "bigbench", "reasoning_gym")
MIN_TRAINING_DESCRIPTIONS = 8
MIN_VALIDATION_DESCRIPTIONS = 2
MIN_DESCRIPTION_CHARS = 12
MAX_DESCRIPTION_CHARS = 1000
_REQUIRED_KEYS = ("task", "source", "definition", "descriptions", "validation_descriptions")
_OPTIONAL_KEYS = ("notes",)
_TEMPLATE_LEFTOVERS = re.compile(r"[{}]|<placeholder>|\bTODO\b|\bXXX\b")


class DescriptionFileError(ValueError):
    """A description file breaks the format of `descriptions/FORMAT.md`."""


def default_descriptions_dir() -> Path:
    """The reviewed description files shipped with text2lora."""
    return Path(__file__).resolve().parent / "descriptions"


@dataclass(frozen=True)
class TaskDescriptions:
    """The reviewed descriptions of one task.

    Args:
        task: the task id as its source names it (the file name), e.g. `leg_counting`.
        source: one of `natural_instructions`, `bigbench`, `reasoning_gym`.
        definition: the source's own description, verbatim, or None.
        descriptions: training descriptions (at least 8).
        validation_descriptions: held-out descriptions (at least 2), never used for training.
        path: the file they were read from.
    """

    task: str
    source: str
    definition: str | None
    descriptions: tuple[str, ...]
    validation_descriptions: tuple[str, ...]
    path: Path | None = field(default=None, compare=False)

    @property
    def task_id(self) -> str:
        """The id used in the built collection: `<source>.<task>`."""
        return f"{self.source}.{self.task}"


def _normalised(text: str) -> str:
    """Key for duplicate detection: case, inner whitespace and final punctuation do not make a new description."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".!?;:").strip().lower()


def _check_description_list(path: Path, key: str, value: object, minimum: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DescriptionFileError(
            f"{path}: `{key}` must be a YAML list of strings, got {type(value).__name__}."
        )
    cleaned = []
    for index, item in enumerate(value):
        where = f"{path}: `{key}[{index}]`"
        if not isinstance(item, str):
            raise DescriptionFileError(
                f"{where} must be a string, got {type(item).__name__} ({item!r}); quote it."
            )
        text = item.strip()
        if not text:
            raise DescriptionFileError(f"{where} is empty; write a description or delete the entry.")
        if not MIN_DESCRIPTION_CHARS <= len(text) <= MAX_DESCRIPTION_CHARS:
            raise DescriptionFileError(
                f"{where} has {len(text)} characters ({text[:60]!r}); descriptions must have "
                f"{MIN_DESCRIPTION_CHARS} to {MAX_DESCRIPTION_CHARS} characters."
            )
        if _TEMPLATE_LEFTOVERS.search(text):
            raise DescriptionFileError(
                f"{where} ({text[:60]!r}) contains a template leftover ('{{', '}}', '<placeholder>', 'TODO' or "
                "'XXX'); finish the description."
            )
        cleaned.append(text)
    if len(cleaned) < minimum:
        raise DescriptionFileError(
            f"{path}: `{key}` has {len(cleaned)} descriptions; at least {minimum} are required. Write more "
            "(varied in length and style, see FORMAT.md)."
        )
    return tuple(cleaned)


def load_description_file(path: str | os.PathLike, source: str | None = None) -> TaskDescriptions:
    """Read and validate one description file.

    Args:
        path: the `.yaml` file; its name (without suffix) must equal its `task` key.
        source: the source the file is expected to belong to (its folder); checked against the `source` key.

    Raises:
        DescriptionFileError: the file is missing, unreadable or breaks a rule of FORMAT.md.
    """
    path = Path(path)
    if not path.is_file():
        raise DescriptionFileError(f"{path}: description file not found; write it following FORMAT.md.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DescriptionFileError(f"{path}: not valid UTF-8 YAML ({err}); fix the syntax.") from err
    if not isinstance(data, dict):
        raise DescriptionFileError(f"{path}: expected a YAML mapping with keys {list(_REQUIRED_KEYS)}.")
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise DescriptionFileError(
            f"{path}: missing key(s) {missing}; every file needs {list(_REQUIRED_KEYS)}."
        )
    unknown = sorted(set(data) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        raise DescriptionFileError(
            f"{path}: unknown key(s) {unknown}; allowed are {list(_REQUIRED_KEYS + _OPTIONAL_KEYS)}."
        )
    task, file_source = data["task"], data["source"]
    if task != path.stem:
        raise DescriptionFileError(f"{path}: `task: {task!r}` must equal the file name {path.stem!r}.")
    if file_source not in SOURCES:
        raise DescriptionFileError(f"{path}: `source: {file_source!r}` must be one of {list(SOURCES)}.")
    if source is not None and file_source != source:
        raise DescriptionFileError(
            f"{path}: `source: {file_source!r}` does not match its folder {source!r}; move the file or fix the key."
        )
    definition = data["definition"]
    if definition is not None and (not isinstance(definition, str) or not definition.strip()):
        raise DescriptionFileError(
            f"{path}: `definition` must be the source's text or null, got {definition!r}."
        )
    training = _check_description_list(path, "descriptions", data["descriptions"], MIN_TRAINING_DESCRIPTIONS)
    validation = _check_description_list(
        path, "validation_descriptions", data["validation_descriptions"], MIN_VALIDATION_DESCRIPTIONS
    )
    seen: dict[str, str] = {}
    for key, texts in (("descriptions", training), ("validation_descriptions", validation)):
        for text in texts:
            norm = _normalised(text)
            if norm in seen:
                raise DescriptionFileError(
                    f"{path}: {text[:60]!r} in `{key}` duplicates an entry of `{seen[norm]}` (case, spacing and "
                    "final punctuation are ignored); replace it with a genuinely different description."
                )
            seen[norm] = key
    return TaskDescriptions(
        task=task,
        source=file_source,
        definition=definition.strip() if definition else None,
        descriptions=training,
        validation_descriptions=validation,
        path=path,
    )


def load_source_descriptions(
    source: str, descriptions_dir: str | os.PathLike | None = None
) -> dict[str, TaskDescriptions]:
    """All description files of one source, keyed by task id as the source names it (`leg_counting`)."""
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; choose one of {list(SOURCES)}.")
    folder = Path(descriptions_dir or default_descriptions_dir()) / source
    if not folder.is_dir():
        return {}
    return {path.stem: load_description_file(path, source=source) for path in sorted(folder.glob("*.yaml"))}


def check_description_files(paths: list[str | os.PathLike]) -> tuple[int, list[str]]:
    """Validate files or folders of description files; return (number of valid files, error messages)."""
    files: list[Path] = []
    for path in map(Path, paths):
        files += sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    errors = []
    for file in files:
        try:
            load_description_file(file, source=file.parent.name if file.parent.name in SOURCES else None)
        except DescriptionFileError as err:
            errors.append(str(err))
    return len(files) - len(errors), errors
