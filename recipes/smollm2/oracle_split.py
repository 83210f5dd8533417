"""Split the training examples of the oracle-LoRA tasks into a part to train on and a part to evaluate on.

The oracle LoRAs (and the reconstruction T2L that compresses them) are compared on examples neither saw:
the last quarter of each task's examples (in collection order) is held out. Writes a `datasets.DatasetDict`
with splits `train` (oracle training) and `test` (evaluation), same columns as the collection.

    python recipes/smollm2/oracle_split.py COLLECTION_DIR OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).parent


def main(collection: str, out: str) -> None:
    from datasets import DatasetDict, load_from_disk

    tasks = yaml.safe_load((HERE / "oracle_lora.yaml").read_text())["tasks"]
    data = load_from_disk(str(Path(collection).expanduser() / "dataset"))["train"]
    train_rows, test_rows = [], []
    for task in tasks:
        rows = [i for i, t in enumerate(data["task"]) if t == task]
        if not rows:
            raise SystemExit(f"Task {task!r} is not in the collection's train split.")
        cut = (3 * len(rows)) // 4
        train_rows += rows[:cut]
        test_rows += rows[cut:]
    split = DatasetDict({"train": data.select(train_rows), "test": data.select(test_rows)})
    split.save_to_disk(out)
    print(f"{len(tasks)} tasks: {len(train_rows)} training and {len(test_rows)} held-out examples -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
