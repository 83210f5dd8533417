"""`t2l convert-reference`: a released Text-to-LoRA checkpoint folder -> a standard `T2LModel` folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert-reference",
        help="convert a hypernetwork released with the Text-to-LoRA paper (hypermod.pt + args.yaml)",
        description="Convert a released T2L run folder (hypermod.pt, args.yaml, adapter_config.json; e.g. "
        "trained_t2l/mistral_7b_t2l of SakanaAI/text-to-lora) into a T2LModel folder that "
        "T2LModel.from_pretrained loads and push_to_hub publishes.",
    )
    convert.add_argument("checkpoint_dir", type=Path, help="the released run folder")
    convert.add_argument("--out", type=Path, required=True, help="output folder")
    convert.add_argument(
        "--base-model",
        default=None,
        help="read module paths from this base model (Hub name or folder); default: the adapter config's base "
        "model when its config is available, else Llama-style paths",
    )
    convert.add_argument(
        "--encoder",
        default=None,
        help="description encoder to record instead of args.yaml's emb_model (e.g. a local copy)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    convert.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from text2lora.convert_reference_checkpoint import convert_reference

    out = convert_reference(
        args.checkpoint_dir,
        args.out,
        overwrite=args.overwrite,
        base_model=args.base_model,
        encoder_name_or_path=args.encoder,
    )
    from text2lora import T2LConfig

    config = T2LConfig.from_pretrained(out)
    order = ", ".join(f"{i}={m}" for i, m in enumerate(config.target_modules))
    print(
        f"wrote {out}: {config.variant} hypernetwork for {config.base_model_name_or_path} "
        f"({config.num_layers} layers; module order {order}; encoder {config.encoder_name_or_path})"
    )
    return 0
