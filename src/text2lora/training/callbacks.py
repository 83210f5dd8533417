"""Trainer callbacks shared by the T2L trainers: chunked runs and loss plots."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from .plotting import LOSS_PLOT_NAME, plot_loss_curves


class RunLimitCallback(TrainerCallback):
    """Stop this call after `max_steps` optimizer steps or `max_minutes`, saving a checkpoint, without touching the
    run's schedule: a later `train(resume_from_checkpoint=...)` continues where this one stopped."""

    def __init__(self, max_steps: int | None = None, max_minutes: float | None = None) -> None:
        self.max_steps = max_steps
        self.max_minutes = max_minutes
        self._start_step = 0
        self._start_time = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_step = state.global_step
        self._start_time = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        steps_done = state.global_step - self._start_step
        out_of_steps = self.max_steps is not None and steps_done >= self.max_steps
        out_of_time = self.max_minutes is not None and (time.monotonic() - self._start_time) / 60 >= self.max_minutes
        if (out_of_steps or out_of_time) and state.global_step < state.max_steps:
            control.should_training_stop = True
            control.should_save = True
        return control


class LossPlotCallback(TrainerCallback):
    """Write `loss_curve.png` into `output_dir` (main process only) at every save and at the end of training."""

    def __init__(self, title: str | None = None) -> None:
        self.title = title

    def _plot(self, args, state) -> None:
        if state.is_world_process_zero:
            plot_loss_curves(state.log_history, Path(args.output_dir) / LOSS_PLOT_NAME, title=self.title)

    def on_save(self, args, state, control, **kwargs):
        self._plot(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._plot(args, state)


__all__ = ["LossPlotCallback", "RunLimitCallback"]
