"""Which training tasks a description lands near, in the hypernetwork's task-embedding space.

**Task-embedding space.** The hypernetwork's input for a description is `f(z) = scale * normalize(E(format(z)))`,
with `E` its description encoder (`config.encoder_name_or_path`), `format` the encoder's formatting (the full-stop
rule, the optional prompt) and `scale` `config.encoder_scale`: exactly what `T2LModel.encode_descriptions` gives.
Cosine similarity ignores the scale, so we work with unit vectors `u(z) = f(z) / |f(z)|`.

**Centroids.** A training task's centroid is the mean of `u(z)` over the task's training descriptions (the ones it
was trained with, each counted once), normalised to unit length: the direction of the task's descriptions on the
unit sphere. Averaging before normalising weights each description equally, and the hypernetwork's first layer is
linear in `f(z)`, so the mean of the task's `f(z)` is also (up to scale) the input that mixing all its descriptions
(`generate_lora(..., weights=...)`) feeds it. Similarity of a description to a task = `u(z) . c_task`.

**Far from every training task.** A description is *far* when its nearest-centroid similarity is below
`threshold`, chosen from the training tasks alone, never from evaluation data: for each training description, its
similarity to the nearest centroid of the *other* training tasks (leave-one-task-out: how close a description of a
task the hypernetwork never saw, but of the same collection, lands to the training tasks). The threshold is the 5th
percentile of these: a description is flagged when it is farther from all training tasks than 95% of such
"held-out-like" descriptions are. Its adapter then mostly carries what is common to all training tasks (close to
the generic adapter).

**Storage.** `task_centroids.safetensors` beside the hypernetwork's weights: one tensor `centroids` `[tasks,
embedding width]` (float32, unit rows) and string metadata: `task_names` (JSON list, row order), `num_descriptions`
(JSON list), `threshold`, `threshold_rule`, `encoder` (the encoder settings they were computed with) and
`format_version`. `t2l train sft` writes it into every checkpoint and its final output; a checkpoint without it
simply has no nearest tasks (`load_task_centroids` returns `None`).

**On every adapter.** `T2LModel.task_centroids` reads the file once per model; `generate_lora` / `mix_lora` give
each adapter its `DEFAULT_K` nearest tasks and the threshold (`GeneratedLora.nearest_tasks`, `.far_threshold`,
`.far_from_training_tasks`) from the task embedding they already computed (a mix: the mixed embedding), so nothing
is encoded twice. They are saved in `t2l_adapter.json` and so kept by the adapter cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

if TYPE_CHECKING:
    from .modeling_t2l import T2LModel

TASK_CENTROIDS_FILE = "task_centroids.safetensors"
FORMAT_VERSION = "1"
FAR_QUANTILE = 0.05
DEFAULT_K = 3  # nearest tasks each generated adapter records (`GeneratedLora.nearest_tasks`)
THRESHOLD_RULE = (
    "5th percentile, over all training descriptions, of the cosine similarity to the nearest centroid of the other "
    "training tasks (leave-one-task-out)"
)


class NearestTask(NamedTuple):
    """A training task and the cosine similarity of a description's task embedding to its centroid."""

    name: str
    similarity: float


@dataclass
class TaskCentroids:
    """Unit-length centroids of the training tasks' description embeddings (see the module docstring).

    Attributes:
        names: task names, one per row of `centroids`.
        centroids: `[tasks, E]` float32, unit rows.
        num_descriptions: training descriptions averaged per task.
        threshold: nearest-task similarity below which a description is far from every training task (`None`:
            not computed, e.g. fewer than two tasks).
        encoder: the encoder settings the centroids were computed with (`DescriptionEncoder.identity`).
        metadata: anything else stored with them.
    """

    names: list[str]
    centroids: torch.Tensor
    num_descriptions: list[int]
    threshold: float | None = None
    encoder: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.centroids.dim() != 2 or self.centroids.shape[0] != len(self.names):
            raise ValueError(
                f"Task centroids have shape {list(self.centroids.shape)} for {len(self.names)} task names; "
                "expected [tasks, embedding width]."
            )

    @property
    def embedding_size(self) -> int:
        return int(self.centroids.shape[1])

    def similarities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarities `[N, tasks]` of task embeddings `[E]` / `[N, E]` (any scale) to the centroids."""
        embeddings = embeddings.detach().to("cpu", torch.float32)
        if embeddings.dim() == 1:
            embeddings = embeddings[None]
        if embeddings.shape[-1] != self.embedding_size:
            raise ValueError(
                f"Task embeddings are {embeddings.shape[-1]}-d but the task centroids are {self.embedding_size}-d; "
                "embed with the hypernetwork's own description encoder."
            )
        units = torch.nn.functional.normalize(embeddings, dim=-1)
        return units @ self.centroids.T

    def nearest(self, embeddings: torch.Tensor, k: int = DEFAULT_K) -> list[list[NearestTask]]:
        """The `k` nearest training tasks of each task embedding, most similar first (ties: task order);
        similarities rounded to 4 decimals."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number of 1 or more, got {k!r}.")
        sims = self.similarities(embeddings)
        k = min(k, sims.shape[1])
        # One stable sort for the whole batch (equal similarities keep task order), not a Python sort per row.
        values, order = torch.sort(sims, dim=1, descending=True, stable=True)
        return [
            [NearestTask(self.names[i], round(v, 4)) for i, v in zip(row_order, row_values)]
            for row_order, row_values in zip(order[:, :k].tolist(), values[:, :k].tolist())
        ]

    def is_far(self, similarity: float) -> bool:
        """Whether a nearest-task similarity is below the threshold (False when there is no threshold)."""
        return self.threshold is not None and similarity < self.threshold

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `task_centroids.safetensors` into `folder` atomically; returns its path."""
        from safetensors.torch import save

        from .io_utils import atomic_file

        metadata = {
            **self.metadata,
            "format_version": FORMAT_VERSION,
            "task_names": json.dumps(self.names, ensure_ascii=False),
            "num_descriptions": json.dumps([int(c) for c in self.num_descriptions]),
            "threshold": "" if self.threshold is None else repr(float(self.threshold)),
            "threshold_rule": THRESHOLD_RULE,
            "encoder": self.encoder or "",
        }
        data = save({"centroids": self.centroids.to(torch.float32).contiguous()}, metadata=metadata)
        path = Path(folder) / TASK_CENTROIDS_FILE
        with atomic_file(path, "wb") as handle:
            handle.write(data)
        return path

    @classmethod
    def load_file(cls, path: str | os.PathLike) -> "TaskCentroids":
        """Read a `task_centroids.safetensors` file (`OSError` naming it when it is corrupt)."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                centroids = handle.get_tensor("centroids").to(torch.float32)
            names = json.loads(metadata.pop("task_names"))
            counts = json.loads(metadata.pop("num_descriptions", "[]")) or [0] * len(names)
        except Exception as err:  # noqa: BLE001 (truncated, foreign or hand-edited file: one line naming it)
            raise OSError(
                f"{str(path)!r} is not a readable task-centroid file ({type(err).__name__}: {err}); delete it or "
                "compute it again (recipes/smollm2/task_centroids.py)."
            ) from None
        threshold = metadata.pop("threshold", "")
        encoder = metadata.pop("encoder", "") or None
        metadata.pop("threshold_rule", None)
        return cls(names, centroids, counts, float(threshold) if threshold else None, encoder, metadata)


# ----------------------------------------------------------------------------------------------- computing


def centroids_from_embeddings(
    names: Sequence[str],
    embeddings: torch.Tensor,
    offsets: Sequence[int],
    *,
    encoder: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> TaskCentroids:
    """Centroids of tasks whose description embeddings are rows `offsets[t]:offsets[t+1]` of `embeddings` (the
    layout of `training.DescriptionTable`), with the leave-one-task-out threshold. Duplicate descriptions should be
    removed by the caller if they should count once."""
    embeddings = torch.nn.functional.normalize(embeddings.detach().to("cpu", torch.float32), dim=-1)
    offsets = [int(o) for o in offsets]
    if len(offsets) != len(names) + 1:
        raise ValueError(f"Got {len(names)} task names but {len(offsets) - 1} task ranges of embeddings.")
    counts = [offsets[t + 1] - offsets[t] for t in range(len(names))]
    empty = [names[t] for t, c in enumerate(counts) if c < 1]
    if empty:
        raise ValueError(f"Task(s) {empty[:5]} have no description embeddings; every task needs at least one.")
    rows = [embeddings[offsets[t] : offsets[t + 1]].mean(0) for t in range(len(names))]
    centroids = torch.nn.functional.normalize(torch.stack(rows), dim=-1)
    threshold = None
    if len(names) >= 2:
        owner = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(counts))
        sims = embeddings[: offsets[-1]] @ centroids.T
        sims[torch.arange(sims.shape[0]), owner] = float("-inf")  # leave the description's own task out
        nearest_other = sims.max(dim=1).values
        threshold = float(torch.quantile(nearest_other, FAR_QUANTILE))
    return TaskCentroids(list(names), centroids, counts, threshold, encoder, dict(metadata or {}))


def compute_task_centroids(
    task_descriptions: Mapping[str, Sequence[str]],
    encoder: Any,
    *,
    metadata: Mapping[str, str] | None = None,
    batch_size: int = 64,
    show_progress_bar: bool = False,
) -> TaskCentroids:
    """Centroids of `{task: [training descriptions]}` with a `DescriptionEncoder` (the hypernetwork's own:
    `t2l.description_encoder`); each distinct description of a task counts once."""
    names = list(task_descriptions)
    texts: list[str] = []
    offsets = [0]
    for name in names:
        unique = list(dict.fromkeys(d for d in task_descriptions[name] if isinstance(d, str) and d.strip()))
        texts.extend(unique)
        offsets.append(len(texts))
    embeddings = encoder.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
    return centroids_from_embeddings(names, embeddings, offsets, encoder=encoder.identity, metadata=metadata)


# ----------------------------------------------------------------------------------------------- loading


def default_hypernetwork() -> str:
    """The shipped default hypernetwork's name (the registry in `packaged.py`: this module is imported by
    `T2LModel.task_centroids`, so it imports nothing that imports the model back)."""
    from . import packaged

    name = packaged.DEFAULT_CHECKPOINT
    if not name:
        raise ValueError("No default hypernetwork ships with this version of text2lora; pass one explicitly.")
    return str(name)


def checkpoint_folder(name_or_path: str | os.PathLike) -> Path | None:
    """The local folder of a hypernetwork: a folder as is, a packaged checkpoint's folder, or the Hub cache's
    snapshot of a Hub name (`None` when it is not on this machine)."""
    name = str(name_or_path)
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    from . import packaged

    if name in packaged.PACKAGED_CHECKPOINTS:
        return Path(__file__).parent / packaged.PACKAGED_CHECKPOINTS[name]
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 (not a repo id, no cache: not local)
        return None
    return Path(found).parent if isinstance(found, str) else None


_LOADED: OrderedDict[tuple, TaskCentroids | None] = OrderedDict()
_LOCK = threading.Lock()


def load_task_centroids(hypernetwork: Any = None) -> TaskCentroids | None:
    """The task centroids stored with a hypernetwork (a `T2LModel`, its name or folder; default: the shipped one),
    or `None` when it has none (older checkpoints, or a Hub name not downloaded with the file).

    For a Hub name whose folder is not cached locally, `task_centroids.safetensors` is fetched with
    `huggingface_hub` when downloads are allowed. Parsed files are kept by the SHA-256 of their content.
    """
    if hypernetwork is None:
        hypernetwork = default_hypernetwork()
    name = getattr(hypernetwork, "name_or_path", None) if not isinstance(hypernetwork, (str, os.PathLike)) else hypernetwork
    if not name:
        return None
    folder = checkpoint_folder(name)
    path = folder / TASK_CENTROIDS_FILE if folder is not None else None
    if path is None or not path.is_file():
        path = _download(str(name)) if folder is None or not (folder / "config.json").is_file() else None
        if path is None:
            return None
    key = hashlib.sha256(path.read_bytes()).hexdigest()  # by content (~1 ms): a rewritten file is never stale
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = TaskCentroids.load_file(path)
            while len(_LOADED) > 8:
                _LOADED.popitem(last=False)
        return _LOADED[key]


def _download(name: str) -> Path | None:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(name)
        return Path(hf_hub_download(name, TASK_CENTROIDS_FILE))
    except Exception:  # noqa: BLE001 (offline, no such file, not a repo: no centroids)
        return None


def nearest_training_tasks(
    t2l: T2LModel,
    descriptions: str | Sequence[str] | torch.Tensor,
    k: int = 3,
    *,
    centroids: TaskCentroids | None = None,
) -> list[NearestTask] | list[list[NearestTask]] | None:
    """The `k` training tasks nearest to descriptions (or task embeddings) in `t2l`'s task-embedding space.

    `t2l` is a `T2LModel`; its stored centroids (`T2LModel.task_centroids`) are used unless `centroids` is given.
    One description (a string or a 1-d embedding) gives a list of `NearestTask(name, similarity)`, most similar
    first; several give one list each. Returns `None` when the hypernetwork has no task centroids (older
    checkpoints).
    """
    if centroids is None:
        centroids = t2l.task_centroids if hasattr(t2l, "task_centroids") else load_task_centroids(t2l)
    if centroids is None:
        return None
    single = isinstance(descriptions, str) or (isinstance(descriptions, torch.Tensor) and descriptions.dim() == 1)
    if isinstance(descriptions, torch.Tensor):
        embeddings = descriptions
    else:
        embeddings = t2l.encode_descriptions(descriptions if isinstance(descriptions, str) else list(descriptions))
    found = centroids.nearest(embeddings, k)
    return found[0] if single else found


def far_from_training(nearest: Sequence[NearestTask], centroids: TaskCentroids) -> bool:
    """Whether a description whose nearest tasks are `nearest` is far from every training task."""
    return bool(nearest) and centroids.is_far(nearest[0].similarity)


def far_warning(nearest: Sequence[tuple[str, float]], centroids: TaskCentroids | float | None) -> str | None:
    """The one-line warning for a description far from every training task, or `None`. `centroids`: the task
    centroids, or just their threshold (`GeneratedLora.far_threshold`)."""
    threshold = centroids.threshold if isinstance(centroids, TaskCentroids) else centroids
    if not nearest or threshold is None or nearest[0][1] >= threshold:
        return None
    name, similarity = nearest[0]
    return (
        f"This description is far from every training task (nearest: {name}, cosine {similarity:.2f}, below "
        f"{threshold:.2f}, the 5th percentile for held-out-like descriptions), so its adapter will be close to the "
        "generic one; describe the task the way the training tasks are described (what to do, what to answer with)."
    )


def format_nearest(nearest: Sequence[tuple[str, float]]) -> str:
    """`task_a 0.83, task_b 0.79, task_c 0.71`: what `t2l generate` prints after "nearest training tasks: "."""
    return ", ".join(f"{name} {similarity:.2f}" for name, similarity in nearest)


def adapter_far_warning(adapter: Any) -> str | None:
    """`far_warning` for a `GeneratedLora` (from the nearest tasks and threshold it records)."""
    return far_warning(adapter.nearest_tasks, adapter.far_threshold)


def pick_nearest_candidate(t2l: T2LModel, candidates: Sequence[str], centroids: TaskCentroids | None = None) -> int | None:
    """The index of the candidate description nearest to the training tasks (highest cosine similarity to its
    nearest training-task centroid; ties: the first), or `None` when the hypernetwork has no task centroids."""
    found = nearest_training_tasks(t2l, list(candidates), k=1, centroids=centroids)
    if found is None:
        return None
    best = [row[0].similarity for row in found]
    return best.index(max(best))


__all__ = [
    "DEFAULT_K",
    "FAR_QUANTILE",
    "TASK_CENTROIDS_FILE",
    "NearestTask",
    "TaskCentroids",
    "centroids_from_embeddings",
    "checkpoint_folder",
    "compute_task_centroids",
    "adapter_far_warning",
    "far_from_training",
    "far_warning",
    "format_nearest",
    "load_task_centroids",
    "nearest_training_tasks",
    "pick_nearest_candidate",
]
