#!/usr/bin/env python3
"""Sampler cost per token at a 262k vocabulary (gemma3's), for common parameter sets, on two
logit shapes: "peaked" (a few strong candidates over a Gaussian background, like an LM's next
token) and "flat" (a Gaussian: the worst case for top-p / typical-p, whose nucleus is huge).

    python benchmarks/bench_sampling.py [-V 262144] [--json out.json]

Reports the median and the minimum over repetitions of wall time and of this process's CPU time
(the CPU time is what to read on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from pylm.sampling import Sampler, SamplingParams

CONFIGS = {
    "greedy": {},
    "temp": {"temperature": 0.8},
    "top_k=40": {"temperature": 0.8, "top_k": 40},
    "top_p=0.9": {"temperature": 0.8, "top_p": 0.9},
    "min_p=0.05": {"temperature": 0.8, "min_p": 0.05},
    "llama.cpp defaults": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
                           "repetition_penalty": 1.1},
    "typical_p=0.9": {"temperature": 1.0, "typical_p": 0.9},
}


def logits_sets(V: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    peaked = (rng.standard_normal(V) * 2).astype(np.float32)
    peaked[rng.integers(0, V, 20)] += rng.uniform(8, 14, 20).astype(np.float32)
    return {"peaked": peaked, "flat": (rng.standard_normal(V) * 3).astype(np.float32)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-V", type=int, default=262144)
    ap.add_argument("-r", "--reps", type=int, default=50)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    hist = np.random.default_rng(1).integers(0, args.V, 64).tolist()
    rows = []
    for shape, logits in logits_sets(args.V).items():
        for name, kw in CONFIGS.items():
            s = Sampler(SamplingParams(seed=0, **kw), args.V)
            s.sample(logits, hist)
            wall, cpu = [], []
            for _ in range(args.reps):
                w0, c0 = time.perf_counter(), time.process_time()
                s.sample(logits, hist)
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
            row = {"logits": shape, "config": name, "wall_ms_median": 1e3 * statistics.median(wall),
                   "wall_ms_min": 1e3 * min(wall), "cpu_ms_median": 1e3 * statistics.median(cpu)}
            rows.append(row)
            print(f"{shape:6s} {name:20s} wall median {row['wall_ms_median']:6.2f} ms, "
                  f"min {row['wall_ms_min']:6.2f} ms, cpu median {row['cpu_ms_median']:6.2f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"V": args.V, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
