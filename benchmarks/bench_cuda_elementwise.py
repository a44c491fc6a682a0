"""GB/s of pylm's CUDA elementwise kernels vs torch equivalents on the same GPU.

Ops (llama-style shapes, bfloat16/float16 storage): rmsnorm (vs torch.nn.functional.rms_norm
or the x * rsqrt(mean(x^2)) chain), rope (vs the usual rotate-half expression with cached cos/sin,
the bytes of x only), swiglu (vs F.silu(g) * u on the halves of one [R, 2F] tensor), embedding
(Q8_0/Q4_K table gather vs torch.nn.functional.embedding of an already-dequantized f16 table).
GB/s counts the bytes each op must move (read inputs once, write outputs once).

Usage: python benchmarks/bench_cuda_elementwise.py [--quick] [--json PATH]
"""

# ruff: noqa: B023  (every closure is timed inside the loop iteration that defines it)
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def bench(fn, iters: int, torch) -> float:
    """Median seconds per call, measured with CUDA events."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer shapes and iterations")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch is needed for the comparison", file=sys.stderr)
        return 1
    import pylm
    import pylm.cuda

    if not (pylm.cuda.is_available() and torch.cuda.is_available()):
        print("needs a CUDA GPU with pylm's CUDA extension and torch CUDA", file=sys.stderr)
        return 1
    iters = 20 if args.quick else 100
    rows = [1, 512, 4096] if not args.quick else [1, 4096]
    dt = torch.bfloat16
    results = {"device": pylm.cuda.device_info(), "ops": []}

    def record(op, shape, nbytes, t_pylm, t_torch):
        r = {"op": op, "shape": shape, "bytes": nbytes, "pylm_us": t_pylm * 1e6,
             "torch_us": t_torch * 1e6, "pylm_GBps": nbytes / t_pylm / 1e9,
             "torch_GBps": nbytes / t_torch / 1e9, "speedup": t_torch / t_pylm}
        results["ops"].append(r)
        print(f"{op:10s} {shape!s:18s} pylm {r['pylm_GBps']:8.1f} GB/s ({r['pylm_us']:8.1f} us)"
              f"  torch {r['torch_GBps']:8.1f} GB/s  x{r['speedup']:.2f}")

    C = 4096
    for R in rows:  # rmsnorm
        x = torch.randn(R, C, device="cuda", dtype=dt)
        w = torch.randn(C, device="cuda", dtype=torch.float32)
        out = torch.empty_like(x)
        wt = w.to(dt)
        if hasattr(F, "rms_norm"):
            tfn = lambda: F.rms_norm(x, (C,), wt, 1e-6)
        else:
            tfn = lambda: x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(dt) * wt
        record("rmsnorm", (R, C), 2 * x.numel() * 2 + C * 4,
               bench(lambda: pylm.ops.rmsnorm(x, w, 1e-6, out=out), iters, torch), bench(tfn, iters, torch))

    H, D = 32, 128
    for T in rows:  # rope, neox, in place
        q = torch.randn(T, H, D, device="cuda", dtype=dt)
        pos = torch.arange(T, device="cuda", dtype=torch.int32)
        inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, device="cuda").float() / D))
        ang = pos.float()[:, None] * inv[None]
        cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None].to(dt)
        sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None].to(dt)

        def torch_rope():
            x1, x2 = q[..., : D // 2], q[..., D // 2:]
            return q * cos + torch.cat([-x2, x1], -1) * sin

        record("rope", (T, H, D), 2 * q.numel() * 2,
               bench(lambda: pylm.ops.rope(q, pos, mode="neox", inplace=True), iters, torch),
               bench(torch_rope, iters, torch))

    Fd = 11008 if not args.quick else 8192
    for R in rows:  # swiglu on the halves of one [R, 2F] tensor
        h = torch.randn(R, 2 * Fd, device="cuda", dtype=dt)
        g, u = h[:, :Fd], h[:, Fd:]
        out = torch.empty(R, Fd, device="cuda", dtype=dt)
        record("swiglu", (R, Fd), 3 * R * Fd * 2,
               bench(lambda: pylm.ops.swiglu(g, u, out=out), iters, torch),
               bench(lambda: F.silu(g) * u, iters, torch))

    import gguf

    V, C = 32000, 4096
    for qtype in ["Q8_0", "Q4_K"]:
        T = gguf.GGMLQuantizationType[qtype]
        bs, ts = gguf.GGML_QUANT_SIZES[T]
        rng = np.random.default_rng(0)
        raw = rng.integers(0, 256, size=(V, C // bs * ts), dtype=np.uint8)
        table = torch.from_numpy(raw).cuda()
        table16 = torch.randn(V, C, device="cuda", dtype=torch.float16)
        for n in rows:
            ids = torch.randint(0, V, (n,), device="cuda", dtype=torch.int32)
            out = torch.empty(n, C, device="cuda", dtype=torch.float16)
            nbytes = n * (C // bs * ts) + n * C * 2
            record(f"emb_{qtype}", (n, C), nbytes,
                   bench(lambda: pylm.cuda.ops.embedding(table, ids, qtype, dtype="float16",
                                                         out=out, check_ids=False), iters, torch),
                   bench(lambda: F.embedding(ids.long(), table16), iters, torch))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
