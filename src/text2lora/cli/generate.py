"""`t2l generate`, `t2l info`, `t2l init`: adapters from descriptions, and hypernetwork inspection."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from text2lora.inputs import check_generation_inputs, finite_float, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser(
        "generate",
        help="generate PEFT LoRA adapter(s) from task description(s)",
        description="Generate one PEFT LoRA adapter folder per description (or one mixed adapter with --weights, or "
        "one from examples of the task with --from-examples). Each adapter's nearest training tasks are printed "
        "(hypernetworks with task centroids, such as the shipped one), with a warning when the description is far "
        "from every training task.",
    )
    gen.add_argument("descriptions", nargs="*", help="task description(s), in plain language")
    gen.add_argument("--file", type=Path, help="a text file with one description per line (blank lines skipped)")
    ex = gen.add_argument_group(
        "from examples (instead of descriptions)",
        "`t2l describe` writes N candidate descriptions from the examples, then one adapter is made from them. "
        "Default: the N candidates' task embeddings are mixed with equal weights (their centroid, as a training "
        "task's centroid averages its descriptions): a small writer's candidates vary, and the mix does not hang on "
        "any one of them. --pick instead uses the one candidate nearest to the training tasks (highest cosine "
        "similarity to its nearest training task; the first candidate if the hypernetwork has no task centroids): "
        "closer to what the hypernetwork was trained on, but it can favour a candidate that resembles the wrong "
        "task. Measured on 10 held-out tasks (README): neither is better than the other.",
    )
    ex.add_argument(
        "--from-examples", metavar="FILE", default=None,
        help="examples of the task: a JSONL/JSON/CSV/TSV file, a save_to_disk folder or a datasets name, with input "
        "and output columns (as for `t2l describe --examples`)",
    )  # fmt: skip
    ex.add_argument(
        "--pick", action="store_true", help="use the candidate nearest to the training tasks instead of mixing all"
    )
    ex.add_argument("--candidates", metavar="N", type=positive_int, default=3, help="candidate descriptions to write (default 3)")
    ex.add_argument(
        "--examples-per-candidate", metavar="K", type=positive_int, default=5, help="examples each candidate reads (default 5)"
    )
    ex.add_argument("--writer", metavar="MODEL", default=None, help="chat model that writes them (default: the hypernetwork's base model)")
    ex.add_argument("--seed", type=int, default=0, help="fixes the examples read and the words sampled (default 0)")
    gen.add_argument("--t2l", default=None, help="hypernetwork: local folder or Hub name (default: the shipped one)")
    gen.add_argument("--out", type=Path, required=True, help="output folder (one adapter) or parent folder (several)")
    gen.add_argument("--weights", type=finite_float, nargs="+", help="mix the descriptions with these weights into one adapter")
    gen.add_argument("--dtype", default="float32", help="saved dtype: float32 (default), bfloat16 or float16")
    gen.add_argument("--batch-size", type=positive_int, default=64, help="descriptions per forward pass")
    gen.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing adapter folders (a folder holding anything text2lora did not write is refused)",
    )
    gen.add_argument("--no-cache", action="store_true", help="always run the hypernetwork; do not read or fill the adapter cache")
    gen.add_argument(
        "--cache-dir", type=Path, default=None, help="adapter cache folder (default: $TEXT2LORA_ADAPTER_CACHE_DIR or ~/.cache/text2lora/adapters)"
    )
    gen.add_argument(
        "--prompt",
        default=None,
        help="after saving, answer this prompt greedily with the base model and with each adapter, and print both",
    )
    gen.add_argument("--max-new-tokens", type=positive_int, default=64, help="answer length limit for --prompt (default 64)")
    gen.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the description encoder run Python code from its model folder, if the hypernetwork's config says "
        "it needs to (check with `t2l info`); off by default",
    )
    gen.set_defaults(func=run_generate)

    info = subparsers.add_parser("info", help="show a hypernetwork's config, size, base model and encoder")
    info.add_argument("path", help="hypernetwork folder or Hub name")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=run_info)

    new = subparsers.add_parser(
        "init",
        help="create an untrained hypernetwork for a base model",
        description="Create an untrained hypernetwork. Its adapters are the standard LoRA initialisation "
        "(delta W = 0 for the L variant) until it is trained with `t2l train`.",
    )
    new.add_argument("--base", required=True, help="base model Hub name or folder (its config is all that is read)")
    new.add_argument("--out", type=Path, required=True, help="output folder")
    new.add_argument("--variant", choices=("L", "M", "S"), default="L")
    new.add_argument("--target-modules", nargs="+", default=["q_proj", "v_proj"])
    new.add_argument("--rank", type=positive_int, default=8)
    new.add_argument("--alpha", type=positive_float, default=16.0)
    new.add_argument("--latent-size", type=positive_int, default=128)
    new.add_argument("--head-in-size", type=positive_int, default=512)
    new.add_argument("--encoder", default=None, help="sentence-transformers model (default: all-MiniLM-L6-v2)")
    new.add_argument("--embedding-size", type=positive_int, default=None, help="the encoder's output size (read from it if unset)")
    new.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="the encoder runs Python code from its folder: allow it here and record that it needs it",
    )
    new.add_argument("--seed", type=int, default=0)
    new.set_defaults(func=run_init)


def _read_descriptions(args: argparse.Namespace) -> list[str]:
    if args.from_examples is not None:
        if args.descriptions or args.file is not None or args.weights is not None:
            raise ValueError(
                "--from-examples writes the descriptions itself; give no descriptions, --file or --weights with it."
            )
        return []
    if args.pick:
        raise ValueError("--pick chooses among the descriptions --from-examples writes; give --from-examples FILE.")
    descriptions = list(args.descriptions)
    if args.file is not None:
        if not args.file.is_file():
            raise FileNotFoundError(f"--file {args.file} does not exist.")
        try:
            text = args.file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"--file {args.file} is not UTF-8 text ({err}); save it as UTF-8.") from None
        descriptions += [line.strip() for line in text.splitlines() if line.strip()]
    if not descriptions:
        raise ValueError('Give at least one description, e.g. t2l generate "Solve grade-school math word problems." --out DIR')
    check_generation_inputs(descriptions)  # before any model is loaded
    return descriptions


def _slug(text: str, index: int) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-")
    return f"{index:03d}-{words or 'adapter'}"


def _output_folders(args: argparse.Namespace, descriptions: list[str]) -> list[Path]:
    """`--out` for one adapter (one description, or a mix), else one `--out/NNN-slug` folder per description;
    each may already exist only with --overwrite, and only as an adapter folder text2lora wrote."""
    from text2lora.adapters import adapter_folder_problem
    from text2lora.io_utils import refuse_unless_replaceable

    if args.weights is not None or len(descriptions) <= 1:  # none: --from-examples makes one adapter
        outputs = [args.out]
    else:
        if args.out.exists() and not args.out.is_dir():
            raise FileExistsError(f"--out {args.out} is a file; several adapters need a folder to hold them.")
        outputs = [args.out / _slug(d, i) for i, d in enumerate(descriptions)]
    for out in outputs:
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it.")
        if out.exists():
            refuse_unless_replaceable(out, adapter_folder_problem)
    return outputs


def _requests_from_examples(args: argparse.Namespace, t2l) -> tuple[list, dict]:
    """`describe` the examples, then one request: the candidates mixed with equal weights, or (`--pick`) the
    candidate nearest to the training tasks. Returns the request and what the adapter records about it."""
    from text2lora.describe import default_writer_model, describe, load_examples
    from text2lora.nearest_tasks import pick_nearest_candidate
    from text2lora.pipeline import Mix

    examples = load_examples(args.from_examples)
    writer = args.writer or default_writer_model(t2l.model if t2l.loaded else t2l.name)
    k = args.examples_per_candidate
    candidates = describe(examples, writer, n=args.candidates, k=k, seed=args.seed, show_progress_bar=False)
    for i, text in enumerate(candidates):
        print(f"candidate {i}: {text}")
    record = {"examples": str(args.from_examples), "writer": writer, "candidates": candidates, "k": k,
              "seed": args.seed}  # fmt: skip
    if args.pick:
        chosen = pick_nearest_candidate(t2l.load(), candidates)
        rule = "nearest to the training tasks"
        if chosen is None:
            chosen, rule = 0, "the first (this hypernetwork has no task centroids)"
        print(f"picked candidate {chosen} ({rule})")
        return [candidates[chosen]], {**record, "mode": "pick", "picked": chosen}
    if len(candidates) == 1:
        return candidates, {**record, "mode": "mix"}
    print(f"mixing the {len(candidates)} candidates with equal weights")
    return [Mix(candidates, [1.0 / len(candidates)] * len(candidates))], {**record, "mode": "mix"}


def _print_nearest(adapter) -> None:
    """The adapter's nearest training tasks, and a one-line warning when it is far from all of them."""
    from text2lora.nearest_tasks import adapter_far_warning, format_nearest

    if adapter.nearest_tasks:
        print(f"  nearest training tasks: {format_nearest(adapter.nearest_tasks)}")
        warning = adapter_far_warning(adapter)
        if warning:
            print(f"  warning: {warning}")


def run_generate(args: argparse.Namespace) -> int:
    from text2lora.pipeline import LazyHypernetwork, Mix, get_or_generate

    descriptions = _read_descriptions(args)
    if args.prompt is not None:
        from text2lora.compare import check_prompt

        check_prompt(args.prompt)
    cache = False if args.no_cache else (args.cache_dir if args.cache_dir is not None else True)
    outputs = _output_folders(args, descriptions)  # checked before any work, so a refusal costs nothing
    # Loaded only if an adapter is missing from the cache: a saved folder is identified from its files.
    t2l = LazyHypernetwork(args.t2l, trust_remote_code=args.trust_remote_code)
    provenance: dict = {}
    if args.from_examples is not None:
        requests, made_from = _requests_from_examples(args, t2l)
        provenance = {"from_examples": made_from}
    else:
        requests = [Mix(descriptions, args.weights)] if args.weights is not None else descriptions
    start = time.perf_counter()
    adapters = get_or_generate(
        requests, t2l, cache=cache, dtype=args.dtype, batch_size=args.batch_size, show_progress_bar=len(requests) > 64
    )
    elapsed = time.perf_counter() - start
    for adapter, out in zip(adapters, outputs):
        adapter.extra_metadata.update(provenance)  # this call's own object: the cache entry is not changed
        # Checked again by save_pretrained: only an adapter folder text2lora wrote is ever replaced.
        adapter.save_pretrained(out, dtype=args.dtype, overwrite=args.overwrite)
        print(f"wrote {out}  ({adapter.num_parameters:,} parameters)  <- {adapter.description!r}")
        _print_nearest(adapter)
    name = t2l.name or "hypernetwork"
    if not t2l.generated:
        print(f"read {len(adapters)} adapter(s) from the adapter cache in {elapsed * 1000:.1f} ms ({name})")
    else:
        print(f"generated {t2l.generated} adapter(s) in {elapsed * 1000:.1f} ms with {name}" + ("" if args.no_cache else " (cached)"))
    if args.prompt is not None:
        _print_comparison(adapters[0].config.base_model_name_or_path, args.prompt, args.max_new_tokens, adapters, outputs)
    return 0


def _print_comparison(base_name: str | None, prompt: str, max_new_tokens: int, adapters, outputs) -> None:
    """Answer `prompt` with the bare base model and with each saved adapter; print them under headings."""
    from text2lora.base_models import load_base_model
    from text2lora.compare import compare_answers

    if not base_name:
        raise ValueError("The hypernetwork's config names no base model (base_model_name_or_path), so --prompt cannot answer.")
    model, tokenizer = load_base_model(base_name)
    print(f"\nprompt ({base_name}, greedy, at most {max_new_tokens} new tokens): {prompt}")
    base_answer = None
    for adapter, out in zip(adapters, outputs):
        base_answer, adapted = compare_answers(model, tokenizer, adapter, prompt, max_new_tokens, base_answer=base_answer)
        print(f"\n=== {_describe(adapter)}  ({out})")
        print(f"--- base model:\n{base_answer}")
        print(f"--- with the adapter:\n{adapted}")


def _describe(adapter) -> str:
    if isinstance(adapter.description, (list, tuple)):
        weights = adapter.mix_weights or [None] * len(adapter.description)
        return " + ".join(f"{w:g} x {d!r}" if w is not None else repr(d) for d, w in zip(adapter.description, weights))
    return repr(adapter.description)


def describe_hypernetwork(t2l) -> dict:
    config = t2l.config
    return {
        "path": t2l.name_or_path,
        "variant": config.variant,
        "parameters": t2l.num_parameters(),
        "base_model": config.base_model_name_or_path,
        "num_layers": config.num_layers,
        "target_modules": {m: config.module_shapes[m] for m in config.target_modules},
        "lora": {"r": config.lora_r, "alpha": config.lora_alpha, "rslora": config.use_rslora},
        "latent_size": config.latent_size,
        "head_in_size": config.head_in_size,
        "encoder": config.encoder_name_or_path,
        "needs_trust_remote_code": bool(config.encoder_trust_remote_code),
        "task_embedding_size": config.task_embedding_size,
        "adapter_parameters": sum(config.lora_r * sum(s) for s in config.module_shapes.values()) * config.num_layers,
    }


def run_info(args: argparse.Namespace) -> int:
    from text2lora.checkpoints import load_hypernetwork

    info = describe_hypernetwork(load_hypernetwork(args.path))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "needs_trust_remote_code":
            key, value = "needs trust_remote_code", "yes (its encoder runs code from its folder)" if value else "no"
        value = f"{value:,}" if isinstance(value, int) else value
        print(f"{key:<{width}}  {value}")
    return 0


def _non_empty_problem(folder: Path) -> str | None:
    from text2lora.io_utils import is_leftover_name

    names = sorted(p.name for p in folder.iterdir() if not is_leftover_name(p.name))
    if not names:
        return None
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"it is not empty (it holds {', '.join(names[:3])}{more}); t2l init only writes a new or empty folder"


def _refuse_non_empty(out: Path) -> None:
    from text2lora.io_utils import refuse_unless_replaceable

    if out.exists():
        refuse_unless_replaceable(out, _non_empty_problem)


def run_init(args: argparse.Namespace) -> int:
    import torch

    from text2lora.configuration_t2l import DEFAULT_ENCODER, T2LConfig
    from text2lora.encoder import DescriptionEncoder
    from text2lora.modeling_t2l import T2LModel

    _refuse_non_empty(args.out)  # before any work
    encoder = args.encoder or DEFAULT_ENCODER
    size = args.embedding_size or DescriptionEncoder(encoder, trust_remote_code=args.trust_remote_code).embedding_size
    config = T2LConfig.for_base_model(
        args.base,
        target_modules=args.target_modules,
        variant=args.variant,
        lora_r=args.rank,
        lora_alpha=args.alpha,
        latent_size=args.latent_size,
        head_in_size=args.head_in_size,
        encoder_name_or_path=encoder,
        encoder_trust_remote_code=args.trust_remote_code,
        task_embedding_size=size,
    )
    torch.manual_seed(args.seed)
    model = T2LModel(config)
    from text2lora.io_utils import atomic_directory

    # A new folder appears complete in one rename (with the umask's permissions); an empty one is filled.
    with atomic_directory(args.out, overwrite=True, replaceable=_non_empty_problem) as tmp:
        model.save_pretrained(tmp)
    print(
        f"wrote an untrained {args.variant} hypernetwork for {args.base} to {args.out} "
        f"({model.num_parameters():,} parameters). Its adapters are the LoRA initialisation until it is trained."
    )
    return 0
