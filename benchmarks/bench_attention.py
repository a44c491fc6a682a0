"""Fused attention throughput: pylm.ops.attention vs a numpy (BLAS) per-head implementation
that materializes the (T, S) scores. Same shapes as the tests' model configs.

Usage: python benchmarks/bench_attention.py [--threads 2] [--reps 5] [--cpu-time] [--json f]
GFLOP/s counts 4 * D flops per visible (query, key) pair per head (QK^T and PV).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
import numpy as np

import pylm

CASES = [  # name, T, S, Hq, Hkv, D, window
    ("smollm2 prefill", 512, 512, 9, 3, 64, 0),
    ("gemma3 prefill", 512, 512, 4, 1, 256, 0),
    ("gemma3 prefill swa", 1024, 1024, 4, 1, 256, 512),
    ("smollm2 decode", 1, 2048, 9, 3, 64, 0),
    ("gemma3 decode", 1, 2048, 4, 1, 256, 0),
]


def numpy_attention(q, k, v, window):
    T, Hq, D = q.shape
    S, Hkv, _ = k.shape
    G = Hq // Hkv
    pos = S - T + np.arange(T)[:, None]
    j = np.arange(S)[None, :]
    mask = (j <= pos) & ((pos - j < window) if window else True)
    out = np.empty_like(q)
    for h in range(Hq):
        s = (q[:, h] @ k[:, h // G].T) * np.float32(1 / np.sqrt(D))
        s = np.where(mask, s, np.float32(-np.inf))
        e = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h] = (e @ v[:, h // G]) / e.sum(axis=1, keepdims=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time, not wall time")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    rows = []
    for name, T, S, Hq, Hkv, D, window in CASES:
        q = rng.standard_normal((T, Hq, D), dtype=np.float32)
        k = rng.standard_normal((S, Hkv, D), dtype=np.float32)
        v = rng.standard_normal((S, Hkv, D), dtype=np.float32)
        pos = S - T + np.arange(T)
        lo = np.maximum(0, pos - window + 1) if window else np.zeros(T, int)
        pairs = int((pos - lo + 1).sum())
        flops = 4.0 * D * Hq * pairs

        def timeit(fn, *fargs, **kw):
            fn(*fargs, **kw)
            best = float("inf")
            for _ in range(args.reps):
                t = clock()
                fn(*fargs, **kw)
                best = min(best, clock() - t)
            return best

        t_np = timeit(numpy_attention, q, k, v, window)
        for isa in pylm.available_isas():
            with pylm.use_isa(isa):
                t = timeit(pylm.ops.attention, q, k, v, window=window, threads=args.threads)
            row = {
                "case": name,
                "isa": isa,
                "T": T,
                "S": S,
                "Hq": Hq,
                "Hkv": Hkv,
                "D": D,
                "window": window,
                "ms": t * 1e3,
                "gflops": flops / t / 1e9,
                "numpy_ms": t_np * 1e3,
            }
            rows.append(row)
            print(
                f"{name:20s} {isa:7s} {t * 1e3:8.2f} ms {row['gflops']:7.1f} GFLOP/s"
                f"   numpy-materialized {t_np * 1e3:8.2f} ms",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
