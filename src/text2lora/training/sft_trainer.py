"""`T2LSFTTrainer`: supervised fine-tuning of a T2L hypernetwork through a frozen base LLM (the paper's SFT mode).

Each step takes `tasks_per_batch` distinct tasks with `examples_per_task` examples each and one random description
per task, generates one adapter per task from the description's embedding, runs the base LLM with each sample's
adapter (per-sample LoRA, no per-token copies), and back-propagates the completion-only cross-entropy into the
hypernetwork alone. Everything that could fail on the data is checked in `__init__`, before the first step.

Example:
    >>> from text2lora import T2LConfig, T2LModel, load_base_model
    >>> from text2lora.training import T2LSFTConfig, T2LSFTTrainer
    >>> base, tokenizer = load_base_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    >>> t2l = T2LModel(T2LConfig.for_base_model(base))
    >>> trainer = T2LSFTTrainer(t2l, base, args=T2LSFTConfig("runs/t2l", max_steps=1000), train_dataset=tasks,
    ...                         processing_class=tokenizer)
    >>> trainer.train()                       # checkpoints hold the hypernetwork (T2LModel.from_pretrained)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, TrainerCallback

from ..encoder import DescriptionEncoder
from ..injection import check_base_model_matches
from ..modeling_t2l import T2LModel
from ..nearest_tasks import centroids_from_embeddings
from .callbacks import LossPlotCallback, RunLimitCallback
from .collators import T2LSFTCollator
from .description_table import DescriptionTable, check_embedding_size
from .losses import supports_completion_only_logits
from .sft_config import T2LSFTConfig
from .sft_model import T2LSFTModel
from .task_data import TaskExampleDataset, TokenizedTasks
from .task_sampling import SequentialTaskBatchSampler, TaskBatchSampler
from .trainer_base import HypernetworkTrainer, encoding_device, resolve_cache_dir
from .warm_start import warm_start_from_lora

logger = logging.getLogger(__name__)


class SFTTaskDataset(TaskExampleDataset):
    """Tokenized tasks plus the embeddings of their descriptions: what the samplers and the collator read."""

    def __init__(self, tasks: TokenizedTasks, descriptions: DescriptionTable) -> None:
        super().__init__(tasks)
        self.descriptions = descriptions


def resolve_base_and_tokenizer(base_model: Any, processing_class: Any, hypernetwork: T2LModel):
    """`(model, tokenizer)` from a model instance or a name (default: the hypernetwork's base model)."""
    from ..base_models import load_base_model, resolve_base_model

    if base_model is None:
        base_model = hypernetwork.config.base_model_name_or_path
        if base_model is None:
            raise ValueError("Pass base_model=...: the hypernetwork's config does not name its base model.")
    tokenizer = processing_class
    if isinstance(base_model, (str, os.PathLike)):
        base_model, loaded_tokenizer = load_base_model(base_model)
        tokenizer = tokenizer or loaded_tokenizer
    if tokenizer is None:
        from transformers import AutoTokenizer

        name = getattr(base_model, "name_or_path", None)
        if not name:
            raise ValueError("Pass processing_class=<the base model's tokenizer>.")
        tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(name))
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("The tokenizer has neither a pad nor an end-of-sequence token; set tokenizer.pad_token.")
        tokenizer.pad_token = tokenizer.eos_token
    return base_model, tokenizer


class T2LSFTTrainer(HypernetworkTrainer):
    """Trains a `T2LModel` by SFT through a frozen base LLM (see the module docstring).

    Args:
        model: the hypernetwork (`T2LModel`) or a path / name to load one from.
        base_model: the base causal LM (instance or name); defaults to the hypernetwork's `base_model_name_or_path`.
        args: a `T2LSFTConfig`.
        train_dataset: the task collection (a `datasets.Dataset`, a `save_to_disk` folder or JSON/JSONL files;
            columns `task`, `descriptions`, `prompt`/`completion` or `messages`).
        eval_dataset: the same format (or a dict of them): evaluation reports plain completion cross-entropy.
        processing_class: the base model's tokenizer (loaded with the base model when it is given by name).
        description_encoder: embeds descriptions; defaults to the hypernetwork's own encoder.
        task_descriptions: optional `{task: [descriptions]}` replacing the descriptions in the rows.
        callbacks, optimizers: as for `transformers.Trainer`.
    """

    _tag_names = ["text2lora", "t2l-sft"]
    logged_loss_parts = ("completion_loss", "lora_l2")

    def __init__(
        self,
        model: T2LModel | str | os.PathLike,
        base_model: PreTrainedModel | str | None = None,
        args: T2LSFTConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        description_encoder: DescriptionEncoder | None = None,
        task_descriptions: Mapping[str, list[str]] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple = (None, None),
    ) -> None:
        if args is None:
            args = T2LSFTConfig(output_dir="t2l-sft")
        elif not isinstance(args, T2LSFTConfig):
            raise TypeError(f"args must be a T2LSFTConfig, got {type(args).__name__}.")
        hypernetwork = model if isinstance(model, T2LModel) else T2LModel.from_pretrained(model)
        base, tokenizer = resolve_base_and_tokenizer(base_model, processing_class, hypernetwork)
        check_base_model_matches(base, hypernetwork.config)
        if train_dataset is None:
            raise ValueError("T2LSFTTrainer needs a train_dataset (the task collection).")

        # ---- data: checked, tokenized and embedded before any step ------------------------------------------
        cache_dir = resolve_cache_dir(args)
        encoder = description_encoder or hypernetwork.description_encoder
        train = self._prepare_tasks(train_dataset, tokenizer, encoder, hypernetwork, args, cache_dir, "train", task_descriptions)
        if args.tasks_per_batch > train.tasks.num_tasks:
            raise ValueError(
                f"tasks_per_batch={args.tasks_per_batch} but the training data has {train.tasks.num_tasks} task(s); "
                f"set tasks_per_batch <= {train.tasks.num_tasks} (each batch holds distinct tasks)."
            )
        # Saved beside every checkpoint (task_centroids.safetensors): which training tasks a description lands near.
        self.task_centroids = centroids_from_embeddings(
            train.tasks.task_names, train.descriptions.embeddings, train.descriptions.offsets, encoder=encoder.identity
        )
        evaluation = None
        if eval_dataset is not None:
            if isinstance(eval_dataset, Mapping):
                evaluation = {
                    name: self._prepare_tasks(data, tokenizer, encoder, hypernetwork, args, cache_dir, f"eval {name}", task_descriptions)
                    for name, data in eval_dataset.items()
                }
            else:
                evaluation = self._prepare_tasks(eval_dataset, tokenizer, encoder, hypernetwork, args, cache_dir, "eval", task_descriptions)

        # ---- model -----------------------------------------------------------------------------------------
        if args.warm_start_lora:
            warm_start_from_lora(hypernetwork, args.warm_start_lora)
        lora_dropout = args.lora_dropout if args.lora_dropout is not None else hypernetwork.config.lora_dropout
        completion_only = args.completion_logits_only and supports_completion_only_logits(base)
        module = T2LSFTModel(
            hypernetwork,
            base,
            label_smoothing=args.label_smoothing_factor,
            lora_l2_penalty=args.lora_l2_penalty,
            lora_dropout=lora_dropout,
            description_dropout=args.description_dropout,
            completion_logits_only=completion_only,
        )
        callbacks = list(callbacks or [])
        if args.plot_loss:
            callbacks.append(LossPlotCallback(title="T2L SFT"))
        if args.max_steps_per_run is not None or args.max_minutes_per_run is not None:
            callbacks.append(RunLimitCallback(args.max_steps_per_run, args.max_minutes_per_run))
        # The model applies label smoothing itself; the Trainer's own label smoother would look for `model.config`.
        label_smoothing, args.label_smoothing_factor = args.label_smoothing_factor, 0.0
        try:
            super().__init__(
                model=module,
                args=args,
                data_collator=T2LSFTCollator(tokenizer.pad_token_id, train.descriptions.embeddings),
                train_dataset=train,
                eval_dataset=evaluation,
                processing_class=tokenizer,
                callbacks=callbacks,
                optimizers=optimizers,
            )
        finally:
            args.label_smoothing_factor = label_smoothing
        self._init_logged_parts()

    def _save_extra(self, output_dir: str) -> None:
        super()._save_extra(output_dir)
        self.task_centroids.save(output_dir)

    # ------------------------------------------------------------------ data

    @staticmethod
    def _prepare_tasks(dataset, tokenizer, encoder, hypernetwork, args, cache_dir, name, task_descriptions) -> SFTTaskDataset:
        tasks = TokenizedTasks.from_dataset(
            dataset,
            tokenizer,
            max_length=args.max_length,
            use_chat_template=args.use_chat_template,
            task_descriptions=task_descriptions,
            cache_dir=cache_dir,
            name=name,
            require_described_tasks=name == "train",
            skip_empty_tasks=args.skip_empty_tasks,
        )
        descriptions = DescriptionTable.build(
            tasks.task_descriptions, encoder, cache_dir=cache_dir, device=encoding_device(args)
        )
        check_embedding_size(descriptions, hypernetwork, encoder)
        return SFTTaskDataset(tasks, descriptions)

    def _loader(self, dataset: SFTTaskDataset, batch_sampler) -> DataLoader:
        args = self.args
        workers = args.dataloader_num_workers
        loader = DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=T2LSFTCollator(self.processing_class.pad_token_id, dataset.descriptions.embeddings),
            num_workers=workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=args.dataloader_persistent_workers if workers > 0 else False,
            prefetch_factor=args.dataloader_prefetch_factor if workers > 0 else None,
        )
        return self.accelerator.prepare(loader)

    def get_train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset
        args = self.args
        sampler = TaskBatchSampler(
            dataset.tasks.rows_of_task(),
            dataset.descriptions.offsets,
            tasks_per_batch=args.tasks_per_batch,
            examples_per_task=args.examples_per_task,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            strategy=args.task_sampling,
        )
        return self._loader(dataset, sampler)

    def get_eval_dataloader(self, eval_dataset: str | SFTTaskDataset | None = None) -> DataLoader:
        if isinstance(eval_dataset, str):
            dataset = self.eval_dataset[eval_dataset]
        else:
            dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("Evaluation needs an eval_dataset.")
        if not isinstance(dataset, SFTTaskDataset):
            raise TypeError("Pass evaluation data to the T2LSFTTrainer constructor (eval_dataset=...) so it is checked and tokenized.")
        sampler = SequentialTaskBatchSampler(dataset.tasks.task_index, dataset.descriptions.offsets, self.args.eval_batch_size)
        return self._loader(dataset, sampler)


__all__ = ["SFTTaskDataset", "T2LSFTTrainer", "resolve_base_and_tokenizer"]
