"""`AdapterCache`: generated adapters kept on disk, so a repeated description costs a file read.

An entry is a standard PEFT adapter folder (what `GeneratedLora.save_pretrained` writes), named by a key that
covers everything the adapter depends on: the hypernetwork's weights and config (a content hash, so two copies
of one checkpoint share entries and a retrained one never serves stale adapters), the description encoder's
settings, the description text (after the encoder's formatting) or task embedding, the mixing weights, the
dtype and the text2lora version. Entries are written atomically and evicted least-recently-used first once
the cache outgrows its size bound.

    cache = AdapterCache()                                   # ~/.cache/text2lora/adapters, 2 GiB
    adapter = cache.get_or_generate(t2l, "Solve math word problems.", dtype="bfloat16")
    folder = cache.adapter_path(t2l, "Solve math word problems.")   # a folder vLLM or PEFT can load
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .adapters import ADAPTER_METADATA_FILE, GeneratedLora, adapter_folder_problem, as_dtype
from .io_utils import (
    atomic_directory,
    cache_home,
    find_leftovers,
    is_stale_leftover,
    make_temp_dir,
    path_size,
    remove_path,
    restore_old_leftover,
)

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "TEXT2LORA_ADAPTER_CACHE_DIR"
CACHE_SIZE_ENV = "TEXT2LORA_ADAPTER_CACHE_SIZE"
CACHE_DISABLE_ENV = "TEXT2LORA_DISABLE_ADAPTER_CACHE"
DEFAULT_MAX_SIZE = 2 * 1024**3
CACHE_FORMAT = 1
_ENTRY_INFO = "cache_entry.json"
# Older versions remembered folder fingerprints here, keyed by file sizes and times (which a retrained
# checkpoint of the same shape can share); it is no longer read, and `clear` deletes it.
_OLD_FINGERPRINTS = "hypernetworks.json"
_KEY = re.compile(r"^[0-9a-f]{40}$")


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as "500MB", "2GiB", "1.5G"."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b?)\s*", str(size).lower())
    if match is None:
        raise ValueError(f"Cannot read the cache size {size!r}; write bytes or e.g. '500MB', '2GiB'.")
    number, unit, binary = match.groups()
    base = 1024 if binary.startswith("i") else 1000
    return int(float(number) * base ** " kmgt".index(unit or " "))


# ---------------------------------------------------------------------- hypernetwork identity


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
        tensor = tensor.detach().to("cpu").contiguous()
        self._hash.update(f"{name}|{str(tensor.dtype)}|{tuple(tensor.shape)}".encode())
        self._hash.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


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


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def _file_stamp(path: Path) -> tuple:
    """Changes whenever the file is rewritten or replaced: st_ctime_ns is set by the kernel on every write and
    cannot be set back with `os.utime` (unlike st_mtime_ns); inode and device change when a file is moved in."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)


_FOLDER_FINGERPRINTS: dict[tuple, str] = {}
_FOLDER_FINGERPRINTS_LOCK = threading.Lock()


def remembered_folder_fingerprint(folder: str | os.PathLike) -> str:
    """`folder_fingerprint` (a hash of the weights' content), computed once per process per version of the
    folder's files: memoised in memory on each file's path, size, modification and change times and inode."""
    folder = Path(folder)
    files = [folder / "config.json", *_weight_files(folder)]
    stamp = tuple(_file_stamp(f) for f in files if f.is_file())
    with _FOLDER_FINGERPRINTS_LOCK:
        known = _FOLDER_FINGERPRINTS.get(stamp)
    if known is not None:
        return known
    fingerprint = folder_fingerprint(folder)  # a rewrite meanwhile changes the stamp, so it is hashed again
    with _FOLDER_FINGERPRINTS_LOCK:
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


# ---------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class CacheEntry:
    """One cached adapter folder."""

    key: str
    path: Path
    size: int
    last_used: float


def read_generated_lora(folder: str | os.PathLike, hypernetwork: str | None = None) -> GeneratedLora:
    """Load an adapter folder written by `GeneratedLora.save_pretrained` back into a `GeneratedLora`."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    folder = Path(folder)
    config = LoraConfig.from_pretrained(str(folder))
    state = load_file(str(folder / "adapter_model.safetensors"))
    meta_path = folder / ADAPTER_METADATA_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return GeneratedLora(
        config=config,
        state_dict=state,
        description=meta.get("description"),
        hypernetwork=hypernetwork or meta.get("hypernetwork"),
        mix_weights=meta.get("mix_weights"),
    )


class AdapterCache:
    """An on-disk, size-bounded, least-recently-used cache of generated adapters.

    Args:
        cache_dir: where entries live. Default: `$TEXT2LORA_ADAPTER_CACHE_DIR`, else `<text2lora cache>/adapters`.
        max_size: bound on the total size (bytes, or a string such as "2GiB"). Default:
            `$TEXT2LORA_ADAPTER_CACHE_SIZE`, else 2 GiB. Least recently used entries are deleted first when a new
            entry pushes the total over it.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, max_size: int | str | None = None) -> None:
        self.cache_dir = Path(
            cache_dir or os.environ.get(CACHE_DIR_ENV) or cache_home() / "adapters"
        ).expanduser()
        size = max_size if max_size is not None else os.environ.get(CACHE_SIZE_ENV, DEFAULT_MAX_SIZE)
        self.max_size = parse_size(size)
        if self.max_size <= 0:
            raise ValueError(f"The adapter cache size must be positive, got {size!r}.")

    def __repr__(self) -> str:
        return f"AdapterCache({str(self.cache_dir)!r}, max_size={self.max_size})"

    # ------------------------------------------------------------------ keys

    def identify(self, t2l: Any) -> HypernetworkIdentity:
        """Identity of a `T2LModel`, or of a saved hypernetwork folder without building the model (the folder's
        fingerprint hashes its weights' content, once per process; see `remembered_folder_fingerprint`)."""
        from .encoder import DescriptionEncoder

        if isinstance(t2l, HypernetworkIdentity):
            return t2l
        if isinstance(t2l, (str, os.PathLike)):
            from .configuration_t2l import T2LConfig

            folder = Path(t2l)
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{t2l!r} is not a local hypernetwork folder; pass a loaded T2LModel instead."
                )
            encoder = DescriptionEncoder.from_config(T2LConfig.from_pretrained(folder))
            return HypernetworkIdentity(remembered_folder_fingerprint(folder), encoder, str(t2l))
        return HypernetworkIdentity(model_fingerprint(t2l), t2l.description_encoder, t2l.name_or_path or None)

    def key(
        self,
        t2l: Any,
        description: str | Sequence[str] | torch.Tensor,
        *,
        weights: Sequence[float] | None = None,
        dtype: str | torch.dtype | None = None,
        identity: HypernetworkIdentity | None = None,
    ) -> str:
        """The cache key of one adapter: hypernetwork, encoder, description(s) or embedding, weights, dtype.

        `t2l` is a `T2LModel`, a saved hypernetwork folder or a `HypernetworkIdentity`; `identity`, when given,
        is used instead of identifying `t2l` (e.g. the folder's identity for a model just loaded from it).
        """
        identity = identity or self.identify(t2l)
        if isinstance(description, torch.Tensor):
            if description.dim() == 2 and description.shape[0] > 1 and weights is None:
                raise ValueError(
                    "One cache entry holds one adapter: pass one task embedding, or several with weights."
                )
            tensor = description.detach().to("cpu", torch.float32).contiguous()
            what: Any = {
                "embedding": hashlib.sha256(tensor.numpy().tobytes()).hexdigest(),
                "shape": list(tensor.shape),
            }
        else:
            texts = [description] if isinstance(description, str) else list(description)
            if not texts:
                raise ValueError("No descriptions given; pass a string or a non-empty list of strings.")
            if len(texts) > 1 and weights is None:
                raise ValueError(
                    "One cache entry holds one adapter: pass one description, or several with weights."
                )
            fmt = getattr(identity.encoder, "format", None)
            what = {
                "texts": [fmt(t) if fmt else str(t).strip() for t in texts],
                "encoder": getattr(identity.encoder, "identity", repr(identity.encoder)),
            }
        payload = {
            "format": CACHE_FORMAT,
            "text2lora": _package_version(),
            "hypernetwork": identity.fingerprint,
            "input": what,
            "weights": [float(w) for w in weights] if weights is not None else None,
            "dtype": str(as_dtype(dtype) or torch.float32),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]

    def _entry_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / key

    # ------------------------------------------------------------------ read / write

    def lookup(self, key: str) -> Path | None:
        """The folder of `key` if cached (and mark it used), else `None`."""
        path = self._entry_path(key)
        if not (path / "adapter_model.safetensors").is_file():
            return None
        try:
            os.utime(path)
        except FileNotFoundError:  # evicted by another process in between
            return None
        except OSError:  # a read-only cache still serves its entries; they just do not move up the LRU order
            pass
        return path

    def get(self, t2l: Any, description, *, weights=None, dtype=None, identity=None) -> GeneratedLora | None:
        """The cached adapter, or `None` on a miss (`t2l`: a `T2LModel`, a saved folder or an identity)."""
        key = self.key(t2l, description, weights=weights, dtype=dtype, identity=identity)
        return self._read(key, _name_of(t2l))

    def _read(self, key: str, hypernetwork: str | None) -> GeneratedLora | None:
        path = self.lookup(key)
        if path is None:
            return None
        try:
            return read_generated_lora(path, hypernetwork=hypernetwork)
        except Exception as err:  # a damaged entry is dropped and regenerated
            logger.warning("Dropping unreadable adapter cache entry %s (%s).", path, err)
            try:
                self._remove(path)
            except OSError as remove_err:  # a read-only cache: it is regenerated each time instead
                logger.warning("Could not drop %s (%s).", path, remove_err)
            return None

    def put(self, key: str, adapter: GeneratedLora, dtype: str | torch.dtype | None = None) -> Path:
        """Store `adapter` under `key` atomically, then evict least recently used entries beyond the bound."""
        if not _KEY.match(key):
            raise ValueError(f"{key!r} is not a cache key; get one from AdapterCache.key(...).")
        path = self._entry_path(key)
        with atomic_directory(path, overwrite=True, replaceable=_entry_problem) as tmp:
            adapter.save_pretrained(tmp, dtype=dtype or _dtype_of(adapter))
            (tmp / _ENTRY_INFO).write_text(
                json.dumps({"key": key, "description": adapter.description}) + "\n"
            )
        self.evict(keep=key)
        return path

    def _try_put(self, key: str, adapter: GeneratedLora) -> None:
        """`put`, but a cache that cannot be written (read-only or full disk) only costs a warning."""
        try:
            self.put(key, adapter)
        except OSError as err:
            logger.warning(
                "Could not write to the adapter cache %s (%s); continuing without caching.",
                self.cache_dir,
                err,
            )

    def get_or_generate(
        self,
        t2l: Any,
        description: str | Sequence[str] | torch.Tensor,
        *,
        weights: Sequence[float] | None = None,
        dtype: str | torch.dtype | None = None,
        identity: HypernetworkIdentity | None = None,
    ) -> GeneratedLora:
        """The adapter for `description` (several with `weights` to mix them): read from the cache, or generated
        by `t2l` (a `T2LModel`) and stored. Returned in `dtype` (default float32)."""
        key = self.key(t2l, description, weights=weights, dtype=dtype, identity=identity)
        cached = self._read(key, _name_of(t2l))
        if cached is not None:
            return cached
        adapter = t2l.generate_lora(description, weights=weights)
        if isinstance(adapter, list):  # a 1-element list (a 2-D embedding tensor)
            adapter = adapter[0]
        if dtype is not None:
            adapter = adapter.to(dtype)
        self._try_put(key, adapter)
        return adapter

    def get_or_generate_many(
        self,
        t2l: Any,
        descriptions: Sequence[str],
        *,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 64,
        show_progress_bar: bool = False,
        identity: HypernetworkIdentity | None = None,
    ) -> list[GeneratedLora]:
        """One adapter per description; the misses are generated together in batched forward passes."""
        identity = identity or self.identify(t2l)
        keys = [self.key(t2l, d, dtype=dtype, identity=identity) for d in descriptions]
        name = _name_of(t2l)
        found: dict[str, GeneratedLora | None] = {k: self._read(k, name) for k in dict.fromkeys(keys)}
        missing = [k for k, v in found.items() if v is None]
        if missing:
            todo = [descriptions[keys.index(k)] for k in missing]
            generated = t2l.generate_lora(todo, batch_size=batch_size, show_progress_bar=show_progress_bar)
            for key, adapter in zip(missing, generated):
                adapter = adapter.to(dtype) if dtype is not None else adapter
                self._try_put(key, adapter)
                found[key] = adapter
        return [found[k] for k in keys]

    def adapter_path(self, t2l: Any, description, *, weights=None, dtype=None) -> Path:
        """The cached adapter folder for `description`, generating it first on a miss (for servers that load
        adapters from disk, such as vLLM)."""
        key = self.key(t2l, description, weights=weights, dtype=dtype)
        path = self.lookup(key)
        if path is None:
            adapter = self.get_or_generate(t2l, description, weights=weights, dtype=dtype)
            path = self.lookup(key) or self.put(
                key, adapter
            )  # put again only to raise why it cannot be written
        return path

    # ------------------------------------------------------------------ housekeeping

    def entries(self) -> list[CacheEntry]:
        """Every complete entry, least recently used first."""
        found = []
        if not self.cache_dir.is_dir():
            return found
        for shard in self.cache_dir.iterdir():
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for path in shard.iterdir():
                if not _KEY.match(path.name):
                    continue  # temporary folders of writes in progress
                try:
                    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
                    found.append(CacheEntry(path.name, path, size, path.stat().st_mtime))
                except OSError:
                    continue
        return sorted(found, key=lambda e: e.last_used)

    @property
    def size(self) -> int:
        """Total bytes of all entries."""
        return sum(e.size for e in self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    def __contains__(self, key: str) -> bool:
        return (self._entry_path(key) / "adapter_model.safetensors").is_file()

    def leftovers(self) -> list[CacheLeftover]:
        """What killed or racing writes and deletions left in the cache (`.<key>.tmp-*`, `.<key>.old-*`,
        `.evicted-*` folders; the `hypernetworks.json` of older versions), outside every entry and so outside
        the size bound until removed. `stale` ones are held by no live writer (`io_utils.is_stale_leftover`)."""
        if not self.cache_dir.is_dir():
            return []
        paths = find_leftovers(self.cache_dir)
        found = []
        old_memo = self.cache_dir / _OLD_FINGERPRINTS
        if old_memo.is_file():
            found.append(CacheLeftover(old_memo, path_size(old_memo), True))
        for shard in sorted(self.cache_dir.iterdir()):
            if shard.is_dir() and not shard.is_symlink() and len(shard.name) == 2:
                paths += find_leftovers(shard)
        now = time.time()
        found += [CacheLeftover(p, path_size(p), is_stale_leftover(p, now)) for p in paths]
        return found

    def remove_leftovers(self, restore: bool = True) -> tuple[list[CacheLeftover], list[CacheLeftover]]:
        """Delete the stale leftovers (with `restore`, an `.old-*` folder of an older version whose entry is
        missing is put back instead); those a live writer holds are kept. Returns (removed or restored, kept);
        raises `CacheClearError` (naming the folder and the cause) if some cannot be deleted."""
        removed, kept, failures = [], [], []
        for leftover in self.leftovers():
            if not leftover.stale:
                kept.append(leftover)
                continue
            try:
                if not (restore and leftover.path.is_dir() and restore_old_leftover(leftover.path)):
                    remove_path(leftover.path)
                removed.append(leftover)
            except OSError as err:
                failures.append(err)
        if failures:
            done = f"{len(removed)} of {len(removed) + len(failures)} stale leftover(s) deleted"
            raise _clear_error(self.cache_dir, failures, done)
        return removed, kept

    def evict(self, max_size: int | None = None, keep: str | None = None) -> list[str]:
        """Delete least recently used entries until the total is at most `max_size` (default: the bound).
        The entry `keep` (the one just written) is never deleted; stale leftovers go first. Returns the deleted
        keys."""
        try:
            self.remove_leftovers()
        except OSError as err:
            logger.warning("%s", err)
        limit = self.max_size if max_size is None else max_size
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = []
        for entry in entries:
            if total <= limit:
                break
            if entry.key == keep:
                continue
            try:
                gone = self._remove(entry.path)
            except OSError as err:
                logger.warning("Could not evict the adapter cache entry %s (%s).", entry.path, err)
                continue
            total -= entry.size
            if gone:
                removed.append(entry.key)
        return removed

    def clear(self) -> int:
        """Delete every entry and the stale leftovers (`remove_leftovers`); returns how many entries were deleted.

        Raises `CacheClearError` (an OSError with the errno of the first failure; its message names the folder,
        the cause and how many were deleted) if some cannot be deleted."""
        return self.clear_and_report().entries

    def clear_and_report(self) -> CacheClearReport:
        """`clear`, returning what was deleted: entries, stale leftovers, and leftovers kept for live writers."""
        entries = self.entries()
        deleted, failures = 0, []
        for entry in entries:
            try:
                deleted += self._remove(entry.path)
            except OSError as err:
                failures.append(err)
        if failures:
            raise _clear_error(self.cache_dir, failures, f"{deleted} of {len(entries)} cached adapter(s) deleted")
        try:
            removed, kept = self.remove_leftovers(restore=False)
        except CacheClearError as err:
            err.args = (f"{err.args[0]}; {deleted} cached adapter(s) deleted",)
            raise
        return CacheClearReport(deleted, len(removed), len(kept))

    @staticmethod
    def _remove(path: Path) -> bool:
        """Delete one entry: renamed out of the way first, so readers never see a half-deleted entry. True if it
        was deleted here, False if it was already gone; an entry that cannot be deleted raises (OSError)."""
        try:
            trash = make_temp_dir(path.parent, ".evicted-")
        except OSError as err:  # name the entry, not the trash folder that could not be made
            raise type(err)(err.errno, err.strerror, str(path)) from err
        try:
            os.replace(path, trash / "entry")
        except OSError as err:
            with contextlib.suppress(OSError):
                trash.rmdir()
            if isinstance(err, FileNotFoundError):  # deleted by another process meanwhile
                return False
            raise
        remove_path(trash)
        return True


@dataclass(frozen=True)
class CacheLeftover:
    """A temporary folder or file of an interrupted cache write or deletion (or a file of an older version)."""

    path: Path
    size: int
    stale: bool


@dataclass(frozen=True)
class CacheClearReport:
    """What `AdapterCache.clear_and_report` deleted."""

    entries: int
    leftovers: int
    leftovers_kept: int


class CacheClearError(OSError):
    """Some of the cache could not be deleted; the message names the folder, the cause and what was deleted."""


def _clear_error(cache_dir: Path, failures: list[OSError], done: str) -> OSError:
    first = failures[0]
    cause = first.strerror or str(first)
    where = f" ({first.filename})" if first.filename else ""
    if first.errno in (errno.EACCES, errno.EPERM):
        fix = f"make it writable (chmod -R u+w {cache_dir}) or run as its owner"
    elif first.errno == errno.EROFS:
        fix = "its file system is mounted read-only; clear it where it is writable"
    else:
        fix = "fix the cause and run it again"
    message = (
        f"could not delete {len(failures)} item(s) of the adapter cache {cache_dir}: {cause}{where}; {done}. "
        f"To clear it, {fix}."
    )
    error = CacheClearError(message)
    error.errno = first.errno
    return error


def _entry_problem(folder: Path) -> str | None:
    """A cache entry is an adapter folder plus its `cache_entry.json`."""
    return adapter_folder_problem(folder, also_ours=(_ENTRY_INFO,))


@functools.lru_cache(maxsize=1)
def _package_version() -> str:
    """Part of every key: a new text2lora version may generate differently, so it never reuses old entries."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("text2lora")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _name_of(t2l: Any) -> str | None:
    if isinstance(t2l, HypernetworkIdentity):
        return t2l.name
    if isinstance(t2l, (str, os.PathLike)):
        return str(t2l)
    return getattr(t2l, "name_or_path", None) or None


def _dtype_of(adapter: GeneratedLora) -> torch.dtype:
    return next(iter(adapter.state_dict.values())).dtype


def resolve_cache(cache: AdapterCache | bool | str | os.PathLike | None = True) -> AdapterCache | None:
    """`True`/`None`: the default cache (unless `$TEXT2LORA_DISABLE_ADAPTER_CACHE` is set); `False`: no cache;
    a path: a cache there; an `AdapterCache`: itself."""
    if isinstance(cache, AdapterCache):
        return cache
    if cache is False:
        return None
    if cache is None or cache is True:
        if os.environ.get(CACHE_DISABLE_ENV, "").lower() not in ("", "0", "false", "no"):
            return None
        return AdapterCache()
    return AdapterCache(cache)


__all__ = [
    "AdapterCache",
    "CacheClearError",
    "CacheClearReport",
    "CacheEntry",
    "CacheLeftover",
    "HypernetworkIdentity",
    "folder_fingerprint",
    "model_fingerprint",
    "parse_size",
    "read_generated_lora",
    "remembered_folder_fingerprint",
    "resolve_cache",
]
