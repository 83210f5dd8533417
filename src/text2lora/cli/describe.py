"""`t2l describe --examples FILE`: examples of a task -> candidate task descriptions for the hypernetwork."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from text2lora.inputs import INPUT_COLUMNS, OUTPUT_COLUMNS, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "describe",
        help="write task descriptions from input/output examples (the input `t2l generate` needs)",
        description="An instruction-following chat model reads K examples of a task and writes N candidate task "
        "descriptions in the style the hypernetwork was trained on. Examples: a JSONL, JSON, CSV or TSV file, a "
        "save_to_disk folder or a datasets name, with an input column (first of: "
        f"{', '.join(INPUT_COLUMNS)}) and an output column (first of: {', '.join(OUTPUT_COLUMNS)}). The same "
        "examples and seed give the same descriptions.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--examples", required=True, help="examples file, save_to_disk folder or datasets name")
    parser.add_argument(
        "--model", default=None,
        help="writer: a chat model's name or folder (default: the shipped hypernetwork's base model, packaged offline)",
    )  # fmt: skip
    parser.add_argument("-n", type=positive_int, default=3, help="candidate descriptions to write")
    parser.add_argument("-k", type=positive_int, default=5, help="examples each candidate reads")
    parser.add_argument("--seed", type=int, default=0, help="fixes the examples read and the sampled words")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="candidates written together")
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, help="longest description, in tokens")
    parser.add_argument("--split", default=None, help="split of a dataset with several (default: train)")
    parser.add_argument("--input-column", default=None, help="name of the input column (default: see above)")
    parser.add_argument("--output-column", default=None, help="name of the output column (default: see above)")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="write the descriptions here: .json gets them with the settings, any other file one per line",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_describe)


def run_describe(args: argparse.Namespace) -> int:
    from text2lora.cli import one_line
    from text2lora.describe import describe, load_examples

    try:
        examples = load_examples(
            args.examples, split=args.split, input_column=args.input_column, output_column=args.output_column
        )
    except (ValueError, FileNotFoundError) as err:  # bad input: one line, usage-error status
        if args.debug:
            raise
        print(f"t2l describe: error: {one_line(err)}", file=sys.stderr)
        return 2
    descriptions = describe(
        examples, args.model, n=args.n, k=args.k, seed=args.seed, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, show_progress_bar=None if not args.quiet else False,
    )  # fmt: skip
    if args.out is not None:
        from text2lora.io_utils import atomic_file

        with atomic_file(args.out) as handle:
            if args.out.suffix.lower() == ".json":
                settings = {"examples": str(args.examples), "model": args.model, "n": args.n, "k": args.k,
                            "seed": args.seed, "max_new_tokens": args.max_new_tokens}
                json.dump({"descriptions": descriptions, "settings": settings}, handle, indent=2, ensure_ascii=False)
                handle.write("\n")
            else:
                handle.write("".join(d.replace("\n", " ") + "\n" for d in descriptions))
    for text in descriptions:
        print(text)
    if args.out is not None:
        print(f"wrote {len(descriptions)} description(s) to {args.out}", file=sys.stderr)
    return 0
