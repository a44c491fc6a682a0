"""`pylm bench -m MODEL -p 512 -n 128 -t 2 [--device cuda] [-b 16] [--json]`: llama-bench's method.

pp = one prompt of p random token ids processed as a single batch; tg = n single-token decode
steps; with -b B > 1 also tg at batch B (B sequences, one decode_batch call per step; tokens/s
counts all B). The KV cache is cleared between repetitions; mean ± sd over `-r` repetitions after
one warm-up run. Reports tokens per second. On CUDA, the decode step's GPU time (CUDA-graph
replay, no host work) and the rate its weight matrices are read at are reported too.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np


def _stats(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "runs": xs}


def bench_model(m, n_prompt: int = 512, n_gen: int = 128, reps: int = 5, seed: int = 0,
                batch: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    import pylm

    device = getattr(m, "device", "cpu")
    out = {"model": str(m.path), "threads": m.threads, "isa": pylm.active_isa(), "device": device}
    if device != "cpu":
        out["isa"] = None
        import pylm.cuda

        out["device_name"] = pylm.cuda.device_name(int(device.partition(":")[2] or 0))

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

    def tg_batch_once() -> float:
        seqs = [m.new_sequence() for _ in range(batch)]
        toks = rng.integers(0, m.n_vocab, size=batch).tolist()
        t0 = time.perf_counter()
        for _ in range(n_gen):
            m.decode_batch(seqs, toks)
        dt = time.perf_counter() - t0
        if device != "cpu":
            _gpu_step(m, out, f"tg{n_gen}_b{batch}")
        for s in seqs:
            s.free()
        return batch * n_gen / dt

    cases = [("pp", pp_once, n_prompt, f"pp{n_prompt}"), ("tg", tg_once, n_gen, f"tg{n_gen}")]
    if batch > 1:
        cases.append(("tg", tg_batch_once, n_gen, f"tg{n_gen}_b{batch}"))
    for _, fn, n, key in cases:
        if n <= 0:
            continue
        fn()  # warm-up
        out[key] = _stats([fn() for _ in range(reps)])
        if device != "cpu" and key == f"tg{n_gen}":
            seq = m.new_sequence()  # one more short run, for the GPU time of a batch-1 step
            for _ in range(4):
                seq.feed([0])
            _gpu_step(m, out, key)
            seq.free()
    return out


def _gpu_step(m, out: dict, key: str) -> None:
    """GPU seconds per decode step (CUDA-graph replay of the last step) and the rate at which
    it reads the weight matrices; nothing when graphs are off."""
    eng = m._engine
    try:
        step = eng.replay_last_decode(50)
    except RuntimeError as e:
        out[f"{key}_gpu"] = {"error": str(e), "graph_error": getattr(eng, "graph_error", "")}
        return
    out[f"{key}_gpu"] = {"step_s": step, "weight_bytes": eng.matmul_bytes,
                         "weight_read_gbps": eng.matmul_bytes / step * 1e-9}


def run(args) -> int:
    import pylm

    n_ctx = max(args.p + args.n + 16, 512)
    m = pylm.load(args.model, threads=args.threads, n_ctx=n_ctx, device=args.device,
                  kv_cache_tokens=max(2 * n_ctx, args.batch * (args.n + 16) + n_ctx),
                  repack=not args.no_repack)
    res = bench_model(m, args.p, args.n, args.reps, batch=args.batch)
    if m.device != "cpu":
        import pylm.cuda

        res["copy_gbps"] = pylm.cuda._module().copy_bandwidth() * 1e-9
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        where = f"device {res['device_name']}" if m.device != "cpu" else \
            f"threads {res['threads']}  isa {res['isa']}"
        print(f"model {res['model']}  {where}")
        for k, v in res.items():
            if isinstance(v, dict) and "mean" in v:
                print(f"  {k:>10}: {v['mean']:9.2f} ± {v['sd']:.2f} t/s")
            elif isinstance(v, dict) and "step_s" in v:
                frac = f" = {v['weight_read_gbps'] / res['copy_gbps']:.2f} of copy bandwidth" \
                    if res.get("copy_gbps") else ""
                print(f"  {k:>10}: {v['step_s'] * 1e6:9.1f} us/step on the GPU, weights read at "
                      f"{v['weight_read_gbps']:.0f} GB/s{frac}")
        if res.get("copy_gbps"):
            print(f"  device copy bandwidth {res['copy_gbps']:.0f} GB/s (read + write)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="llama-bench style pp/tg throughput of a model")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-p", type=int, default=512, help="prompt tokens (pp)")
    p.add_argument("-n", type=int, default=128, help="generated tokens (tg)")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-b", "--batch", type=int, default=1, help="also decode B sequences at once")
    p.add_argument("-r", "--reps", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--no-repack", action="store_true",
                   help="CPU: no packed weight copies (llama-bench's -nr)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
