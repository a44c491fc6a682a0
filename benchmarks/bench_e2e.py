#!/usr/bin/env python3
"""End-to-end throughput: pylm vs llama.cpp (llama-cpp-python) on the same GGUF, same threads;
with --device cuda, pylm on the GPU vs HF transformers on the same GPU (and pylm's CPU engine).

llama-bench's method for both: pp = one batch of p random tokens, tg = n single-token decode
steps, KV cleared between repetitions, mean ± sd over r repetitions after a warm-up.

    python benchmarks/bench_e2e.py -m smollm2 -m gemma3-270m -t 2 [--json out.json]
    python benchmarks/bench_e2e.py --device cuda [--batch 16] [--quick] [--json out.json]

CUDA mode (see bench_e2e_cuda.py): pp512, tg128 at batch 1 and batch B, the decode step's GPU
time and the rate it reads the weights at vs the device's copy bandwidth, pp vs the CPU engine on
-t threads, and transformers (torch fp16/bf16, greedy, same GGUF weights) when importable.

For a fair peer, build llama-cpp-python for this CPU (its default portable build may leave out
AVX-512): CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-binary :all: llama-cpp-python
The llama.cpp row prints its own system info so the ISA it ran is on record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

import pylm
from pylm import hub
from pylm.commands.bench import bench_model


def bench_llama_cpp(path: str, threads: int, n_prompt: int, n_gen: int, reps: int, seed: int = 0):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    import llama_cpp

    print("llama.cpp:", llama_cpp.llama_print_system_info().decode().strip())
    llm = Llama(model_path=str(path), n_ctx=max(n_prompt + n_gen + 16, 512), n_threads=threads,
                n_threads_batch=threads, n_batch=n_prompt, n_ubatch=n_prompt, verbose=False)
    rng = np.random.default_rng(seed)
    n_vocab = llm.n_vocab()

    def pp_once():
        toks = rng.integers(0, n_vocab, size=n_prompt).tolist()
        llm.reset()
        llm._ctx.kv_cache_clear() if hasattr(llm, "_ctx") and hasattr(llm._ctx, "kv_cache_clear") else None
        t0 = time.perf_counter()
        llm.eval(toks)
        return n_prompt / (time.perf_counter() - t0)

    def tg_once():
        llm.reset()
        llm._ctx.kv_cache_clear() if hasattr(llm, "_ctx") and hasattr(llm._ctx, "kv_cache_clear") else None
        tok = int(rng.integers(0, n_vocab))
        t0 = time.perf_counter()
        for _ in range(n_gen):
            llm.eval([tok])
        return n_gen / (time.perf_counter() - t0)

    out = {}
    for name, fn, n in (("pp", pp_once, n_prompt), ("tg", tg_once, n_gen)):
        fn()
        xs = [fn() for _ in range(reps)]
        out[f"{name}{n}"] = {"mean": statistics.mean(xs), "sd": statistics.stdev(xs) if reps > 1 else 0.0}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", action="append", default=None)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("--json", default=None, help="write results to this file")
    ap.add_argument("--device", default="cpu", help="cpu (vs llama.cpp) or cuda (vs transformers)")
    ap.add_argument("--no-repack", action="store_true",
                    help="CPU: pylm keeps the mapped GGUF rows (no packed copies; llama-bench -nr)")
    ap.add_argument("-b", "--batch", type=int, default=16, help="CUDA: batched decode size")
    ap.add_argument("--quick", action="store_true", help="CUDA: 2 repetitions")
    ap.add_argument("--synthetic", action="store_true",
                    help="CUDA: random weights with the models' shapes and types (no download)")
    args = ap.parse_args(argv)
    models = args.model or ["smollm2", "gemma3-270m"]
    if args.device != "cpu":
        from bench_e2e_cuda import run_cuda

        return run_cuda(args, models)
    results = []
    for name in models:
        path = hub.resolve(name)
        m = pylm.load(path, threads=args.threads, n_ctx=max(args.p + args.n + 16, 512),
                      repack=not args.no_repack)
        ours = bench_model(m, args.p, args.n, args.reps)
        del m
        ref = bench_llama_cpp(path, args.threads, args.p, args.n, args.reps)
        row = {"model": name, "threads": args.threads, "pylm": ours, "llama.cpp": ref}
        print(f"{name} (threads={args.threads}, isa={ours['isa']})")
        for k in (f"pp{args.p}", f"tg{args.n}"):
            a = ours[k]["mean"]
            line = f"  {k:>6}: pylm {a:9.2f} ± {ours[k]['sd']:.2f} t/s"
            if ref:
                b = ref[k]["mean"]
                line += f"   llama.cpp {b:9.2f} ± {ref[k]['sd']:.2f} t/s   ratio {a / b:.2f}x"
                row[f"ratio_{k}"] = a / b
            else:
                line += "   (llama-cpp-python not installed)"
            print(line)
        results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
