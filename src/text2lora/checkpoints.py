"""Loading hypernetworks by name: `load_hypernetwork` turns a `HypernetworkLike` (a model, a local folder, a Hub
name, or None for the shipped default) into a `T2LModel`, keeping the last few in memory by file content."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .modeling_t2l import T2LModel

from .packaged import (  # noqa: F401 (the registry's old home: evaluation and recipes import it from here)
    DEFAULT_CHECKPOINT,
    PACKAGED_ADAPTERS,
    PACKAGED_CHECKPOINTS,
    default_hypernetwork_name,
    resolve_adapter,
    resolve_checkpoint,
)

# What names a hypernetwork wherever text2lora takes one: a loaded model, a Hub name or local folder, or None for the
# shipped default (`packaged.DEFAULT_CHECKPOINT`).
HypernetworkLike = Union["T2LModel", str, os.PathLike, None]


def load_hypernetwork(t2l: HypernetworkLike = None, *, trust_remote_code: bool = False) -> T2LModel:
    """A `T2LModel` from an instance, a name or path, or `None` (the default checkpoint).

    Loaded models are kept in memory (the last few) keyed by the content of their files (config.json and the
    weights), so a folder saved again is loaded again. `trust_remote_code=True` lets the description encoder run
    code from its model folder when the hypernetwork's config says it needs to (`encoder_trust_remote_code`);
    without it such an encoder is refused when first used.
    """
    from .modeling_t2l import T2LModel

    if isinstance(t2l, T2LModel):
        return allow_encoder_remote_code(t2l) if trust_remote_code else t2l
    name = default_hypernetwork_name() if t2l is None else str(t2l)
    trust = bool(trust_remote_code)
    with _LOADED_LOCK:
        folder = _local_folder(name)
        digest = checkpoint_digest(folder) if folder is not None else None
        key = (name, digest, trust)
        if digest is not None and key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
        model = T2LModel.from_pretrained(name).eval()
        if trust:
            allow_encoder_remote_code(model)
        folder = folder or _local_folder(name)  # a Hub name is in the local Hub cache once downloaded
        if folder is None or (digest is not None and checkpoint_digest(folder) != digest):
            return model  # not kept: its files are unknown, or changed while it was loading
        _LOADED[(name, checkpoint_digest(folder), trust)] = model
        while len(_LOADED) > _MAX_LOADED:
            _LOADED.popitem(last=False)
        return model


def allow_encoder_remote_code(model):
    """Let `model`'s description encoder run code from its folder if its config says it needs to (the caller's
    consent, as `trust_remote_code=True` in transformers). Returns `model`."""
    if getattr(model.config, "encoder_trust_remote_code", False):
        model.description_encoder.trust_remote_code = True
    return model


_MAX_LOADED = 4
_LOADED: OrderedDict[tuple, Any] = OrderedDict()
_LOADED_LOCK = threading.RLock()
_WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")


def _local_folder(name: str) -> Path | None:
    """The folder `T2LModel.from_pretrained(name)` reads: a local or packaged folder, or the Hub cache's
    snapshot of a Hub name (`None` when it is not downloaded)."""
    location = resolve_checkpoint(name)
    if Path(location).is_dir():
        return Path(location)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(location, "config.json")
    except Exception:  # noqa: BLE001 (not a valid repo id, no cache...: simply not cached)
        return None
    return Path(found).parent if isinstance(found, str) else None


def checkpoint_digest(folder: str | os.PathLike) -> str:
    """SHA-256 over the names and contents of a hypernetwork folder's config.json and weight files
    (`fingerprints.files_fingerprint`: each file is read once per process per version of it)."""
    from .fingerprints import files_fingerprint

    folder = Path(folder)
    names = sorted(
        f.name for f in folder.iterdir() if f.is_file() and (f.name == "config.json" or f.name.endswith(_WEIGHT_SUFFIXES))
    )
    return files_fingerprint(folder, names) if names else hashlib.sha256().hexdigest()
