"""`t2l cache info|list|clear`: inspect and empty the on-disk adapter cache."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    cache = subparsers.add_parser(
        "cache",
        help="inspect or clear the adapter cache",
        description="Generated adapters are cached on disk (least recently used evicted beyond the size bound).",
    )
    cache.add_argument(
        "action",
        choices=("info", "list", "clear"),
        help="info: totals; list: entries; clear: delete all (and leftovers of interrupted writes)",
    )
    cache.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache folder (default: $TEXT2LORA_ADAPTER_CACHE_DIR or ~/.cache/text2lora/adapters)",
    )
    cache.set_defaults(func=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    from text2lora.cache import AdapterCache

    store = AdapterCache(args.cache_dir)
    if args.action == "clear":
        report = store.clear_and_report()  # raises, naming the folder and the cause, if some cannot be deleted
        line = f"deleted {report.entries} cached adapter(s) from {store.cache_dir}"
        if report.leftovers:
            line += f" and {report.leftovers} leftover(s) of interrupted writes"
        if report.leftovers_kept:
            line += f"; kept {report.leftovers_kept} temporary folder(s) of writes in progress"
        print(line)
        return 0
    entries = store.entries()
    if args.action == "info":
        total = sum(e.size for e in entries)
        print(
            f"{store.cache_dir}: {len(entries)} adapter(s), {total / 2**20:.1f} MiB of {store.max_size / 2**20:.0f} MiB"
        )
        leftovers = store.leftovers()
        if leftovers:
            stale = sum(1 for item in leftovers if item.stale)
            size = sum(item.size for item in leftovers)
            print(
                f"{len(leftovers)} leftover(s) of interrupted or running writes, {size / 2**20:.1f} MiB "
                f"({stale} stale; `t2l cache clear` deletes those)"
            )
        return 0
    for entry in reversed(entries):  # most recently used first
        info_file = entry.path / "cache_entry.json"
        description = json.loads(info_file.read_text()).get("description") if info_file.is_file() else None
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        print(f"{entry.key[:12]}  {used}  {entry.size / 2**20:7.1f} MiB  {description!r}")
    return 0
