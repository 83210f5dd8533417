"""Training-step cost of T2L SFT with per-sample LoRA, against plain LoRA SFT and the per-token-repeat approach.

On one base model, batch and sequence length, measures the time of a full training step (forward, backward,
optimizer step) and the peak memory of

  (a) T2L SFT: hypernetwork -> one LoRA per sample, applied by batched matmuls over the sample dimension;
  (b) plain multi-task LoRA SFT: one PEFT LoRA (same rank, targets and dropout) on the same batch;
  (c) the per-token-repeat approach of the reference implementation: the same T2L step, but each sample's A and
      B are repeated for every token and applied by a `bmm` over `batch x tokens`;

and prints the ratios a/b (targets: time <= 1.3, memory <= 1.15) and c/a (target: memory >= 2 at 8 x 512).
All three share the loss code (completion-only cross-entropy with label smoothing, logits only at completion
positions), so the differences are the LoRA application.

Memory: each variant in its own fresh process (a warm-up and a measured step). On CPU the peak is the process's
peak resident memory during the steps (VmHWM, reset after loading), reported in total and above the memory held
after loading; on CUDA it is `torch.cuda.max_memory_allocated`. Time: all timed variants in one process, each
with its own copy of the base model, stepping in turn (a, b, c, a, b, c, ...), the median per variant; so a
machine whose load drifts (a shared CPU) slows every variant alike and the ratios stay meaningful.

    python benchmarks/bench_train.py [--batch 8] [--seq 512] [--steps 3] [--variants abc] [--time-variants ab]
                                     [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "a": "T2L per-sample LoRA",
    "b": "plain multi-task LoRA",
    "c": "T2L per-token repeat",
}


# ---------------------------------------------------------------------------------------------- memory probes


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- the per-token repeat


def _per_token_repeat_hook(module, args, output, *, lora_A, lora_B, scaling, dropout):
    """The reference approach: A and B copied for every token, then one (1 x d) @ (d x r) bmm per token."""
    import torch
    import torch.nn.functional as F

    x = args[0]
    if dropout > 0:
        x = F.dropout(x, p=dropout, training=True)
    batch, tokens = x.shape[0], x.shape[1]
    a = lora_A.to(x.dtype).repeat_interleave(tokens, dim=0)  # [B*T, r, in]
    b = lora_B.to(x.dtype).repeat_interleave(tokens, dim=0)  # [B*T, out, r]
    flat = x.reshape(batch * tokens, 1, x.shape[-1])
    delta = torch.bmm(torch.bmm(flat, a.transpose(1, 2)), b.transpose(1, 2))
    return output + (delta.reshape(batch, tokens, -1) * scaling).to(output.dtype)


# ---------------------------------------------------------------------------------------------- one variant


def build_step(variant: str, model_name: str, batch: int, seq: int, device: str, dtype: str):
    """Load a fresh base model and return `(step, model, trainable_parameter_count)` for `variant`."""
    import torch

    from text2lora import T2LConfig, T2LModel, load_base_model
    from text2lora.training import per_sample_lora
    from text2lora.training.losses import completion_loss
    from text2lora.training.sft_model import T2LSFTModel

    torch.manual_seed(0)
    base, _ = load_base_model(model_name, dtype=getattr(torch, dtype))
    base = base.to(device).train()
    base.requires_grad_(False)
    config = T2LConfig.for_base_model(base)
    vocab = base.config.vocab_size
    input_ids = torch.randint(100, vocab - 100, (batch, seq), device=device)
    attention_mask = torch.ones_like(input_ids)
    labels = input_ids.clone()
    labels[:, : seq // 2] = -100  # prompt half, completion half
    task_embeddings = torch.randn(batch, config.task_embedding_size, device=device)

    if variant == "b":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            base,
            LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, use_rslora=config.use_rslora,
                       target_modules=list(config.target_modules), lora_dropout=config.lora_dropout),
        ).train()

        def loss_fn():
            return completion_loss(model, input_ids, attention_mask, labels, label_smoothing=0.1)
    else:
        hypernetwork = T2LModel(config).to(device)
        with torch.no_grad():  # trained-looking heads, so B != 0 and every matmul is real
            for head in hypernetwork.heads.values():
                head.weight.normal_(0, 1e-3)
        model = T2LSFTModel(hypernetwork, base, label_smoothing=0.1, lora_l2_penalty=1e-3,
                            lora_dropout=config.lora_dropout).train()
        hook = _per_token_repeat_hook if variant == "c" else per_sample_lora._add_per_sample_lora

        def loss_fn():
            saved = per_sample_lora._add_per_sample_lora
            per_sample_lora._add_per_sample_lora = hook  # same module; (c) swaps in the reference's maths
            try:
                return model(input_ids, labels, task_embeddings, attention_mask).loss
            finally:
                per_sample_lora._add_per_sample_lora = saved

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, fused=True)  # as the Trainer's default adamw_torch_fused

    def step() -> float:
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    return step, model, sum(p.numel() for p in parameters)


def measure_memory(variant: str, model_name: str, batch: int, seq: int, device: str, dtype: str) -> dict:
    """Peak memory of one warm-up and one measured step of `variant`, alone in this process."""
    import torch

    step, model, trainable = build_step(variant, model_name, batch, seq, device, dtype)
    with torch.no_grad():  # fault in memory-mapped weights now, so they count as "loaded", not as step memory
        for tensor in list(model.parameters()) + list(model.buffers()):
            tensor.sum()
    result = {"variant": variant, "name": VARIANTS[variant], "trainable_parameters": trainable}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        loaded = torch.cuda.memory_allocated()
        step()
        step()
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_above_loaded_mib"] = (torch.cuda.max_memory_allocated() - loaded) / 2**20
    else:
        loaded_kb = _status_kb("VmRSS")
        result["peak_reset"] = _reset_peak_rss()
        step()
        step()
        result["peak_mib"] = _status_kb("VmHWM") / 1024
        result["peak_above_loaded_mib"] = (_status_kb("VmHWM") - loaded_kb) / 1024
    return result


def measure_time(variants: str, model_name: str, batch: int, seq: int, steps: int, device: str, dtype: str) -> dict:
    """Step times of all `variants` in one process, interleaved step by step (a, b, c, a, b, c, ...), so that a
    machine whose load drifts during the run affects every variant alike. One warm-up round is not timed."""
    import torch

    steppers = {v: build_step(v, model_name, batch, seq, device, dtype)[0] for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(steps + 1):
        for variant, step in steppers.items():
            start = time.perf_counter()
            step()
            if round_ > 0:
                times[variant].append(time.perf_counter() - start)
    return {v: {"step_s": statistics.median(t), "step_times_s": t, "threads": torch.get_num_threads()} for v, t in times.items()}


# ---------------------------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up round)")
    parser.add_argument("--variants", default="abc", help="variants whose memory is measured")
    parser.add_argument("--time-variants", default=None, help="variants timed together (default: --variants)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_variants is None:
        args.time_variants = args.variants
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    if args.child:
        if args.child == "time":
            found = measure_time(args.variants, args.model, args.batch, args.seq, args.steps, args.device, args.dtype)
        else:
            found = measure_memory(args.child, args.model, args.batch, args.seq, args.device, args.dtype)
        print("RESULT " + json.dumps(found))
        return

    def child(which: str) -> dict | None:
        command = [sys.executable, __file__, "--child", which, "--variants", args.time_variants, "--model", args.model,
                   "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
                   "--device", args.device, "--dtype", args.dtype]
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(f"{which} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return None
        return json.loads(line[len("RESULT "):])

    results: dict[str, dict | None] = {}
    for variant in args.variants:  # memory: one fresh process per variant
        results[variant] = child(variant)
        r = results[variant]
        if r:
            print(f"({variant}) {r['name']:<24} peak {r['peak_mib']:8.0f} MiB ({r['peak_above_loaded_mib']:7.0f} MiB above "
                  f"loaded)   trainable {r['trainable_parameters']:,}", flush=True)
    timing = child("time") if args.time_variants else {}  # time: the variants in one process, interleaved
    timing = timing or {}
    for variant, t in timing.items():
        if results.get(variant):
            results[variant].update(t)
            print(f"({variant}) {VARIANTS[variant]:<24} step {t['step_s']:7.2f} s  (each: "
                  f"{', '.join(f'{x:.2f}' for x in t['step_times_s'])})", flush=True)

    print(f"\n{args.model}, batch {args.batch} x {args.seq} tokens, {args.device} {args.dtype}, "
          f"{args.steps} timed step(s) per variant after 1 warm-up round")
    a, b, c = results.get("a"), results.get("b"), results.get("c")
    ratios = {}
    for name, top, bottom in (("a/b", a, b), ("c/a", c, a)):
        if not (top and bottom):
            continue
        if "step_s" in top and "step_s" in bottom:
            ratios[f"{name} time"] = top["step_s"] / bottom["step_s"]
        ratios[f"{name} peak memory"] = top["peak_mib"] / bottom["peak_mib"]
        ratios[f"{name} memory above loaded"] = top["peak_above_loaded_mib"] / max(bottom["peak_above_loaded_mib"], 1e-9)
    targets = {"a/b time": ("<=", 1.3), "a/b peak memory": ("<=", 1.15), "c/a peak memory": (">=", 2.0)}
    for name, value in ratios.items():
        target = targets.get(name)
        verdict = ""
        if target:
            ok = value <= target[1] if target[0] == "<=" else value >= target[1]
            verdict = f"  (target {target[0]} {target[1]}: {'met' if ok else 'NOT met'})"
        print(f"  {name:<26} {value:6.2f}{verdict}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"config": vars(args), "results": results, "ratios": ratios}, handle, indent=2)


if __name__ == "__main__":
    main()
