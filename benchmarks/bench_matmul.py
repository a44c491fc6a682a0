"""f32 matmul throughput: pylm.ops.matmul vs numpy's BLAS (np.matmul float32), same shapes.

Usage: python benchmarks/bench_matmul.py [--threads 2] [--reps 10] [--cpu-time] [--json out.json]
Prints GFLOP/s per ISA and the ratio to numpy measured in the same run (best of --reps,
interleaved so that a noisy machine hurts both sides alike).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

THREADS = "2"
for i, arg in enumerate(sys.argv):
    if arg == "--threads" and i + 1 < len(sys.argv):
        THREADS = sys.argv[i + 1]
# numpy's OpenBLAS reads its thread count at import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", THREADS)
os.environ.setdefault("OMP_NUM_THREADS", THREADS)

import numpy as np

import pylm

SHAPES = [  # (M, N, K, transpose_b)
    (512, 512, 512, False),
    (512, 512, 512, True),
    (1024, 1024, 1024, False),
    (1024, 1024, 1024, True),
    (512, 1536, 576, True),  # SmolLM2 prefill, up projection (x @ W^T)
    (1, 1536, 576, True),  # decode matvec
]


CLOCK = time.perf_counter


def best_time(fn, *fargs, **kw) -> float:
    t = CLOCK()
    fn(*fargs, **kw)
    return CLOCK() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process CPU time (GFLOP per CPU-second: robust on a "
        "shared machine; threads' spin-waits count against both sides)",
    )
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    rng = np.random.default_rng(0)
    rows = []
    for M, N, K, tb in SHAPES:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
        flops = 2.0 * M * N * K
        b_np = b.T if tb else b
        np.matmul(a, b_np)
        for isa in pylm.available_isas():
            if isa == "scalar" and M * N * K > 64 * 2**20:
                continue
            with pylm.use_isa(isa):
                pylm.ops.matmul(a, b, transpose_b=tb, threads=args.threads)
                t_np = t_us = float("inf")
                for _ in range(args.reps):  # interleave the two sides
                    t_np = min(t_np, best_time(np.matmul, a, b_np))
                    t_us = min(
                        t_us, best_time(pylm.ops.matmul, a, b, transpose_b=tb, threads=args.threads)
                    )
            row = {
                "M": M,
                "N": N,
                "K": K,
                "transpose_b": tb,
                "isa": isa,
                "threads": args.threads,
                "gflops": flops / t_us / 1e9,
                "numpy_gflops": flops / t_np / 1e9,
            }
            row["ratio"] = row["gflops"] / row["numpy_gflops"]
            rows.append(row)
            print(
                f"{M:5d}x{N:5d}x{K:5d} tb={int(tb)} {isa:7s} {row['gflops']:7.1f} GFLOP/s"
                f"  numpy {row['numpy_gflops']:7.1f}  ratio {row['ratio']:.2f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
