"""Finding hypernetwork checkpoints: local folders, Hub names (from the local cache when offline), and the
checkpoints that ship inside the package."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

# Name -> folder (relative to this package) of hypernetworks shipped with text2lora, usable with no download.
# The default: T2L-L for SmolLM2-135M-Instruct, SFT on the 277-task collection (recipes/smollm2/, README "Results").
PACKAGED_CHECKPOINTS: dict[str, str] = {"text2lora/t2l-smollm2-135m-instruct": "default_checkpoint"}
DEFAULT_CHECKPOINT: str | None = "text2lora/t2l-smollm2-135m-instruct"
# Name -> folder of baseline adapters shipped beside it (plain PEFT LoRA folders), so its tables can be re-run.
PACKAGED_ADAPTERS: dict[str, str] = {"text2lora/mt-lora-smollm2-135m-instruct": "default_checkpoint/mt_lora"}


def resolve_adapter(name_or_path: str | os.PathLike) -> str:
    """A local adapter folder as is, or the folder of a packaged baseline adapter named in PACKAGED_ADAPTERS."""
    name = str(name_or_path)
    if not Path(name).is_dir() and name in PACKAGED_ADAPTERS:
        return str(Path(__file__).parent / PACKAGED_ADAPTERS[name])
    return name


def resolve_checkpoint(name_or_path: str | os.PathLike, **_: Any) -> str:
    """A local folder as is; a packaged checkpoint's folder; otherwise the name, for the Hub (or its cache)."""
    name = str(name_or_path)
    if Path(name).is_dir():
        return name
    if name in PACKAGED_CHECKPOINTS:
        return str(Path(__file__).parent / PACKAGED_CHECKPOINTS[name])
    if name.count("/") != 1 and (os.sep in name or name.startswith(".")):
        raise FileNotFoundError(f"No hypernetwork folder at {name!r}; check the path.")
    return name


def default_hypernetwork_name() -> str:
    if DEFAULT_CHECKPOINT is None:
        raise ValueError(
            "No default hypernetwork ships with this version of text2lora; pass one explicitly "
            "(t2l=... / --t2l PATH_OR_NAME), or create an untrained one with `t2l init --base MODEL --out DIR`."
        )
    return DEFAULT_CHECKPOINT


def load_hypernetwork(t2l: Any = None):
    """A `T2LModel` from an instance, a name or path, or `None` (the default checkpoint)."""
    from .modeling_t2l import T2LModel

    if isinstance(t2l, T2LModel):
        return t2l
    name = default_hypernetwork_name() if t2l is None else str(t2l)
    return _load_cached(name)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str):
    from .modeling_t2l import T2LModel

    return T2LModel.from_pretrained(name).eval()
