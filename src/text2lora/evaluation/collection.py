"""Held-out tasks of the training collection as lm-eval tasks.

The collection (`t2l data build`, schema in `text2lora.data.schema`) is a `datasets.DatasetDict` whose
`validation` split holds tasks never trained on. Each row has `task`, `descriptions`, `heldout_descriptions`,
`prompt`, `completion`, `choices` and `answer`. A task is scored like this:

- rows with `choices`: multiple choice by log-likelihood of each option as the reply (acc, acc_norm), the
  gold option being the one equal to `answer`;
- other rows: the negative log-likelihood per token of `completion` as the reply (`completion_nll`, lower is
  better) and whether `completion` is exactly the greedy continuation (`greedy_match`, a teacher-forced exact
  match from the same forward pass); with `generate=True` also free generation scored by exact match with
  `answer` (or `completion` when `answer` is empty).

Held-out descriptions (`heldout_descriptions`) are the ones T2L and the description-in-prompt baseline use.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import exact_match

COLLECTION_TASK_PREFIX = "t2lc_"
REQUIRED_COLUMNS = ("task", "heldout_descriptions", "prompt", "completion", "choices", "answer")


@dataclass
class CollectionTask:
    """One held-out task: its rows, split by how they are scored, and its held-out descriptions."""

    name: str
    heldout_descriptions: list[str]
    choice_rows: list[dict] = field(default_factory=list)
    completion_rows: list[dict] = field(default_factory=list)

    @property
    def multiple_choice(self) -> bool:
        return bool(self.choice_rows) and not self.completion_rows

    @property
    def primary_metric(self) -> str:
        return "acc_norm" if self.multiple_choice else "completion_nll"


def load_collection_tasks(collection: Any, split: str = "validation", tasks: list[str] | None = None) -> list[CollectionTask]:
    """Group a collection split's rows by task.

    Args:
        collection: the folder `t2l data build` wrote, a folder saved with `DatasetDict.save_to_disk`, a
            `DatasetDict`, or a `Dataset` (the split).
        split: which split of a `DatasetDict` (default `validation`, the held-out tasks).
        tasks: keep only these task ids.
    """
    import datasets

    if isinstance(collection, (str, os.PathLike)):
        path = Path(collection)
        if (path / "dataset").is_dir():  # the folder `t2l data build` writes (dataset/, tasks.json, report)
            path = path / "dataset"
        if not path.is_dir():
            raise FileNotFoundError(f"No collection at {collection}; build one with `t2l data build` or check the path.")
        collection = datasets.load_from_disk(str(path))
    if isinstance(collection, datasets.DatasetDict):
        if split not in collection:
            raise ValueError(f"The collection has no {split!r} split (it has {sorted(collection)}); pick one with --collection-split.")
        collection = collection[split]
    missing = [c for c in REQUIRED_COLUMNS if c not in collection.column_names]
    if missing:
        raise ValueError(f"The collection lacks column(s) {missing}; expected the schema of text2lora.data.schema.")
    grouped: OrderedDict[str, CollectionTask] = OrderedDict()
    for index, row in enumerate(collection):
        name = row["task"]
        if tasks is not None and name not in tasks:
            continue
        task = grouped.get(name)
        if task is None:
            task = grouped[name] = CollectionTask(name, [d for d in row["heldout_descriptions"] if d and d.strip()])
        record = {"row": index, "prompt": row["prompt"], "completion": row["completion"], "answer": row["answer"] or ""}
        choices = list(row["choices"] or [])
        if choices:
            record["choices"] = choices
            record["gold"] = _gold_index(choices, row["answer"], name, index)
            task.choice_rows.append(record)
        else:
            record["target"] = record["answer"].strip() or row["completion"]
            task.completion_rows.append(record)
    for task in grouped.values():
        if not task.heldout_descriptions:
            raise ValueError(f"Held-out task {task.name!r} has no heldout_descriptions; the collection is incomplete.")
    return select_tasks(list(grouped.values()), tasks, split)


def select_tasks(loaded: list[CollectionTask], names: list[str] | None, split: str = "validation") -> list[CollectionTask]:
    """The tasks of `loaded` named in `names` (all when `None`); a `ValueError` names any that are missing."""
    if names is None:
        return loaded
    found = {task.name for task in loaded}
    unknown = sorted(set(names) - found)
    if unknown:
        raise ValueError(f"Task(s) {unknown} are not in the {split!r} split; it has {sorted(found)[:10]}...")
    return [task for task in loaded if task.name in set(names)]


def _gold_index(choices: list[str], answer: Any, task: str, row: int) -> int:
    if isinstance(answer, int):
        index = answer
    elif str(answer) in choices:
        index = choices.index(str(answer))
    elif str(answer).strip() in [c.strip() for c in choices]:
        index = [c.strip() for c in choices].index(str(answer).strip())
    else:
        raise ValueError(f"Task {task!r}, row {row}: the answer {answer!r} is not one of its choices {choices}.")
    if not 0 <= index < len(choices):
        raise ValueError(f"Task {task!r}, row {row}: answer index {index} is out of range for {len(choices)} choices.")
    return index


def lm_eval_task_name(task: str, kind: str) -> str:
    return f"{COLLECTION_TASK_PREFIX}{re.sub(r'[^A-Za-z0-9_]+', '_', task)}__{kind}"


def collection_task_configs(
    task: CollectionTask, tokenizer, generate: bool = False, max_gen_toks: int = 128, chat_template: bool = True
) -> dict[str, dict]:
    """lm-eval config dicts for a held-out task: `mc`, `nll` and (with `generate`) `gen`, as the rows allow.

    With `chat_template=False` the completion follows the prompt after a newline, as the trainer's plain-text
    format does; with the chat template it is the assistant's reply.
    """
    import datasets

    def completion_of(doc):
        if chat_template or doc["prompt"].endswith((" ", "\n")) or not doc["prompt"]:
            return doc["completion"]
        return "\n" + doc["completion"]

    def dataset_of(rows):
        return lambda **_: datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})

    configs: dict[str, dict] = {}
    meta = {"version": 1.0, "collection_task": task.name}
    if task.choice_rows:
        configs["mc"] = {
            "task": lm_eval_task_name(task.name, "mc"),
            "custom_dataset": dataset_of(task.choice_rows),
            "output_type": "multiple_choice",
            "test_split": "test",
            "fewshot_split": "test",
            "doc_to_text": "prompt",
            "doc_to_choice": "choices",
            "doc_to_target": "gold",
            "target_delimiter": " ",
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
            ],
            "metadata": meta,
        }
    if task.completion_rows:

        def nll_results(doc, results):
            loglikelihood, is_greedy = results[0]
            tokens = max(1, len(tokenizer(doc["completion"], add_special_tokens=False)["input_ids"]))
            return {"completion_nll": -float(loglikelihood) / tokens, "greedy_match": float(is_greedy)}

        configs["nll"] = {
            "task": lm_eval_task_name(task.name, "nll"),
            "custom_dataset": dataset_of(task.completion_rows),
            "output_type": "loglikelihood",
            "test_split": "test",
            "fewshot_split": "test",
            "doc_to_text": "prompt",
            "doc_to_target": completion_of,
            "target_delimiter": "",
            "process_results": nll_results,
            "metric_list": [
                {"metric": "completion_nll", "aggregation": "mean", "higher_is_better": False},
                {"metric": "greedy_match", "aggregation": "mean", "higher_is_better": True},
            ],
            "metadata": meta,
        }
        if generate:

            def em_results(doc, results):
                return {"exact_match": exact_match(results[0], doc["target"])}

            configs["gen"] = {
                "task": lm_eval_task_name(task.name, "gen"),
                "custom_dataset": dataset_of(task.completion_rows),
                "output_type": "generate_until",
                "test_split": "test",
                "fewshot_split": "test",
                "doc_to_text": "prompt",
                "doc_to_target": "target",
                "process_results": em_results,
                "generation_kwargs": {"until": ["<|im_end|>", "</s>"], "max_gen_toks": max_gen_toks, "do_sample": False},
                "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
                "metadata": meta,
            }
    return configs
