"""The baselines every T2L result is compared with, trained through the same data pipeline as T2L (same task
collection, same chat formatting, same completion-only labels and token cap), with TRL's `SFTTrainer`:

- `train_multitask_lora`: one ordinary PEFT LoRA on all training tasks (also the warm start of T2L SFT);
- `train_oracle_loras`: one LoRA per task, saved as a LoRA library for `T2LReconstructionTrainer`.

The LoRA settings default to the hypernetwork's (`lora_config_for`), so the adapters have its shapes.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft import LoraConfig

from ..adapters import lora_config_from_t2l
from ..io_utils import atomic_directory
from .callbacks import LossPlotCallback
from .lora_library import LoraLibrary, library_folder_name, write_task_metadata
from .plotting import plot_loss_curves
from .task_data import TokenizedTasks

logger = logging.getLogger(__name__)


def lora_config_for(t2l_config, lora_dropout: float | None = None) -> LoraConfig:
    """A trainable PEFT `LoraConfig` with the LoRA settings of a hypernetwork config (same rank, alpha, scaling and
    target modules), so baseline adapters can warm-start, or be reconstructed by, that hypernetwork."""
    config = lora_config_from_t2l(t2l_config)
    config.inference_mode = False
    if lora_dropout is not None:
        config.lora_dropout = lora_dropout
    return config


def tokenized_sft_dataset(tasks: TokenizedTasks, rows=None):
    """A pre-tokenized `datasets.Dataset` (`input_ids`, `labels` with -100 outside the completion) for TRL."""
    import datasets

    rows = range(len(tasks)) if rows is None else rows
    input_ids, labels = [], []
    for row in rows:
        ids, start = tasks.example(int(row))
        ids = ids.tolist()
        input_ids.append(ids)
        labels.append([-100] * start + ids[start:])
    return datasets.Dataset.from_dict({"input_ids": input_ids, "labels": labels})


def _sft_args(args, output_dir: str | None = None):
    """A copy of TRL `SFTConfig` args suited to pre-tokenized, completion-labelled data."""
    args = copy.deepcopy(args)
    if output_dir is not None:
        args.output_dir = output_dir
    args.packing = False
    args.remove_unused_columns = False
    return args


def _tokenize(train_dataset, tokenizer, args, use_chat_template: bool, task_descriptions=None, name="train"):
    if isinstance(train_dataset, TokenizedTasks):
        return train_dataset
    return TokenizedTasks.from_dataset(
        train_dataset,
        tokenizer,
        max_length=args.max_length or 512,
        use_chat_template=use_chat_template,
        task_descriptions=task_descriptions,
        name=name,
        require_described_tasks=name == "train",
        skip_empty_tasks=True,  # a multi-task LoRA has no per-task parameters to leave untrained
    )


def train_multitask_lora(
    base_model: Any,
    tokenizer: Any,
    train_dataset: Any,
    args: Any,
    lora_config: LoraConfig,
    *,
    eval_dataset: Any = None,
    use_chat_template: bool = True,
    callbacks: list | None = None,
    plot_loss: bool = True,
):
    """Train one PEFT LoRA on every task of `train_dataset` (rows in the T2L task format); the adapter is saved
    in `args.output_dir`. Returns the TRL `SFTTrainer` (its `.model` is the `PeftModel`).

    Args:
        base_model: the base causal LM (it gets LoRA layers injected).
        tokenizer: its tokenizer (its chat template formats the examples).
        train_dataset, eval_dataset: task collections (or `TokenizedTasks`).
        args: a TRL `SFTConfig` (`max_length` caps prompt + completion as in T2L training).
        lora_config: the LoRA to train, e.g. `lora_config_for(t2l.config)`.
    """
    from trl import SFTTrainer

    tasks = _tokenize(train_dataset, tokenizer, args, use_chat_template)
    evaluation = _tokenize(eval_dataset, tokenizer, args, use_chat_template, name="eval") if eval_dataset is not None else None
    callbacks = list(callbacks or [])
    if plot_loss:
        callbacks.append(LossPlotCallback(title="multi-task LoRA"))
    trainer = SFTTrainer(
        model=base_model,
        args=_sft_args(args),
        train_dataset=tokenized_sft_dataset(tasks),
        eval_dataset=tokenized_sft_dataset(evaluation) if evaluation is not None else None,
        processing_class=tokenizer,
        peft_config=lora_config,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=_resume_point(args))
    trainer.save_model(args.output_dir)
    return trainer


def _resume_point(args) -> str | None:
    from .resume import last_complete_checkpoint

    resume = getattr(args, "resume_from_checkpoint", None)
    if resume in (None, False, "", "none"):
        return None
    if resume is True or resume == "auto" or resume == "True":
        return last_complete_checkpoint(args.output_dir)
    return str(resume)


def train_oracle_loras(
    base_model: Any,
    tokenizer: Any,
    train_dataset: Any,
    library_dir: str | os.PathLike,
    args: Any,
    lora_config: LoraConfig,
    *,
    tasks: Sequence[str] | None = None,
    use_chat_template: bool = True,
    task_descriptions: Mapping[str, Sequence[str]] | None = None,
    overwrite: bool = False,
) -> LoraLibrary:
    """Train one LoRA per task ("oracle" adapters) and save them as a LoRA library in `library_dir`.

    Tasks whose adapter is already in the library are skipped (so an interrupted run continues where it stopped)
    unless `overwrite`. Each adapter folder is written atomically, with the task's descriptions in
    `t2l_adapter.json`; a plot of all training curves goes to `library_dir/loss_curves.png`.
    Returns the `LoraLibrary`.
    """
    from peft import get_peft_model
    from trl import SFTTrainer

    all_tasks = _tokenize(train_dataset, tokenizer, args, use_chat_template, task_descriptions)
    wanted = list(tasks) if tasks is not None else list(all_tasks.task_names)
    unknown = [t for t in wanted if t not in all_tasks.task_names]
    if unknown:
        raise ValueError(f"Task(s) {unknown} have no examples in the training data; choose from {all_tasks.task_names[:10]}...")
    library = Path(library_dir)
    library.mkdir(parents=True, exist_ok=True)
    rows_of_task = all_tasks.rows_of_task()
    histories: dict[str, list] = {}
    scratch_root = Path(args.output_dir)
    for task in wanted:
        target = library / library_folder_name(task)
        if target.is_dir() and (target / "adapter_model.safetensors").is_file() and not overwrite:
            logger.info("Oracle LoRA for %r exists in %s; skipping.", task, target)
            continue
        index = all_tasks.task_names.index(task)
        scratch = scratch_root / library_folder_name(task)
        peft_model = get_peft_model(base_model, copy.deepcopy(lora_config))
        trainer = SFTTrainer(
            model=peft_model,
            args=_sft_args(args, str(scratch)),
            train_dataset=tokenized_sft_dataset(all_tasks, rows_of_task[index]),
            processing_class=tokenizer,
        )
        trainer.train()
        histories[task] = list(trainer.state.log_history)
        with atomic_directory(target, overwrite=True) as tmp:
            trainer.model.save_pretrained(str(tmp))
            write_task_metadata(tmp, task, all_tasks.task_descriptions[index], kind="oracle-lora")
        base_model = trainer.model.unload()  # back to the plain base model for the next task
        del trainer, peft_model
    if histories:
        plot_loss_curves(histories, library / "loss_curves.png", title="oracle LoRAs")
    return LoraLibrary.load(library, tasks=wanted)


__all__ = ["lora_config_for", "tokenized_sft_dataset", "train_multitask_lora", "train_oracle_loras"]
