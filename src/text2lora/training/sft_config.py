"""`T2LSFTConfig`: training arguments for supervised fine-tuning of a T2L hypernetwork (the paper's SFT mode)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .task_sampling import SAMPLING_STRATEGIES


@dataclass
class T2LSFTConfig(TrainingArguments):
    r"""
    Configuration of [`T2LSFTTrainer`]: `transformers.TrainingArguments` plus the T2L SFT options, with the
    paper's values (Charakorn et al., 2025) as defaults where it states them.

    Overridden defaults: `learning_rate=2.5e-5`, `weight_decay=1e-2`, linear schedule with `warmup_steps=0.2`
    (20 % of the steps), `max_grad_norm=1.0`, `label_smoothing_factor=0.1`, `neftune_noise_alpha=5`,
    `logging_steps=10`, `prediction_loss_only=True`, `remove_unused_columns=False`. `per_device_train_batch_size`
    is set from `tasks_per_batch * examples_per_task`.

    Args:
        max_length (`int`, defaults to 512):
            Prompt + completion are cut to this many tokens (the paper's cap); an example left with no completion
            token is dropped.
        tasks_per_batch (`int`, defaults to 8):
            Distinct tasks in each (per-device) batch.
        examples_per_task (`int`, defaults to 1):
            Examples of each task in a batch; they share the task's sampled description.
        task_sampling (`str`, defaults to `"uniform"`):
            How tasks are picked for a batch: `"uniform"` or `"proportional"` to their number of examples.
        lora_l2_penalty (`float`, defaults to 1e-3):
            Weight of the L2 penalty `mean(A^2) + mean(B^2)` on the generated factors.
        lora_dropout (`float`, *optional*):
            Dropout on the adapted modules' inputs while training; defaults to the hypernetwork's `lora_dropout`.
        description_dropout (`float`, defaults to 0.0):
            Dropout on the task-embedding elements while training: a regulariser for collections with few
            descriptions per task.
        skip_empty_tasks (`bool`, defaults to `False`):
            Leave out, with a warning, tasks that have no example left within `max_length` tokens, rather than stop
            with an error (useful when training on a large collection with a short `max_length`).
        use_chat_template (`bool`, defaults to `True`):
            Format examples with the tokenizer's chat template (an error if it has none).
        completion_logits_only (`bool`, defaults to `True`):
            Compute vocabulary logits only at completion positions (same loss, less time and memory); falls back to
            full logits for models whose head does extra processing.
        warm_start_lora (`str`, *optional*):
            A PEFT LoRA folder (e.g. the multi-task LoRA baseline) whose A and B become the hypernetwork's
            `ab_offsets`, with head biases zeroed: training starts from that LoRA and learns per-task offsets.
        max_steps_per_run (`int`, *optional*):
            Stop (with a checkpoint) after this many optimizer steps in this call, keeping the schedule of the whole
            run; the next call with `resume_from_checkpoint` continues. For runs split into chunks.
        max_minutes_per_run (`float`, *optional*):
            Like `max_steps_per_run`, by wall-clock minutes.
        plot_loss (`bool`, defaults to `True`):
            Write `loss_curve.png` (training and evaluation loss) in `output_dir` at every save and at the end.
        cache_dir (`str`, *optional*):
            Where tokenized data and description embeddings are cached (default: the text2lora cache folder);
            `"none"` disables caching.
    """

    learning_rate: float = field(default=2.5e-5, metadata={"help": "AdamW learning rate (paper: 2.5e-5)."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay (paper: 1e-2)."})
    warmup_steps: float = field(default=0.2, metadata={"help": "Warm-up steps, or a fraction of all steps if < 1 (paper: 20%)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clipping (paper: 1.0)."})
    label_smoothing_factor: float = field(default=0.1, metadata={"help": "Label smoothing of the SFT loss (paper: 0.1)."})
    neftune_noise_alpha: float | None = field(
        default=5.0, metadata={"help": "NEFTune noise on the base model's input embeddings (paper: 5); None disables it."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every this many steps."})
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation reports the loss only."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the collator builds the inputs."})

    max_length: int = field(default=512, metadata={"help": "Token cap of prompt + completion (paper: 512)."})
    tasks_per_batch: int = field(default=8, metadata={"help": "Distinct tasks per batch (paper: 8)."})
    examples_per_task: int = field(default=1, metadata={"help": "Examples of each task per batch (paper: 1)."})
    task_sampling: str = field(default="uniform", metadata={"help": f"Task sampling: one of {SAMPLING_STRATEGIES}."})
    lora_l2_penalty: float = field(default=1e-3, metadata={"help": "L2 penalty on generated A and B (paper: 1e-3)."})
    lora_dropout: float | None = field(
        default=None, metadata={"help": "LoRA dropout while training; None uses the hypernetwork's lora_dropout."}
    )
    description_dropout: float = field(default=0.0, metadata={"help": "Dropout on the task embedding while training."})
    skip_empty_tasks: bool = field(
        default=False,
        metadata={"help": "Leave out (with a warning) tasks with no example within max_length, instead of an error."},
    )
    use_chat_template: bool = field(default=True, metadata={"help": "Format examples with the tokenizer's chat template."})
    completion_logits_only: bool = field(
        default=True, metadata={"help": "Compute vocabulary logits only at completion positions."}
    )
    warm_start_lora: str | None = field(
        default=None, metadata={"help": "PEFT LoRA folder to warm-start from (its A/B become the hypernetwork's offsets)."}
    )
    max_steps_per_run: int | None = field(
        default=None, metadata={"help": "Stop with a checkpoint after this many steps in this call (resumable chunks)."}
    )
    max_minutes_per_run: float | None = field(
        default=None, metadata={"help": "Stop with a checkpoint after this many minutes in this call."}
    )
    plot_loss: bool = field(default=True, metadata={"help": "Write loss_curve.png beside the checkpoints."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Cache folder for tokenized data and embeddings; 'none' disables caching."}
    )

    def __post_init__(self) -> None:
        for name in ("max_length", "tasks_per_batch", "examples_per_task"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.task_sampling not in SAMPLING_STRATEGIES:
            raise ValueError(f"`task_sampling` must be one of {SAMPLING_STRATEGIES}, got {self.task_sampling!r}.")
        for name in ("description_dropout", "lora_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
        if self.lora_l2_penalty < 0:
            raise ValueError(f"`lora_l2_penalty` must be >= 0, got {self.lora_l2_penalty}.")
        if self.max_steps_per_run is not None and self.max_steps_per_run < 1:
            raise ValueError(f"`max_steps_per_run` must be >= 1 (or None), got {self.max_steps_per_run}.")
        if self.max_minutes_per_run is not None and self.max_minutes_per_run <= 0:
            raise ValueError(f"`max_minutes_per_run` must be > 0 (or None), got {self.max_minutes_per_run}.")
        self.per_device_train_batch_size = self.tasks_per_batch * self.examples_per_task
        super().__post_init__()


__all__ = ["T2LSFTConfig"]
