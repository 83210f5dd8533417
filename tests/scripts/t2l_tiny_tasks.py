"""Tiny multi-task data in the task-collection format, shared by the training tests and the DDP test script."""

from __future__ import annotations

import random

WORDS = "apple banana cherry dog egg fish goat house ice jam kite lemon moon nest owl pear".split()

TASKS = {
    "first_word": (["Return the first word of the list.", "Say which word comes first."], lambda ws: ws[0]),
    "last_word": (["Return the last word of the list.", "Name the final word."], lambda ws: ws[-1]),
    "reverse": (["Write the words in reverse order.", "Reverse the list of words."], lambda ws: " ".join(reversed(ws))),
    "sort": (["Sort the words alphabetically.", "Put the words in alphabetical order."], lambda ws: " ".join(sorted(ws))),
}


def task_rows(examples_per_task: int = 6, seed: int = 0, tasks=None) -> list[dict]:
    """Rows with `task`, `descriptions`, `prompt`, `completion` and an ignored extra column."""
    rng = random.Random(seed)
    rows = []
    for name in tasks or TASKS:
        descriptions, solve = TASKS[name]
        for _ in range(examples_per_task):
            words = rng.sample(WORDS, 4)
            rows.append(
                {
                    "task": name,
                    "descriptions": list(descriptions),
                    "prompt": " ".join(words),
                    "completion": solve(words),
                    "source": "tests",
                }
            )
    return rows


def task_dataset(examples_per_task: int = 6, seed: int = 0, tasks=None):
    import datasets

    return datasets.Dataset.from_list(task_rows(examples_per_task, seed, tasks))
