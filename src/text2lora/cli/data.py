"""`t2l data ...`: build the multi-task training collection and check description files."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="build the multi-task training collection; check description files"
    )
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")

    build = commands.add_parser(
        "build",
        help="build the multi-task training collection (datasets.DatasetDict + report)",
        description="Build the training collection from the BIG-bench archive (its JSON and Natural-Instructions "
        "tasks) and reasoning-gym generators, keeping only tasks with reviewed descriptions and removing tasks "
        "derived from the evaluation benchmarks. Downloads only the bigbench sdist from PyPI (once).",
    )
    build.add_argument(
        "--out", type=Path, default=None, help="output folder (default: <cache>/data/collection)"
    )
    build.add_argument(
        "--sources", nargs="+", default=None, choices=("natural_instructions", "bigbench", "reasoning_gym"),
        help="sources to read (default: all three)",
    )  # fmt: skip
    build.add_argument(
        "--max-examples-per-task", type=int, default=None, help="examples kept per task (default 256)"
    )
    build.add_argument(
        "--min-examples-per-task", type=int, default=None, help="skip tasks with fewer (default 16)"
    )
    build.add_argument("--max-tokens", type=int, default=None, help="drop longer examples (default 512)")
    build.add_argument(
        "--tokenizer", default=None,
        help="tokenizer for lengths (default: SmolLM2-135M-Instruct's); 'none' estimates characters / 3",
    )  # fmt: skip
    build.add_argument(
        "--validation-tasks", nargs="+", default=None, help="held-out task ids (default: 10 built in)"
    )
    build.add_argument("--tasks", nargs="+", default=None, help="only build these task ids (quick builds)")
    build.add_argument("--descriptions-dir", default=None, help="description files (default: shipped ones)")
    build.add_argument("--bigbench-archive", default=None, help="bigbench-1.0.0.tar.gz or extracted folder")
    build.add_argument(
        "--benchmark-dir", default=None, help="evaluation benchmarks folder for the n-gram scan"
    )
    build.add_argument("--seed", type=int, default=None)
    build.add_argument("--overwrite", action="store_true", help="rebuild even if an identical build exists")
    build.set_defaults(func=run_build)

    report = commands.add_parser(
        "report", help="print the report of a built collection (and redraw its plot)"
    )
    report.add_argument(
        "path", nargs="?", type=Path, default=None, help="collection folder (default: cached build)"
    )
    report.set_defaults(func=run_report)

    check = commands.add_parser(
        "check-descriptions",
        help="validate task description YAML files (see text2lora/data/descriptions/FORMAT.md)",
    )
    check.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="files or folders (default: the description files shipped with text2lora)",
    )
    check.set_defaults(func=run_check_descriptions)
    data.set_defaults(func=lambda args: data.print_help() or 2)


def run_check_descriptions(args: argparse.Namespace) -> int:
    from text2lora.data.description_files import check_description_files, default_descriptions_dir

    paths = args.paths or [default_descriptions_dir()]
    valid, errors = check_description_files(paths)
    for error in errors:
        print(f"error: {error}")
    print(f"{valid} valid description file(s), {len(errors)} with errors.")
    return 1 if errors else 0


def run_build(args: argparse.Namespace) -> int:
    from text2lora.data.builder import TaskCollectionConfig, build_task_collection
    from text2lora.data.build_report import read_report

    options = {
        "sources": args.sources,
        "max_examples_per_task": args.max_examples_per_task,
        "min_examples_per_task": args.min_examples_per_task,
        "max_tokens": args.max_tokens,
        "validation_tasks": args.validation_tasks,
        "tasks": args.tasks,
        "descriptions_dir": args.descriptions_dir,
        "bigbench_archive": args.bigbench_archive,
        "benchmark_dir": args.benchmark_dir,
        "seed": args.seed,
    }
    options = {key: value for key, value in options.items() if value is not None}
    if args.tokenizer is not None:
        # 'none' is meaningful (estimate lengths), so it is applied after dropping unset options.
        options["tokenizer_name_or_path"] = None if args.tokenizer.lower() == "none" else args.tokenizer
    config = TaskCollectionConfig(**options)
    out = build_task_collection(config, out_dir=args.out, overwrite=args.overwrite)
    print("\n".join(read_report(out).summary_lines()))
    print(f"collection: {out}/dataset  (tasks.json, report.md, examples_per_task.png beside it)")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from text2lora.data.builder import default_collection_dir
    from text2lora.data.build_report import plot_report, read_report

    path = args.path or default_collection_dir()
    report = read_report(path)
    print("\n".join(report.summary_lines()))
    plot_report(report, path / "examples_per_task.png")
    print(f"plot: {path / 'examples_per_task.png'}")
    return 0
