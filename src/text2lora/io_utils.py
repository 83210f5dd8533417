"""Atomic writes and the text2lora cache folder: nothing half-written is ever left at a final path.

Temporary names are hidden siblings of the final path, `.NAME.tmp-<host>-<pid>-<random>`, so a leftover of a
killed writer can be told apart from a write in progress (`is_stale_leftover`) and tidied up by the next write
of the same path. Folders and files get the permissions `mkdir` and `open` give under the process umask (not
`tempfile`'s 0o700 / 0o600), whatever the code that filled the temporary folder chose.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# A leftover whose writer (on this machine) has exited is removed once untouched for this many seconds; any other
# (a writer on another machine sharing the folder, or a name without a process id) once untouched for
# STALE_AFTER_S. A write in progress keeps touching its files, so neither removes a live writer's folder.
DEAD_WRITER_GRACE_S = 60.0
STALE_AFTER_S = 10 * 60.0
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
# `.NAME.tmp-TAG`, `.NAME.old-TAG` (folders replaced by older versions) and `.evicted-TAG` (cache deletions);
# TAG is `<host>-<pid>-<random>` (this module) or 8 characters of `tempfile.mkdtemp` (older versions).
_LEFTOVER = re.compile(
    r"^\.(?:(?P<name>.+)\.(?P<kind>tmp|old)|(?P<evicted>evicted))-"
    r"(?:(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]+)-[0-9a-f]{8}|[a-z0-9_]{8})$"
)
# Replaced last, so that a folder gains the file its readers look for first only once the rest is in place.
_WRITTEN_LAST = ("config.json", "adapter_config.json")


def cache_home() -> Path:
    """Root of text2lora's on-disk caches: `$TEXT2LORA_HOME`, else `$HF_HOME/text2lora`-style default."""
    env = os.environ.get("TEXT2LORA_HOME")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "text2lora"


# ---------------------------------------------------------------------- temporary names and leftovers


def _temp_name(prefix: str) -> str:
    return f"{prefix}{_HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}"


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new empty folder `parent/<prefix><host>-<pid>-<random>`, made with the umask applied (unlike
    `tempfile.mkdtemp`, whose 0o700 would otherwise stay on the final folder)."""
    parent = Path(parent)
    while True:
        path = parent / _temp_name(prefix)
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


def is_leftover_name(name: str, target_name: str | None = None) -> bool:
    """Whether `name` is a temporary name this module (or an older text2lora) gives, optionally only those of
    the final name `target_name`."""
    match = _LEFTOVER.match(name)
    if match is None:
        return False
    return target_name is None or match.group("name") == target_name


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but is another user's process
        return True
    return True


def _last_modified(path: Path, depth: int = 2) -> float:
    """Newest modification time of `path` and what lies up to `depth` levels inside it (a write in progress
    keeps touching its files)."""
    newest = path.lstat().st_mtime
    if depth and path.is_dir() and not path.is_symlink():
        with contextlib.suppress(OSError):
            for child in path.iterdir():
                with contextlib.suppress(OSError):
                    newest = max(newest, _last_modified(child, depth - 1))
    return newest


def is_stale_leftover(path: str | os.PathLike, now: float | None = None) -> bool:
    """Whether the leftover `path` is held by no live writer: its writer (on this machine) has exited and it was
    last touched over a minute ago, or nothing has touched it for STALE_AFTER_S (10 minutes)."""
    path = Path(path)
    match = _LEFTOVER.match(path.name)
    if match is None:
        return False
    try:
        age = (time.time() if now is None else now) - _last_modified(path)
    except FileNotFoundError:
        return False  # already gone
    pid = int(match.group("pid")) if match.group("pid") else None
    if match.group("host") == _HOST_TAG and pid is not None and pid != os.getpid() and not _writer_alive(pid):
        return age >= DEAD_WRITER_GRACE_S
    return age >= STALE_AFTER_S


def find_leftovers(folder: str | os.PathLike, target_name: str | None = None) -> list[Path]:
    """Temporary files and folders of text2lora writes in `folder` (only those of `target_name` if given)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [Path(folder) / n for n in sorted(names) if is_leftover_name(n, target_name)]


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 for what vanishes meanwhile)."""
    try:
        if path.is_file() or path.is_symlink():
            return path.lstat().st_size
        return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    except OSError:
        return 0


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree; errors (e.g. PermissionError) are raised, a missing path is not one."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def restore_old_leftover(leftover: Path) -> bool:
    """An `.NAME.old-*` folder of older text2lora versions holds the previous `NAME` under `old`; a kill between
    their two renames left nothing at `NAME`. Put it back if `NAME` is still missing; True if it was restored."""
    match = _LEFTOVER.match(leftover.name)
    if match is None or match.group("kind") != "old":
        return False
    target = leftover.parent / match.group("name")
    saved = leftover / "old"
    if target.exists() or target.is_symlink() or not saved.is_dir():
        return False
    try:
        os.rename(saved, target)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        leftover.rmdir()
    return True


def remove_stale_leftovers(
    folder: str | os.PathLike, target_name: str | None = None
) -> tuple[list[Path], list[Path]]:
    """Restore or delete the leftovers in `folder` that no live writer holds (see `is_stale_leftover`).

    Returns (handled, kept): leftovers restored or deleted, and those still held by a writer. A leftover that
    cannot be deleted raises (e.g. PermissionError)."""
    handled, kept = [], []
    now = time.time()
    for leftover in find_leftovers(folder, target_name):
        if restore_old_leftover(leftover):
            handled.append(leftover)
        elif is_stale_leftover(leftover, now):
            remove_path(leftover)
            handled.append(leftover)
        elif leftover.exists():
            kept.append(leftover)
    return handled, kept


def _tidy(folder: Path, target_name: str) -> None:
    """Best effort: tidy the leftovers of earlier writes of `target_name` (never fails the write itself)."""
    with contextlib.suppress(OSError):
        remove_stale_leftovers(folder, target_name)


# ---------------------------------------------------------------------- atomic folders


def _not_produced(target: Path, new: Path) -> str | None:
    """The generic rule: `target` may be replaced by `new` only if every entry of it is rewritten by `new`."""
    foreign = []
    for path in sorted(target.rglob("*")):
        relative = path.relative_to(target)
        if is_leftover_name(path.name):
            continue
        counterpart = new / relative
        same_kind = counterpart.is_dir() == (path.is_dir() and not path.is_symlink())
        if not (counterpart.exists() and same_kind) and not any(is_leftover_name(p) for p in relative.parts):
            foreign.append(str(relative))
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        return f"it holds {', '.join(foreign[:3])}{more}, which this write does not produce"
    return None


def refuse_unless_replaceable(
    target: str | os.PathLike, replaceable: Callable[[Path], str | None] | None, new: Path | None = None
) -> None:
    """Raise FileExistsError (one line: what is in the way and what to do) unless the existing folder `target`
    may be replaced. `replaceable(target)` returns why not (or None); without it, every entry of `target` must be
    one that the new folder `new` rewrites."""
    target = Path(target)
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder; choose another output path.")
    if replaceable is not None:
        reason = replaceable(target)
    else:
        reason = _not_produced(target, new) if new is not None else None
    if reason:
        raise FileExistsError(
            f"{target} cannot be replaced: {reason}. text2lora only replaces a folder it wrote; write to a new "
            "or empty folder, or move those files away first."
        )


def _follow_umask(folder: Path, dir_mode: int) -> None:
    """Give what was written under `folder` the permissions plain `mkdir` and `open` would: `dir_mode` is
    0o777 with the umask applied (some writers create 0o600 files, e.g. safetensors 0.8 through its own
    temporary file; `tempfile.mkdtemp` makes 0o700 folders)."""
    file_mode = dir_mode & 0o666
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, dir_mode)
        for name in files:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, file_mode | (dir_mode & 0o111 if mode & stat.S_IXUSR else 0))


def _commit_order(name: str) -> tuple[bool, str]:
    return name in _WRITTEN_LAST, name


def _merge(source: Path, target: Path) -> None:
    """Move every entry of `source` into the existing folder `target`, each file in one `os.replace`, then delete
    the entries of `target` that `source` did not have (already checked to be text2lora's own)."""
    names = sorted(os.listdir(source), key=_commit_order)
    for name in names:
        new, old = source / name, target / name
        new_is_dir = new.is_dir() and not new.is_symlink()
        old_is_dir = old.is_dir() and not old.is_symlink()
        if new_is_dir and old_is_dir:
            _merge(new, old)
            continue
        if (old.exists() or old.is_symlink()) and (new_is_dir or old_is_dir):
            remove_path(old)  # a file became a folder or back: os.replace cannot swap those
        os.replace(new, old)
    kept = set(names)
    for old in list(target.iterdir()):
        if old.name in kept:
            continue
        if is_leftover_name(old.name) and not is_stale_leftover(old):
            continue  # a concurrent write's temporary file; its writer renames or removes it
        remove_path(old)


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike,
    overwrite: bool = True,
    *,
    replaceable: Callable[[Path], str | None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; when the block succeeds it becomes `target`.

    A new `target` appears in one rename, complete. An existing one is replaced only with `overwrite`, and only
    if it is a folder that text2lora may replace: by default one whose every entry the new folder rewrites, or
    what `replaceable(target)` accepts (it returns why not, or None). Then each new file is moved into it with
    one `os.replace` (so every file there is always whole, and nothing else in the folder is touched), and the
    entries that `replaceable` accepted but the new folder lacks are deleted. On any exception the temporary
    folder is removed. Leftovers of killed writes of `target` are tidied first (an `.old-*` folder of older
    versions, which held the previous `target`, is put back if `target` is missing).
    """
    target = Path(target)
    if target.parent.is_dir():
        _tidy(target.parent, target.name)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder; choose another output path.")
    if target.exists():
        if not overwrite:
            raise FileExistsError(
                f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it."
            )
        refuse_unless_replaceable(target, replaceable)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.parent, f".{target.name}.tmp-")
    dir_mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o777 with the umask applied, read without changing it
    try:
        yield tmp
        _follow_umask(tmp, dir_mode)
        moved = False
        if not target.exists():
            try:
                os.rename(tmp, target)
                moved = True
            except OSError:
                if not target.is_dir():  # not a race with another writer: a real error
                    raise
        if not moved:
            if not overwrite:
                raise FileExistsError(
                    f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it."
                )
            refuse_unless_replaceable(target, replaceable, new=tmp)
            _merge(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary sibling of `target` for writing; rename it over `target` when the block succeeds.

    The file is created with the umask applied (as `open` does), not `tempfile.mkstemp`'s 0o600."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _tidy(target.parent, target.name)
    while True:
        tmp = target.parent / _temp_name(f".{target.name}.tmp-")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue
    os.close(fd)
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
