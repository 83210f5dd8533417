"""Batch samplers for multi-task T2L training: which examples, of which tasks, with which description.

A training batch holds `tasks_per_batch` distinct tasks with `examples_per_task` examples each, and one randomly
chosen description per task (shared by that task's examples). Samplers yield `(row, description_id)` pairs, so
the description choice is part of the batch index: the batches of an epoch depend only on `(seed, epoch)`, which
makes `resume_from_checkpoint` (which skips already-seen batches) reproduce an uninterrupted run exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

SAMPLING_STRATEGIES = ("uniform", "proportional")


class TaskBatchSampler:
    """Training batches of distinct tasks (see the module docstring).

    Args:
        task_rows: row indices of each task's examples.
        description_offsets: task `t` owns description ids `offsets[t]:offsets[t + 1]`.
        tasks_per_batch: distinct tasks per batch (8 in the paper).
        examples_per_task: examples of each task per batch (1 in the paper).
        seed: base seed; epoch `e` uses the stream seeded by `(seed, e)`.
        strategy: "uniform" picks tasks with equal probability; "proportional" by their number of examples.
        num_batches: batches per epoch; defaults to `ceil(total examples / batch size)`.
    """

    def __init__(
        self,
        task_rows: Sequence[np.ndarray],
        description_offsets: np.ndarray,
        *,
        tasks_per_batch: int = 8,
        examples_per_task: int = 1,
        seed: int = 0,
        strategy: str = "uniform",
        num_batches: int | None = None,
    ) -> None:
        if strategy not in SAMPLING_STRATEGIES:
            raise ValueError(f"task sampling strategy must be one of {SAMPLING_STRATEGIES}, got {strategy!r}.")
        if tasks_per_batch < 1 or examples_per_task < 1:
            raise ValueError(
                f"tasks_per_batch and examples_per_task must be >= 1, got {tasks_per_batch} and {examples_per_task}."
            )
        if tasks_per_batch > len(task_rows):
            raise ValueError(
                f"tasks_per_batch={tasks_per_batch} but the training data has only {len(task_rows)} task(s); "
                f"lower tasks_per_batch to at most {len(task_rows)} (a batch holds distinct tasks)."
            )
        empty = [t for t, rows in enumerate(task_rows) if len(rows) == 0]
        if empty:
            raise ValueError(f"Task index(es) {empty} have zero examples; remove them from the training data.")
        self.task_rows = [np.asarray(rows, dtype=np.int64) for rows in task_rows]
        self.description_offsets = np.asarray(description_offsets, dtype=np.int64)
        self.tasks_per_batch = tasks_per_batch
        self.examples_per_task = examples_per_task
        self.batch_size = tasks_per_batch * examples_per_task
        self.seed = int(seed)
        self.strategy = strategy
        total = sum(len(rows) for rows in self.task_rows)
        self.num_batches = int(num_batches) if num_batches is not None else max(1, math.ceil(total / self.batch_size))
        sizes = np.asarray([len(rows) for rows in self.task_rows], dtype=np.float64)
        self.task_probabilities = sizes / sizes.sum() if strategy == "proportional" else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n_tasks = len(self.task_rows)
        # Each task walks through a fresh permutation of its examples, reshuffled whenever it is used up.
        orders = [rng.permutation(rows) for rows in self.task_rows]
        cursors = np.zeros(n_tasks, dtype=np.int64)
        for _ in range(self.num_batches):
            tasks = rng.choice(n_tasks, size=self.tasks_per_batch, replace=False, p=self.task_probabilities)
            batch = []
            for task in tasks:
                first, last = self.description_offsets[task], self.description_offsets[task + 1]
                description = int(rng.integers(first, last))
                for _ in range(self.examples_per_task):
                    if cursors[task] == len(orders[task]):
                        orders[task] = rng.permutation(self.task_rows[task])
                        cursors[task] = 0
                    batch.append((int(orders[task][cursors[task]]), description))
                    cursors[task] += 1
            yield batch


class SequentialTaskBatchSampler:
    """Evaluation batches: every row once, in order; row `i` of task `t` uses description `i mod n_t` of its
    task, so a fixed evaluation covers a task's descriptions evenly and is the same every time."""

    def __init__(
        self, task_index: np.ndarray, description_offsets: np.ndarray, batch_size: int = 8, description: int | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.task_index = np.asarray(task_index, dtype=np.int64)
        self.description_offsets = np.asarray(description_offsets, dtype=np.int64)
        self.batch_size = batch_size
        self.description = description

    def __len__(self) -> int:
        return math.ceil(len(self.task_index) / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        seen = np.zeros(len(self.description_offsets) - 1, dtype=np.int64)
        batch = []
        for row, task in enumerate(self.task_index):
            first, last = self.description_offsets[task], self.description_offsets[task + 1]
            index = self.description if self.description is not None else seen[task]
            batch.append((row, int(first + index % (last - first))))
            seen[task] += 1
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


__all__ = ["SAMPLING_STRATEGIES", "SequentialTaskBatchSampler", "TaskBatchSampler"]
