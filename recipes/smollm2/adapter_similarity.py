"""Does a hypernetwork's adapter depend on the description? Cosine similarity between generated adapters.

For every benchmark, the adapters generated from its evaluation descriptions, and adapters generated from random
strings: the cosine similarity of their delta W (all layers and modules as one vector), both raw and after
subtracting the mean adapter of the set (the part every adapter shares, e.g. a multi-task LoRA warm start). A
hypernetwork that reads the description gives adapters of one benchmark that are closer to each other than to
other benchmarks' adapters (`text2lora.adapter_similarity` computes it from the LoRA factors). Writes a heatmap
(PNG) and the figures (JSON).

    python recipes/smollm2/adapter_similarity.py [T2L] OUT_PREFIX [--per-benchmark 3] [--random 6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

BENCHMARKS = ("arc_easy", "arc_challenge", "boolq", "openbookqa", "piqa", "winogrande", "hellaswag",
              "gsm8k", "mbpp", "humaneval")


def block_means(sim: np.ndarray, groups: list[str]) -> dict[str, float]:
    """Mean off-diagonal similarity within a benchmark, between benchmarks, and involving random strings."""
    labels = np.asarray(groups)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    real = labels != "random"
    return {
        "within_benchmark": float(sim[same & off & real[:, None] & real[None, :]].mean()),
        "between_benchmarks": float(sim[~same & real[:, None] & real[None, :]].mean()),
        "benchmark_vs_random": float(sim[real[:, None] & ~real[None, :]].mean()),
        "random_vs_random": float(sim[same & off & ~real[:, None]].mean()) if (~real).sum() > 1 else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict:
    from text2lora import T2LModel
    from text2lora.adapter_similarity import adapter_gram, cosine_similarity, remove_mean
    from text2lora.checkpoints import DEFAULT_CHECKPOINT
    from text2lora.evaluation.descriptions import evaluation_descriptions, random_description

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("t2l", nargs="?", default=DEFAULT_CHECKPOINT, help="hypernetwork folder or name")
    parser.add_argument("out", help="output prefix: writes OUT.png and OUT.json")
    parser.add_argument("--per-benchmark", type=int, default=3, help="evaluation descriptions per benchmark")
    parser.add_argument("--random", type=int, default=6, help="random strings")
    args = parser.parse_args(argv)

    model = T2LModel.from_pretrained(args.t2l).float().eval()
    texts, groups = [], []
    for name in BENCHMARKS:
        for text in evaluation_descriptions(name)[: args.per_benchmark]:
            texts.append(text)
            groups.append(name)
    lengths = [len(t) for t in texts]
    for i in range(args.random):
        texts.append(random_description(0, f"similarity-{i}", lengths[i % len(lengths)]))
        groups.append("random")
    with torch.no_grad():
        gram = adapter_gram(model.generate_lora(texts))
    raw, task_part = cosine_similarity(gram), cosine_similarity(remove_mean(gram))
    shared_share = float(np.trace(gram - remove_mean(gram)) / np.trace(gram))  # |mean|^2 / mean |x|^2
    report = {
        "t2l": str(args.t2l),
        "adapters": len(texts),
        "share_of_squared_norm_in_the_mean_adapter": shared_share,
        "raw_cosine": block_means(raw, groups),
        "cosine_after_removing_the_mean_adapter": block_means(task_part, groups),
        "groups": groups,
    }
    _plot(raw, task_part, groups, Path(f"{args.out}.png"), shared_share)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "groups"}, indent=2))
    return report


def _plot(raw: np.ndarray, task_part: np.ndarray, groups: list[str], path: Path, shared_share: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = [i for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g]
    centres = [(s + (starts[k + 1] if k + 1 < len(starts) else len(groups))) / 2 - 0.5 for k, s in enumerate(starts)]
    fig, axes = plt.subplots(1, 2, figsize=(15, 7))
    panels = ((raw, "raw delta W", None),
              (task_part, "after removing the mean adapter (the description-specific part)", (-1, 1)))
    for ax, (sim, title, limits) in zip(axes, panels):
        image = ax.imshow(sim, cmap="RdBu_r", vmin=limits[0] if limits else None, vmax=limits[1] if limits else None)
        for s in starts[1:]:
            ax.axhline(s - 0.5, color="k", lw=0.5)
            ax.axvline(s - 0.5, color="k", lw=0.5)
        ax.set_xticks(centres)
        ax.set_xticklabels([groups[s] for s in starts], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(centres)
        ax.set_yticklabels([groups[s] for s in starts], fontsize=8)
        ax.set_title(f"cosine similarity, {title}", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(f"Adapters from benchmark descriptions and random strings "
                 f"(the mean adapter holds {100 * shared_share:.0f}% of the squared norm)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    tmp.replace(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
