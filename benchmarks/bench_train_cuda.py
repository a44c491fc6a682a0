"""GPU training throughput: pylm's CUDA training step vs the same model in PyTorch on the same GPU
(eager and torch.compile). Run as `python benchmarks/bench_train.py --device cuda [...]` (or
directly).

Usage: python benchmarks/bench_train_cuda.py [--quick] [--json out.json] [--precision bf16|fp32]
           [--vocab 50304 --d-model 768 --layers 12 --heads 12 --ffn 2048 --context 1024
            --batch 8 --steps 10] [--no-compile] [--no-torch]

Default model: GPT-2-small-sized Llama (d_model 768, 12 layers, 12 heads, T 1024, SwiGLU 2048,
vocab 50304 = GPT-2's padded to a multiple of 64, untied head). One step = forward, backward,
global-norm clipping and an AdamW update. bf16: fp32 master weights, bf16 activations (pylm)
and torch.autocast(bfloat16) with fused AdamW (torch). Prints tokens/s, model TFLOP/s (6 x
matmul parameters x tokens + causal attention), MFU against the dense peak of the chip, and
the ratio to each torch variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
from torch_llama import TorchLlama, model_flops

PEAK_TFLOPS = {"bf16": {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0},
               "fp32": {"H200": 67.0, "H100": 67.0, "A100": 19.5, "L40S": 91.6}}


def peak_tflops(name: str, precision: str) -> float | None:
    for k, v in PEAK_TFLOPS[precision].items():
        if k in name:
            return v
    return None


class PylmSide:
    def __init__(self, cfg, params, precision):
        from pylm.train.cuda_model import CudaAdamW, CudaLlamaModel

        self.m = CudaLlamaModel(cfg, params=params, dtype="bfloat16" if precision == "bf16" else "float32")
        self.opt = CudaAdamW(self.m, (0.9, 0.95), weight_decay=0.1)

    def step(self, ids, tg) -> float:
        from pylm.train.optim import clip_scale

        m = self.m
        m.zero_grad()
        loss = m.forward(ids, tg)
        m.backward()
        norm = m.grad_norm()
        self.opt.step(None, 1e-4, clip_scale(norm, 1.0))
        m._tm.synchronize()
        return loss


class TorchSide:
    def __init__(self, torch, cfg, params, precision, compile_: bool):
        self.torch = torch
        self.model = TorchLlama(torch, cfg, params, "cuda")
        self.P = self.model.P
        self.opt = torch.optim.AdamW(list(self.P.values()), lr=1e-4, betas=(0.9, 0.95),
                                     weight_decay=0.1, fused=True)
        self.amp = precision == "bf16"
        self.loss_fn = torch.compile(self.model.loss) if compile_ else self.model.loss

    def step(self, ids, tg) -> float:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            loss = self.loss_fn(ids, tg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.P.values()), 1.0)
        self.opt.step()
        return loss.item()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per side")
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--ffn", type=int, default=2048)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="4 timed steps, batch 4")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", default=None, help=argparse.SUPPRESS)  # bench_train.py's
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.batch = min(args.steps, 4), min(args.batch, 4)

    import pylm.cuda
    from pylm.train import LlamaConfig
    from pylm.train.params import init_params

    if not pylm.cuda.is_available():
        raise RuntimeError("bench_train --device cuda: no usable CUDA device / CUDA build")
    cfg = LlamaConfig(vocab=args.vocab, d_model=args.d_model, n_layers=args.layers,
                      n_heads=args.heads, n_kv_heads=args.kv_heads, ffn=args.ffn,
                      context=args.context)
    B, T = args.batch, args.context
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, cfg.vocab, (B, T)).astype(np.int32),
                rng.integers(0, cfg.vocab, (B, T)).astype(np.int32)) for _ in range(4)]
    params = init_params(cfg, seed=0)
    sides = {"pylm": PylmSide(cfg, params, args.precision)}
    torch = None
    if not args.no_torch:
        try:
            import torch

            host = {n: params[n].copy() for n in params}
            sides["torch_eager"] = TorchSide(torch, cfg, host, args.precision, False)
            if not args.no_compile:
                sides["torch_compile"] = TorchSide(torch, cfg, host, args.precision, True)
        except ImportError:
            print("torch is not installed: pylm only", file=sys.stderr)
    tb = {}
    if torch is not None:
        tb = {k: (torch.from_numpy(i).long().cuda(), torch.from_numpy(t).long().cuda())
              for k, (i, t) in enumerate(batches)}
    times = {k: [] for k in sides}
    losses = {k: [] for k in sides}
    for it in range(args.steps + 2):  # 2 warm-up steps (torch.compile compiles in the first)
        ids, tg = batches[it % len(batches)]
        for name, side in sides.items():
            a = (ids, tg) if name == "pylm" else tb[it % len(batches)]
            t0 = time.perf_counter()
            loss = side.step(*a)
            dt = time.perf_counter() - t0
            if it >= 2:
                times[name].append(dt)
            losses[name].append(float(loss))
    name = pylm.cuda.device_name()
    flops = model_flops(cfg, B, T)
    peak = peak_tflops(name, args.precision)
    out = {"config": cfg.to_dict(), "batch": B, "precision": args.precision, "device": name,
           "peak_tflops": peak, "model_tflop_per_step": flops / 1e12}
    print(f"config: {cfg}  batch {B}  {args.precision}  on {name}")
    print(f"{flops / 1e12:.2f} TFLOP per training step; dense peak {peak} TFLOP/s")
    for k in sides:
        med = statistics.median(times[k])
        r = {"median_s": med, "min_s": min(times[k]), "tokens_per_s": B * T / med,
             "tflops": flops / med / 1e12, "mfu": flops / med / 1e12 / peak if peak else None,
             "losses": losses[k]}
        out[k] = r
        mfu = f"{100 * r['mfu']:5.1f}% MFU" if peak else ""
        print(f"{k:14s} step {med * 1e3:8.2f} ms  {r['tokens_per_s']:10,.0f} tokens/s  "
              f"{r['tflops']:7.1f} TFLOP/s  {mfu}")
    for k in sides:
        if k != "pylm":
            out[f"ratio_vs_{k}"] = out[k]["median_s"] / out["pylm"]["median_s"]
            print(f"pylm / {k} tokens/s: {out[f'ratio_vs_{k}']:.2f}x  (first losses: pylm "
                  f"{losses['pylm'][0]:.4f}, {k} {losses[k][0]:.4f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
