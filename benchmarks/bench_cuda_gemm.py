"""CUDA GEMM and quantized matmul benchmark: pylm._cuda vs torch on the same GPU, same run.

  python benchmarks/bench_cuda_gemm.py [--quick] [--json out.json]

Dense: TFLOP/s of pylm.ops.gemm vs torch.matmul (cuBLAS) for bf16/fp16 at 4096^3 and 8192^3
(prefill-like) and decode shapes (M = 1, 16 against a 4096x4096 / 14336x4096 weight, y = x W^T).
Quantized: GB/s of weight bytes read by the fused-dequant GEMV (M = 1) against a measured
device-to-device copy (torch clone: read + write bytes / time); the weights are larger than L2
so the GEMV streams from HBM. Targets (issue 7): dense >= 0.9x cuBLAS at 4096^3/8192^3, GEMV
>= 0.7x copy bandwidth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from cuda_timing import cuda_seconds

QTYPES = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
# block size, bytes per block, offsets of fp16 scales (set to a small finite value)
QINFO = {
    "Q4_0": (32, 18, [0]), "Q4_1": (32, 20, [0, 2]), "Q5_0": (32, 22, [0]),
    "Q8_0": (32, 34, [0]), "Q4_K": (256, 144, [0, 2]), "Q5_K": (256, 176, [0, 2]),
    "Q6_K": (256, 210, [208]),
}


def bench_dense(torch, ops, quick: bool) -> list[dict]:
    rows = []
    shapes = [(4096, 4096, 4096), (8192, 8192, 8192), (1, 4096, 4096), (16, 4096, 4096),
              (1, 14336, 4096), (16, 14336, 4096), (512, 4096, 4096)]
    for dtype in ["bfloat16", "float16"]:
        td = getattr(torch, dtype)
        for M, N, K in shapes:
            reps = (3 if quick else 10) if M >= 4096 else (20 if quick else 100)
            x = torch.randn(M, K, device="cuda", dtype=td)
            w = torch.randn(N, K, device="cuda", dtype=td)  # y = x @ w.T (linear layer)
            y = torch.empty(M, N, device="cuda", dtype=td)
            t_pylm = cuda_seconds(torch, lambda x=x, w=w, y=y: ops.gemm(x, w, y, trans_b=True),
                                  reps)
            t_torch = cuda_seconds(torch, lambda x=x, w=w: torch.matmul(x, w.t()), reps)
            err = (ops.gemm(x, w, y, trans_b=True).float() - torch.matmul(x, w.t()).float())
            flops = 2.0 * M * N * K
            rows.append({
                "dtype": dtype, "M": M, "N": N, "K": K,
                "pylm_tflops": flops / t_pylm / 1e12, "torch_tflops": flops / t_torch / 1e12,
                "ratio": t_torch / t_pylm, "max_abs_diff_vs_torch": float(err.abs().max()),
                # decode shapes are bandwidth-bound: weight bytes / time
                "pylm_gbs": N * K * 2 / t_pylm / 1e9, "torch_gbs": N * K * 2 / t_torch / 1e9,
            })
            r = rows[-1]
            print(f"gemm {dtype:8s} {M:5d}x{N:5d}x{K:5d}  pylm {r['pylm_tflops']:7.1f} TFLOP/s "
                  f"({r['pylm_gbs']:6.0f} GB/s)  torch {r['torch_tflops']:7.1f}  "
                  f"ratio {r['ratio']:.2f}", flush=True)
    return rows


def copy_bandwidth(torch) -> float:
    """Device-to-device copy, GB/s counting read + write bytes."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    t = cuda_seconds(torch, lambda: src.clone(), 10)
    return 2 * src.numel() / t / 1e9


def random_qweights(torch, qtype: str, n: int, k: int):
    bs, ts, scale_offs = QINFO[qtype]
    nb = n * k // bs
    raw = torch.randint(0, 256, (nb, ts), dtype=torch.uint8, device="cuda")
    small = torch.tensor([0.01], dtype=torch.float16).view(torch.uint8).cuda()
    for o in scale_offs:
        raw[:, o: o + 2] = small
    return raw.reshape(-1)


def bench_quant(torch, ops, quick: bool, copy_gbs: float) -> list[dict]:
    rows = []
    N, K = 28672, 8192  # > L2 for every format
    for qtype in QTYPES if not quick else ["Q4_0", "Q8_0", "Q4_K", "Q6_K"]:
        w = random_qweights(torch, qtype, N, K)
        for M in [1, 8]:
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            y = torch.empty(M, N, device="cuda", dtype=torch.float32)
            t = cuda_seconds(torch,
                             lambda x=x, w=w, q=qtype, y=y: ops.qmatmul(x, w, q, (N, K), out=y),
                             20 if quick else 50)
            gbs = w.numel() / t / 1e9
            rows.append({"qtype": qtype, "M": M, "N": N, "K": K, "gbs": gbs,
                         "copy_gbs": copy_gbs, "ratio_vs_copy": gbs / copy_gbs,
                         "us": t * 1e6})
            print(f"qgemv {qtype:5s} M={M}  {gbs:7.0f} GB/s  ({gbs / copy_gbs:.2f} of copy "
                  f"{copy_gbs:.0f} GB/s)  {t * 1e6:8.1f} us", flush=True)
        if qtype == "Q4_K":  # prefill through dequant + tensor cores
            for M in [512, 2048]:
                x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
                y = torch.empty(M, N, device="cuda", dtype=torch.float32)
                t = cuda_seconds(torch,
                                 lambda x=x, w=w, y=y: ops.qmatmul(x, w, "Q4_K", (N, K), out=y), 5)
                tf = 2.0 * M * N * K / t / 1e12
                rows.append({"qtype": qtype, "M": M, "N": N, "K": K, "tflops": tf,
                             "us": t * 1e6})
                print(f"qgemm {qtype:5s} M={M}  {tf:7.1f} TFLOP/s  {t * 1e6:8.1f} us", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and formats")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_cuda_gemm: torch is not installed; skipped")
        return 0
    import pylm.cuda
    from pylm import ops

    if not (torch.cuda.is_available() and pylm.cuda.is_available()):
        print("bench_cuda_gemm: no usable CUDA device (torch or pylm); skipped")
        return 0
    t0 = time.time()
    results = {"device": torch.cuda.get_device_name(0), "quick": args.quick}
    results["gemm"] = bench_dense(torch, ops, args.quick)
    results["copy_gbs"] = copy_bandwidth(torch)
    print(f"device-to-device copy: {results['copy_gbs']:.0f} GB/s (read + write)")
    results["qmatmul"] = bench_quant(torch, ops, args.quick, results["copy_gbs"])
    results["seconds"] = time.time() - t0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
