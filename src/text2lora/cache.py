"""`AdapterCache`: generated adapters kept on disk, so a repeated description costs a file read.

An entry is a standard PEFT adapter folder (what `GeneratedLora.save_pretrained` writes) named by its key
(`pipeline.adapter_key`: the hypernetwork's content, the encoder's settings, the description or mix, the dtype
and the text2lora version). Entries are written atomically and evicted least-recently-used first once the cache
outgrows its size bound. This module is the store only; `pipeline.get_or_generate` decides what to read, generate
and write:

    cache = AdapterCache()                                   # ~/.cache/text2lora/adapters, 2 GiB
    adapters = get_or_generate(["Solve math word problems."], t2l, cache=cache, dtype="bfloat16")
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .adapters import GeneratedLora, adapter_folder_problem, read_generated_lora
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


# ---------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class CacheEntry:
    """One cached adapter folder."""

    key: str
    path: Path
    size: int
    last_used: float


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

    def read(self, key: str, hypernetwork: str | None = None) -> GeneratedLora | None:
        """The adapter stored under `key` (recording `hypernetwork` as its source), or `None` on a miss; a damaged
        entry is dropped and counts as a miss."""
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
    "parse_size",
    "resolve_cache",
]
