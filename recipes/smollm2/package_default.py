"""Put a trained SmolLM2 hypernetwork into the package as the shipped default (`text2lora.checkpoints`).

Casts the weights to bfloat16 (the L variant is 36 MB in float32; the package allows 25 MB), writes config,
weights, the evaluation results and a model card (with the notes in TRAINING_NOTES.md appended) into
`src/text2lora/default_checkpoint/` through a temporary folder, so a failed run leaves the old one in place.
Everything else already there is carried over unchanged: the packaged multi-task LoRA (`mt_lora/`) and the
training tasks' centroids (`task_centroids.safetensors`: the same encoder and training descriptions, so the same
for a continued run; the checkpoint's own copy is used only when the package has none).

    python recipes/smollm2/package_default.py CHECKPOINT_DIR [EVAL_RESULTS.json]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
TARGET = HERE.parents[1] / "src" / "text2lora" / "default_checkpoint"
REPO_ID = "text2lora/t2l-smollm2-135m-instruct"
WRITE = ("config.json", "model.safetensors", "README.md", "eval_results.json")  # replaced by the new checkpoint's
CENTROIDS = "task_centroids.safetensors"


def main(checkpoint: str, eval_file: str | None = None) -> None:
    import torch

    from text2lora import T2LModel

    model = T2LModel.from_pretrained(checkpoint).to(torch.bfloat16).eval()
    results = json.loads(Path(eval_file).read_text()) if eval_file else None
    with tempfile.TemporaryDirectory(dir=TARGET.parent) as tmp:
        staging = Path(tmp) / "checkpoint"
        model.save_pretrained(staging, eval_results=results, license="apache-2.0", tags=["smollm2"])
        card = staging / "README.md"
        card.write_text(card.read_text().replace("path/to/this/hypernetwork", REPO_ID)
                        + "\n" + (HERE / "TRAINING_NOTES.md").read_text())
        final = Path(tmp) / "final"
        final.mkdir()
        for name in WRITE:
            if (staging / name).is_file():
                shutil.copy2(staging / name, final / name)
        for entry in TARGET.iterdir() if TARGET.exists() else ():
            if entry.name not in WRITE:
                (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, final / entry.name)
        if not (final / CENTROIDS).is_file() and (staging / CENTROIDS).is_file():
            shutil.copy2(staging / CENTROIDS, final / CENTROIDS)
        check(final, model)
        for path in final.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)  # the trainer writes weights 0600; the package is shared
        old = Path(tmp) / "old"
        if TARGET.exists():
            TARGET.rename(old)
        try:
            final.rename(TARGET)
        except OSError:
            if old.exists():
                old.rename(TARGET)  # put the previous default back before the temporary folder goes
            raise
    size = (TARGET / "model.safetensors").stat().st_size
    print(f"{TARGET}: {', '.join(sorted(p.name for p in TARGET.iterdir()))}; weights {size / 2**20:.1f} MiB")


def check(folder: Path, model) -> None:
    """The folder about to become the default loads, holds exactly `model`'s weights, and its centroids were made
    with the encoder this model uses (else nearest tasks would compare embeddings of different encoders)."""
    from text2lora import T2LModel
    from text2lora.fingerprints import folder_fingerprint, model_fingerprint
    from text2lora.nearest_tasks import TaskCentroids

    loaded = T2LModel.from_pretrained(folder)
    if folder_fingerprint(folder) != model_fingerprint(model):
        raise RuntimeError(f"{folder} does not hold the weights just saved; nothing was replaced.")
    if (folder / CENTROIDS).is_file():
        encoder = TaskCentroids.load_file(folder / CENTROIDS).encoder
        if encoder is not None and encoder != loaded.description_encoder.identity:
            raise RuntimeError(f"The packaged {CENTROIDS} were made with {encoder!r}, this checkpoint embeds with "
                               f"{loaded.description_encoder.identity!r}; rebuild them for it. Nothing was replaced.")


if __name__ == "__main__":
    main(*sys.argv[1:3])
