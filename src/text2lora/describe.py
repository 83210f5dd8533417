"""`describe`: a few input/output examples of a task -> candidate task descriptions for the hypernetwork.

T2L's input is a description, and most users have examples rather than a description. An instruction-following
chat model (any transformers causal LM with a chat template; default: the base model of the shipped hypernetwork,
the packaged SmolLM2-135M-Instruct) reads `k` examples and writes `n` descriptions in the style the hypernetwork
was trained on: one or two sentences saying what to do and what to answer with.

    >>> from text2lora import describe
    >>> describe([{"input": "Calculate 948 - 664.", "output": "284"}, ...], n=3)
    ['Evaluate the arithmetic expression and answer with the resulting integer.', ...]

Determinism: candidate `j` reads its own seeded choice of `k` examples and samples its tokens with its own
generator seeded by `(seed, j)`, so the same examples and seed give the same descriptions whatever the batch
size (prompts are left-padded to one length for the whole call, so a candidate's computation does not depend on
which other candidates share its batch).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

# INPUT_COLUMNS / OUTPUT_COLUMNS: accepted column (or key) names, tried in this order; the first present is used.
from .inputs import INPUT_COLUMNS, OUTPUT_COLUMNS

if TYPE_CHECKING:
    from .checkpoints import HypernetworkLike

EXAMPLE_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
MAX_INPUT_CHARS = 400  # longer inputs are shortened in the prompt (a passage's start says what the task is)
MAX_OUTPUT_CHARS = 200
MAX_SENTENCES = 2
RESPONSE_PREFIX = "In this task, you"

SYSTEM_PROMPT = (
    "You write task descriptions. Given examples of a task, you write one or two sentences that tell someone "
    "what to do and what to answer with. You never solve the examples."
)
# Shown to the writer as solved turns before the user's examples: training tasks of the collection (none of them
# a held-out validation task) with one of their training descriptions, in the style the hypernetwork saw.
DEMONSTRATIONS: tuple[tuple[tuple[tuple[str, str], ...], str], ...] = (
    (
        (
            ("I have a strawberry, and a plum. How many fruits do I have?", "two"),
            ("I have an accordion, a violin, two flutes, a trombone, two trumpets, a piano, and a clarinet. How "
             "many musical instruments do I have?", "nine"),
            ("I have a table, a bed, two toasters, a lamp, two stoves, and five chairs. How many objects do I "
             "have?", "twelve"),
        ),
        "Add up the items in a list that belong to the asked-about category and reply with the count as a number "
        "word.",
    ),
    (
        (
            ("Coffee may be made from berries.", "True"),
            ("LeBron James is universally considered the best football player of all time.", "False"),
            ("An octopus may have ten hearts.", "False"),
        ),
        "Read the claim carefully, paying attention to its exact wording, and label it True or False.",
    ),
)


@dataclass(frozen=True)
class Example:
    """One solved example of a task: what the model is given (`input`) and what it should answer (`output`)."""

    input: str
    output: str


# ------------------------------------------------------------------------------------------------ loading


def load_examples(
    source: Any,
    *,
    split: str | None = None,
    input_column: str | None = None,
    output_column: str | None = None,
) -> list[Example]:
    """Examples of a task from a file, a `datasets` dataset, or Python objects.

    Args:
        source: a JSONL file (one JSON object per line), a JSON file (a list of objects), a CSV or TSV file with a
            header row, a folder saved with `Dataset.save_to_disk` / `DatasetDict.save_to_disk`, a dataset name
            for `datasets.load_dataset` (from the local cache when offline), a `datasets.Dataset`, or a list of
            mappings or `(input, output)` pairs.
        split: the split of a `DatasetDict` (default: `train` if present, else the only split).
        input_column / output_column: the column names; by default the first present of `INPUT_COLUMNS`
            (input, prompt, question, inputs, source, text) and `OUTPUT_COLUMNS` (output, completion, answer,
            target, targets, label).

    Raises `FileNotFoundError` for a missing file and `ValueError` (one line: the problem and the fix) for an
    empty or malformed source.
    """
    what, rows = _rows_of(source, split)
    if not rows:
        raise ValueError(f"{what} has no examples; give at least one input/output pair (e.g. a JSONL line "
                         '{"input": "...", "output": "..."}).')
    if all(isinstance(r, (tuple, list)) for r in rows):
        pairs = []
        for i, row in enumerate(rows):
            if len(row) != 2:
                raise ValueError(f"{what}: example {i} has {len(row)} items; give (input, output) pairs.")
            pairs.append(row)
        return [_example(i, o, what, n) for n, (i, o) in enumerate(pairs)]
    if not all(isinstance(r, Mapping) for r in rows):
        bad = next(i for i, r in enumerate(rows) if not isinstance(r, Mapping))
        raise ValueError(
            f"{what}: example {bad} is a {type(rows[bad]).__name__}, not an object with input and output fields; "
            'give objects such as {"input": "...", "output": "..."}.'
        )
    columns = list(dict.fromkeys(key for row in rows for key in row))
    in_col = _column(columns, input_column, INPUT_COLUMNS, "input", what)
    out_col = _column(columns, output_column, OUTPUT_COLUMNS, "output", what)
    return [_example(row.get(in_col), row.get(out_col), what, n, in_col, out_col) for n, row in enumerate(rows)]


def _column(columns: list[str], chosen: str | None, accepted: tuple[str, ...], role: str, what: str) -> str:
    if chosen is not None:
        if chosen not in columns:
            raise ValueError(f"{what} has no column {chosen!r} (it has {columns}); pass one of these as the {role} column.")
        return chosen
    for name in accepted:
        if name in columns:
            return name
    raise ValueError(
        f"{what} has no {role} column (it has {columns}); name it one of {', '.join(accepted)}"
        f" or pass {role}_column=... (t2l describe: --{role}-column)."
    )


def _example(value_in: Any, value_out: Any, what: str, index: int, in_col: str = "input", out_col: str = "output") -> Example:
    for value, column in ((value_in, in_col), (value_out, out_col)):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"{what}: example {index} has an empty {column!r}; fill it in or remove the example.")
        if isinstance(value, (dict, list)):
            raise ValueError(f"{what}: example {index}'s {column!r} is a {type(value).__name__}, not text; give text.")
    return Example(str(value_in).strip(), str(value_out).strip())


def _rows_of(source: Any, split: str | None) -> tuple[str, list]:
    """(a name for messages, the raw rows) of any supported source."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency of the data extra only
        datasets = None
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        return "The dataset", list(_pick_split(source, split, "The dataset"))
    if datasets is not None and isinstance(source, datasets.Dataset):
        return "The dataset", list(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_file():
            return _read_file(path)
        if path.is_dir():
            return _read_saved_dataset(path, split)
        if path.suffix.lower() in EXAMPLE_FILE_SUFFIXES or os.sep in str(source) or str(source).startswith("."):
            raise FileNotFoundError(f"No examples file at {str(source)!r}; check the path.")
        return _read_hub_dataset(str(source), split)
    if isinstance(source, Mapping):
        raise ValueError("Got one mapping; pass a list of examples (e.g. [{'input': ..., 'output': ...}, ...]).")
    if isinstance(source, Iterable):
        return "The examples", list(source)
    raise ValueError(f"Cannot read examples from a {type(source).__name__}; pass a file path or a list of examples.")


def _read_file(path: Path) -> tuple[str, list]:
    what = f"{str(path)!r}"
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} is not UTF-8 text (byte {err.start}); save it as UTF-8.") from None
    if not text.strip():
        raise ValueError(f"{what} is empty; add examples (one JSON object per line, or a CSV with a header row).")
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            rows = list(reader)
        except csv.Error as err:
            raise ValueError(f"{what} is not valid CSV ({err}); check its quoting.") from None
        if not reader.fieldnames:
            raise ValueError(f"{what} has no header row; start it with a line such as 'input,output'.")
        for number, row in enumerate(rows, start=2):
            if None in row:
                raise ValueError(f"{what} line {number} has more fields than the header {reader.fieldnames}; quote "
                                 "fields that contain the delimiter.")
        return what, rows
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{what} is not valid JSON ({err.msg} at line {err.lineno}); give a list of objects, "
                             "or use .jsonl with one object per line.") from None
        if isinstance(data, Mapping):
            data = next((v for v in data.values() if isinstance(v, list)), None) if len(data) == 1 else None
        if not isinstance(data, list):
            raise ValueError(f"{what} must hold a JSON list of examples (objects with input and output fields).")
        return what, data
    if suffix not in (".jsonl",):
        raise ValueError(f"{what}: unknown file type {suffix or '(none)'!r}; use .jsonl, .json, .csv or .tsv.")
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{what} line {number} is not valid JSON ({err.msg}); each line must be one object "
                             'such as {"input": "...", "output": "..."}.') from None
        if not isinstance(row, Mapping):
            raise ValueError(f"{what} line {number} is a JSON {type(row).__name__}, not an object; each line must be "
                             'one object such as {"input": "...", "output": "..."}.')
        rows.append(row)
    return what, rows


def _pick_split(dataset_dict, split: str | None, what: str):
    if split is not None:
        if split not in dataset_dict:
            raise ValueError(f"{what} has no split {split!r} (it has {sorted(dataset_dict)}); pick one of those.")
        return dataset_dict[split]
    if "train" in dataset_dict:
        return dataset_dict["train"]
    if len(dataset_dict) == 1:
        return next(iter(dataset_dict.values()))
    raise ValueError(f"{what} has splits {sorted(dataset_dict)}; pick one with split=... (t2l describe: --split).")


def _read_saved_dataset(path: Path, split: str | None) -> tuple[str, list]:
    import datasets

    what = f"The dataset at {str(path)!r}"
    if (path / "dataset").is_dir() and not (path / "dataset_info.json").is_file():
        path = path / "dataset"  # the folder `t2l data build` writes
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(path)!r} is a folder but not a saved dataset (no dataset_info.json or "
                                "dataset_dict.json); pass an examples file or a save_to_disk folder.") from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = _pick_split(loaded, split, what)
    return what, list(loaded)


def _read_hub_dataset(name: str, split: str | None) -> tuple[str, list]:
    import datasets

    what = f"The dataset {name!r}"
    try:
        loaded = datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 (offline, unknown name, ...: one line naming the input)
        raise FileNotFoundError(
            f"No examples file or folder at {name!r}, and loading it as a datasets name failed "
            f"({type(err).__name__}); check the path, or download the dataset once with network access."
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = _pick_split(loaded, split, what)
    return what, list(loaded)


# ------------------------------------------------------------------------------------------------ writer


def default_writer_model(t2l: HypernetworkLike = None) -> str:
    """The writer `describe` uses by default: the base model of `t2l` (a `T2LModel`, name or folder; default:
    the shipped hypernetwork), read from its config without loading its weights."""
    config = getattr(t2l, "config", None)
    if config is None:
        from .nearest_tasks import checkpoint_folder, default_hypernetwork

        folder = checkpoint_folder(t2l if t2l is not None else default_hypernetwork())
        if folder is None or not (folder / "config.json").is_file():
            raise ValueError(f"Cannot read the base model of the hypernetwork {str(t2l)!r} (no local config.json); "
                             "pass the writer explicitly (model=..., t2l describe: --model).")
        config = argparse.Namespace(**json.loads((folder / "config.json").read_text()))
    name = getattr(config, "base_model_name_or_path", None)
    if not name:
        raise ValueError("The hypernetwork's config names no base model; pass the writer explicitly (model=...).")
    return str(name)


_WRITERS: OrderedDict[tuple, tuple] = OrderedDict()
_WRITERS_LOCK = threading.Lock()
_MAX_WRITERS = 2


def load_writer(model: str | os.PathLike, device: str | torch.device | None = None):
    """`(model, tokenizer)` of a chat model by name or folder (packaged models resolved offline); the last two
    loaded are kept in memory, so repeated `describe` calls do not reload them."""
    from .base_models import load_base_model

    key = (str(model), str(device or "cpu"))
    with _WRITERS_LOCK:
        if key in _WRITERS:
            _WRITERS.move_to_end(key)
            return _WRITERS[key]
        loaded, tokenizer = load_base_model(model)
        loaded.to(device or "cpu").eval()
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(f"{str(model)!r} has no chat template, so it is not an instruction-following chat model; "
                             "pass one that is (e.g. HuggingFaceTB/SmolLM2-135M-Instruct).")
        _WRITERS[key] = (loaded, tokenizer)
        while len(_WRITERS) > _MAX_WRITERS:
            _WRITERS.popitem(last=False)
        return loaded, tokenizer


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split()) if len(text) > limit else text
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _examples_block(examples: Sequence[Example]) -> str:
    parts = [
        f"Example {i}\nInput: {_shorten(e.input, MAX_INPUT_CHARS)}\nOutput: {_shorten(e.output, MAX_OUTPUT_CHARS)}"
        for i, e in enumerate(examples, start=1)
    ]
    return (
        "Here are examples of a task:\n\n" + "\n\n".join(parts)
        + "\n\nDescribe this task in one or two sentences: what the input is, what to do with it, and what form "
        "the answer takes. Do not solve the examples."
    )


def build_messages(examples: Sequence[Example], demonstrations: bool = False) -> list[dict[str, str]]:
    """The chat the writer answers: system prompt, solved demonstrations (training tasks), then the examples."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    if demonstrations:
        for pairs, description in DEMONSTRATIONS:
            messages.append({"role": "user", "content": _examples_block([Example(i, o) for i, o in pairs])})
            messages.append({"role": "assistant", "content": description})
    messages.append({"role": "user", "content": _examples_block(examples)})
    return messages


_PREFIX = re.compile(r"^\s*(?:\**\s*)?(?:task\s+)?(?:description|instruction|instructions|task)\s*\**\s*:\s*", re.I)


def clean_description(text: str) -> str:
    """The writer's reply as a description: its first paragraph's first two sentences, without a "Description:"
    label, surrounding quotes or markdown."""
    text = text.strip()
    paragraphs = [p for p in re.split(r"\n\s*\n|\n(?=Example|Input:|Output:)", text) if p.strip()]
    text = paragraphs[0] if paragraphs else ""
    text = _PREFIX.sub("", text)
    text = " ".join(text.replace("**", "").split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)
    text = " ".join(sentences[:MAX_SENTENCES])
    if sentences and len(sentences) == 1 and text and text[-1].isalnum() and " " in text:
        text = text.rsplit(" ", 1)[0] if len(text) > 200 else text  # cut off by max_new_tokens mid-word
    return text


class _PerRowSampler:
    """A logits processor that draws each row's next token with that row's own generator (temperature and top-p),
    returning a one-hot score so greedy search keeps it. Row `r` is candidate `r`'s stream whatever the batch."""

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float) -> None:
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        chosen = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for row, generator in enumerate(self.generators):
            if self.temperature <= 0:
                chosen[row] = int(torch.argmax(scores[row]))
                continue
            probs = torch.softmax(scores[row] / self.temperature, dim=-1).cpu()
            order = torch.argsort(probs, descending=True, stable=True)
            sorted_probs = probs[order]
            keep = torch.cumsum(sorted_probs, 0) - sorted_probs < self.top_p  # always keeps the top token
            sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
            pick = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
            chosen[row] = order[pick]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0]), chosen] = 0.0
        return out


def _candidate_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index]).generate_state(1)[0])


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a whole number of 1 or more, got {value!r}.")
    return int(value)


@torch.no_grad()
def describe(
    examples: Any,
    model: str | os.PathLike | None = None,
    *,
    n: int = 1,
    k: int = 5,
    seed: int = 0,
    batch_size: int = 8,
    show_progress_bar: bool | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    top_p: float = 0.9,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    input_column: str | None = None,
    output_column: str | None = None,
    demonstrations: bool = False,
    response_prefix: str | None = RESPONSE_PREFIX,
) -> list[str]:
    """Write `n` candidate task descriptions from examples of the task.

    Args:
        examples: anything `load_examples` reads: a JSONL/JSON/CSV/TSV file, a saved or named `datasets` dataset,
            a `datasets.Dataset`, a list of `{"input": ..., "output": ...}` mappings or `(input, output)` pairs, or
            `Example`s.
        model: the writer, a chat model's name or folder (packaged SmolLM2 resolved offline), or a loaded
            `PreTrainedModel` (then pass `tokenizer`). Default: the shipped hypernetwork's base model.
        n: number of candidate descriptions.
        k: examples each candidate reads (a seeded choice per candidate; all of them when there are fewer).
        seed: fixes the examples chosen and the sampled tokens; the same inputs and seed give the same output,
            for any `batch_size`.
        batch_size: candidates generated together.
        show_progress_bar: a progress bar over batches (default: when there is more than one batch).
        max_new_tokens: the longest description, in tokens.
        temperature, top_p: sampling settings; `temperature=0` is greedy decoding (then candidates differ only by
            the examples they read).
        tokenizer: the writer's tokenizer when `model` is a loaded model.
        device: where a writer loaded by name runs (default CPU).
        input_column / output_column: column names, see `load_examples`.
        demonstrations: show the writer two solved training-task demonstrations first (`DEMONSTRATIONS`). Off by
            default: SmolLM2-135M copies them instead of describing the user's task.
        response_prefix: the start of the writer's reply, written for it (default "In this task, you"): it keeps a
            small writer describing the task instead of solving or discussing the examples; it is part of the
            returned description. `None` or "" lets the writer start freely.

    Returns a list of `n` descriptions (strings), candidate 0 first.
    """
    n = _check_positive("n", n)
    k = _check_positive("k", k)
    batch_size = _check_positive("batch_size", batch_size)
    max_new_tokens = _check_positive("max_new_tokens", max_new_tokens)
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}.")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}.")
    if isinstance(examples, Sequence) and examples and all(isinstance(e, Example) for e in examples):
        loaded = list(examples)
    else:
        loaded = load_examples(examples, input_column=input_column, output_column=output_column)

    if model is None or isinstance(model, (str, os.PathLike)):
        writer, tok = load_writer(model if model is not None else default_writer_model(), device)
    else:
        if tokenizer is None:
            raise ValueError("Pass tokenizer=... together with a loaded model (or pass the model by name).")
        writer, tok = model, tokenizer

    prompts = []
    for index in range(n):
        rng = np.random.default_rng(_candidate_seed(seed, index))
        chosen = sorted(rng.choice(len(loaded), size=min(k, len(loaded)), replace=False).tolist())
        order = rng.permutation(len(chosen)).tolist()
        messages = build_messages([loaded[chosen[i]] for i in order], demonstrations)
        prompts.append(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + (response_prefix or ""))
    encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(ids) for ids in encoded)  # one padded length for the whole call: batch-size invariance
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    stop_ids = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")} if isinstance(i, int) and i >= 0]
    unk = getattr(tok, "unk_token_id", None)
    stop_ids = [i for i in stop_ids if i != unk] or [tok.eos_token_id]

    starts = range(0, n, batch_size)
    if show_progress_bar is None:
        show_progress_bar = len(starts) > 1
    if show_progress_bar:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="Writing descriptions", unit="batch")
    from transformers import GenerationConfig, LogitsProcessorList

    device_of = next(writer.parameters()).device
    outputs: list[str] = []
    for start in starts:
        rows = encoded[start : start + batch_size]
        ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device_of)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device_of)
        sampler = _PerRowSampler(
            [torch.Generator().manual_seed(_candidate_seed(seed, 10_000 + start + j)) for j in range(len(rows))],
            float(temperature),
            float(top_p),
        )
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_ids, pad_token_id=pad_id,
            temperature=None, top_p=None, top_k=None,
        )  # fmt: skip
        generated = writer.generate(
            input_ids=ids, attention_mask=mask, generation_config=config,
            logits_processor=LogitsProcessorList([sampler]),
        )  # fmt: skip
        for row in generated[:, width:]:
            text = tok.decode(row, skip_special_tokens=True)
            if response_prefix:  # the reply continues the prefix: " are given" / "'re given"
                text = response_prefix + (" " if text[:1].isalnum() else "") + text
            outputs.append(clean_description(text))
    return outputs


__all__ = [
    "INPUT_COLUMNS",
    "OUTPUT_COLUMNS",
    "Example",
    "build_messages",
    "clean_description",
    "default_writer_model",
    "describe",
    "load_examples",
    "load_writer",
]


class _CallableModule(types.ModuleType):
    """Lets `text2lora.describe(...)` call `describe` also when the name resolves to this module (a package
    attribute that Python sets to the submodule once `text2lora.describe` has been imported)."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[str]:
        return describe(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
