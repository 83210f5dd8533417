"""`T2LReconstructionConfig`: training arguments for reconstruction training of a T2L hypernetwork."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

RECONSTRUCTION_TARGETS = ("delta_w", "factors")


@dataclass
class T2LReconstructionConfig(TrainingArguments):
    r"""
    Configuration of [`T2LReconstructionTrainer`]: `transformers.TrainingArguments` plus the reconstruction options.

    Reconstruction regresses the hypernetwork's output onto a library of trained LoRAs, with no LLM in the loop, so
    steps are cheap and a larger learning rate than SFT's is used. Overridden defaults: `learning_rate=1e-3`,
    `warmup_steps=0.1`, `max_grad_norm=1.0`, `logging_steps=10`, `prediction_loss_only=True`,
    `remove_unused_columns=False`.

    Args:
        loss_target (`str`, defaults to `"delta_w"`):
            `"delta_w"`: L1 between generated and target `scale * B @ A` of every module and layer (invariant to the
            LoRA's factorisation). `"factors"`: L1 on A and on B separately.
        zscore (`bool`, defaults to `False`):
            Measure the factor errors in units of the library's per-element standard deviation. The hypernetwork
            must have `output_zscore=True` (new hypernetworks built by `t2l train recon` do); its `output_mean` /
            `output_std` are set from the library, so its heads predict z-scores.
        one_hot_task_ids (`bool`, defaults to `False`):
            Condition on a one-hot task id instead of a description embedding: pure compression of the library (the
            hypernetwork's `task_embedding_size` must be at least the number of adapters; it cannot generalise to
            new descriptions). The task order is saved as `task_ids.json`.
        tasks_per_batch (`int`, *optional*):
            Distinct library adapters per batch (default: all, at most 8).
        plot_loss (`bool`, defaults to `True`):
            Write `loss_curve.png` in `output_dir` at every save and at the end.
        max_steps_per_run (`int`, *optional*), max_minutes_per_run (`float`, *optional*):
            Stop this call (with a checkpoint) after so many steps / minutes; resume continues the run.
        cache_dir (`str`, *optional*):
            Where description embeddings are cached (default: the text2lora cache folder); `"none"` disables it.
    """

    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warm-up steps, or a fraction of all steps if < 1."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clipping."})
    logging_steps: float = field(default=10, metadata={"help": "Log every this many steps."})
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation reports the loss only."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the collator builds the inputs."})

    loss_target: str = field(default="delta_w", metadata={"help": f"What is regressed: one of {RECONSTRUCTION_TARGETS}."})
    zscore: bool = field(default=False, metadata={"help": "Measure factor errors in library standard deviations."})
    one_hot_task_ids: bool = field(default=False, metadata={"help": "Condition on one-hot task ids (pure compression)."})
    tasks_per_batch: int | None = field(default=None, metadata={"help": "Adapters per batch (default: all, at most 8)."})
    plot_loss: bool = field(default=True, metadata={"help": "Write loss_curve.png beside the checkpoints."})
    max_steps_per_run: int | None = field(default=None, metadata={"help": "Stop with a checkpoint after this many steps."})
    max_minutes_per_run: float | None = field(default=None, metadata={"help": "Stop with a checkpoint after this many minutes."})
    cache_dir: str | None = field(default=None, metadata={"help": "Cache folder for description embeddings; 'none' disables it."})

    def __post_init__(self) -> None:
        if self.loss_target not in RECONSTRUCTION_TARGETS:
            raise ValueError(f"`loss_target` must be one of {RECONSTRUCTION_TARGETS}, got {self.loss_target!r}.")
        if self.tasks_per_batch is not None and self.tasks_per_batch < 1:
            raise ValueError(f"`tasks_per_batch` must be >= 1 (or None for all), got {self.tasks_per_batch}.")
        if self.max_steps_per_run is not None and self.max_steps_per_run < 1:
            raise ValueError(f"`max_steps_per_run` must be >= 1 (or None), got {self.max_steps_per_run}.")
        if self.tasks_per_batch is not None:
            self.per_device_train_batch_size = self.tasks_per_batch
        super().__post_init__()


__all__ = ["RECONSTRUCTION_TARGETS", "T2LReconstructionConfig"]
