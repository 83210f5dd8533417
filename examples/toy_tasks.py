"""`toy_task_dataset`: a small procedural task collection in text2lora's training format, made on the spot.

Each row is one example: `task`, `descriptions` (several paraphrases per task), `prompt`, `completion`. The
training examples use it so they run anywhere in seconds; for real runs pass a collection built with
`t2l data build` (same columns) instead.
"""

from __future__ import annotations

import random

WORDS = ["apple", "river", "candle", "garden", "pencil", "rocket", "silver", "window", "forest", "marble",
         "tiger", "yellow", "basket", "planet", "violin", "cookie"]


def _reverse_word(rng):
    word = rng.choice(WORDS)
    return f"Word: {word}", word[::-1]


def _uppercase(rng):
    word = rng.choice(WORDS)
    return f"Word: {word}", word.upper()


def _add_numbers(rng):
    a, b = rng.randint(1, 50), rng.randint(1, 50)
    return f"{a} + {b} =", str(a + b)


def _count_letters(rng):
    word = rng.choice(WORDS)
    return f"Word: {word}", str(len(word))


def _first_letter(rng):
    word = rng.choice(WORDS)
    return f"Word: {word}", word[0]


def _double_number(rng):
    number = rng.randint(1, 99)
    return f"Number: {number}", str(2 * number)


# task -> (descriptions, example generator returning (prompt, completion))
TASKS = {
    "reverse_word": (["Reverse the letters of the given word.", "Write the word backwards, last letter first.",
                      "Spell the input word in reverse order."], _reverse_word),
    "uppercase": (["Rewrite the word in capital letters.", "Convert the given word to uppercase.",
                   "Answer with the word written in all caps."], _uppercase),
    "add_numbers": (["Add the two numbers and give only the sum.", "Compute the sum of two integers.",
                     "Return the result of adding the numbers."], _add_numbers),
    "count_letters": (["Count how many letters the word has.", "Give the length of the word in letters.",
                       "Answer with the number of characters in the word."], _count_letters),
    "first_letter": (["Give the first letter of the word.", "Answer with the initial letter only.",
                      "Which letter does the word start with?"], _first_letter),
    "double_number": (["Multiply the number by two.", "Double the given integer.", "Answer with twice the number."],
                      _double_number),
}


def toy_task_dataset(tasks: list[str] | None = None, examples_per_task: int = 32, seed: int = 0):
    """A `datasets.Dataset` with `examples_per_task` rows for each of `tasks` (default: all)."""
    import datasets

    rng = random.Random(seed)
    rows = []
    for name in tasks or list(TASKS):
        descriptions, make = TASKS[name]
        for _ in range(examples_per_task):
            prompt, completion = make(rng)
            rows.append({"task": name, "descriptions": descriptions, "prompt": prompt, "completion": completion})
    return datasets.Dataset.from_list(rows)
