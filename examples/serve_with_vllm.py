"""Serve generated adapters with vLLM: descriptions in, adapters a vLLM server applies per request.

vLLM runs many LoRA adapters on one base model. This script writes adapters in the layout vLLM loads, checks
them against what vLLM accepts (runnable anywhere), prints the commands to serve them, and, when asked, sends
them to a running server or to an offline `vllm.LLM` (those need vLLM and a supported GPU).

    python examples/serve_with_vllm.py                                   # write + check + print the commands
    python examples/serve_with_vllm.py --server http://localhost:8000    # load into a running server and ask
    python examples/serve_with_vllm.py --offline                         # vllm.LLM in this process

Start the server with runtime adapter loading enabled:

    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve HuggingFaceTB/SmolLM2-135M-Instruct \\
        --enable-lora --max-lora-rank 8
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from default_hypernetwork import load_t2l

from text2lora.integrations.vllm import VLLMAdapterClient, lora_request, prepare_adapter

DESCRIPTIONS = [
    "Solve grade-school math word problems and end with the final number.",
    "Classify the sentiment of a movie review as positive or negative.",
]
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # values `--max-lora-rank` accepts
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(f"vLLM would not load this adapter: {problem}")


def check_vllm_format(folder: Path, max_lora_rank: int) -> list[str]:
    """Check an adapter folder against what vLLM's LoRA loader accepts; returns what was checked."""
    from safetensors import safe_open

    config = json.loads((folder / "adapter_config.json").read_text())
    rank = int(config["r"])
    _require(max_lora_rank in VLLM_MAX_LORA_RANKS, f"--max-lora-rank must be one of {VLLM_MAX_LORA_RANKS}")
    _require(rank <= max_lora_rank, f"rank {rank} > --max-lora-rank {max_lora_rank}")
    plain = config.get("peft_type") == "LORA" and not config.get("use_dora")
    _require(plain, "it is not a plain LoRA (DoRA or another PEFT type)")
    _require(not config.get("modules_to_save"), "it has modules_to_save")
    _require(config.get("bias", "none") == "none", "it trains biases")
    targets = set(config["target_modules"])
    _require(not targets & {"embed_tokens", "lm_head"}, "it adapts embed_tokens or lm_head (needs extra vLLM options)")

    factors: dict[str, dict[str, tuple[int, ...]]] = {}
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as weights:
        dtypes = set()
        for key in weights.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
            match = _KEY.match(key)
            _require(match, f"{key} is not a PEFT LoRA key (base_model.model.<module>.lora_A/B.weight)")
            _require(match["module"].rsplit(".", 1)[-1] in targets, f"{key} is outside target_modules")
            tensor = weights.get_slice(key)
            factors.setdefault(match["module"], {})[match["factor"]] = tuple(tensor.get_shape())
            dtypes.add(tensor.get_dtype())
    for module, shapes in factors.items():
        _require(set(shapes) == {"A", "B"}, f"{module} lacks one of lora_A / lora_B")
        _require(shapes["A"][0] == rank and shapes["B"][1] == rank, f"{module}: A {shapes['A']}, B {shapes['B']}")
    _require(dtypes <= {"F32", "F16", "BF16"}, f"unexpected dtypes {dtypes}")
    return [
        f"rank {rank} <= --max-lora-rank {max_lora_rank}",
        f"{len(factors)} adapted modules ({', '.join(sorted(targets))}), A [r, in] and B [out, r] each",
        f"plain LoRA (no DoRA, biases or modules_to_save), weights {'/'.join(sorted(dtypes))}",
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t2l", help="hypernetwork: Hub name or folder (default: the shipped one)")
    parser.add_argument("--description", action="append", help="task description (repeatable)")
    parser.add_argument("--adapter-dir", type=Path, help="where adapter folders go (the server must read it)")
    parser.add_argument("--max-lora-rank", type=int, default=8, help="the server's --max-lora-rank")
    parser.add_argument("--dtype", default="bfloat16", help="saved dtype (vLLM casts to the model's dtype)")
    parser.add_argument("--server", help="URL of a running vLLM server: load the adapters there and ask it")
    parser.add_argument("--offline", action="store_true", help="run the adapters in an offline vllm.LLM")
    parser.add_argument("--prompt", default="A baker has 24 muffins and sells 9. How many are left?")
    args = parser.parse_args(argv)
    t2l = load_t2l(args.t2l)
    base = t2l.config.base_model_name_or_path

    served = []
    for description in args.description or DESCRIPTIONS:
        adapter = prepare_adapter(t2l, description, adapter_dir=args.adapter_dir, dtype=args.dtype,
                                  max_lora_rank=args.max_lora_rank)
        checks = check_vllm_format(adapter.path, args.max_lora_rank)
        print(f"{adapter.name}  <- {description!r}\n  {adapter.path}\n  ok: " + "\n  ok: ".join(checks))
        served.append({"name": adapter.name, "path": str(adapter.path), "id": adapter.lora_int_id, "checks": checks})

    first = served[0]
    print("\nServe them with a running vLLM server:\n"
          f"  VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve {base} --enable-lora --max-lora-rank {args.max_lora_rank}\n"
          "  curl localhost:8000/v1/load_lora_adapter -H 'Content-Type: application/json' \\\n"
          f"       -d '{{\"lora_name\": \"{first['name']}\", \"lora_path\": \"{first['path']}\"}}'\n"
          "  curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
          f"       -d '{{\"model\": \"{first['name']}\", \"messages\": [{{\"role\": \"user\", \"content\": \"...\"}}]}}'\n"
          "or offline: LLM(model=..., enable_lora=True).generate(prompts, lora_request=LoRARequest(name, id, path)).")

    if args.server:
        client = VLLMAdapterClient(t2l, args.server, max_lora_rank=args.max_lora_rank, adapter_dir=args.adapter_dir,
                                   dtype=args.dtype)
        for description in args.description or DESCRIPTIONS:
            reply = client.chat(description, args.prompt, max_tokens=64, temperature=0)
            print(f"[{description[:40]}...] {reply['choices'][0]['message']['content']}")
    if args.offline:
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise SystemExit("--offline needs vLLM (pip install vllm, on a machine with a supported GPU).")
        llm = LLM(model=base, enable_lora=True, max_lora_rank=args.max_lora_rank)
        for description in args.description or DESCRIPTIONS:
            request = lora_request(t2l, description, adapter_dir=args.adapter_dir, dtype=args.dtype,
                                   max_lora_rank=args.max_lora_rank)
            messages = [{"role": "user", "content": args.prompt}]
            output = llm.chat(messages, SamplingParams(max_tokens=64, temperature=0), lora_request=request)
            print(f"[{description[:40]}...] {output[0].outputs[0].text}")
    return served


if __name__ == "__main__":
    main()
