"""Switching adapters on one loaded base model between evaluation runs, and recording what was active.

The base model is loaded once and wrapped once by lm-eval's `HFLM`. Adapters are added with transformers'
PEFT integration (`load_adapter` for PEFT folders, text2lora's `load_description_adapter` for T2L) and chosen with `set_adapter` /
`disable_adapters`, so nothing is reloaded between runs. lm-eval does not record which adapter produced a
result; `AdapterSwitch.activate` returns a record read back from the model itself (active adapter names,
whether adapters are enabled, and a checksum of the active LoRA weights), which the runner stores with every
result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoints import HypernetworkLike
from .conditions import AdapterRef


# What a PEFT LoRA folder must hold for text2lora to load it (and what `t2l eval` keys its saved runs by): the config
# and safetensors weights; an adapter_model.bin is a pickle and is never loaded.
PEFT_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def check_peft_folder(path: str | Path, label: str = "") -> None:
    """Raise, in one line naming the fix, unless `path` holds `PEFT_ADAPTER_FILES` (`label`: the option it came from)."""
    where = f"{label} {path}".strip()
    if not (Path(path) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{where} is not a PEFT adapter folder (no adapter_config.json); check the path.")
    if not (Path(path) / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(
            f"{where} has no adapter_model.safetensors (an adapter_model.bin is a pickle, which text2lora does not "
            "load); save the adapter with save_pretrained(safe_serialization=True)."
        )


class AdapterSwitch:
    """Activates the adapter a run needs (or none) on `model`, loading it on first use.

    Args:
        model: a transformers `PreTrainedModel` (adapters are injected in place).
        hypernetwork: the hypernetwork for T2L runs (`T2LModel`, folder or Hub name), or `None` for none.
        keep_peft: how many PEFT-folder adapters (oracle LoRAs) to keep loaded; older ones are deleted.
    """

    def __init__(self, model, hypernetwork: HypernetworkLike = None, keep_peft: int = 2) -> None:
        self.model = model
        self.hypernetwork = hypernetwork
        self.keep_peft = keep_peft
        self._loaded: list[str] = []  # PEFT-folder adapters, oldest first
        self._t2l_request: tuple | None = None  # (description(s), weights) of the loaded T2L adapter

    # ------------------------------------------------------------------------------------------ activation

    def activate(self, ref: AdapterRef | None) -> dict[str, Any]:
        """Make `ref` the only active adapter (`None`: the bare base model) and return the record."""
        if ref is None:
            if self._has_adapters():
                self.model.disable_adapters()
        elif ref.kind == "peft":
            self._load_peft(ref)
            self._enable(ref.name)
        elif ref.kind == "t2l":
            self._load_t2l(ref)
            self._enable("t2l")
        else:
            raise ValueError(f"Unknown adapter kind {ref.kind!r}; expected 'peft' or 't2l'.")
        record = self.describe()
        expected = None if ref is None else ref.name
        if record["active"] != expected:
            raise RuntimeError(f"Adapter switch failed: wanted {expected!r} active, the model reports {record['active']!r}.")
        if ref is not None:
            record.update({"kind": ref.kind, "path": ref.path, "description": ref.description})
        return record

    def describe(self) -> dict[str, Any]:
        """What the model itself says is active: `{"active": name or None, "enabled": bool, "checksum": float}`."""
        if not self._has_adapters():
            return {"active": None, "enabled": False, "checksum": None}
        layers = [m for m in self.model.modules() if _is_tuner_layer(m)]
        enabled = any(not m.disable_adapters for m in layers)
        if not enabled:
            return {"active": None, "enabled": False, "checksum": None}
        active = self.model.active_adapters()
        if len(active) != 1:
            return {"active": list(active), "enabled": True, "checksum": None}
        name = active[0]
        return {"active": name, "enabled": True, "checksum": self.checksum(name)}

    def checksum(self, name: str) -> float:
        """Sum of |w| over the LoRA weights of adapter `name`: differs between adapters, so the record shows
        that the adapter really changed between runs."""
        total = 0.0
        with torch.no_grad():
            for param_name, param in self.model.named_parameters():
                if f".{name}." in param_name and ".lora_" in param_name:
                    total += float(param.detach().abs().sum())
        return round(total, 6)

    # ---------------------------------------------------------------------------------------------- loading

    def _has_adapters(self) -> bool:
        return bool(getattr(self.model, "_hf_peft_config_loaded", False)) or bool(getattr(self.model, "peft_config", None))

    def _enable(self, name: str) -> None:
        self.model.enable_adapters()
        self.model.set_adapter(name)

    def _load_peft(self, ref: AdapterRef) -> None:
        if ref.name in self._loaded:
            return
        path = Path(ref.path)
        check_peft_folder(path)
        if ref.name in (getattr(self.model, "peft_config", None) or {}):
            self.model.delete_adapter(ref.name)  # left by an earlier run on this model: its weights may be another's
        try:
            self.model.load_adapter(str(path), adapter_name=ref.name)
        except (ValueError, RuntimeError, KeyError) as err:
            raise ValueError(
                f"The adapter at {path} does not fit the base model {self.model.name_or_path!r}: {err}. "
                "Pass an adapter trained for this base model."
            ) from err
        self._loaded.append(ref.name)
        while len([n for n in self._loaded if n != "mt_lora"]) > self.keep_peft:
            oldest = next(n for n in self._loaded if n != "mt_lora")
            self.model.delete_adapter(oldest)
            self._loaded.remove(oldest)

    def _load_t2l(self, ref: AdapterRef) -> None:
        if self.hypernetwork is None:
            raise ValueError("A T2L condition needs a hypernetwork; pass --t2l PATH.")
        request = (ref.description, ref.weights)
        if self._t2l_request == request:
            return
        from ..integrations.transformers import load_description_adapter

        description = list(ref.description) if isinstance(ref.description, tuple) else ref.description
        weights = list(ref.weights) if ref.weights is not None else None
        load_description_adapter(self.model, description, t2l=self.hypernetwork, adapter_name="t2l", weights=weights)
        self._t2l_request = request


def _is_tuner_layer(module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer)
