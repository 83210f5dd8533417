"""Loss-curve plots written beside training checkpoints (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io_utils import atomic_file

LOSS_PLOT_NAME = "loss_curve.png"


def loss_series(log_history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` in a Trainer's `state.log_history`."""
    steps, values = [], []
    for entry in log_history:
        if key in entry and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(entry[key]))
    return steps, values


def plot_loss_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]] | Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    keys: Sequence[str] = ("loss", "eval_loss"),
) -> Path | None:
    """Plot training (and evaluation) loss against the step; one `log_history` or several by name.

    Returns the path written, or None when there is nothing to plot yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    named = histories if isinstance(histories, Mapping) else {"": histories}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    plotted = 0
    for name, history in named.items():
        for key in keys:
            steps, values = loss_series(history, key)
            if not steps:
                continue
            label = " ".join(part for part in (name, "eval" if key.startswith("eval") else "train") if part)
            style = "o-" if key.startswith("eval") else "-"
            ax.plot(steps, values, style, label=label, markersize=3, linewidth=1.2)
            plotted += 1
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if plotted <= 12:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path


__all__ = ["LOSS_PLOT_NAME", "loss_series", "plot_loss_curves"]
