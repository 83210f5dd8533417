"""The ``t2l`` command line: a thin shell over the public API.

Every module in this package that defines ``register(subparsers)`` contributes its sub-commands, so
adding a command means adding a module, not editing a central list.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys

# User errors: their message names the problem and the fix, so it is printed alone.
KNOWN_ERRORS = (ValueError, FileNotFoundError, ImportError, OSError)
DEBUG_HELP = "on an error, show the full traceback instead of one line"


class OneLineArgumentParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors are one line (`t2l generate: error: argument --batch-size: ...`)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: object) -> str:
    return re.sub(r"\s*\n\s*", " ", str(message)).strip()


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """`--debug` after any (sub-)command too; SUPPRESS keeps a sub-command from resetting a `t2l --debug ...`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if not any("--debug" in a.option_strings for a in sub._actions):
                    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
                _add_debug_flag(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="t2l",
        description="Text-to-LoRA: turn a task description into a PEFT LoRA adapter.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    _add_debug_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except Exception as err:  # noqa: BLE001 (one line for the user; --debug shows the traceback)
        if args.debug:
            raise
        if isinstance(err, KNOWN_ERRORS):
            print(f"t2l {args.command}: error: {one_line(err)}", file=sys.stderr)
        else:
            print(
                f"t2l {args.command}: error: {type(err).__name__}: {one_line(err)} (unexpected: rerun with --debug "
                "for the traceback and report it)",
                file=sys.stderr,
            )
        return 1
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
