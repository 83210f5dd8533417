"""`T2LReconstructionTrainer`: train a T2L hypernetwork to reproduce a library of LoRA adapters (no LLM in the loop).

Each step picks distinct library adapters and one of each adapter's descriptions (or its one-hot task id), generates
factors from the description embeddings and regresses them onto the library's adapters with an L1 loss (on
`delta W`, or on A and B, optionally z-scored). Library adapters whose layout differs from the hypernetwork's are
reported before training starts.

Example:
    >>> from text2lora.training import LoraLibrary, T2LReconstructionConfig, T2LReconstructionTrainer
    >>> library = LoraLibrary.load("oracle_loras/")
    >>> t2l = T2LModel(T2LConfig(**library.t2l_config_kwargs()))
    >>> T2LReconstructionTrainer(t2l, library, args=T2LReconstructionConfig("runs/recon", max_steps=2000)).train()
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from ..encoder import DescriptionEncoder
from ..modeling_t2l import T2LModel
from .callbacks import LossPlotCallback, RunLimitCallback
from .description_table import DescriptionTable, check_embedding_size
from .lora_library import LoraLibrary
from .recon_config import T2LReconstructionConfig
from .recon_model import T2LReconstructionModel
from .task_sampling import SequentialTaskBatchSampler, TaskBatchSampler
from .trainer_base import HypernetworkTrainer, encoding_device, resolve_cache_dir

logger = logging.getLogger(__name__)

TASK_IDS_FILE = "task_ids.json"


class LibraryDataset:
    """Library adapters as training items, indexed by `(adapter, description_id)` pairs from a task sampler."""

    def __init__(self, library: LoraLibrary, embeddings: torch.Tensor, offsets: np.ndarray) -> None:
        self.library = library
        self.embeddings = embeddings
        self.offsets = offsets
        modules = library.entries[0].factors.target_modules
        self.target_A = {m: torch.stack([e.factors.lora_A[m] for e in library.entries]) for m in modules}
        self.target_B = {m: torch.stack([e.factors.lora_B[m] for e in library.entries]) for m in modules}
        self.scaling = torch.tensor([e.factors.scaling for e in library.entries], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.library)

    def __getitem__(self, index: tuple[int, int]) -> dict[str, int]:
        entry, description_id = index
        return {"entry": int(entry), "description_id": int(description_id)}


class ReconstructionCollator:
    """Gathers the task embeddings and the library's target factors of a batch of `(adapter, description)` items."""

    def __init__(self, dataset: LibraryDataset) -> None:
        self.dataset = dataset

    def __call__(self, features: list[dict[str, int]]) -> dict[str, Any]:
        entries = torch.as_tensor([f["entry"] for f in features], dtype=torch.long)
        descriptions = torch.as_tensor([f["description_id"] for f in features], dtype=torch.long)
        data = self.dataset
        return {
            "task_embeddings": data.embeddings[descriptions],
            "target_A": {m: a[entries] for m, a in data.target_A.items()},
            "target_B": {m: b[entries] for m, b in data.target_B.items()},
            "target_scaling": data.scaling[entries],
        }


@torch.no_grad()
def set_zscore_statistics(hypernetwork: T2LModel, library: LoraLibrary) -> None:
    """Set the hypernetwork's `output_mean` / `output_std` to the library's per-element mean and std."""
    if len(library) < 2:
        raise ValueError("z-scoring needs at least 2 library adapters (a standard deviation over adapters).")
    for module in hypernetwork.config.target_modules:
        for factor in ("A", "B"):
            stack = torch.stack([getattr(e.factors, f"lora_{factor}")[module] for e in library.entries]).float()
            mean, std = stack.mean(0), stack.std(0, unbiased=False)
            std = std.clamp_min(1e-2 * float(std.mean()) + 1e-12)  # elements equal in every adapter get a floor
            getattr(hypernetwork.output_mean[module], factor).copy_(mean)
            getattr(hypernetwork.output_std[module], factor).copy_(std)


class T2LReconstructionTrainer(HypernetworkTrainer):
    """Trains a `T2LModel` to reproduce a LoRA library (see the module docstring).

    Args:
        model: the hypernetwork (`T2LModel`) or a path to load one from.
        library: a `LoraLibrary` or its folder.
        args: a `T2LReconstructionConfig`.
        description_encoder: embeds the library's descriptions; defaults to the hypernetwork's encoder.
        callbacks, optimizers: as for `transformers.Trainer`.
    """

    _tag_names = ["text2lora", "t2l-reconstruction"]

    def __init__(
        self,
        model: T2LModel | str | os.PathLike,
        library: LoraLibrary | str | os.PathLike,
        args: T2LReconstructionConfig | None = None,
        description_encoder: DescriptionEncoder | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple = (None, None),
    ) -> None:
        if args is None:
            args = T2LReconstructionConfig(output_dir="t2l-recon")
        elif not isinstance(args, T2LReconstructionConfig):
            raise TypeError(f"args must be a T2LReconstructionConfig, got {type(args).__name__}.")
        if not isinstance(library, LoraLibrary):
            library = LoraLibrary.load(library, require_descriptions=not args.one_hot_task_ids)
        hypernetwork = model if isinstance(model, T2LModel) else T2LModel.from_pretrained(model)
        library.check_matches(hypernetwork.config, same_scaling=args.loss_target == "factors")
        self.library = library

        if args.one_hot_task_ids:
            size = hypernetwork.config.task_embedding_size
            if size < len(library):
                raise ValueError(
                    f"One-hot task ids need task_embedding_size >= {len(library)} (the library size), but the "
                    f"hypernetwork has {size}; build it with T2LConfig(..., task_embedding_size={len(library)})."
                )
            embeddings = torch.eye(len(library), size)
            offsets = np.arange(len(library) + 1, dtype=np.int64)
        else:
            encoder = description_encoder or hypernetwork.description_encoder
            table = DescriptionTable.build(
                [e.descriptions for e in library.entries], encoder, cache_dir=resolve_cache_dir(args),
                device=encoding_device(args),
            )
            check_embedding_size(table, hypernetwork, encoder)
            embeddings, offsets = table.embeddings, table.offsets
        if args.zscore or hypernetwork.output_mean is not None:
            if hypernetwork.output_mean is None:
                raise ValueError(
                    "zscore=True needs a hypernetwork built with output_zscore=True (T2LConfig(..., output_zscore=True))."
                )
            set_zscore_statistics(hypernetwork, library)

        tasks_per_batch = args.tasks_per_batch or min(8, len(library))
        if tasks_per_batch > len(library):
            raise ValueError(
                f"tasks_per_batch={tasks_per_batch} but the library has {len(library)} adapters; lower tasks_per_batch."
            )
        args.per_device_train_batch_size = tasks_per_batch
        dataset = LibraryDataset(library, embeddings, offsets)
        module = T2LReconstructionModel(hypernetwork, loss_target=args.loss_target, zscore=args.zscore)
        callbacks = list(callbacks or [])
        if args.plot_loss:
            callbacks.append(LossPlotCallback(title="T2L reconstruction"))
        if args.max_steps_per_run is not None or args.max_minutes_per_run is not None:
            callbacks.append(RunLimitCallback(args.max_steps_per_run, args.max_minutes_per_run))
        super().__init__(
            model=module,
            args=args,
            data_collator=ReconstructionCollator(dataset),
            train_dataset=dataset,
            eval_dataset=dataset,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        self._tasks_per_batch = tasks_per_batch
        self._init_logged_parts()

    def _loader(self, dataset: LibraryDataset, batch_sampler) -> DataLoader:
        loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=ReconstructionCollator(dataset),
                            num_workers=self.args.dataloader_num_workers)
        return self.accelerator.prepare(loader)

    def get_train_dataloader(self) -> DataLoader:
        dataset, args = self.train_dataset, self.args
        sampler = TaskBatchSampler(
            [np.array([i]) for i in range(len(dataset))],
            dataset.offsets,
            tasks_per_batch=self._tasks_per_batch,
            seed=args.data_seed if args.data_seed is not None else args.seed,
        )
        return self._loader(dataset, sampler)

    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        dataset = self.train_dataset
        sampler = SequentialTaskBatchSampler(np.arange(len(dataset)), dataset.offsets, self.args.eval_batch_size, description=0)
        return self._loader(dataset, sampler)

    def _save_extra(self, output_dir: str) -> None:
        if self.args.one_hot_task_ids:
            path = os.path.join(output_dir, TASK_IDS_FILE)
            with open(path, "w") as handle:
                json.dump({"task_ids": self.library.names}, handle, indent=2)


__all__ = ["LibraryDataset", "ReconstructionCollator", "T2LReconstructionTrainer", "set_zscore_statistics"]
