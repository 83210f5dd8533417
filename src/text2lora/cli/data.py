"""`t2l data ...`: build the multi-task training collection and check description files."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="build the multi-task training collection; check description files")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")

    check = commands.add_parser(
        "check-descriptions",
        help="validate task description YAML files (see text2lora/data/descriptions/FORMAT.md)",
    )
    check.add_argument(
        "paths", nargs="*", type=Path, help="files or folders (default: the description files shipped with text2lora)"
    )
    check.set_defaults(func=run_check_descriptions)
    data.set_defaults(func=lambda args: data.print_help() or 2)


def run_check_descriptions(args: argparse.Namespace) -> int:
    from text2lora.data.descriptions import check_description_files, default_descriptions_dir

    paths = args.paths or [default_descriptions_dir()]
    valid, errors = check_description_files(paths)
    for error in errors:
        print(f"error: {error}")
    print(f"{valid} valid description file(s), {len(errors)} with errors.")
    return 1 if errors else 0
