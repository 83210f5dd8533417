"""Task centroids for a trained hypernetwork that lacks them (the shipped default was trained before
`t2l train sft` wrote them): the same computation as the trainer, from the same training data.

The default was trained on the collection's `train` split (`t2l data build`) with `max_length: 384` and
`skip_empty_tasks: true` (recipes/smollm2/t2l_sft.yaml, run_gpu.sh), so its training tasks are those with at least
one example of <= 384 tokens, and each task's training descriptions are its rows' `descriptions` column. Both are
recomputed here with the trainer's own code (`TokenizedTasks`, `DescriptionTable`), and the centroids with
`text2lora.nearest_tasks.centroids_from_embeddings`, which `T2LSFTTrainer` calls too.

    python recipes/smollm2/task_centroids.py                       # the shipped default, in place
    python recipes/smollm2/task_centroids.py CHECKPOINT --max-length 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).parent
DEFAULT = HERE.parents[1] / "src" / "text2lora" / "default_checkpoint"
COLLECTION = Path("~/.cache/text2lora/data/collection/dataset").expanduser()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=DEFAULT, help="hypernetwork folder (written into)")
    parser.add_argument("--collection", type=Path, default=COLLECTION, help="the training collection (save_to_disk)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-length", type=int, default=384, help="the token cap the hypernetwork was trained with")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from text2lora import DescriptionEncoder, T2LConfig
    from text2lora.base_models import resolve_base_model
    from text2lora.nearest_tasks import centroids_from_embeddings
    from text2lora.training.description_table import DescriptionTable
    from text2lora.training.task_data import TokenizedTasks, load_task_dataset
    from text2lora.training.trainer_base import resolve_cache_dir

    config = T2LConfig.from_pretrained(args.checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(config.base_model_name_or_path))
    dataset = load_task_dataset(str(args.collection), split=args.split)
    cache_dir = resolve_cache_dir(argparse.Namespace(cache_dir=None))
    tasks = TokenizedTasks.from_dataset(
        dataset, tokenizer, max_length=args.max_length, use_chat_template=True, cache_dir=cache_dir,
        skip_empty_tasks=True,
    )  # fmt: skip
    encoder = DescriptionEncoder.from_config(config)
    table = DescriptionTable.build(tasks.task_descriptions, encoder, cache_dir=cache_dir)
    centroids = centroids_from_embeddings(
        tasks.task_names, table.embeddings, table.offsets, encoder=encoder.identity,
        metadata={"source": f"{args.collection.name} split {args.split}, max_length {args.max_length}"},
    )  # fmt: skip
    path = centroids.save(args.checkpoint)
    print(
        f"{path}: {len(centroids.names)} tasks x {centroids.embedding_size}, {sum(centroids.num_descriptions)} "
        f"descriptions; far-from-training threshold {centroids.threshold:.4f} ({path.stat().st_size / 1024:.0f} KiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
