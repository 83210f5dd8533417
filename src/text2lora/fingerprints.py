"""Fingerprints of hypernetworks: a content hash of a `T2LModel` or of a saved folder (the same hash for both), and
the `HypernetworkIdentity` an adapter key is built from (`pipeline.adapter_key`); content hashes of named tensors,
tokenizers and files (a base model's weights, a PEFT adapter folder), which key `t2l eval`'s saved runs; and the
per-file digests that key `checkpoints.load_hypernetwork`'s in-memory models.

Two copies of one checkpoint share a fingerprint; a retrained one never does. A saved folder is hashed from its
files without building the model, once per process per version of its files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # checkpoints imports this module (checkpoint_digest)
    from .checkpoints import HypernetworkLike


@dataclass(frozen=True)
class HypernetworkIdentity:
    """What a cache key needs to know about a hypernetwork: a content fingerprint, and the encoder whose
    formatting and settings turn description text into its task embedding."""

    fingerprint: str
    encoder: Any
    name: str | None = None


def _t2l_fields(config) -> dict[str, Any]:
    """The T2L-specific config fields (generic `PreTrainedConfig` bookkeeping such as paths is left out)."""
    from .configuration_t2l import T2LConfig

    names = [n for n in T2LConfig.__annotations__ if not n.startswith("_")]
    return {n: getattr(config, n, None) for n in names}


class _Hasher:
    """sha256 over config fields and named tensors, in a canonical order, whatever their source."""

    def __init__(self, config) -> None:
        self._hash = hashlib.sha256()
        self._hash.update(json.dumps(_t2l_fields(config), sort_keys=True, default=str).encode())

    def add(self, name: str, tensor: torch.Tensor) -> None:
        _hash_tensor(self._hash, name, tensor)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _hash_tensor(hasher, name: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().to("cpu").contiguous()
    hasher.update(f"{name}|{tensor.dtype!s}|{tuple(tensor.shape)}".encode())
    hasher.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))


def _state_token(model) -> tuple:
    """Changes whenever a tensor of `model` is replaced or modified in place (version counters), plus a small
    strided sample of each tensor, which catches edits made through `.data` (they bypass the counters)."""
    token = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)].to(torch.float64).sum().item() if flat.numel() else 0.0
        token.append((name, tensor.data_ptr(), tensor._version, sample))
    token.append(json.dumps(_t2l_fields(model.config), sort_keys=True, default=str))
    return tuple(token)


def model_fingerprint(model) -> str:
    """Content hash of a `T2LModel` (config fields + every tensor), memoised on the instance until it changes."""
    token = _state_token(model)
    memo = getattr(model, "_t2l_cache_fingerprint", None)
    if memo is not None and memo[0] == token:
        return memo[1]
    hasher = _Hasher(model.config)
    for name, tensor in sorted(model.state_dict().items()):
        hasher.add(name, tensor)
    fingerprint = hasher.hexdigest()
    model._t2l_cache_fingerprint = (token, fingerprint)
    return fingerprint


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """Content hash of named tensors (each one's name, dtype, shape and bytes, in name order): what
    `t2l eval --resume` keys a saved run's base model by."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        _hash_tensor(hasher, name, tensors[name])
    return hasher.hexdigest()


_BASE_LAYER = re.compile(r"\.base_layer(?=\.)")  # PEFT's wrapped module, not e.g. `.base_layers.0`


def base_model_weights(model) -> dict[str, torch.Tensor]:
    """A base model's own tensors, named as in the bare model: adapter layers injected into it (`lora_*`, PEFT's
    `.base_layer` renaming, a `PeftModel`'s `base_model.model.` prefix) neither enter nor change its fingerprint."""
    weights = {}
    for name, tensor in model.state_dict().items():
        if "lora_" in name:
            continue
        name = _BASE_LAYER.sub("", name).removeprefix("base_model.model.")
        if name in weights:
            raise ValueError(f"Two tensors of the base model are both named {name!r} once adapter layers are left out.")
        weights[name] = tensor
    return weights


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what turns text into token ids and chats into prompts: the vocabulary and rules (a fast tokenizer's
    serialised form, else its vocabulary), the special tokens and the chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    rules = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = {"special": tokenizer.special_tokens_map, "chat_template": getattr(tokenizer, "chat_template", None),
             "class": type(tokenizer).__name__}
    return hashlib.sha256((rules + json.dumps(extra, sort_keys=True, default=str)).encode()).hexdigest()


def files_fingerprint(folder: str | os.PathLike, names: tuple[str, ...] | list[str]) -> str:
    """sha256 over the names and contents of the named files of `folder` that exist (a PEFT adapter folder: its
    config and weights; a hypernetwork folder's config and weight files); each file is read once per process per
    version (`file_digest`)."""
    folder = Path(folder)
    files = [folder / name for name in names if (folder / name).is_file()]
    if not files:
        raise FileNotFoundError(f"None of {list(names)} in {folder}.")
    hasher = hashlib.sha256()
    for file in files:
        hasher.update(f"{file.name}\0{file_digest(file)}\0".encode())
    return hasher.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered in this process by `_file_stamp`, so a large file is read once per
    version; any rewrite changes its ctime, even one that keeps size and mtime."""
    stamp = _file_stamp(Path(path))
    with _MEMO_LOCK:
        known = _FILE_DIGESTS.get(stamp)
    if known is not None:
        return known
    hasher = hashlib.sha256()
    with open(stamp[0], "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    with _MEMO_LOCK:
        _FILE_DIGESTS[stamp] = hasher.hexdigest()
        while len(_FILE_DIGESTS) > _MAX_FILE_DIGESTS:
            _FILE_DIGESTS.popitem(last=False)
    return hasher.hexdigest()


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def _file_stamp(path: Path) -> tuple:
    """Changes whenever the file is rewritten or replaced: st_ctime_ns is set by the kernel on every write and
    cannot be set back with `os.utime` (unlike st_mtime_ns); inode and device change when a file is moved in.
    (Kernels before Linux 6.13 advance ctime once per clock tick, 1-4 ms: two writes within one tick that also keep
    size and mtime are not told apart.)
    Symbolic links are followed (a Hub snapshot links to its blobs)."""
    real = path.resolve()
    stat = real.stat()
    return (str(real), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)


# Both memos key on `_file_stamp`s: a file's digest, and a folder's tensor-content fingerprint.
_MEMO_LOCK = threading.Lock()
_MAX_FILE_DIGESTS = 256
_FILE_DIGESTS: OrderedDict[tuple, str] = OrderedDict()
_FOLDER_FINGERPRINTS: dict[tuple, str] = {}


def remembered_folder_fingerprint(folder: str | os.PathLike) -> str:
    """`folder_fingerprint` (a hash of the weights' content), computed once per process per version of the
    folder's files: memoised in memory on each file's path, size, modification and change times and inode."""
    folder = Path(folder)
    files = [folder / "config.json", *_weight_files(folder)]
    stamp = tuple(_file_stamp(f) for f in files if f.is_file())
    with _MEMO_LOCK:
        known = _FOLDER_FINGERPRINTS.get(stamp)
    if known is not None:
        return known
    fingerprint = folder_fingerprint(folder)  # a rewrite meanwhile changes the stamp, so it is hashed again
    with _MEMO_LOCK:
        _FOLDER_FINGERPRINTS[stamp] = fingerprint
    return fingerprint


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """The same content hash as `model_fingerprint`, computed from a saved folder's files (no model built)."""
    from safetensors import safe_open

    from .configuration_t2l import T2LConfig

    folder = Path(folder)
    files = _weight_files(folder)
    if not files:
        raise FileNotFoundError(f"No model.safetensors in {folder}; it is not a saved T2LModel folder.")
    hasher = _Hasher(T2LConfig.from_pretrained(folder))
    tensors: dict[str, tuple[Path, str]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            tensors.update({key: (file, key) for key in handle.keys()})
    handles = {file: safe_open(str(file), framework="pt") for file in files}
    for name in sorted(tensors):
        file, key = tensors[name]
        hasher.add(name, handles[file].get_tensor(key))
    return hasher.hexdigest()


def identify(t2l: HypernetworkLike | HypernetworkIdentity, name: str | None = None) -> HypernetworkIdentity:
    """The identity of a `T2LModel`, or of a saved hypernetwork folder without building the model (its
    fingerprint hashes the weights' content, once per process; see `remembered_folder_fingerprint`).
    `name` (default: the folder or the model's `name_or_path`) is what adapters record as their hypernetwork."""
    from .configuration_t2l import T2LConfig
    from .encoder import DescriptionEncoder

    if isinstance(t2l, HypernetworkIdentity):
        return t2l if name is None else replace(t2l, name=name)
    if isinstance(t2l, (str, os.PathLike)):
        folder = Path(t2l)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{str(t2l)!r} is not a saved hypernetwork folder; pass a loaded T2LModel instead.")
        encoder = DescriptionEncoder.from_config(T2LConfig.from_pretrained(folder))
        return HypernetworkIdentity(remembered_folder_fingerprint(folder), encoder, name or str(t2l))
    if t2l is None:
        raise ValueError("identify needs a T2LModel or a saved hypernetwork folder, got None.")
    return HypernetworkIdentity(model_fingerprint(t2l), t2l.description_encoder, name or t2l.name_or_path or None)


__all__ = [
    "HypernetworkIdentity",
    "base_model_weights",
    "file_digest",
    "files_fingerprint",
    "folder_fingerprint",
    "identify",
    "model_fingerprint",
    "remembered_folder_fingerprint",
    "tensors_fingerprint",
    "tokenizer_fingerprint",
]
