"""Training-step cost of T2L SFT with per-sample LoRA, against plain LoRA SFT and the per-token-repeat approach.

On one base model, batch and sequence length, measures the time of a full training step (forward, backward,
optimizer step) and the peak memory of

  (a) T2L SFT: hypernetwork -> one LoRA per sample, applied by batched matmuls over the sample dimension;
  (b) plain multi-task LoRA SFT: one PEFT LoRA (same rank, targets and dropout) on the same batch;
  (c) the per-token-repeat approach of the reference implementation: the same T2L step, but each sample's A and
      B are repeated for every token and applied by a `bmm` over `batch x tokens`;

and prints the ratios a/b (targets: time <= 1.3, memory <= 1.15) and c/a (target: memory >= 2 at 8 x 512).
All three share the loss code (completion-only cross-entropy with label smoothing, logits only at completion
positions), so the differences are the LoRA application. Each variant runs in its own process. On CPU the peak is
the process's peak resident memory during the measured steps (VmHWM, reset after loading), reported both in
total and above the memory held after loading; on CUDA it is `torch.cuda.max_memory_allocated`.

    python benchmarks/bench_train.py [--batch 8] [--seq 512] [--steps 2] [--device cpu|cuda] [--json out.json]
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


def run_variant(variant: str, model_name: str, batch: int, seq: int, steps: int, device: str, dtype: str) -> dict:
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
        if variant == "c":
            per_sample_lora._add_per_sample_lora = _per_token_repeat_hook  # same module, the reference's maths

        def loss_fn():
            return model(input_ids, labels, task_embeddings, attention_mask).loss

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    trainable = sum(p.numel() for p in parameters)

    def step():
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    with torch.no_grad():  # fault in memory-mapped weights now, so they count as "loaded", not as step memory
        for tensor in list(model.parameters()) + list(model.buffers()):
            tensor.sum()
    baseline_kb = _status_kb("VmRSS")
    reset_ok = _reset_peak_rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    step()  # warm-up (allocator, optimizer state)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result = {
        "variant": variant,
        "name": VARIANTS[variant],
        "step_s": statistics.median(times),
        "step_times_s": times,
        "trainable_parameters": trainable,
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_above_loaded_mib"] = (torch.cuda.max_memory_allocated() - cuda_base) / 2**20
    else:
        peak_kb = _status_kb("VmHWM")
        result["peak_mib"] = peak_kb / 1024
        result["peak_above_loaded_mib"] = (peak_kb - baseline_kb) / 1024
        result["peak_reset"] = reset_ok
    return result


# ---------------------------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2, help="measured steps per variant (after one warm-up step)")
    parser.add_argument("--variants", default="abc")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    if args.child:
        print("RESULT " + json.dumps(run_variant(args.child, args.model, args.batch, args.seq, args.steps, args.device, args.dtype)))
        return

    results = {}
    for variant in args.variants:
        command = [sys.executable, __file__, "--child", variant, "--model", args.model, "--batch", str(args.batch),
                   "--seq", str(args.seq), "--steps", str(args.steps), "--device", args.device, "--dtype", args.dtype]
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(f"variant {variant} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            results[variant] = None
            continue
        results[variant] = json.loads(line[len("RESULT "):])
        r = results[variant]
        print(f"({variant}) {r['name']:<24} step {r['step_s']:7.2f} s   peak {r['peak_mib']:8.0f} MiB "
              f"({r['peak_above_loaded_mib']:7.0f} MiB above loaded)   trainable {r['trainable_parameters']:,}", flush=True)

    print(f"\n{args.model}, batch {args.batch} x {args.seq} tokens, {args.device} {args.dtype}, "
          f"{args.steps} measured step(s) after 1 warm-up")
    a, b, c = results.get("a"), results.get("b"), results.get("c")
    ratios = {}
    if a and b:
        ratios["a/b time"] = a["step_s"] / b["step_s"]
        ratios["a/b peak memory"] = a["peak_mib"] / b["peak_mib"]
        ratios["a/b memory above loaded"] = a["peak_above_loaded_mib"] / max(b["peak_above_loaded_mib"], 1e-9)
    if a and c:
        ratios["c/a time"] = c["step_s"] / a["step_s"]
        ratios["c/a peak memory"] = c["peak_mib"] / a["peak_mib"]
        ratios["c/a memory above loaded"] = c["peak_above_loaded_mib"] / max(a["peak_above_loaded_mib"], 1e-9)
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
