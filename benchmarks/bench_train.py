"""Training throughput: pylm's native training step vs an equivalent PyTorch eager model.

Usage: python benchmarks/bench_train.py [--threads 2] [--steps 10] [--json out.json]
                                        [--vocab 4096 --d-model 256 --layers 4 --heads 4
                                         --ffn 688 --context 256 --batch 8]

One step = forward, backward, global-norm clipping and an AdamW update, in float32, on the
same Llama model (RMSNorm, RoPE, causal attention, SwiGLU, untied output head) with the same
batch. PyTorch runs eagerly with its own fused CPU kernels (F.rms_norm, scaled_dot_product_attention,
F.cross_entropy) and torch.optim.AdamW; both sides use --threads threads. The sides take turns of
--block timed steps, each turn after one untimed step, so that a noisy, shared machine slows both
alike while neither is timed right after the other swept the caches; the median step is reported
with tokens/s, model GFLOP/s (6 x matmul parameters x tokens + attention, the usual MFU count)
and the fraction of the FMA peak that pylm.bench measures on this machine in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

THREADS = "2"
for i, arg in enumerate(sys.argv):
    if arg == "--threads" and i + 1 < len(sys.argv):
        THREADS = sys.argv[i + 1]
if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1:][:1] != ["cpu"]:
    from bench_train_cuda import main as cuda_main  # GPU: pylm CUDA vs torch on the same GPU

    sys.exit(cuda_main())
os.environ.setdefault("OMP_NUM_THREADS", THREADS)
os.environ.setdefault("OPENBLAS_NUM_THREADS", THREADS)

import numpy as np
from torch_llama import TorchLlama, model_flops

import pylm
from pylm.bench import machine_limits
from pylm.train import AdamW, LlamaConfig, LlamaModel
from pylm.train.optim import clip_scale, grad_norm


class PylmSide:
    def __init__(self, cfg, threads):
        self.m = LlamaModel(cfg, seed=0, threads=threads)
        self.opt = AdamW(self.m.params, weight_decay=0.1, threads=threads)
        self.threads = threads

    def step(self, ids, tg) -> float:
        m = self.m
        m.zero_grad()
        loss = m.forward(ids, tg)
        m.backward()
        norm = grad_norm(m.grads, self.threads)
        self.opt.step(m.grads, 1e-3, clip_scale(norm, 1.0))
        return loss


class TorchSide:
    def __init__(self, torch, cfg, params):
        self.torch = torch
        torch.set_num_threads(int(THREADS))
        self.model = TorchLlama(torch, cfg, params)
        self.opt = torch.optim.AdamW(list(self.model.P.values()), lr=1e-3, betas=(0.9, 0.95),
                                     weight_decay=0.1)

    def step(self, ids, tg) -> float:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        loss = self.model.loss(torch.from_numpy(ids).long(), torch.from_numpy(tg).long())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.model.P.values()), 1.0)
        self.opt.step()
        return loss.item()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per side")
    ap.add_argument("--block", type=int, default=3,
                    help="timed steps per turn (after one untimed step), sides alternating")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--ffn", type=int, default=688)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    load0 = os.getloadavg()
    cfg = LlamaConfig(vocab=args.vocab, d_model=args.d_model, n_layers=args.layers,
                      n_heads=args.heads, n_kv_heads=args.kv_heads, ffn=args.ffn,
                      context=args.context)
    B, T = args.batch, args.context
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, cfg.vocab, (B, T)).astype(np.int32),
                rng.integers(0, cfg.vocab, (B, T)).astype(np.int32)) for _ in range(4)]
    ours = PylmSide(cfg, args.threads)
    theirs = None
    if not args.no_torch:
        try:
            import torch

            theirs = TorchSide(torch, cfg, {n: ours.m.params[n].copy() for n in ours.m.params})
        except ImportError:
            print("torch is not installed: pylm only", file=sys.stderr)
    sides = {"pylm": ours} | ({"torch": theirs} if theirs else {})
    times = {k: [] for k in sides}
    losses = {k: [] for k in sides}
    # Turns of `block` steps per side, alternating, so that a noisy machine slows both sides
    # alike; the first step of every turn is untimed (the other side has just swept the caches
    # and left its spinning threads: neither happens when one framework trains alone).
    while min(len(t) for t in times.values()) < args.steps:
        for name, side in sides.items():
            for j in range(args.block + 1):
                ids, tg = batches[len(losses[name]) % len(batches)]
                t0 = time.perf_counter()
                loss = side.step(ids, tg)
                dt = time.perf_counter() - t0
                losses[name].append(loss)
                if j > 0 and len(times[name]) < args.steps:
                    times[name].append(dt)
    lim = machine_limits(args.threads)
    flops = model_flops(cfg, B, T)
    out = {"config": cfg.to_dict(), "batch": B, "threads": args.threads,
           "isa": pylm._core.active_isa(), "fma_peak_gflops": lim["fma_gflops"],
           "model_gflop_per_step": flops / 1e9}
    print(f"config: {cfg}  batch {B}  threads {args.threads}  isa {out['isa']}")
    print(f"FMA peak ({args.threads} threads, measured): {lim['fma_gflops']:.0f} GFLOP/s; "
          f"{flops / 1e9:.1f} GFLOP per training step")
    for name in sides:
        med = statistics.median(times[name])
        r = {"median_s": med, "min_s": min(times[name]), "tokens_per_s": B * T / med,
             "gflops": flops / med / 1e9, "frac_fma_peak": flops / med / 1e9 / lim["fma_gflops"],
             "losses": losses[name]}
        out[name] = r
        print(f"{name:6s} step {med * 1e3:7.1f} ms (min {r['min_s'] * 1e3:.1f})  "
              f"{r['tokens_per_s']:8,.0f} tokens/s  {r['gflops']:6.1f} GFLOP/s  "
              f"{100 * r['frac_fma_peak']:4.1f}% of FMA peak")
    if theirs:
        out["ratio"] = out["torch"]["median_s"] / out["pylm"]["median_s"]
        out["ratio_min"] = out["torch"]["min_s"] / out["pylm"]["min_s"]
        print(f"pylm / torch tokens/s: {out['ratio']:.2f}x (medians), {out['ratio_min']:.2f}x "
              f"(best steps)  (first losses: pylm {losses['pylm'][0]:.4f}, torch "
              f"{losses['torch'][0]:.4f})")
    out["loadavg"] = [load0, os.getloadavg()]
    print(f"load average before / after: {load0[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"(a busy machine slows both sides, torch's OpenMP threads more)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
