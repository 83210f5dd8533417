"""`t2l eval`: T2L and its baselines on the benchmarks and held-out tasks, in one run and one table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from text2lora.inputs import positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    from text2lora.evaluation.conditions import CONDITIONS

    parser = subparsers.add_parser(
        "eval",
        help="evaluate T2L against base / description / few-shot / LoRA baselines",
        description="Evaluate every condition on the benchmarks (lm-evaluation-harness over local files) and on "
        "held-out tasks of a task collection; writes results.json, examples.jsonl, results.md and results.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--base", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="base model name or folder")
    parser.add_argument("--t2l", default=None, help="hypernetwork folder or name (T2L conditions)")
    parser.add_argument(
        "--mt-lora", default=None,
        help="multi-task LoRA adapter folder (PEFT), or text2lora/mt-lora-smollm2-135m-instruct (packaged baseline)",
    )
    parser.add_argument("--oracle-loras", default=None, help="folder of per-task adapter folders named by task")
    parser.add_argument("--benchmarks", default="all", help="comma-separated benchmark ids, 'all', or 'none'")
    parser.add_argument(
        "--protocol", choices=("loglik", "generative"), default="loglik",
        help="multiple-choice scoring: loglik = log-likelihood of each option; generative = the Text-to-LoRA paper's "
        "prompt, a greedy reply, scored by the paper's rule (acc) and leniently (acc_lenient)",
    )
    parser.add_argument(
        "--conditions", default="all",
        help=f"comma-separated, from: {', '.join(CONDITIONS)}; 'all' = every one possible except t2l_mix (one run "
        "per task: the adapter of its held-out descriptions mixed with equal weights), which runs only when named",
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="examples per task (a fixed sample for the seed)")
    parser.add_argument("--generation-limit", type=positive_int, default=None, help="examples per generation/code benchmark")
    parser.add_argument("--seed", type=int, default=0, help="fixes examples, descriptions and few-shot examples")
    parser.add_argument("--num-descriptions", type=positive_int, default=3, help="descriptions per description condition")
    parser.add_argument("--num-fewshot", type=positive_int, default=3, help="examples in the few-shot condition")
    parser.add_argument("--data-dir", default=None, help="benchmark folder (or $TEXT2LORA_BENCHMARK_DIR)")
    parser.add_argument("--descriptions-dir", default=None, help="benchmark descriptions folder")
    parser.add_argument("--collection", default=None, help="task collection folder; its held-out tasks are evaluated")
    parser.add_argument("--collection-split", default="validation", help="split with the held-out tasks")
    parser.add_argument("--collection-tasks", default=None, help="comma-separated held-out task ids (default all)")
    parser.add_argument("--collection-generate", action="store_true", help="also score free generation (slow)")
    parser.add_argument("--no-chat-template", dest="chat_template", action="store_false",
                        help="plain-text prompts instead of the tokenizer's chat template")
    parser.add_argument("--chat-template-file", default=None,
                        help="a Jinja chat template to use instead of the tokenizer's (e.g. the paper's)")
    parser.add_argument("--empty-system-message", action="store_true",
                        help="an empty system message when a condition has none, as the paper (its chat templates "
                        "emit the BOS token only after a system message)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="base model dtype (bfloat16 for 7-8B models on a GPU)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the hypernetwork's description encoder run code from its folder (needed by the "
                        "paper's converted checkpoints, whose encoder is gte-large-en-v1.5)")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--max-gen-toks", type=positive_int, default=None, help="cap on generated tokens")
    parser.add_argument("--code-timeout", type=positive_float, default=10.0, help="sandbox timeout per program, seconds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--pairs", default=None, help="comma-separated 'a-b' condition pairs to compare")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="reuse finished runs in --out (same settings)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_eval)

    combine = subparsers.add_parser(
        "eval-combine",
        help="pool the examples of several `t2l eval` runs (e.g. seeds): means and paired differences",
        description="Pool examples of several runs (same conditions, different seeds): per-task means and paired "
        "differences with bootstrap CIs; writes paired.json, paired.md and pooled.png.",
    )
    combine.add_argument("runs", nargs="+", type=Path, help="output folders of `t2l eval`")
    combine.add_argument("--pairs", default=None, help="comma-separated 'a-b' condition pairs")
    combine.add_argument("--out", type=Path, required=True, help="output folder")
    combine.set_defaults(func=run_combine)

    protocols = subparsers.add_parser(
        "eval-protocols",
        help="both multiple-choice protocols side by side (pooled `t2l eval` runs of each)",
        description="Pool the `t2l eval --protocol loglik` runs and the `--protocol generative` runs (e.g. seeds) and "
        "show them side by side: per condition and benchmark the log-likelihood accuracy, the paper's-rule accuracy "
        "and the lenient one, with paired differences; writes protocols.md, protocols.json and protocols.png.",
    )
    protocols.add_argument("--loglik", nargs="+", type=Path, required=True, help="output folders of --protocol loglik")
    protocols.add_argument("--generative", nargs="+", type=Path, required=True,
                           help="output folders of --protocol generative")
    protocols.add_argument("--pairs", default=None, help="comma-separated 'a-b' condition pairs")
    protocols.add_argument("--out", type=Path, required=True, help="output folder")
    protocols.set_defaults(func=run_protocols)


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def run_eval(args: argparse.Namespace) -> int:
    from text2lora.evaluation.eval_config import EvalConfig
    from text2lora.evaluation.run_store import REPORT_FILE
    from text2lora.evaluation.runner import EvalRunner

    benchmarks = None if args.benchmarks == "all" else ([] if args.benchmarks == "none" else _split(args.benchmarks))
    config = EvalConfig(
        base_model=args.base,
        t2l=args.t2l,
        mt_lora=args.mt_lora,
        oracle_loras=args.oracle_loras,
        benchmarks=benchmarks,
        protocol=args.protocol,
        conditions=None if args.conditions == "all" else _split(args.conditions),
        limit=args.limit,
        generation_limit=args.generation_limit,
        seed=args.seed,
        num_descriptions=args.num_descriptions,
        num_fewshot=args.num_fewshot,
        data_dir=args.data_dir,
        descriptions_dir=args.descriptions_dir,
        collection=args.collection,
        collection_split=args.collection_split,
        collection_tasks=_split(args.collection_tasks),
        collection_generate=args.collection_generate,
        chat_template=args.chat_template,
        chat_template_file=args.chat_template_file,
        dtype=args.dtype,
        empty_system_message=args.empty_system_message,
        trust_remote_code=args.trust_remote_code,
        batch_size=args.batch_size,
        max_gen_toks=args.max_gen_toks,
        code_timeout_s=args.code_timeout,
        device=args.device,
        threads=args.threads,
        pairs=_split(args.pairs),
        output_dir=str(args.out),
        resume=args.resume,
        show_progress=not args.quiet,
    )
    results = EvalRunner(config).run()
    print((args.out / REPORT_FILE).read_text().split("\n## ")[0])
    print(f"wrote {args.out}/results.json, examples.jsonl, results.md, results.png in {results['wall_s']:.0f} s")
    return 0


def run_combine(args: argparse.Namespace) -> int:
    from text2lora.evaluation.pooling import combined_paired_report
    from text2lora.evaluation.report import combined_markdown, plot_results

    _check_run_folders(args.runs)
    _check_out(args.out)
    report = combined_paired_report(args.runs, _split(args.pairs))
    markdown = combined_markdown(report)
    _write_report(args.out, "paired", report, markdown)
    seeds = ", ".join(str(s) for s in report["seeds"])
    plot_results(report, args.out / "pooled.png", title=f"{report['base_model']} | pooled over seeds {seeds}")
    print(markdown)
    _print_notes(report)
    return 0


def run_protocols(args: argparse.Namespace) -> int:
    from text2lora.evaluation.protocols import plot_protocols, protocols_markdown, protocols_report

    _check_run_folders([*args.loglik, *args.generative])
    _check_out(args.out)
    report = protocols_report(args.loglik, args.generative, _split(args.pairs))
    markdown = protocols_markdown(report)
    _write_report(args.out, "protocols", report, markdown)
    plot_protocols(report, args.out / "protocols.png")
    print(markdown)
    _print_notes(report)
    return 0


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a folder (new or existing) for the outputs.")


def _print_notes(report: dict) -> None:
    for note in report.get("notes", []):
        print(f"note: {note}", file=sys.stderr)


def _check_run_folders(runs: list[Path]) -> None:
    from text2lora.evaluation.run_store import EXAMPLES_FILE, RESULTS_FILE

    for run in runs:
        if not (run / RESULTS_FILE).is_file() or not (run / EXAMPLES_FILE).is_file():
            raise FileNotFoundError(f"{run} is not a `t2l eval` output folder ({RESULTS_FILE} and {EXAMPLES_FILE}).")


def _write_report(out: Path, stem: str, report: dict, markdown: str) -> None:
    """`<stem>.json` and `<stem>.md` in `out`, each written whole (temp name, then rename)."""
    import json

    from text2lora.io_utils import atomic_file

    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / f"{stem}.json") as handle:
        json.dump(report, handle, indent=2)
    with atomic_file(out / f"{stem}.md") as handle:
        handle.write(markdown)
