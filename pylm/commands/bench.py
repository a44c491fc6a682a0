"""`pylm bench -m MODEL -p 512 -n 128 -t 2 [--json]`: llama-bench's method.

pp = one prompt of p random token ids processed as a single batch; tg = n single-token decode
steps. The KV cache is cleared between repetitions; mean ± sd over `-r` repetitions after one
warm-up run. Reports tokens per second.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np


def bench_model(m, n_prompt: int = 512, n_gen: int = 128, reps: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"model": str(m.path), "threads": m.threads, "isa": None}
    import pylm

    out["isa"] = pylm.active_isa()

    def pp_once() -> float:
        toks = rng.integers(0, m.n_vocab, size=n_prompt).tolist()
        seq = m.new_sequence()
        t0 = time.perf_counter()
        seq.feed(toks)
        dt = time.perf_counter() - t0
        seq.free()
        return n_prompt / dt

    def tg_once() -> float:
        seq = m.new_sequence()
        tok = int(rng.integers(0, m.n_vocab))
        t0 = time.perf_counter()
        for _ in range(n_gen):
            seq.feed([tok])
        dt = time.perf_counter() - t0
        seq.free()
        return n_gen / dt

    for name, fn, n in (("pp", pp_once, n_prompt), ("tg", tg_once, n_gen)):
        if n <= 0:
            continue
        fn()  # warm-up
        xs = [fn() for _ in range(reps)]
        out[f"{name}{n}"] = {"mean": statistics.mean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                             "runs": xs}
    return out


def run(args) -> int:
    import pylm

    m = pylm.load(args.model, threads=args.threads, n_ctx=max(args.p + args.n + 16, 512))
    res = bench_model(m, args.p, args.n, args.reps)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"model {res['model']}  threads {res['threads']}  isa {res['isa']}")
        for k, v in res.items():
            if isinstance(v, dict):
                print(f"  {k:>6}: {v['mean']:9.2f} ± {v['sd']:.2f} t/s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="llama-bench style pp/tg throughput of a model")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-p", type=int, default=512, help="prompt tokens (pp)")
    p.add_argument("-n", type=int, default=128, help="generated tokens (tg)")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-r", "--reps", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
