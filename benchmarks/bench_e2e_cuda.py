"""`bench_e2e.py --device cuda`: pylm's GPU engine vs HF transformers on the same GPU.

Per model (same GGUF for everyone; transformers dequantizes it to fp16, bf16 for Gemma):
  pp{p}          one prompt of p random tokens in one forward, tokens/s
  tg{n}          n greedy single-token decode steps, batch 1, tokens/s
  tg{n}_b{B}     n decode steps of B sequences at once, tokens/s (all B counted)
  *_gpu          pylm's decode step on the GPU alone (CUDA-graph replay): seconds and the rate
                 the weight matrices are read at, as a fraction of the device's copy bandwidth
                 ((read + write) bytes / s of a 1 GiB device-to-device memcpy)
  cpu pp{p}      pylm's CPU engine on -t threads (the pp ratio's baseline)
Targets (issue 8, H200): tg batch 1 >= 5x transformers; batch-B decode reads weights at >= 0.5
of copy bandwidth; pp >= 10x the CPU engine on 2 threads. Transformers is skipped, with a
message, when it (or a CUDA torch) is not importable.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

import pylm
import pylm.cuda
from pylm import hub
from pylm.commands.bench import bench_model

# The real models' shapes and tensor types, for --synthetic (random weights, same work per token:
# the device machine cannot download, and the files exceed what a run can carry).
SHAPES = {
    "smollm2": dict(arch="llama", C=576, L=30, H=9, Hkv=3, D=64, F=1536, V=49152, embd="Q8_0",
                    q="Q4_1", k="Q4_1", v="Q4_1", o="Q4_1", gate="Q4_1", up="Q4_1", down="Q4_1"),
    "gemma3-270m": dict(arch="gemma3", C=640, L=18, H=4, Hkv=1, D=256, F=2048, V=262144,
                        embd="Q8_0", q="Q5_0", k="Q5_0", v="Q8_0", o="Q4_K", gate="Q5_0",
                        up="Q5_0", down="Q6_K"),
}


def synthetic_model(name: str, path) -> str:
    """Writes a GGUF with `name`'s shapes and tensor types and random weights; returns its path."""
    from pylm.gguf_write import write

    s = SHAPES[name]
    rng = np.random.default_rng(0)
    a, C, D = s["arch"], s["C"], s["D"]

    def mat(n, k, qtype, std=0.05):
        return (pylm.ops.quantize(rng.standard_normal((n, k), np.float32) * std, qtype), qtype)

    def norm(n):
        return np.ones(n, np.float32)

    u = np.uint32
    meta = {"general.architecture": a, f"{a}.embedding_length": u(C), f"{a}.block_count": u(s["L"]),
            f"{a}.attention.head_count": u(s["H"]), f"{a}.attention.head_count_kv": u(s["Hkv"]),
            f"{a}.attention.key_length": u(D), f"{a}.attention.value_length": u(D),
            f"{a}.feed_forward_length": u(s["F"]), f"{a}.context_length": u(8192),
            f"{a}.attention.layer_norm_rms_epsilon": 1e-6, f"{a}.rope.freq_base": 10000.0,
            f"{a}.rope.dimension_count": u(D)}
    if a == "gemma3":
        meta[f"{a}.attention.sliding_window"] = u(512)
    t = {"token_embd.weight": mat(s["V"], C, s["embd"], 0.5), "output_norm.weight": norm(C)}
    for il in range(s["L"]):
        p = f"blk.{il}."
        t.update({p + "attn_norm.weight": norm(C), p + "ffn_norm.weight": norm(C),
                  p + "attn_q.weight": mat(s["H"] * D, C, s["q"]),
                  p + "attn_k.weight": mat(s["Hkv"] * D, C, s["k"]),
                  p + "attn_v.weight": mat(s["Hkv"] * D, C, s["v"]),
                  p + "attn_output.weight": mat(C, s["H"] * D, s["o"]),
                  p + "ffn_gate.weight": mat(s["F"], C, s["gate"]),
                  p + "ffn_up.weight": mat(s["F"], C, s["up"]),
                  p + "ffn_down.weight": mat(C, s["F"], s["down"])})
        if a == "gemma3":
            t.update({p + "attn_q_norm.weight": norm(D), p + "attn_k_norm.weight": norm(D),
                      p + "post_attention_norm.weight": norm(C), p + "post_ffw_norm.weight": norm(C)})
    return str(write(path, meta, t))


def _stats(xs):
    return {"mean": statistics.mean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0}


def bench_cpu_pp(path, threads: int, n_prompt: int, reps: int) -> dict:
    m = pylm.load(path, threads=threads, n_ctx=max(n_prompt + 16, 512))
    rng = np.random.default_rng(1)

    def once():
        seq = m.new_sequence()
        toks = rng.integers(0, m.n_vocab, size=n_prompt).tolist()
        t0 = time.perf_counter()
        seq.feed(toks)
        dt = time.perf_counter() - t0
        seq.free()
        return n_prompt / dt

    once()
    return _stats([once() for _ in range(reps)])


def bench_transformers(path, n_prompt: int, n_gen: int, batch: int, reps: int):
    """(results, None) or (None, why it was skipped)."""
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        return None, f"transformers not importable ({e.name})"
    if not torch.cuda.is_available():
        return None, "torch has no CUDA device"
    from pathlib import Path

    p = Path(path)
    dtype = torch.bfloat16 if "gemma" in p.name.lower() else torch.float16
    try:
        model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name,
                                                     torch_dtype=dtype).to("cuda").eval()
    except Exception as e:  # noqa: BLE001 - any loader failure is a skip with its reason
        return None, f"transformers {transformers.__version__} cannot load {p.name}: {e}"
    vocab = model.config.vocab_size
    gen = torch.Generator(device="cuda").manual_seed(0)

    @torch.inference_mode()
    def pp_once():
        ids = torch.randint(0, vocab, (1, n_prompt), device="cuda", generator=gen)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(ids, use_cache=True)
        torch.cuda.synchronize()
        return n_prompt / (time.perf_counter() - t0)

    @torch.inference_mode()
    def tg_once(b: int):
        tok = torch.randint(0, vocab, (b, 1), device="cuda", generator=gen)
        out = model(tok, use_cache=True)
        pkv, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n_gen):  # greedy, one token per sequence per step
            out = model(tok, past_key_values=pkv, use_cache=True)
            pkv, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
        return b * n_gen / (time.perf_counter() - t0)

    res = {"version": transformers.__version__, "dtype": str(dtype).replace("torch.", "")}
    for key, fn in ((f"pp{n_prompt}", pp_once), (f"tg{n_gen}", lambda: tg_once(1)),
                    (f"tg{n_gen}_b{batch}", lambda: tg_once(batch))):
        fn()
        res[key] = _stats([fn() for _ in range(reps)])
    return res, None  # the model is freed with this frame


def run_cuda(args, models) -> int:
    if not pylm.cuda.is_available():
        print("bench_e2e --device cuda: no usable CUDA device (or pylm built without CUDA)")
        return 2
    reps = 2 if args.quick else args.reps
    B, p, n = args.batch, args.p, args.n
    copy_gbps = pylm.cuda._module().copy_bandwidth() * 1e-9
    print(f"device {pylm.cuda.device_name()}: copy bandwidth {copy_gbps:.0f} GB/s (read + write)")
    results = []
    for name in models:
        if args.synthetic:
            import tempfile

            path = synthetic_model(name, f"{tempfile.mkdtemp()}/{name}-synthetic.gguf")
        else:
            path = hub.resolve(name)
        n_ctx = max(p + n + 16, 512)
        m = pylm.load(path, n_ctx=n_ctx, device=args.device,
                      kv_cache_tokens=max(2 * n_ctx, B * (n + 16) + n_ctx))
        ours = bench_model(m, p, n, reps, batch=B)
        ours["graph_error"] = m._engine.graph_error
        del m
        cpu = bench_cpu_pp(path, args.threads, p, reps)
        hf, why = bench_transformers(path, p, n, B, reps)
        row = {"model": name, "pylm_cuda": ours, "pylm_cpu": {f"pp{p}": cpu, "threads": args.threads},
               "transformers": hf, "transformers_skipped": why, "copy_gbps": copy_gbps}
        print(f"{name}")
        for key in (f"pp{p}", f"tg{n}", f"tg{n}_b{B}"):
            a = ours[key]["mean"]
            line = f"  {key:>10}: pylm {a:10.1f} ± {ours[key]['sd']:.1f} t/s"
            if hf:
                line += f"   transformers {hf[key]['mean']:9.1f} t/s   ratio {a / hf[key]['mean']:.2f}x"
                row[f"ratio_{key}"] = a / hf[key]["mean"]
            print(line)
        row["pp_vs_cpu"] = ours[f"pp{p}"]["mean"] / cpu["mean"]
        print(f"  pp{p} vs CPU engine on {args.threads} threads ({cpu['mean']:.1f} t/s): "
              f"{row['pp_vs_cpu']:.1f}x (target >= 10)")
        for key in (f"tg{n}_gpu", f"tg{n}_b{B}_gpu"):
            g = ours.get(key, {})
            if "step_s" in g:
                frac = g["weight_read_gbps"] / copy_gbps
                row[f"{key}_frac_copy_bw"] = frac
                print(f"  {key:>14}: {g['step_s'] * 1e6:8.1f} us/step, weights "
                      f"{g['weight_bytes'] / 1e6:.1f} MB read at {g['weight_read_gbps']:.0f} GB/s "
                      f"= {frac:.2f} of copy bandwidth")
            elif g:
                print(f"  {key:>14}: no graph replay ({g.get('error')}; {g.get('graph_error')})")
        if hf:
            print(f"  tg{n} batch 1 vs transformers: {row[f'ratio_tg{n}']:.2f}x (target >= 5)")
        else:
            print(f"  transformers skipped: {why}")
        results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0
