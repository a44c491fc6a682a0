"""Scratch speed probe for pylm.ops.qmatmul (not a test, not a benchmark suite).

Measures, per ISA:
  * memory read bandwidth: numpy sum over a 512 MiB array (1 thread) and two halves summed in
    two Python threads (numpy releases the GIL) -> a lower bound of the machine's read rate;
  * out-of-cache matvec: the weight matrix replicated to > 512 MiB, (a) one call over all the
    copies stacked as one tall matrix (kernel streaming rate), (b) one call per copy, rotating
    (what a decode step sees, Python call overhead included); reported as bytes of W / time;
  * prefill: M=512 x matrix in cache, GFLOP/s = 2*M*N*K / time.

Usage: PYTHONPATH=$PWD python tools/probe_qmatmul.py [--isa avx512] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import threading
import time

import gguf
import numpy as np

import pylm
from pylm import _core

T = gguf.GGMLQuantizationType
rng = np.random.default_rng(0)


# The dev machine is shared: with --cpu, single-threaded timings use this thread's CPU time
# (time.thread_time), which does not count the time the scheduler gives to other processes.
CLOCK = time.perf_counter


def best(fn, reps=5):
    ts = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return min(ts)


def read_bandwidth(nbytes=512 << 20):
    a = np.ones(nbytes // 4, np.float32)
    t1 = best(lambda: a.sum(), 5)
    halves = [a[: a.size // 2], a[a.size // 2 :]]

    def two():
        th = [threading.Thread(target=h.sum) for h in halves]
        for t in th:
            t.start()
        for t in th:
            t.join()

    t2 = best(two, 5)
    return nbytes / t1 / 1e9, nbytes / t2 / 1e9


def make_weights(qt, n, k):
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    if qt in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        raw = rng.integers(0, 256, size=(n, k // bs, ts), dtype=np.uint8)
        d = (rng.uniform(0.5, 1.5, size=(n, k // bs)) * 1e-2).astype(np.float16)
        off = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}[qt]
        for o in off:
            raw[:, :, o : o + 2] = d.view(np.uint8).reshape(n, k // bs, 2)
        return raw.reshape(n, -1)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if qt == T.F32:
        return w.view(np.uint8)
    return gguf.quants.quantize(w, qt).view(np.uint8)


def probe_matvec(qt, n, k, threads, total=640 << 20):
    w = make_weights(qt, n, k)
    copies = max(2, total // w.nbytes)
    big = np.ascontiguousarray(np.broadcast_to(w, (copies,) + w.shape)).reshape(copies * n, -1)
    x = rng.standard_normal((1, k)).astype(np.float32)
    _core.qmatmul(x, big, int(qt), copies * n, k, threads)  # warm (page faults)
    t_big = best(lambda: _core.qmatmul(x, big, int(qt), copies * n, k, threads), 3)
    views = [big[i * n : (i + 1) * n] for i in range(copies)]

    def rotate():
        for v in views:
            _core.qmatmul(x, v, int(qt), n, k, threads)

    t_rot = best(rotate, 3)
    # in cache: the same matrix again and again
    t_hot = best(lambda: [_core.qmatmul(x, w, int(qt), n, k, threads) for _ in range(200)], 3) / 200
    return big.nbytes / t_big / 1e9, big.nbytes / t_rot / 1e9, w.nbytes / t_hot / 1e9


def probe_prefill(qt, n, k, m, threads):
    w = make_weights(qt, n, k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    _core.qmatmul(x, w, int(qt), n, k, threads)
    t = best(lambda: _core.qmatmul(x, w, int(qt), n, k, threads), 3)
    t1 = best(lambda: [_core.qmatmul(x[i : i + 1], w, int(qt), n, k, threads) for i in range(m)], 1)
    return 2 * m * n * k / t / 1e9, t1 / t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--types", default="Q4_1,Q4_K")
    ap.add_argument("--cpu", action="store_true", help="thread CPU time (needs --threads 1)")
    args = ap.parse_args()
    global CLOCK
    if args.cpu:
        assert args.threads == 1, "--cpu measures one thread"
        CLOCK = time.thread_time
    isas = [args.isa] if args.isa else pylm.available_isas()[1:]
    bw1, bw2 = read_bandwidth()
    print(f"numpy read bandwidth: 1 thread {bw1:.1f} GB/s, 2 threads {bw2:.1f} GB/s")
    bw = bw1 if args.threads == 1 else bw2
    shapes = {
        "Q4_1": (1536, 576),
        "Q4_K": (640, 2048),
        "Q5_0": (2048, 640),
        "Q6_K": (640, 2048),
        "Q8_0": (2048, 640),
        "Q4_0": (1536, 576),
        "Q5_1": (1536, 576),
        "Q2_K": (640, 2048),
        "Q3_K": (640, 2048),
        "Q5_K": (640, 2048),
        "F16": (1536, 576),
        "BF16": (1536, 576),
        "F32": (1536, 576),
    }
    for isa in isas:
        with pylm.use_isa(isa):
            for name in args.types.split(","):
                qt = T[name]
                n, k = shapes[name]
                big, rot, hot = probe_matvec(qt, n, k, args.threads)
                msg = (
                    f"[{isa}] {name} {n}x{k} matvec: stream {big:.1f} GB/s "
                    f"({big / bw:.2f} of numpy), per-call {rot:.1f} GB/s, "
                    f"in-cache {hot:.1f} GB/s"
                )
                if not args.quick:
                    gf, ratio = probe_prefill(qt, n, k, 512, args.threads)
                    msg += f" | M=512: {gf:.1f} GFLOP/s ({ratio:.0f}x faster than 512 matvecs)"
                print(msg, flush=True)


if __name__ == "__main__":
    main()
