"""Completion loss per task of a base LLM with T2L adapters: the quick check of a training run.

`completion_nll` reports, per task, the mean negative log-likelihood per completion token of held-out examples
when each example runs with the adapter generated from one of its task's descriptions (the training ones, the
held-out ones, another task's, or none at all), so a trained hypernetwork can be compared with an untrained one
and with the plain base model on exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..modeling_t2l import T2LModel
from .collators import T2LSFTCollator
from .losses import completion_logits
from .per_sample_lora import PerSampleLora
from .task_data import TokenizedTasks, load_task_dataset

DESCRIPTION_SOURCES = ("train", "heldout", "other_task", "none")


def _descriptions_for(dataset, tasks: TokenizedTasks, source: str) -> list[list[str]]:
    if source == "train":
        return tasks.task_descriptions
    if source == "heldout":
        if "heldout_descriptions" not in dataset.column_names:
            raise ValueError("descriptions='heldout' needs a `heldout_descriptions` column in the data.")
        by_task: dict[str, list[str]] = {}
        for task, texts in zip(dataset["task"], dataset["heldout_descriptions"]):
            if texts:
                by_task.setdefault(task, list(texts))
        missing = [t for t in tasks.task_names if t not in by_task]
        if missing:
            raise ValueError(f"Task(s) {missing} have no held-out descriptions.")
        return [by_task[t] for t in tasks.task_names]
    if source == "other_task":
        if tasks.num_tasks < 2:
            raise ValueError("descriptions='other_task' needs at least two tasks.")
        return [tasks.task_descriptions[(i + 1) % tasks.num_tasks] for i in range(tasks.num_tasks)]
    raise ValueError(f"descriptions must be one of {DESCRIPTION_SOURCES} or a {{task: [texts]}} mapping, got {source!r}.")


@torch.no_grad()
def completion_nll(
    hypernetwork: T2LModel | None,
    base_model: Any,
    tokenizer: Any,
    dataset: Any,
    *,
    descriptions: str | Mapping[str, Sequence[str]] = "train",
    batch_size: int = 8,
    max_length: int = 512,
    use_chat_template: bool = True,
    show_progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-task `{"nll": mean NLL per completion token, "tokens": count}`, plus an `"all"` entry (token-weighted).

    Args:
        hypernetwork: the T2L model; `None` (or `descriptions="none"`) runs the base model without adapters.
        base_model, tokenizer: the base causal LM and its tokenizer.
        dataset: a task collection (see `text2lora.training.task_data`).
        descriptions: "train" (each example cycles through its task's training descriptions), "heldout" (the
            `heldout_descriptions` column), "other_task" (the next task's descriptions: a mismatch control),
            "none", or a `{task: [descriptions]}` mapping.
    """
    dataset = load_task_dataset(dataset)
    tasks = TokenizedTasks.from_dataset(
        dataset, tokenizer, max_length=max_length, use_chat_template=use_chat_template, show_progress=False, name="eval"
    )
    use_adapters = hypernetwork is not None and descriptions != "none"
    if use_adapters:
        if isinstance(descriptions, Mapping):
            texts = [list(descriptions[t]) for t in tasks.task_names]
        else:
            texts = _descriptions_for(dataset, tasks, descriptions)
        flat = [t for group in texts for t in group]
        embeddings = hypernetwork.encode_descriptions(flat).float().cpu()
        offsets = np.concatenate([[0], np.cumsum([len(g) for g in texts])])
        lora = PerSampleLora(base_model, hypernetwork.config)
    else:
        embeddings, offsets = torch.zeros(1, 1), np.zeros(tasks.num_tasks + 1, dtype=np.int64)
    collate = T2LSFTCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0, embeddings)
    device = next(base_model.parameters()).device
    was_training = base_model.training, hypernetwork.training if hypernetwork is not None else None
    base_model.eval()
    if hypernetwork is not None:
        hypernetwork.eval()
    sums = np.zeros(tasks.num_tasks)
    counts = np.zeros(tasks.num_tasks, dtype=np.int64)
    seen = np.zeros(tasks.num_tasks, dtype=np.int64)
    rows = range(0, len(tasks), batch_size)
    if show_progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc="Evaluating", unit="batch")
    try:
        for start in rows:
            features, owners = [], []
            for row in range(start, min(start + batch_size, len(tasks))):
                ids, begin = tasks.example(row)
                task = int(tasks.task_index[row])
                n = int(offsets[task + 1] - offsets[task]) if use_adapters else 1
                description = int(offsets[task] + seen[task] % n) if use_adapters else 0
                seen[task] += 1
                features.append({"input_ids": ids, "completion_start": begin, "description_id": description})
                owners.append(task)
            batch = {k: v.to(device) for k, v in collate(features).items()}
            if use_adapters:
                factors = hypernetwork(batch["task_embeddings"].to(hypernetwork.device))
                index = batch["embedding_index"]
                lora_A = {m: a[index] for m, a in factors.lora_A.items()}
                lora_B = {m: b[index] for m, b in factors.lora_B.items()}
                with lora.apply(lora_A, lora_B):
                    logits, targets = completion_logits(base_model, batch["input_ids"], batch["attention_mask"], batch["labels"])
            else:
                logits, targets = completion_logits(base_model, batch["input_ids"], batch["attention_mask"], batch["labels"])
            token_nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none").cpu().numpy()
            per_row = (batch["labels"][:, 1:] != -100).sum(1).cpu().numpy()
            position = 0
            for task, n in zip(owners, per_row):
                sums[task] += token_nll[position : position + n].sum()
                counts[task] += n
                position += n
    finally:
        base_model.train(was_training[0])
        if hypernetwork is not None:
            hypernetwork.train(was_training[1])
    result = {name: {"nll": float(sums[i] / max(counts[i], 1)), "tokens": int(counts[i])} for i, name in enumerate(tasks.task_names)}
    result["all"] = {"nll": float(sums.sum() / max(counts.sum(), 1)), "tokens": int(counts.sum())}
    return result


__all__ = ["DESCRIPTION_SOURCES", "completion_nll"]
