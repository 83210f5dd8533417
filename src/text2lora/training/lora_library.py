"""LoRA libraries: a folder of PEFT LoRA adapters, one per task, each with its task descriptions.

    library/
      <task>/adapter_config.json          # a plain PEFT LoRA adapter
      <task>/adapter_model.safetensors
      <task>/t2l_adapter.json             # {"task": "<task>", "descriptions": ["...", ...]}

The oracle-LoRA baseline writes one; `T2LReconstructionTrainer` learns to reproduce one. Descriptions may also
come from a `descriptions.txt` (one per line) or `descriptions.json` (a list) in the adapter folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..adapters import ADAPTER_METADATA_FILE, PEFT_PREFIX
from ..base_models import LAYER_INDEX as _LAYER
from ..configuration_t2l import lora_scaling

_KEY = re.compile(rf"^(?:{re.escape(PEFT_PREFIX)})?(?P<path>.+)\.lora_(?P<factor>[AB])(?:\.[^.]+)?\.weight$")


@dataclass
class LoraFactors:
    """One LoRA adapter as per-module factor stacks: `lora_A[m]` is `[L, r, in]`, `lora_B[m]` is `[L, out, r]`."""

    lora_A: dict[str, torch.Tensor]
    lora_B: dict[str, torch.Tensor]
    rank: int
    lora_alpha: float
    use_rslora: bool
    module_paths: dict[str, str]
    base_model_name_or_path: str | None = None

    @property
    def scaling(self) -> float:
        return lora_scaling(self.rank, self.lora_alpha, self.use_rslora)

    @property
    def target_modules(self) -> list[str]:
        return list(self.lora_A)

    @property
    def num_layers(self) -> int:
        return next(iter(self.lora_A.values())).shape[0]

    def module_shapes(self) -> dict[str, list[int]]:
        return {m: [int(a.shape[-1]), int(self.lora_B[m].shape[-2])] for m, a in self.lora_A.items()}

    def delta_weight(self, module: str) -> torch.Tensor:
        """`scale * B @ A` for every layer: `[L, out, in]`."""
        return self.scaling * (self.lora_B[module].float() @ self.lora_A[module].float())


def read_peft_adapter(adapter_dir: str | os.PathLike) -> LoraFactors:
    """Read a PEFT LoRA adapter folder into per-module factor stacks (a clear error for anything else)."""
    from safetensors.torch import load_file

    folder = Path(adapter_dir)
    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise FileNotFoundError(
            f"{folder} is not a PEFT adapter folder (needs adapter_config.json and adapter_model.safetensors)."
        )
    config = json.loads(config_file.read_text())
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise ValueError(f"{folder} holds a {config.get('peft_type')} adapter; only LoRA adapters can be used.")
    if config.get("use_dora"):
        raise ValueError(f"{folder} is a DoRA adapter; T2L makes plain LoRA adapters, so it cannot be used here.")
    state = load_file(str(weights_file))
    per_module: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    templates: dict[str, str] = {}
    for key, tensor in state.items():
        match = _KEY.match(key)
        if match is None:
            raise ValueError(
                f"{folder}: unexpected tensor {key!r}; a LoRA library adapter may hold only LoRA A/B weights "
                "(no biases, modules_to_save or embeddings)."
            )
        path, factor = match["path"], match["factor"]
        layer_match = _LAYER.match(path)
        if layer_match is None:
            raise ValueError(f"{folder}: {path!r} is not inside a stack of layers; T2L adapts per-layer modules.")
        module = path.rsplit(".", 1)[-1]
        template = f"{layer_match['prefix']}{{layer}}{layer_match['suffix']}"
        if templates.setdefault(module, template) != template:
            raise ValueError(f"{folder}: module {module!r} occurs under two paths ({templates[module]} and {template}).")
        per_module.setdefault(module, {}).setdefault(int(layer_match["index"]), {})[factor] = tensor
    if not per_module:
        raise ValueError(f"{folder}: the adapter has no LoRA weights.")
    lora_A, lora_B = {}, {}
    layer_counts = set()
    for module, layers in per_module.items():
        indices = sorted(layers)
        if indices != list(range(len(indices))):
            raise ValueError(f"{folder}: module {module!r} is adapted in layers {indices}, not in every layer 0..N-1.")
        missing = [i for i in indices if set(layers[i]) != {"A", "B"}]
        if missing:
            raise ValueError(f"{folder}: module {module!r} lacks its A or B factor in layer(s) {missing}.")
        lora_A[module] = torch.stack([layers[i]["A"] for i in indices]).float()
        lora_B[module] = torch.stack([layers[i]["B"] for i in indices]).float()
        layer_counts.add(len(indices))
    if len(layer_counts) != 1:
        raise ValueError(f"{folder}: target modules are adapted in different numbers of layers ({sorted(layer_counts)}).")
    rank = int(config.get("r", next(iter(lora_A.values())).shape[1]))
    order = [m for m in (config.get("target_modules") or []) if m in lora_A] if isinstance(config.get("target_modules"), list) else []
    order += [m for m in sorted(lora_A) if m not in order]
    return LoraFactors(
        lora_A={m: lora_A[m] for m in order},
        lora_B={m: lora_B[m] for m in order},
        rank=rank,
        lora_alpha=float(config.get("lora_alpha", rank)),
        use_rslora=bool(config.get("use_rslora", False)),
        module_paths={m: templates[m] for m in order},
        base_model_name_or_path=config.get("base_model_name_or_path"),
    )


def check_factors_match(factors: LoraFactors, config, where: str, *, same_scaling: bool = True) -> None:
    """Raise a `ValueError` naming `where` if the adapter's layout differs from the hypernetwork's `config`."""
    problems = []
    if sorted(factors.target_modules) != sorted(config.target_modules):
        problems.append(f"target modules {factors.target_modules} vs {list(config.target_modules)}")
    else:
        if factors.num_layers != config.num_layers:
            problems.append(f"{factors.num_layers} layers vs {config.num_layers}")
        if factors.rank != config.lora_r:
            problems.append(f"rank {factors.rank} vs {config.lora_r}")
        for module, shape in factors.module_shapes().items():
            if list(config.module_shapes[module]) != shape:
                problems.append(f"{module} shape (in, out) {shape} vs {list(config.module_shapes[module])}")
            if config.module_paths[module] != factors.module_paths[module]:
                problems.append(f"{module} path {factors.module_paths[module]!r} vs {config.module_paths[module]!r}")
        if same_scaling and not math.isclose(factors.scaling, config.lora_scaling, rel_tol=1e-6):
            problems.append(
                f"LoRA scale {factors.scaling:.4g} (alpha {factors.lora_alpha}, rslora {factors.use_rslora}) vs "
                f"{config.lora_scaling:.4g} (alpha {config.lora_alpha}, rslora {config.use_rslora})"
            )
    if problems:
        raise ValueError(
            f"The LoRA adapter {where} does not match the hypernetwork: {'; '.join(problems)}. Train the adapters "
            "with the hypernetwork's LoRA settings (same base model, target modules, rank and alpha)."
        )


def _read_descriptions(folder: Path) -> tuple[str | None, list[str]]:
    meta_file = folder / ADAPTER_METADATA_FILE
    task, texts = None, []
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        task = meta.get("task")
        value = meta.get("descriptions", meta.get("description"))
        texts = [value] if isinstance(value, str) else list(value or [])
    if not texts and (folder / "descriptions.json").is_file():
        texts = list(json.loads((folder / "descriptions.json").read_text()))
    if not texts and (folder / "descriptions.txt").is_file():
        texts = [line.strip() for line in (folder / "descriptions.txt").read_text().splitlines()]
    return task, [t.strip() for t in texts if isinstance(t, str) and t.strip()]


@dataclass
class LibraryEntry:
    name: str
    descriptions: list[str]
    factors: LoraFactors
    path: Path


@dataclass
class LoraLibrary:
    """The adapters of a library folder, in name order, checked to share one layout."""

    entries: list[LibraryEntry] = field(default_factory=list)
    root: Path | None = None

    @classmethod
    def load(
        cls, folder: str | os.PathLike, *, tasks: Sequence[str] | None = None, require_descriptions: bool = True
    ) -> "LoraLibrary":
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"No LoRA library folder at {str(root)!r}.")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "adapter_config.json").is_file())
        if not folders:
            raise ValueError(f"{root} holds no PEFT adapter folders (sub-folders with adapter_config.json).")
        entries = []
        for path in folders:
            task, descriptions = _read_descriptions(path)
            name = task or path.name
            if tasks is not None and name not in tasks:
                continue
            if require_descriptions and not descriptions:
                raise ValueError(
                    f"Library adapter {path} has no description; add them to {ADAPTER_METADATA_FILE} "
                    '({"descriptions": [...]}) or descriptions.txt, or train with one-hot task ids.'
                )
            entries.append(LibraryEntry(name=name, descriptions=descriptions, factors=read_peft_adapter(path), path=path))
        if tasks is not None:
            missing = sorted(set(tasks) - {e.name for e in entries})
            if missing:
                raise ValueError(f"The library {root} has no adapter for task(s) {missing}.")
        library = cls(entries=entries, root=root)
        library._check_consistent()
        library._align_module_order()
        return library

    def _check_consistent(self) -> None:
        first = self.entries[0].factors
        for entry in self.entries[1:]:
            f = entry.factors
            if (
                sorted(f.target_modules) != sorted(first.target_modules)
                or f.num_layers != first.num_layers
                or f.rank != first.rank
                or f.module_shapes() != first.module_shapes()
            ):
                raise ValueError(
                    f"Library adapter {entry.path} has another layout than {self.entries[0].path} (modules "
                    f"{f.target_modules} r={f.rank} layers={f.num_layers} vs {first.target_modules} r={first.rank} "
                    f"layers={first.num_layers}); a library must hold adapters of one base model and LoRA setting."
                )

    def _align_module_order(self) -> None:
        """PEFT saves `target_modules` from a set, so adapters of one run list them in different orders: give every
        entry the first entry's order."""
        order = self.entries[0].factors.target_modules
        for entry in self.entries[1:]:
            f = entry.factors
            f.lora_A = {m: f.lora_A[m] for m in order}
            f.lora_B = {m: f.lora_B[m] for m in order}
            f.module_paths = {m: f.module_paths[m] for m in order}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def check_matches(self, config, *, same_scaling: bool = True) -> None:
        """Raise before training if any adapter differs from the hypernetwork's layout."""
        for entry in self.entries:
            check_factors_match(entry.factors, config, f"{entry.path}", same_scaling=same_scaling)

    def t2l_config_kwargs(self) -> dict[str, Any]:
        """The layout fields of a `T2LConfig` for hypernetworks that make this library's adapters."""
        f = self.entries[0].factors
        return {
            "target_modules": f.target_modules,
            "module_shapes": f.module_shapes(),
            "module_paths": dict(f.module_paths),
            "num_layers": f.num_layers,
            "lora_r": f.rank,
            "lora_alpha": f.lora_alpha,
            "use_rslora": f.use_rslora,
            "base_model_name_or_path": f.base_model_name_or_path,
        }


def write_task_metadata(adapter_dir: str | os.PathLike, task: str, descriptions: Sequence[str], **meta: Any) -> Path:
    """Record a task's name and descriptions in `t2l_adapter.json` beside a saved adapter (library format)."""
    folder = Path(adapter_dir)
    record = {"task": task, "descriptions": list(descriptions), **meta}
    (folder / ADAPTER_METADATA_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return folder


def library_folder_name(task: str) -> str:
    """A file-system-safe folder name for a task."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip("._") or "task"
    return safe[:120]


__all__ = [
    "LibraryEntry",
    "LoraFactors",
    "LoraLibrary",
    "check_factors_match",
    "library_folder_name",
    "read_peft_adapter",
    "write_task_metadata",
]
