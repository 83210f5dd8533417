"""Task descriptions of the evaluation benchmarks, split once and for all into a training part and an
evaluation part.

The descriptions are the ~200 paraphrases per benchmark released with Text-to-LoRA
(`../shared/data/descriptions/<benchmark>.yaml`). The paper trains or validates on some and reports results
with the others; so do we, with a rule that needs no list to be shipped and cannot drift:

    a description belongs to the **evaluation** part when the first 8 hex digits of
    sha256("<benchmark>\\n<normalised text>"), read as an integer, are divisible by 4;
    all others form the **training** part (usable for training and validation).

The normalised text is the description with runs of whitespace collapsed to one space and surrounding
whitespace removed. About a quarter (~50 per benchmark) are evaluation descriptions. Anything that trains a
hypernetwork on benchmark tasks (e.g. reconstruction from benchmark oracle LoRAs) must use
`training_descriptions(...)` only, and can assert that with `check_no_evaluation_descriptions(...)`.
"""

from __future__ import annotations

import hashlib
import os
import random
import string
from dataclasses import dataclass
from pathlib import Path

from .benchmarks import BENCHMARKS, resolve_benchmark_dir

DESCRIPTIONS_DIR_ENV = "TEXT2LORA_DESCRIPTIONS_DIR"
EVALUATION_MODULUS = 4  # one description in four (by hash) is kept for evaluation


def normalize_description(text: str) -> str:
    """Whitespace collapsed and stripped: the form the split is computed on."""
    return " ".join(str(text).split())


def is_evaluation_description(benchmark: str, text: str) -> bool:
    """Whether `text` is in the evaluation part of `benchmark`'s descriptions (the documented hash rule)."""
    digest = hashlib.sha256(f"{benchmark}\n{normalize_description(text)}".encode()).hexdigest()
    return int(digest[:8], 16) % EVALUATION_MODULUS == 0


@dataclass(frozen=True)
class DescriptionSet:
    """One benchmark's descriptions, split.

    Attributes:
        task: the benchmark id.
        training: descriptions that may be used to train or validate (never to report results).
        evaluation: descriptions reserved for reporting results (never seen in training).
        source: the file they were read from.
    """

    task: str
    training: tuple[str, ...]
    evaluation: tuple[str, ...]
    source: Path | None = None

    @property
    def all(self) -> tuple[str, ...]:
        return self.training + self.evaluation


def resolve_descriptions_dir(descriptions_dir: str | os.PathLike | None = None, data_dir=None) -> Path:
    """`descriptions_dir`, else `$TEXT2LORA_DESCRIPTIONS_DIR`, else `descriptions/` beside the benchmark folder."""
    candidates = [descriptions_dir, os.environ.get(DESCRIPTIONS_DIR_ENV)]
    benchmark_dir = resolve_benchmark_dir(data_dir, required=False)
    if benchmark_dir is not None:
        candidates.append(benchmark_dir.parent / "descriptions")
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser().resolve()
    raise FileNotFoundError(
        "No benchmark description folder found. Pass --descriptions-dir DIR (or set "
        f"{DESCRIPTIONS_DIR_ENV}) to a folder with <benchmark>.yaml files holding a `descriptions:` list, "
        "like ../shared/data/descriptions."
    )


def load_description_set(benchmark: str, descriptions_dir: str | os.PathLike | None = None, data_dir=None) -> DescriptionSet:
    """Read `<benchmark>.yaml` (a `descriptions:` list), drop duplicates, and split it."""
    import yaml

    folder = resolve_descriptions_dir(descriptions_dir, data_dir)
    path = folder / f"{benchmark}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"No descriptions for {benchmark!r}: {path} does not exist.")
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    raw = data.get("descriptions")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path} has no non-empty `descriptions:` list.")
    seen: set[str] = set()
    training: list[str] = []
    evaluation: list[str] = []
    for item in raw:
        text = normalize_description(item)
        if not text or text.casefold() in seen:
            continue
        seen.add(text.casefold())
        (evaluation if is_evaluation_description(benchmark, text) else training).append(text)
    if not evaluation or not training:
        raise ValueError(f"{path}: the split left an empty part ({len(training)} training, {len(evaluation)} evaluation).")
    return DescriptionSet(benchmark, tuple(training), tuple(evaluation), path)


def load_description_sets(
    benchmarks: list[str] | None = None, descriptions_dir: str | os.PathLike | None = None, data_dir=None
) -> dict[str, DescriptionSet]:
    """Description sets of `benchmarks` (each must exist), or of every benchmark with a file when `None`."""
    if benchmarks is None:
        folder = resolve_descriptions_dir(descriptions_dir, data_dir)
        benchmarks = [name for name in BENCHMARKS if (folder / f"{name}.yaml").is_file()]
    return {name: load_description_set(name, descriptions_dir, data_dir) for name in benchmarks}


def training_descriptions(benchmark: str, descriptions_dir=None, data_dir=None) -> tuple[str, ...]:
    """The descriptions of `benchmark` that training (and validation) may use."""
    return load_description_set(benchmark, descriptions_dir, data_dir).training


def evaluation_descriptions(benchmark: str, descriptions_dir=None, data_dir=None) -> tuple[str, ...]:
    """The descriptions of `benchmark` reserved for reporting results."""
    return load_description_set(benchmark, descriptions_dir, data_dir).evaluation


def check_no_evaluation_descriptions(descriptions, benchmarks: list[str] | None = None, descriptions_dir=None) -> None:
    """Raise `ValueError` if any of `descriptions` is an evaluation description of one of `benchmarks` (all by
    default). Call it on the descriptions a training run will use."""
    reserved = {
        normalize_description(text).casefold(): name
        for name, group in load_description_sets(benchmarks, descriptions_dir).items()
        for text in group.evaluation
    }
    leaked = [(reserved[key], d) for d in descriptions if (key := normalize_description(d).casefold()) in reserved]
    if leaked:
        benchmark, text = leaked[0]
        raise ValueError(
            f"{len(leaked)} description(s) are reserved for evaluating {benchmark!r} and must not be used in "
            f"training, e.g. {text!r}. Use text2lora.evaluation.descriptions.training_descriptions({benchmark!r})."
        )


# ------------------------------------------------------------------------------------ picks for one run


def pick(items, k: int, seed: int, key: str) -> list[str]:
    """`k` items chosen reproducibly for (`seed`, `key`); all of them (in a seeded order) if fewer than `k`."""
    items = list(items)
    rng = random.Random(f"{seed}:{key}")
    return rng.sample(items, min(k, len(items)))


def random_description(seed: int, key: str, length: int) -> str:
    """A random string of lower-case 'words' about `length` characters long: a description with no content."""
    rng = random.Random(f"random-string:{seed}:{key}")
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < max(length, 8):
        words.append("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 10))))
    return " ".join(words)
