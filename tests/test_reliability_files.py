"""Issue 14, files on disk: --overwrite and save_pretrained never delete what text2lora did not write; replacing an
adapter is never a moment with nothing at its path; leftovers of killed writes are counted and cleared; the cache
keys a saved hypernetwork on its content; `t2l cache clear` reports what really happened; folders follow the umask.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import text2lora.fingerprints as fingerprints
from text2lora.adapters import read_generated_lora
from text2lora.cache import AdapterCache
from text2lora.pipeline import get_or_generate
from text2lora.cli import main
from text2lora.io_utils import _HOST_TAG, atomic_directory, atomic_file
from support import DESCRIPTION, cache_entry, cache_key

ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "t2l_adapter.json", "README.md"}




def _description(folder: Path) -> str:
    return json.loads((folder / "t2l_adapter.json").read_text())["description"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_whole_adapter(folder: Path) -> None:
    """Every file of the adapter is complete and it loads."""
    assert ADAPTER_FILES <= {p.name for p in folder.iterdir()}
    json.loads((folder / "adapter_config.json").read_text())
    json.loads((folder / "t2l_adapter.json").read_text())
    assert load_file(folder / "adapter_model.safetensors")
    read_generated_lora(folder)


@pytest.fixture
def t2l_folder(tmp_path, tiny_t2l_nonzero) -> Path:
    folder = tmp_path / "t2l"
    tiny_t2l_nonzero.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------- 1: overwrite never deletes foreign files


def test_cli_overwrite_refuses_a_parent_folder_and_keeps_everything_in_it(tmp_path, t2l_folder, capsys):
    out = tmp_path / "adapters"
    base = ["--t2l", str(t2l_folder), "--no-cache"]
    assert main(["generate", "Write haiku.", "Count legs of animals.", "--out", str(out), *base]) == 0
    (out / "NOTES.txt").write_text("my notes\n")
    before = _snapshot(out)
    capsys.readouterr()

    code = main(["generate", "Translate to French.", "--out", str(out), "--overwrite", *base])
    err = capsys.readouterr().err
    assert code == 1
    assert str(out) in err and "not an adapter folder" in err and "NOTES.txt" in err
    assert len(err.strip().splitlines()) == 1
    assert _snapshot(out) == before  # both adapters and the notes untouched

    # --overwrite of the adapters themselves works, and leaves the notes alone.
    assert main(["generate", "Write haiku!", "Count legs of animals!", "--out", str(out), "--overwrite", *base]) == 0
    assert (out / "NOTES.txt").read_text() == "my notes\n"
    assert _description(out / "000-write-haiku") == "Write haiku!"
    assert _description(out / "001-count-legs-of-animals") == "Count legs of animals!"


def test_save_pretrained_never_deletes_files_it_did_not_write(tmp_path, tiny_t2l_nonzero):
    adapter = tiny_t2l_nonzero.generate_lora(DESCRIPTION)

    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('hello')\n")
    with pytest.raises(FileExistsError, match="not an adapter folder"):
        adapter.save_pretrained(project)  # overwrite defaults to True
    assert (project / "src" / "main.py").read_text() == "print('hello')\n"
    assert [p.name for p in project.iterdir()] == ["src"]

    readme_only = tmp_path / "docs"
    readme_only.mkdir()
    (readme_only / "README.md").write_text("# My project\n")
    with pytest.raises(FileExistsError, match="README.md"):
        adapter.save_pretrained(readme_only)
    assert (readme_only / "README.md").read_text() == "# My project\n"

    with_notes = tmp_path / "with-notes"
    adapter.save_pretrained(with_notes)
    (with_notes / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        adapter.save_pretrained(with_notes)
    assert (with_notes / "notes.txt").read_text() == "keep me"

    # An adapter folder text2lora wrote is replaced in place, file by file (the folder itself stays).
    folder = tmp_path / "adapter"
    adapter.save_pretrained(folder)
    inode = folder.stat().st_ino
    other = tiny_t2l_nonzero.generate_lora("Translate English to French")
    other.save_pretrained(folder)
    assert folder.stat().st_ino == inode
    assert _description(folder) == "Translate English to French"
    assert {p.name for p in folder.iterdir()} == ADAPTER_FILES
    # An empty folder is written into.
    empty = tmp_path / "empty"
    empty.mkdir()
    adapter.save_pretrained(empty)
    _assert_whole_adapter(empty)


# ---------------------------------------------------------------------- 2: replacement is never "nothing there"


def test_a_kill_while_replacing_an_adapter_leaves_a_whole_adapter(tmp_path, tiny_t2l_nonzero, monkeypatch):
    folder = tmp_path / "adapter"
    tiny_t2l_nonzero.generate_lora(DESCRIPTION).save_pretrained(folder)
    new = tiny_t2l_nonzero.generate_lora("Translate English to French")

    real_replace = os.replace
    calls = []

    def killed_after_one(src, dst, *args, **kwargs):
        if str(tmp_path) in str(src):
            calls.append(src)
            if len(calls) == 2:
                raise KeyboardInterrupt("killed")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(folder)
    monkeypatch.undo()

    assert folder.is_dir()
    _assert_whole_adapter(folder)  # a mix of old and new files at worst, each one whole
    new.save_pretrained(folder)  # the next overwrite completes it
    assert _description(folder) == "Translate English to French"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # nothing left beside it


_KILLED_WRITER = """
import os, sys
from text2lora import T2LModel
t2l = T2LModel.from_pretrained(sys.argv[1])
new = t2l.generate_lora("Translate English to French")
real = os.replace
calls = []
def replace(src, dst, *a, **k):
    calls.append(src)
    if len(calls) == 2:
        os._exit(9)  # killed between two file moves, nothing cleaned up
    return real(src, dst, *a, **k)
os.replace = replace
new.save_pretrained(sys.argv[2])
"""


def test_leftovers_of_a_killed_process_are_tidied_by_the_next_write(tmp_path, t2l_folder, tiny_t2l_nonzero):
    folder = tmp_path / "out" / "adapter"
    tiny_t2l_nonzero.generate_lora(DESCRIPTION).save_pretrained(folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(t2l_folder), str(folder)], env=env, capture_output=True
    )
    assert result.returncode == 9, result.stderr.decode()[-2000:]
    _assert_whole_adapter(folder)
    leftovers = [p for p in folder.parent.iterdir() if p.name.startswith(".adapter.tmp-")]
    assert len(leftovers) == 1  # what the kill left: the rest of the new files
    old = time.time() - 120
    for path in [leftovers[0], *leftovers[0].rglob("*")]:
        os.utime(path, (old, old))

    tiny_t2l_nonzero.generate_lora("Write haiku.").save_pretrained(folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["adapter"]
    assert _description(folder) == "Write haiku."


def test_a_folder_left_at_an_old_name_by_an_older_version_is_put_back(tmp_path, tiny_t2l_nonzero):
    # Older versions renamed the adapter to `.NAME.old-XXXXXXXX/old` before renaming the new one in.
    folder = tmp_path / "adapter"
    saved = tmp_path / ".adapter.old-abc123xy" / "old"
    tiny_t2l_nonzero.generate_lora(DESCRIPTION).save_pretrained(saved)
    with pytest.raises(FileExistsError, match="already exists"):
        tiny_t2l_nonzero.generate_lora("other").save_pretrained(folder, overwrite=False)
    assert _description(folder) == DESCRIPTION
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (when, when))


def test_cache_counts_and_clears_leftovers_but_not_those_of_live_writers(tmp_path, tiny_t2l_nonzero, capsys):
    cache = AdapterCache(tmp_path / "cache")
    path = cache_entry(cache, tiny_t2l_nonzero, DESCRIPTION)
    shard = path.parent
    dead = shard / f".{path.name}.tmp-{_HOST_TAG}-{_dead_pid()}-0123abcd"  # its writer was killed
    (dead / "x").mkdir(parents=True)
    (dead / "x" / "adapter_model.safetensors").write_bytes(b"0" * 4096)
    _age(dead, 120)
    evicted = shard / ".evicted-k2j4x9_a"  # an older version's, untouched for an hour
    (evicted / "entry").mkdir(parents=True)
    (evicted / "entry" / "adapter_model.safetensors").write_bytes(b"0" * 4096)
    _age(evicted, 3600)
    live = shard / f".{'f' * 40}.tmp-{_HOST_TAG}-{os.getpid()}-89abcdef"  # a write in progress (this process)
    live.mkdir()
    (tmp_path / "cache" / "hypernetworks.json").write_text("{}")  # the fingerprint memo of older versions
    capsys.readouterr()

    assert main(["cache", "info", "--cache-dir", str(cache.cache_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 adapter(s)" in out and "4 leftover(s)" in out and "3 stale" in out

    assert main(["cache", "clear", "--cache-dir", str(cache.cache_dir)]) == 0
    out = capsys.readouterr().out
    assert "deleted 1 cached adapter(s)" in out and "3 leftover(s)" in out and "kept 1" in out
    assert not dead.exists() and not evicted.exists() and live.is_dir()
    assert not (tmp_path / "cache" / "hypernetworks.json").exists()
    assert len(cache) == 0


def test_writes_to_the_cache_remove_stale_leftovers(tmp_path, tiny_t2l_nonzero):
    cache = AdapterCache(tmp_path / "cache")
    path = cache_entry(cache, tiny_t2l_nonzero, DESCRIPTION)
    leftover = path.parent / ".evicted-zz9abcde"
    (leftover / "entry").mkdir(parents=True)
    _age(leftover, 3600)
    get_or_generate(["Translate English to French"], tiny_t2l_nonzero, cache=cache)[0]  # a put, then eviction
    assert not leftover.exists()
    assert cache.leftovers() == []


# ---------------------------------------------------------------------- 5b: the cache keys on content


def test_retrained_checkpoint_with_same_size_and_mtime_gets_new_adapters(
    tmp_path, t2l_folder, tiny_t2l_nonzero, capsys, monkeypatch
):
    cache_dir = tmp_path / "cache"
    cache = AdapterCache(cache_dir)
    first = get_or_generate([DESCRIPTION], str(t2l_folder), cache=cache)[0]
    files = [t2l_folder / "config.json", t2l_folder / "model.safetensors"]
    stamps = {f: (f.stat().st_size, f.stat().st_atime_ns, f.stat().st_mtime_ns) for f in files}

    with torch.no_grad():  # "retrain": same architecture, other weights
        for head in tiny_t2l_nonzero.heads.values():
            head.bias.add_(0.5)
    tiny_t2l_nonzero.save_pretrained(t2l_folder)
    for f, (size, atime, mtime) in stamps.items():
        os.utime(f, ns=(atime, mtime))
        assert (f.stat().st_size, f.stat().st_mtime_ns) == (size, mtime)  # size and mtime cannot tell

    expected = tiny_t2l_nonzero.generate_lora(DESCRIPTION)
    key = next(iter(expected.state_dict))
    assert (expected.state_dict[key] - first.state_dict[key]).abs().max() > 0.1
    assert cache.read(cache_key(t2l_folder, DESCRIPTION)) is None  # in this process
    monkeypatch.setattr(fingerprints, "_FOLDER_FINGERPRINTS", {}, raising=False)  # as a new process
    assert AdapterCache(cache_dir).read(cache_key(t2l_folder, DESCRIPTION)) is None

    out = tmp_path / "adapter"
    args = ["generate", DESCRIPTION, "--t2l", str(t2l_folder), "--cache-dir", str(cache_dir), "--out", str(out)]
    assert main(args) == 0
    assert "generated 1 adapter" in capsys.readouterr().out
    written = load_file(out / "adapter_model.safetensors")
    torch.testing.assert_close(written[key], expected.state_dict[key])


# ---------------------------------------------------------------------- 9: `t2l cache clear` tells the truth


def test_cache_clear_reports_what_it_could_not_delete(tmp_path, tiny_t2l_nonzero, capsys, monkeypatch):
    cache = AdapterCache(tmp_path / "cache")
    locked = cache_entry(cache, tiny_t2l_nonzero, DESCRIPTION)
    cache_entry(cache, tiny_t2l_nonzero, "Translate English to French")
    real_replace = os.replace

    def read_only(src, dst, *args, **kwargs):  # what a folder without write permission does (tests run as root)
        if Path(src) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", read_only)
    capsys.readouterr()
    assert main(["cache", "clear", "--cache-dir", str(cache.cache_dir)]) == 1
    captured = capsys.readouterr()
    assert "deleted" not in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert str(cache.cache_dir) in err and "Permission denied" in err and "chmod" in err
    assert "1 of 2 cached adapter(s) deleted" in err
    assert [e.path for e in cache.entries()] == [locked]  # only what was really deleted is gone
    assert cache.leftovers() == []  # no empty trash folder left behind

    with pytest.raises(OSError, match="Permission denied") as raised:
        cache.clear()
    assert raised.value.errno == errno.EACCES
    monkeypatch.undo()
    assert cache.clear() == 1 and len(cache) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_cache_clear_on_a_read_only_folder(tmp_path, tiny_t2l_nonzero):
    cache = AdapterCache(tmp_path / "cache")
    path = cache_entry(cache, tiny_t2l_nonzero, DESCRIPTION)
    path.parent.chmod(0o555)
    try:
        with pytest.raises(OSError, match="0 of 1 cached adapter"):
            cache.clear()
        assert len(cache) == 1
    finally:
        path.parent.chmod(0o755)


# ---------------------------------------------------------------------- 12: folders follow the umask


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_folders_and_files_follow_the_umask(
    tmp_path, tiny_t2l_nonzero, tiny_base_dir, tiny_encoder_dir, umask
):
    adapter = tiny_t2l_nonzero.generate_lora(DESCRIPTION)
    adapter.save_pretrained(tmp_path / "adapter")
    assert _mode(tmp_path / "adapter") == 0o755
    assert {_mode(p) for p in (tmp_path / "adapter").iterdir()} == {0o644}

    entry = cache_entry(AdapterCache(tmp_path / "cache"), tiny_t2l_nonzero, DESCRIPTION)
    assert _mode(entry) == 0o755 and _mode(entry / "adapter_model.safetensors") == 0o644

    hypernetwork = tmp_path / "t2l"
    args = ["init", "--base", str(tiny_base_dir), "--out", str(hypernetwork), "--encoder", str(tiny_encoder_dir)]
    assert main(args + ["--latent-size", "16", "--head-in-size", "32"]) == 0
    assert _mode(hypernetwork) == 0o755

    with atomic_file(tmp_path / "results.json") as handle:
        handle.write("{}")
    assert _mode(tmp_path / "results.json") == 0o644

    umask(0o077)  # the umask is followed, not a fixed mode
    adapter.save_pretrained(tmp_path / "private")
    assert _mode(tmp_path / "private") == 0o700
    with atomic_directory(tmp_path / "private-folder") as tmp:
        (tmp / "x").write_text("x")
    assert _mode(tmp_path / "private-folder") == 0o700


def test_init_refuses_a_folder_that_is_not_empty(tmp_path, tiny_base_dir, tiny_encoder_dir, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "main.py").write_text("print('hello')\n")
    args = ["init", "--base", str(tiny_base_dir), "--out", str(out), "--encoder", str(tiny_encoder_dir)]
    assert main(args + ["--latent-size", "16", "--head-in-size", "32"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["main.py"]
