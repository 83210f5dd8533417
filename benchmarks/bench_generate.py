"""Adapter generation speed and memory, hypernetwork only (no base model, no text encoder).

For the L, M and S variants at the paper's Mistral-7B shapes (32 layers, q 4096->4096, v 4096->1024, r=8,
1024-d task embedding) and at SmolLM2-135M shapes, prints: parameter count, median latency for one adapter and
for 64 adapters in one batched call (adapters/s), and the peak RSS of a fresh process that does only that.
Each configuration runs in its own subprocess so peak memory is not inherited from the previous one.

    python benchmarks/bench_generate.py [--repeats 10] [--variants L M S] [--shapes mistral smollm2] [--plot out.png]

With `--floor` (the figures the README quotes), one process alternates, round by round, our public call
(`generate_lora` on task embeddings: forward and finiteness check), the path issue 18 started from (the same
forward, then a tensor-by-tensor finiteness check of each adapter), optionally `generate_lora` with MKL-packed
heads (`--packed`), and the machine floor for the same work: a bare GEMM of the same head shapes (the heads are
>90% of the FLOPs; the faster of `x @ W^T` and `W @ x^T`) and the machine's peak GEMM rate (a 2048^3 product). Other tenants' load on a shared machine swings absolute times ~4x; alternating
puts both under the same load, so the per-round ratio (median over rounds) is what to compare. The absolute
milliseconds are printed too, labelled as machine-dependent.

    python benchmarks/bench_generate.py --floor [--packed] [--variants L] [--shapes mistral] [--rounds 15] [--batch 64]

With `--heads`, the head GEMM forms alone (`x @ W^T`, `W @ x^T` with and without the copy to row-major, MKL-packed),
alternated per round, for one adapter and for `--batch`:

    python benchmarks/bench_generate.py --heads --shapes mistral [--rounds 15]

With `--cache`, it measures the on-disk adapter cache instead (Mistral shapes, one adapter): a cold call (hash
the hypernetwork's weights once, generate, write), a miss with the hypernetwork already hashed, a warm call
(key + file read), and a bare `safetensors` read of the same file for comparison.

    python benchmarks/bench_generate.py --cache [--variants L] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = {
    "mistral": dict(num_layers=32, module_shapes={"q_proj": [4096, 4096], "v_proj": [4096, 1024]}, task_embedding_size=1024),
    "smollm2": dict(num_layers=30, module_shapes={"q_proj": [576, 576], "v_proj": [576, 192]}, task_embedding_size=384),
}
# The reference implementation, measured on this same 2-core CPU (hypernetwork alone), from the issue.
REFERENCE_MS = {"L": 37.0, "M": 46.0, "S": 31.0}
REFERENCE_64_L_S = 2.3


def run_one(variant: str, shape: str, repeats: int, n: int, dtype: str = "float32") -> dict:
    """Runs in a fresh process: build the hypernetwork, time generating `n` adapters in one call."""
    import resource

    import torch

    from text2lora import T2LConfig, T2LModel
    from text2lora.adapters import factors_to_state_dict

    torch.manual_seed(0)
    config = T2LConfig(variant=variant, target_modules=["q_proj", "v_proj"], lora_r=8, **SHAPES[shape])
    model = T2LModel(config).eval()
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0, 0.01)
    model.to(getattr(torch, dtype))

    def generate(n: int) -> float:
        emb = torch.randn(n, config.task_embedding_size, dtype=getattr(torch, dtype))
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(emb)
            for i in range(n):  # include building the PEFT state dicts (views, no copies)
                factors_to_state_dict(config, {m: out.lora_A[m][i] for m in out.lora_A}, {m: out.lora_B[m][i] for m in out.lora_B})
        return time.perf_counter() - start

    generate(n)  # warm-up
    seconds = statistics.median(generate(n) for _ in range(repeats if n == 1 else max(3, repeats // 3)))
    return {
        "variant": variant,
        "shape": shape,
        "dtype": dtype,
        "parameters": model.num_parameters(),
        "n": n,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "output_mb": n * config.num_layers * sum(config.lora_r * sum(s) for s in config.module_shapes.values()) * 4 / 2**20,
        "threads": torch.get_num_threads(),
    }


def run_cache(variant: str, repeats: int) -> dict:
    """Runs in a fresh process: cold and warm `get_or_generate` (adapter cache) for one adapter at Mistral shapes."""
    import tempfile

    import torch
    from safetensors.torch import load_file

    from text2lora import T2LConfig, T2LModel
    from text2lora.cache import AdapterCache
    from text2lora.fingerprints import identify
    from text2lora.pipeline import adapter_key, get_or_generate

    torch.manual_seed(0)
    config = T2LConfig(variant=variant, target_modules=["q_proj", "v_proj"], lora_r=8, **SHAPES["mistral"])
    model = T2LModel(config).eval()
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0, 0.01)
    cache = AdapterCache(tempfile.mkdtemp(prefix="t2l-bench-cache-"), max_size="10GiB")
    embeddings = torch.randn(repeats + 2, config.task_embedding_size)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def get(i: int):
        return get_or_generate([embeddings[i]], model, cache=cache)

    def key(i: int) -> str:
        return adapter_key(identify(model), embeddings[i])

    cold_first = timed(lambda: get(0))  # includes hashing the weights
    misses = [timed(lambda i=i: get(i)) for i in range(1, repeats + 1)]
    warm = [timed(lambda i=i: get(i)) for i in range(1, repeats + 1)]
    key_only = [timed(lambda i=i: key(i)) for i in range(1, repeats + 1)]
    files = [cache.lookup(key(i)) / "adapter_model.safetensors" for i in range(1, repeats + 1)]
    reads = [timed(lambda f=f: load_file(str(f))) for f in files]
    no_cache = [timed(lambda i=i: model.generate_lora(embeddings[i])) for i in range(1, repeats + 1)]
    return {
        "variant": variant,
        "cold_first_ms": cold_first * 1000,
        "miss_ms": statistics.median(misses) * 1000,
        "warm_ms": statistics.median(warm) * 1000,
        "key_ms": statistics.median(key_only) * 1000,
        "file_read_ms": statistics.median(reads) * 1000,
        "no_cache_ms": statistics.median(no_cache) * 1000,
        "adapter_mb": files[0].stat().st_size / 2**20,
        "weights_mb": sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20,
    }


def run_floor(variant: str, shape: str, rounds: int, batch: int, dtype: str, packed: bool) -> list[dict]:
    """Ours vs issue 18's starting point vs the bare head GEMMs, alternated round by round; 1 and `batch` adapters.

    Per round, in this order: `before` (the path issue 18 measured: the same forward, then each adapter's PEFT
    state dict checked tensor by tensor with `adapters.check_finite`, as `generate_lora` did), `ours`
    (`generate_lora`), `packed` (`generate_lora` after `pack_heads()`, float32 only) and the floor (the bare head
    GEMMs of the same shapes, both as `x @ W^T` and `W @ x^T`; the faster of the two counts).
    """
    import torch

    from text2lora import T2LConfig, T2LModel
    from text2lora.adapters import check_finite, factors_to_state_dict

    torch.manual_seed(0)
    config = T2LConfig(variant=variant, target_modules=["q_proj", "v_proj"], lora_r=8, **SHAPES[shape])
    model = T2LModel(config).eval().to(getattr(torch, dtype))
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0, 0.01)
    packed = packed and dtype == "float32"
    packed_model = None
    if packed:
        packed_model = T2LModel(config).eval()
        packed_model.load_state_dict(model.state_dict())
        packed_model.pack_heads()
    heads = [(h.weight.detach(), h.bias.detach()) for h in model.heads.values()]
    passes = {"L": 1, "M": 2, "S": 2 * config.lora_r}[variant]
    square = torch.randn(2048, 2048, dtype=getattr(torch, dtype))

    def timed(fn) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            fn()
        return time.perf_counter() - start

    def before(embeddings: torch.Tensor) -> None:
        out = model(embeddings)
        for index in range(embeddings.shape[0]):
            lora_A = {m: out.lora_A[m][index] for m in config.target_modules}
            lora_B = {m: out.lora_B[m][index] for m in config.target_modules}
            check_finite(factors_to_state_dict(config, lora_A, lora_B), "bench")

    def floor(rows: torch.Tensor) -> float:
        linear = timed(lambda: [torch.nn.functional.linear(rows, w) for w, _ in heads])
        transposed = timed(lambda: [torch.mm(w, rows.T) for w, _ in heads])
        return min(linear, transposed)

    def peak() -> float:
        return 2 * 2048**3 / timed(lambda: torch.mm(square, square)) / 1e9

    embeddings = torch.randn(batch, config.task_embedding_size, dtype=getattr(torch, dtype))
    all_rows = torch.randn(batch * config.num_layers * passes, config.head_in_size, dtype=getattr(torch, dtype))
    results = []
    for n in (1, batch):
        emb, rows = embeddings[:n], all_rows[: n * config.num_layers * passes]
        runs = {"before": lambda: before(emb), "ours": lambda: model.generate_lora(emb)}
        if packed:
            runs["packed"] = lambda: packed_model.generate_lora(emb)
        for fn in runs.values():
            fn()  # warm-up
        samples: dict[str, list[float]] = {k: [] for k in [*runs, "floor", "peak_gflops"]}
        for _ in range(rounds):
            for name, fn in runs.items():
                samples[name].append(timed(fn) * 1e3)
            samples["floor"].append(floor(rows) * 1e3)
            samples["peak_gflops"].append(peak())
        flops = sum(2 * w.shape[0] * w.shape[1] for w, _ in heads) * n * config.num_layers * passes
        row = {"variant": variant, "shape": shape, "dtype": dtype, "n": n, "rounds": rounds,
               "peak_gflops": statistics.median(samples["peak_gflops"])}  # fmt: skip
        for name in runs:
            row[f"{name}_ms"] = statistics.median(samples[name])
            for ref in ("floor", "before"):
                ratios = [a / b for a, b in zip(samples[name], samples[ref])]
                row[f"{name}_per_{ref}"] = (statistics.median(ratios), min(ratios), max(ratios))
        row["floor_ms"] = statistics.median(samples["floor"])
        row["head_gflops_ours"] = flops / row["ours_ms"] / 1e6
        results.append(row)
    return results


def _floor_table(args: argparse.Namespace) -> None:
    rows = []
    for shape in args.shapes:
        for variant in args.variants:
            for dtype in args.dtypes:
                rows += run_floor(variant, shape, args.rounds, args.batch, dtype, args.packed)

    def ratio(r: dict, key: str) -> str:
        if key not in r:
            return "-"
        med, low, high = r[key]
        return f"{med:.2f}x [{low:.2f}, {high:.2f}]"

    print("| variant | shapes | dtype | adapters | ours / before | packed / before | ours / GEMM floor | "
          "packed / GEMM floor | before ms* | ours ms* | packed ms* | floor ms* | peak GEMM GFLOP/s* |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        packed_ms = f"{r['packed_ms']:.1f}" if "packed_ms" in r else "-"
        print(f"| {r['variant']} | {r['shape']} | {r['dtype']} | {r['n']} | {ratio(r, 'ours_per_before')} | "
              f"{ratio(r, 'packed_per_before')} | {ratio(r, 'ours_per_floor')} | {ratio(r, 'packed_per_floor')} | "
              f"{r['before_ms']:.1f} | {r['ours_ms']:.1f} | {packed_ms} | {r['floor_ms']:.1f} | "
              f"{r['peak_gflops']:.0f} |")
    print(f"\nRatios: median per round [min, max] over {args.rounds} alternated rounds. * machine-dependent absolute "
          "figures (medians); compare the ratios.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def run_heads(shape: str, rounds: int, batch: int) -> None:
    """The head forms side by side (L head shapes, float32): which is fastest for 1 and for `batch` adapters."""
    import torch

    config = SHAPES[shape]
    d_in_out = sum(8 * (i + o) for i, o in config["module_shapes"].values())
    weight, bias = torch.randn(d_in_out, 512) * 0.01, torch.randn(d_in_out)
    forms = {
        "F.linear (x @ W^T, row-major out)": lambda x: torch.nn.functional.linear(x, weight, bias),
        "W @ x^T (transposed view)": lambda x: torch.addmm(bias[:, None], weight, x.T).T,
        "W @ x^T + copy to row-major": lambda x: torch.addmm(bias[:, None], weight, x.T).T.contiguous(),
    }
    if torch.backends.mkl.is_available():
        packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, config["num_layers"])
        forms["MKL-packed F.linear (+memory)"] = lambda x: torch.ops.mkl._mkl_linear(
            x, packed, weight, bias, config["num_layers"]
        )
    print(f"| form ({shape} L head, float32) | adapters | ms* | ratio to F.linear (median per round [min, max]) |")
    print("|---|---:|---:|---:|")
    for n in (1, batch):
        x = torch.randn(n * config["num_layers"], 512)
        times: dict[str, list[float]] = {k: [] for k in forms}
        for _ in range(rounds):
            for name, fn in forms.items():
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
        base = times["F.linear (x @ W^T, row-major out)"]
        for name, values in times.items():
            ratios = [a / b for a, b in zip(values, base)]
            print(f"| {name} | {n} | {statistics.median(values) * 1e3:.1f} | {statistics.median(ratios):.2f}x "
                  f"[{min(ratios):.2f}, {max(ratios):.2f}] |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["L", "M", "S"])
    parser.add_argument("--shapes", nargs="+", default=["mistral", "smollm2"], choices=sorted(SHAPES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="hypernetwork dtypes to measure")
    parser.add_argument("--plot", default=None, help="write a bar chart of the latencies to this PNG")
    parser.add_argument("--json", default=None, help="write the results as JSON to this file")
    parser.add_argument("--cache", action="store_true", help="measure the adapter cache (cold vs warm) instead")
    parser.add_argument("--floor", action="store_true", help="ours vs the machine's GEMM floor, alternated per round")
    parser.add_argument("--rounds", type=int, default=15, help="alternated rounds for --floor and --heads")
    parser.add_argument("--packed", action="store_true", help="with --floor: also generate with pack_heads()")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for --floor/--heads (1 is steadiest on a shared machine: no thread waits "
                             "for a descheduled sibling)")
    parser.add_argument("--heads", action="store_true", help="compare the head GEMM forms, alternated per round")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        variant, shape, n, dtype = (args.child.split(":") + ["float32"])[:4]
        if shape == "cache":
            print(json.dumps(run_cache(variant, args.repeats)))
        else:
            print(json.dumps(run_one(variant, shape, args.repeats, int(n), dtype)))
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.heads:
        for shape in args.shapes:
            run_heads(shape, args.rounds, args.batch)
        return
    if args.floor:
        if "--dtypes" not in sys.argv:
            args.dtypes = ["float32"]
        return _floor_table(args)
    if args.cache:
        _cache_table(args)
        return

    def measure(variant: str, shape: str, n: int, dtype: str) -> dict:
        cmd = [sys.executable, __file__, "--child", f"{variant}:{shape}:{n}:{dtype}", "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = []
    for shape, dtype, variant in [(s, d, v) for s in args.shapes for d in args.dtypes for v in args.variants]:
            one, many = measure(variant, shape, 1, dtype), measure(variant, shape, args.batch, dtype)
            rows.append({
                "variant": variant, "shape": shape, "dtype": dtype, "parameters": one["parameters"],
                "one_ms": one["seconds"] * 1000,
                "one_peak_rss_mb": one["peak_rss_mb"], "batch": args.batch, "batch_s": many["seconds"],
                "adapters_per_s": args.batch / many["seconds"], "batch_peak_rss_mb": many["peak_rss_mb"],
                "batch_output_mb": many["output_mb"], "threads": one["threads"],
            })
            print(f"  measured {shape} {dtype} {variant}: {rows[-1]['one_ms']:.1f} ms / adapter", file=sys.stderr)

    b = args.batch
    print(f"\n| shapes | dtype | variant | parameters | 1 adapter (ms) | peak RSS, 1 (MB) | {b} adapters (s) | adapters/s "
          f"| peak RSS, {b} (MB) | of which {b} adapters' fp32 tensors (MB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shape']} | {r['dtype']} | {r['variant']} | {r['parameters']:,} | {r['one_ms']:.1f} | {r['one_peak_rss_mb']:.0f} | "
              f"{r['batch_s']:.3f} | {r['adapters_per_s']:.0f} | {r['batch_peak_rss_mb']:.0f} | {r['batch_output_mb']:.0f} |")
    mistral = {r["variant"]: r for r in rows if r["shape"] == "mistral" and r["dtype"] == "float32"}
    if mistral:
        print("\nAgainst the reference implementation on this CPU (Mistral shapes, hypernetwork alone):")
        for v, r in mistral.items():
            print(f"  {v}: {r['one_ms']:.1f} ms vs {REFERENCE_MS[v]:.0f} ms  ({REFERENCE_MS[v] / r['one_ms']:.2f}x)")
        if "L" in mistral and args.batch == 64:
            print(f"  64 L adapters: {mistral['L']['batch_s']:.2f} s vs {REFERENCE_64_L_S} s  "
                  f"({REFERENCE_64_L_S / mistral['L']['batch_s']:.2f}x); targets: 1 L <= 35 ms, 64 L <= 1.6 s, RSS < 1.2 GB")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    if args.plot:
        _plot(rows, args.plot, args.batch)


def _cache_table(args: argparse.Namespace) -> None:
    rows = []
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--child", f"{variant}:cache:1", "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("\nAdapter cache, one adapter at Mistral-7B shapes (fp32 adapter; medians; file reads from the page cache):")
    print("| variant | weights hashed (MB) | cold, first call (ms) | miss (ms) | warm hit (ms) | of which key (ms) "
          "| bare safetensors read (ms) | no cache (ms) | adapter file (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['weights_mb']:.0f} | {r['cold_first_ms']:.0f} | {r['miss_ms']:.0f} | {r['warm_ms']:.1f} | "
              f"{r['key_ms']:.2f} | {r['file_read_ms']:.1f} | {r['no_cache_ms']:.1f} | {r['adapter_mb']:.1f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


def _plot(rows: list[dict], path: str, batch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.2))
    labels = [f"{r['shape']}\n{r['dtype'].replace('float', 'fp').replace('bfloat', 'bf')} {r['variant']}" for r in rows]
    axes[0].bar(labels, [r["one_ms"] for r in rows], color="#4c72b0")
    axes[0].set_ylabel("ms"), axes[0].set_title("one adapter (median)")
    axes[1].bar(labels, [r["adapters_per_s"] for r in rows], color="#55a868")
    axes[1].set_ylabel("adapters / s"), axes[1].set_title(f"{batch} adapters in one call")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
