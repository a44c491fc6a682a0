"""CUDA attention: flash forward vs torch SDPA (flash backend), paged decode vs a contiguous cache.

Usage: python benchmarks/bench_cuda_attention.py [--quick] [--json out.json]

Flash rows count 4 * D flops per visible (query, key) pair per head (QK^T and PV; causal
halves the pairs) and print TFLOP/s for pylm and torch on the same tensors, plus the ratio and
the max abs difference of the two outputs. Paged rows run the same kernel twice over one
cache: once through a shuffled block table, once through the table 0..n-1 of a contiguous
layout, and print the time ratio (target <= 1.1) and the K/V read bandwidth.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from cuda_timing import cuda_seconds

import pylm
import pylm.cuda

FLASH_CASES = [  # name, dtype, B, H, T, D, causal
    ("hd128 4k causal bf16", "bfloat16", 8, 16, 4096, 128, True),
    ("hd128 4k causal f16", "float16", 8, 16, 4096, 128, True),
    ("hd128 4k full bf16", "bfloat16", 8, 16, 4096, 128, False),
    ("hd64 4k causal bf16", "bfloat16", 8, 32, 4096, 64, True),
    ("hd256 4k causal bf16", "bfloat16", 8, 8, 4096, 256, True),
]
PAGED_CASES = [  # name, dtype, S, ctx, Tq, Hq, Hkv, D
    ("decode 32x4k g4", "bfloat16", 32, 4096, 1, 32, 8, 128),
    ("verify 32x4k tq4", "bfloat16", 32, 4096, 4, 32, 8, 128),
    ("decode 1x32k g4", "bfloat16", 1, 32768, 1, 32, 8, 128),
    ("decode 64x2k hd64", "float16", 64, 2048, 1, 9, 3, 64),
]


def bench_flash(torch, case, reps):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    name, dt, B, H, T, D, causal = case
    dtype = getattr(torch, dt)
    q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=dtype) for _ in range(3))
    out = torch.empty_like(q)
    stream = torch.cuda.current_stream().cuda_stream
    run_pylm = lambda: pylm.ops.flash_attn(q, k, v, causal=causal, out=out, stream=stream)
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, T, D] views, same storage

    def run_torch():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)

    t_pylm = cuda_seconds(torch, run_pylm, reps)
    t_torch = cuda_seconds(torch, run_torch, reps)
    diff = (out - run_torch().transpose(1, 2)).abs().max().item()
    pairs = T * (T + 1) / 2 if causal else T * T
    flops = 4.0 * B * H * D * pairs
    return {"name": name, "pylm_ms": t_pylm * 1e3, "torch_ms": t_torch * 1e3,
            "pylm_tflops": flops / t_pylm / 1e12, "torch_tflops": flops / t_torch / 1e12,
            "ratio_vs_torch": t_torch / t_pylm, "max_abs_diff": diff}


def bench_paged(torch, case, reps):
    name, dt, S, ctx, Tq, Hq, Hkv, D = case
    dtype = getattr(torch, dt)
    bs = 16
    nb = ctx // bs
    total = S * nb
    kc = torch.randn(total, bs, Hkv, D, device="cuda", dtype=dtype)
    vc = torch.randn(total, bs, Hkv, D, device="cuda", dtype=dtype)
    q = torch.randn(S, Tq, Hq, D, device="cuda", dtype=dtype)
    out = torch.empty_like(q)
    lens = torch.full((S,), ctx, dtype=torch.int32, device="cuda")
    contig = torch.arange(total, dtype=torch.int32, device="cuda").view(S, nb)
    perm = np.random.default_rng(0).permutation(total).astype(np.int32)
    paged = torch.from_numpy(perm).cuda().view(S, nb)
    stream = torch.cuda.current_stream().cuda_stream

    def run(bt):
        return lambda: pylm.ops.paged_attn(q, kc, vc, bt, lens, out=out, max_context_len=ctx,
                                           stream=stream)

    t_contig = cuda_seconds(torch, run(contig), reps)
    ref = out.clone()
    t_paged = cuda_seconds(torch, run(paged), reps)
    # same data through either table: gather the shuffled cache into table order and compare
    kg, vg = kc.clone(), vc.clone()
    kc[paged.view(-1).long()] = kg[contig.view(-1).long()]
    vc[paged.view(-1).long()] = vg[contig.view(-1).long()]
    run(paged)()
    torch.cuda.synchronize()
    diff = (out - ref).abs().max().item()
    nbytes = 2.0 * S * ctx * Hkv * D * kc.element_size()
    return {"name": name, "contiguous_us": t_contig * 1e6, "paged_us": t_paged * 1e6,
            "paged_over_contiguous": t_paged / t_contig, "paged_gbps": nbytes / t_paged / 1e9,
            "contiguous_gbps": nbytes / t_contig / 1e9, "max_abs_diff": diff}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="first cases only, fewer repetitions")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not pylm.cuda.is_available():
        print("no usable CUDA device", file=sys.stderr)
        return 1
    import torch

    reps = 5 if args.quick else 20
    flash_cases = FLASH_CASES[:2] if args.quick else FLASH_CASES
    paged_cases = PAGED_CASES[:3] if args.quick else PAGED_CASES
    results = {"device": torch.cuda.get_device_name(), "flash": [], "paged": []}
    print(f"{'flash case':24s} {'pylm TF/s':>10s} {'torch TF/s':>10s} {'ratio':>6s} {'max|d|':>8s}")
    for case in flash_cases:
        r = bench_flash(torch, case, reps)
        results["flash"].append(r)
        print(f"{r['name']:24s} {r['pylm_tflops']:10.1f} {r['torch_tflops']:10.1f} "
              f"{r['ratio_vs_torch']:6.2f} {r['max_abs_diff']:8.1e}")
        torch.cuda.empty_cache()
    print(f"\n{'paged case':24s} {'contig us':>10s} {'paged us':>10s} {'ratio':>6s} {'GB/s':>7s}"
          f" {'max|d|':>8s}")
    for case in paged_cases:
        r = bench_paged(torch, case, reps * 5)
        results["paged"].append(r)
        print(f"{r['name']:24s} {r['contiguous_us']:10.1f} {r['paged_us']:10.1f} "
              f"{r['paged_over_contiguous']:6.2f} {r['paged_gbps']:7.0f} {r['max_abs_diff']:8.1e}")
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
