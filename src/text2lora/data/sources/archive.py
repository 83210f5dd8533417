"""The BIG-bench 1.0.0 source archive: fetching it from PyPI and preparing a compact per-task cache.

Both the BIG-bench JSON tasks and the Natural-Instructions v1 tasks come from the `bigbench==1.0.0` sdist
(358 MB, Apache-2.0). It is fetched with pip as a source archive (never installed), and read once in a single
streaming pass that writes one small gzip JSON file per task with a seeded sample of its examples, so later
builds (with any cap up to that sample size) read megabytes instead of the archive's 1.7 GB of JSON.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ...io_utils import atomic_directory, atomic_file, cache_home

BIGBENCH_REQUIREMENT = "bigbench==1.0.0"
BIGBENCH_SDIST = "bigbench-1.0.0.tar.gz"
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
BIGBENCH_LICENSE = "Apache-2.0"
NATURAL_INSTRUCTIONS_FOLDER = "natural_instructions"
# Examples kept per task in the prepared cache. A build can cap lower, never higher.
PREPARED_EXAMPLES_PER_TASK = 5000
# Examples kept per subtask file before pooling (bounds memory on tasks with 100+ subtasks of 10k+ examples).
PREPARED_EXAMPLES_PER_FILE = 2000
_PREPARED_FORMAT = 2
# How a task file asks its examples to be shown (kept per file: subtasks may differ).
_FORMAT_KEYS = ("append_choices_to_input", "task_prefix", "example_input_prefix", "example_output_prefix")
_EXAMPLE_KEYS = ("input", "target", "target_scores")


def default_archive_dir() -> Path:
    return cache_home() / "downloads" / "bigbench"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_bigbench_archive(directory: str | os.PathLike | None = None) -> Path:
    """Fetch `bigbench-1.0.0.tar.gz` from PyPI into `directory` (default: the text2lora cache) and verify it.

    pip is asked first (it honours the user's index configuration). pip >= 26.3 refuses this sdist because its
    metadata declares a direct-URL dependency; the fallback then downloads the same file through PyPI's simple
    index (its JSON form, PEP 691, which registry mirrors serve too; the older per-release JSON API is not always
    reachable).
    Either way the file is checked against its known SHA-256.
    """
    directory = Path(directory or default_archive_dir())
    target = directory / BIGBENCH_SDIST
    if target.is_file() and _sha256(target) == BIGBENCH_SHA256:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    print(f"Downloading {BIGBENCH_REQUIREMENT} source archive (358 MB) into {directory} ...", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", BIGBENCH_REQUIREMENT,
               "-d", str(directory)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not target.is_file():
        print(
            "pip could not fetch the sdist (recent pip rejects its metadata); using PyPI's simple index.",
            file=sys.stderr,
        )
        _download_from_simple_index(target)
    if _sha256(target) != BIGBENCH_SHA256:
        target.unlink()
        raise OSError(
            f"{BIGBENCH_SDIST} does not have the expected SHA-256 {BIGBENCH_SHA256}; the download was corrupted "
            "or the index serves another file. Delete it and retry, or pass a verified copy with --bigbench-archive."
        )
    return target


SIMPLE_INDEX_URL = "https://pypi.org/simple/bigbench/"


def _download_from_simple_index(target: Path) -> None:
    request = urllib.request.Request(SIMPLE_INDEX_URL, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        project = json.load(response)
    urls = [f["url"] for f in project["files"] if f["filename"] == BIGBENCH_SDIST]
    if not urls:
        raise OSError(
            f"PyPI lists no {BIGBENCH_SDIST}; download it by hand and pass --bigbench-archive PATH."
        )
    with urllib.request.urlopen(urls[0], timeout=60) as response, atomic_file(target, "wb") as out:
        total = int(response.headers.get("Content-Length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=BIGBENCH_SDIST) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def _task_key(member_name: str) -> tuple[str, str, str | None] | None:
    """Map an archive path to (group, task, subtask) for task.json files under `bigbench/benchmark_tasks/`.

    group is `bigbench` or `natural_instructions`. Returns None for anything else.
    """
    parts = member_name.replace("\\", "/").split("/")
    if parts[-1] != "task.json" or "benchmark_tasks" not in parts:
        return None
    rest = parts[parts.index("benchmark_tasks") + 1 : -1]
    if rest and rest[0] == NATURAL_INSTRUCTIONS_FOLDER:
        # natural_instructions/task.json only describes the collection; each subtask folder is one task.
        return ("natural_instructions", rest[1], None) if len(rest) == 2 else None
    if len(rest) == 1:
        return ("bigbench", rest[0], None)
    if len(rest) == 2:
        return ("bigbench", rest[0], rest[1])
    return None


def _compact_examples(
    examples: list[dict], limit: int, rng: random.Random, subtask: str | None
) -> list[dict]:
    if len(examples) > limit:
        examples = rng.sample(examples, limit)
    compact = []
    for example in examples:
        kept = {key: example[key] for key in _EXAMPLE_KEYS if key in example}
        if subtask is not None:
            kept["subtask"] = subtask
        compact.append(kept)
    return compact


def prepare_bigbench_archive(
    archive: str | os.PathLike | None = None,
    prepared_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> Path:
    """Read the archive once and write `<prepared_dir>/{bigbench,natural_instructions}/<task>.json.gz`.

    Args:
        archive: the sdist `.tar.gz`, or a folder containing `benchmark_tasks/` somewhere below it (e.g. an
            extracted archive or a BIG-bench git checkout). Default: download (once) into the text2lora cache.
        prepared_dir: where the compact cache goes (default: `<cache_home>/data/bigbench-prepared-<archive hash>`).
        seed: seed of the per-task example sample kept in the cache.

    Returns the prepared folder. It is reused when its stamp matches the archive, the sample sizes and the seed.
    """
    archive = Path(archive) if archive is not None else download_bigbench_archive()
    if not archive.exists():
        raise FileNotFoundError(
            f"BIG-bench archive {archive} not found; omit it to download {BIGBENCH_REQUIREMENT}."
        )
    if prepared_dir is None:
        # One cache per archive, so preparing another copy (e.g. a test fixture) never replaces this one.
        key = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:12]
        prepared_dir = cache_home() / "data" / f"bigbench-prepared-{key}"
    prepared_dir = Path(prepared_dir)
    stamp = {
        "format": _PREPARED_FORMAT,
        "archive": str(archive.resolve()),
        "archive_size": archive.stat().st_size if archive.is_file() else None,
        "per_task": PREPARED_EXAMPLES_PER_TASK,
        "per_file": PREPARED_EXAMPLES_PER_FILE,
        "seed": seed,
    }
    stamp_file = prepared_dir / "prepared.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return prepared_dir

    tasks: dict[tuple[str, str], dict[str, Any]] = {}
    programmatic: set[str] = set()
    for name, load in _iter_archive(archive):
        if name.endswith("/task.py"):
            parts = name.split("/")
            if "benchmark_tasks" in parts and len(parts) == parts.index("benchmark_tasks") + 3:
                programmatic.add(parts[-2])
            continue
        key = _task_key(name)
        if key is None:
            continue
        group, task, subtask = key
        data = load()
        entry = tasks.setdefault((group, task), {"name": task, "subtasks": [], "examples": []})
        rng = random.Random(f"{seed}/{group}/{task}/{subtask}")
        entry.setdefault("formats", {})[subtask or ""] = {k: data[k] for k in _FORMAT_KEYS if k in data}
        if subtask is None:
            entry.update(description=data.get("description"), keywords=data.get("keywords", []))
        else:
            entry["subtasks"].append(subtask)
        entry["examples"] += _compact_examples(
            data.get("examples", []), PREPARED_EXAMPLES_PER_FILE, rng, subtask
        )

    with atomic_directory(prepared_dir) as tmp:
        for (group, task), entry in sorted(tasks.items()):
            entry["total_examples_seen"] = len(entry["examples"])
            if len(entry["examples"]) > PREPARED_EXAMPLES_PER_TASK:
                entry["examples"] = random.Random(f"{seed}/{group}/{task}").sample(
                    entry["examples"], PREPARED_EXAMPLES_PER_TASK
                )
            entry["subtasks"].sort()
            (tmp / group).mkdir(exist_ok=True)
            with gzip.open(
                tmp / group / f"{task}.json.gz", "wt", encoding="utf-8", compresslevel=3
            ) as handle:
                json.dump(entry, handle)
        json_tasks = {task for group, task in tasks if group == "bigbench"}
        (tmp / "programmatic_tasks.json").write_text(json.dumps(sorted(programmatic - json_tasks), indent=1))
        (tmp / "prepared.json").write_text(json.dumps(stamp, indent=2))
    return prepared_dir


def _iter_archive(archive: Path):
    """Yield (path, loader) for every task.json / task.py of an archive (`.tar.gz`, streamed once) or folder."""
    if archive.is_dir():
        paths = sorted(p for p in archive.rglob("task.*") if p.name in ("task.json", "task.py"))
        for path in tqdm(paths, desc="Reading BIG-bench tasks", unit="file"):
            name = f"{archive.name}/{path.relative_to(archive).as_posix()}"
            yield name, (lambda p=path: json.loads(p.read_text(encoding="utf-8")))
        return
    with (
        open(archive, "rb") as raw,
        tqdm(
            total=archive.stat().st_size, unit="B", unit_scale=True, desc="Reading BIG-bench archive"
        ) as bar,
        tarfile.open(fileobj=raw, mode="r|gz") as tar,
    ):
        for member in tar:
            bar.update(raw.tell() - bar.n)
            if not member.isfile() or not member.name.endswith(("/task.json", "/task.py")):
                continue
            if member.name.endswith("/task.py"):
                yield member.name, None
                continue
            handle = tar.extractfile(member)
            content = handle.read() if handle is not None else b"{}"
            yield member.name, (lambda c=content: json.loads(c.decode("utf-8")))


def read_prepared_task(prepared_dir: Path, group: str, task: str) -> dict[str, Any]:
    with gzip.open(prepared_dir / group / f"{task}.json.gz", "rt", encoding="utf-8") as handle:
        return json.load(handle)


def list_prepared_tasks(prepared_dir: Path, group: str) -> list[str]:
    folder = prepared_dir / group
    return sorted(p.name[: -len(".json.gz")] for p in folder.glob("*.json.gz")) if folder.is_dir() else []


def programmatic_tasks(prepared_dir: Path) -> list[str]:
    """BIG-bench tasks defined only by a `task.py` program; the builder cannot read their examples."""
    path = prepared_dir / "programmatic_tasks.json"
    return json.loads(path.read_text()) if path.is_file() else []
