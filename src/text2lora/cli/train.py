"""`t2l train sft|recon|mt-lora|oracle-lora CONFIG.yaml [--set key=value ...]`: training runs from a config file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KINDS = {
    "sft": "train a hypernetwork by SFT through the frozen base LLM (zero-shot T2L)",
    "recon": "train a hypernetwork to reconstruct a LoRA library (no LLM in the loop)",
    "mt-lora": "train the multi-task LoRA baseline (one LoRA on all training tasks)",
    "oracle-lora": "train one LoRA per task into a LoRA library (the oracle baseline)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a hypernetwork (sft, recon) or a baseline LoRA (mt-lora, oracle-lora) from a config file",
        description="Train from a YAML/JSON run config (see configs/train/ and docs/training.md). Runs resume from "
        "the last complete checkpoint in training.output_dir unless the config says resume: none.",
    )
    kinds = train.add_subparsers(dest="kind", metavar="KIND")
    for kind, help_text in KINDS.items():
        sub = kinds.add_parser(kind, help=help_text, description=help_text)
        sub.add_argument("config", type=Path, help="YAML or JSON run config")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, dotted keys (e.g. --set training.max_steps=100); repeatable",
        )
        sub.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        sub.set_defaults(func=run_train, train_kind=kind)
    train.set_defaults(func=_missing_kind, train_parser=train)


def _missing_kind(args: argparse.Namespace) -> int:
    args.train_parser.print_help()
    return 2


def run_train(args: argparse.Namespace) -> int:
    from text2lora.training.run_config import load_run_config, run_from_config

    config = load_run_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(config, indent=2, default=str))
        return 0
    result = run_from_config(args.train_kind, config)
    if args.train_kind == "oracle-lora":
        print(f"LoRA library with {len(result)} adapter(s): {config['library_dir']}")
        return 0
    output_dir = result.args.output_dir
    losses = [e["loss"] if "loss" in e else e["train_loss"] for e in result.state.log_history if "loss" in e or "train_loss" in e]
    summary = f"final training loss {losses[-1]:.4f} at step {result.state.global_step}" if losses else "no steps run"
    print(f"t2l train {args.train_kind}: {summary}; saved to {output_dir}")
    return 0
