"""Multi-task training data: loading, checking and tokenizing a task collection once, before training starts.

The collection is a `datasets.Dataset` with one row per example and the columns

- `task` (str): the task the example belongs to;
- `descriptions` (list[str]): the task's training descriptions (a single `description` string also works);
- `prompt` and `completion` (str), or `messages` (a chat: list of {"role", "content"} ending with the
  assistant's reply).

Other columns (source, license, split, choices, answer, heldout_descriptions, ...) are ignored. Every problem a
run would hit later (a row without a description or completion, a task left without examples, a tokenizer without
the chat template asked for) is reported here, with the row and the fix, before any training step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TASK_COLUMN = "task"
DESCRIPTIONS_COLUMN = "descriptions"
_EXAMPLE_COLUMNS = ("prompt", "completion", "messages")


# ---------------------------------------------------------------------------------------------- loading


def load_task_dataset(source: Any, split: str | None = None):
    """A `datasets.Dataset` from a Dataset, a `save_to_disk` folder, or JSON/JSONL file(s) (path or list of paths).

    A `DatasetDict` (or a folder holding one) needs `split`, unless it has a single split.
    """
    import datasets

    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        loaded = source
    elif isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        loaded = _load_json_files([Path(s).expanduser() for s in source])
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir() and (
            (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        ):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_dir():
            files = sorted([*path.glob("*.jsonl"), *path.glob("*.json")])
            if not files:
                raise FileNotFoundError(
                    f"{path} is neither a dataset saved with save_to_disk nor a folder of .json/.jsonl files."
                )
            loaded = _load_json_files(files)
        elif path.is_file():
            loaded = _load_json_files([path])
        else:
            raise FileNotFoundError(f"No task dataset at {str(path)!r}: give a Dataset, a save_to_disk folder or JSON/JSONL file(s).")
    else:
        raise TypeError(
            f"Cannot read a task dataset from {type(source).__name__}; give a datasets.Dataset, a save_to_disk "
            "folder, or JSON/JSONL file path(s)."
        )
    if isinstance(loaded, datasets.DatasetDict):
        if split is None and len(loaded) == 1:
            split = next(iter(loaded))
        if split is None or split not in loaded:
            raise ValueError(f"The dataset has splits {sorted(loaded)}; choose one with split=... (got {split!r}).")
        loaded = loaded[split]
    elif split is not None and TASK_COLUMN in loaded.column_names and "split" in loaded.column_names:
        loaded = loaded.filter(lambda s: s == split, input_columns="split")
    return loaded


def _load_json_files(files: Sequence[Path]):
    import datasets

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"Task data file(s) not found: {missing}.")
    return datasets.load_dataset("json", data_files=[str(f) for f in files], split="train")


# ---------------------------------------------------------------------------------------------- checking


def _row_descriptions(row: Mapping[str, Any]) -> list[str] | None:
    value = row.get(DESCRIPTIONS_COLUMN)
    if value is None:
        value = row.get("description")
    if isinstance(value, str):
        value = [value]
    if not value or not isinstance(value, (list, tuple)):
        return None
    texts = [v.strip() for v in value if isinstance(v, str) and v.strip()]
    return texts or None


def _split_messages(messages: Any, where: str) -> tuple[list[dict], dict]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"{where}: `messages` must be a non-empty list of {{'role', 'content'}} dicts.")
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ValueError(f"{where}: every message needs 'role' and 'content', got {message!r}.")
    last = messages[-1]
    if last["role"] != "assistant" or not isinstance(last["content"], str) or not last["content"].strip():
        raise ValueError(
            f"{where}: the last message must be the assistant's non-empty reply (the completion to learn); "
            f"got role {last['role']!r}."
        )
    if len(messages) < 2:
        raise ValueError(f"{where}: `messages` has no prompt before the assistant's reply.")
    return [dict(m) for m in messages[:-1]], dict(last)


def check_task_columns(column_names: Sequence[str]) -> str:
    """Return "prompt" or "messages" (the example format) or raise naming the missing columns."""
    columns = set(column_names)
    if TASK_COLUMN not in columns:
        raise ValueError(f"The task dataset has no {TASK_COLUMN!r} column (columns: {sorted(columns)}); add the task name of each row.")
    if DESCRIPTIONS_COLUMN not in columns and "description" not in columns:
        raise ValueError(
            f"The task dataset has no {DESCRIPTIONS_COLUMN!r} column (columns: {sorted(columns)}); add each task's "
            "training descriptions (a list of strings) to its rows."
        )
    if "prompt" in columns and "completion" in columns:
        return "prompt"
    if "messages" in columns:
        return "messages"
    raise ValueError(
        f"The task dataset needs `prompt` and `completion` columns, or a `messages` column (columns: {sorted(columns)})."
    )


# ---------------------------------------------------------------------------------------------- formatting


@dataclass
class ExampleFormatter:
    """Turns a row into (prompt text, completion text) with the tokenizer's own chat template (or plain text)."""

    tokenizer: Any
    use_chat_template: bool = True

    def __post_init__(self) -> None:
        if self.use_chat_template and not getattr(self.tokenizer, "chat_template", None):
            name = getattr(self.tokenizer, "name_or_path", type(self.tokenizer).__name__)
            raise ValueError(
                f"The tokenizer {name!r} has no chat template, but use_chat_template=True. Set a template "
                "(tokenizer.chat_template = ...) or train on plain prompt+completion text with use_chat_template=False."
            )

    def texts(self, row: Mapping[str, Any], where: str) -> tuple[str, str]:
        if row.get("messages") is not None and not (row.get("prompt") and row.get("completion")):
            prompt_messages, reply = _split_messages(row["messages"], where)
        else:
            prompt, completion = row.get("prompt"), row.get("completion")
            if not isinstance(prompt, str):
                raise ValueError(f"{where}: `prompt` must be a string, got {type(prompt).__name__}.")
            if not isinstance(completion, str) or not completion.strip():
                raise ValueError(f"{where}: the row has no completion; every example needs a non-empty `completion`.")
            prompt_messages, reply = [{"role": "user", "content": prompt}], {"role": "assistant", "content": completion}
        if not self.use_chat_template:
            prompt_text = "\n\n".join(str(m["content"]) for m in prompt_messages)
            separator = "" if not prompt_text or prompt_text.endswith((" ", "\n")) else "\n"
            eos = self.tokenizer.eos_token or ""
            return prompt_text + separator, reply["content"] + eos
        prompt_text = self.tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
        full_text = self.tokenizer.apply_chat_template([*prompt_messages, reply], tokenize=False)
        if not full_text.startswith(prompt_text):
            raise ValueError(
                f"{where}: the chat template renders the prompt differently with and without the reply, so the "
                "completion cannot be located; use a template whose generation prompt is a prefix of the full chat."
            )
        return prompt_text, full_text[len(prompt_text) :]


# ---------------------------------------------------------------------------------------------- tokenized tasks


@dataclass
class TokenizedTasks:
    """A task collection tokenized once: token ids of every example stored flat, grouped by task.

    Attributes:
        task_names: task name per task index.
        task_descriptions: training descriptions per task index.
        tokens: all examples' token ids, concatenated (int32).
        offsets: example `i` is `tokens[offsets[i]:offsets[i + 1]]`.
        completion_starts: index (within the example) of the first completion token.
        task_index: task index of every example.
    """

    task_names: list[str]
    task_descriptions: list[list[str]]
    tokens: np.ndarray
    offsets: np.ndarray
    completion_starts: np.ndarray
    task_index: np.ndarray

    def __len__(self) -> int:
        return len(self.task_index)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def example(self, row: int) -> tuple[np.ndarray, int]:
        start, end = self.offsets[row], self.offsets[row + 1]
        return self.tokens[start:end], int(self.completion_starts[row])

    def rows_of_task(self) -> list[np.ndarray]:
        order = np.argsort(self.task_index, kind="stable")
        counts = np.bincount(self.task_index, minlength=self.num_tasks)
        return np.split(order, np.cumsum(counts)[:-1])

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        tokenizer: Any,
        *,
        max_length: int = 512,
        use_chat_template: bool = True,
        task_descriptions: Mapping[str, Sequence[str]] | None = None,
        tasks: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
        show_progress: bool = True,
        name: str = "train",
        require_described_tasks: bool = True,
        skip_empty_tasks: bool = False,
    ) -> "TokenizedTasks":
        """Check and tokenize a task dataset (see the module docstring for its columns).

        Args:
            dataset: a `datasets.Dataset`, a `save_to_disk` folder, or JSON/JSONL file(s).
            tokenizer: the base model's tokenizer (its chat template formats the examples).
            max_length: examples are cut to this many tokens (from the end); one left with no completion token is
                dropped, and a task left with no example is an error.
            use_chat_template: format with the tokenizer's chat template (an error if it has none).
            task_descriptions: descriptions per task that replace those in the rows; a task named here that has no
                example is an error (unless `require_described_tasks=False`, e.g. for evaluation data).
            tasks: keep only these tasks (in this order); a task without examples is an error.
            cache_dir: if given, the tokenized result is cached there, keyed by the dataset fingerprint, the
                tokenizer and these settings (runs split into resumable chunks do not tokenize again).
            skip_empty_tasks: leave out, with a warning, tasks that have no example left after the `max_length`
                cut, instead of raising (for large collections where a few tasks only have long examples).
        """
        dataset = load_task_dataset(dataset)
        example_format = check_task_columns(dataset.column_names)
        formatter = ExampleFormatter(tokenizer, use_chat_template)
        cache_file = _cache_file(
            cache_dir, dataset, tokenizer, max_length, use_chat_template, task_descriptions, tasks, skip_empty_tasks
        )
        if cache_file is not None and cache_file.is_file():
            try:
                return cls._load(cache_file)
            except Exception:  # a stale or truncated cache is rebuilt
                logger.warning("Ignoring unreadable tokenization cache %s", cache_file)

        wanted = list(tasks) if tasks is not None else None
        columns = [c for c in (TASK_COLUMN, DESCRIPTIONS_COLUMN, "description", *_EXAMPLE_COLUMNS) if c in dataset.column_names]
        task_ids: dict[str, int] = {name_: i for i, name_ in enumerate(wanted)} if wanted is not None else {}
        descriptions: dict[str, dict[str, None]] = {}  # an ordered set per task
        token_chunks: list[np.ndarray] = []
        lengths: list[int] = []
        starts: list[int] = []
        row_tasks: list[int] = []
        dropped = 0
        batch = 512
        progress = _progress(len(dataset), f"Tokenizing {name} tasks", show_progress)
        selected = dataset.select_columns(columns)
        for begin in range(0, len(dataset), batch):
            block = selected[begin : begin + batch]
            rows = [dict(zip(block, values)) for values in zip(*block.values())]
            prompts, completions, kept = [], [], []
            for offset, row in enumerate(rows):
                where = f"{name} row {begin + offset}"
                task = row.get(TASK_COLUMN)
                if not isinstance(task, str) or not task.strip():
                    raise ValueError(f"{where}: `task` is empty; every example needs the name of its task.")
                if wanted is not None and task not in task_ids:
                    continue
                task_ids.setdefault(task, len(task_ids))  # known even if all its examples get dropped below
                if task_descriptions is None or task not in task_descriptions:
                    texts = _row_descriptions(row)
                    if texts is None:
                        raise ValueError(
                            f"{where} (task {task!r}) has no description; every row needs a non-empty "
                            f"`{DESCRIPTIONS_COLUMN}` list (or pass task_descriptions={{task: [...]}})."
                        )
                    descriptions.setdefault(task, {}).update(dict.fromkeys(texts))
                prompt_text, completion_text = formatter.texts(row, f"{where} (task {task!r})")
                prompts.append(prompt_text)
                completions.append(completion_text)
                kept.append(task)
            if prompts:
                add_special = not use_chat_template
                prompt_ids = tokenizer(prompts, add_special_tokens=add_special)["input_ids"]
                completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
                for task, p_ids, c_ids in zip(kept, prompt_ids, completion_ids):
                    ids = (list(p_ids) + list(c_ids))[:max_length]
                    if len(p_ids) >= len(ids) or not c_ids:
                        dropped += 1
                        continue
                    token_chunks.append(np.asarray(ids, dtype=np.int32))
                    lengths.append(len(ids))
                    starts.append(len(p_ids))
                    row_tasks.append(task_ids[task])
            progress.update(len(rows))
        progress.close()

        names = sorted(task_ids, key=task_ids.get)
        final_descriptions = []
        for task in names:
            if task_descriptions is not None and task in task_descriptions:
                texts = list(task_descriptions[task])
            else:
                texts = list(descriptions.get(task, {}))
            texts = [t.strip() for t in (texts or []) if isinstance(t, str) and t.strip()]
            if not texts:
                raise ValueError(f"Task {task!r} has no description; give it at least one (task_descriptions or the rows).")
            final_descriptions.append(texts)
        if task_descriptions is not None and require_described_tasks:
            for task in task_descriptions:
                if task not in task_ids:
                    raise ValueError(
                        f"Task {task!r} has descriptions but zero examples in the {name} data; add examples for it "
                        "or remove it from task_descriptions."
                    )
        counts = np.bincount(np.asarray(row_tasks, dtype=np.int64), minlength=len(names)) if names else np.zeros(0)
        empty = [names[i] for i, c in enumerate(counts) if c == 0]
        if empty and skip_empty_tasks:
            logger.warning(
                "Leaving out %d %s task(s) with no example within max_length=%d tokens: %s",
                len(empty), name, max_length, ", ".join(empty),
            )
            keep = [i for i, c in enumerate(counts) if c > 0]
            new_index = {old: new for new, old in enumerate(keep)}
            row_tasks = [new_index[t] for t in row_tasks]
            names = [names[i] for i in keep]
            final_descriptions = [final_descriptions[i] for i in keep]
            empty = []
        if empty:
            raise ValueError(
                f"Task(s) {empty[:10]} have zero examples in the {name} data"
                + (f" after cutting to max_length={max_length} tokens" if dropped else "")
                + "; give them examples, raise max_length, or leave them out."
            )
        if not names:
            raise ValueError(f"The {name} task dataset has no usable example (rows: {len(dataset)}).")
        if dropped:
            logger.warning(
                "%d %s example(s) had no completion token within max_length=%d and were dropped.", dropped, name, max_length
            )
        lengths_np = np.asarray(lengths, dtype=np.int64)
        result = cls(
            task_names=names,
            task_descriptions=final_descriptions,
            tokens=np.concatenate(token_chunks) if token_chunks else np.zeros(0, dtype=np.int32),
            offsets=np.concatenate([[0], np.cumsum(lengths_np)]).astype(np.int64),
            completion_starts=np.asarray(starts, dtype=np.int32),
            task_index=np.asarray(row_tasks, dtype=np.int64),
        )
        if cache_file is not None:
            result._save(cache_file)
        return result

    # ------------------------------------------------------------------ cache

    def _save(self, path: Path) -> None:
        from ..io_utils import atomic_file

        meta = json.dumps({"task_names": self.task_names, "task_descriptions": self.task_descriptions})
        with atomic_file(path, "wb") as handle:
            np.savez(
                handle,
                tokens=self.tokens,
                offsets=self.offsets,
                completion_starts=self.completion_starts,
                task_index=self.task_index,
                meta=np.frombuffer(meta.encode(), dtype=np.uint8),
            )

    @classmethod
    def _load(cls, path: Path) -> "TokenizedTasks":
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            return cls(
                task_names=meta["task_names"],
                task_descriptions=meta["task_descriptions"],
                tokens=data["tokens"],
                offsets=data["offsets"],
                completion_starts=data["completion_starts"],
                task_index=data["task_index"],
            )


def _cache_file(
    cache_dir, dataset, tokenizer, max_length, use_chat_template, task_descriptions, tasks, skip_empty_tasks=False
) -> Path | None:
    fingerprint = getattr(dataset, "_fingerprint", None)
    if cache_dir is None or not fingerprint:
        return None
    key = json.dumps(
        {
            "fingerprint": fingerprint,
            "tokenizer": getattr(tokenizer, "name_or_path", ""),
            "vocab": len(tokenizer),
            "template": getattr(tokenizer, "chat_template", None) if use_chat_template else None,
            "eos": getattr(tokenizer, "eos_token", None),
            "max_length": max_length,
            "use_chat_template": use_chat_template,
            "task_descriptions": task_descriptions and {k: list(v) for k, v in task_descriptions.items()},
            "tasks": list(tasks) if tasks is not None else None,
            "skip_empty_tasks": skip_empty_tasks,
            "version": 1,
        },
        sort_keys=True,
        default=str,
    )
    return Path(cache_dir) / f"tokenized-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, description: str, enabled: bool):
    if not enabled or total < 2048:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="ex")




class TaskExampleDataset:
    """A torch map-style view of `TokenizedTasks`, indexed by `(row, description_id)` pairs from a task sampler."""

    def __init__(self, tasks: TokenizedTasks) -> None:
        self.tasks = tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: tuple[int, int]) -> dict[str, Any]:
        row, description_id = index
        input_ids, completion_start = self.tasks.example(int(row))
        return {
            "input_ids": input_ids,
            "completion_start": completion_start,
            "description_id": int(description_id),
            "task_index": int(self.tasks.task_index[row]),
        }


__all__ = ["ExampleFormatter", "TaskExampleDataset", "TokenizedTasks", "check_task_columns", "load_task_dataset"]
