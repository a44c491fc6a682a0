"""`pylm train`: train a small Llama model on a text file and export it as a GGUF.

    pylm train --data corpus.txt --vocab-size 4096 --layers 4 --d-model 256 --out model.gguf
    pylm train --data corpus.txt --tokenizer base.gguf --steps 3000 --time-limit 600 ...
    pylm train --data corpus.txt --checkpoint run.ckpt.npz --resume ...   # continue a run
    pylm train --data chat.txt --init SmolLM2-135M-Instruct.Q4_1.gguf --trainable 'blk.29.*' ...

Trains (or reads) a BPE tokenizer, tokenizes the text, holds out the last --val-fraction
for validation, trains with AdamW (warm-up + cosine LR, gradient clipping), evaluates every
--eval-every steps, stops early after --patience evaluations without improvement, checkpoints
at every evaluation, writes the GGUF (model + tokenizer) and a loss-curve PNG (matplotlib).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a Llama model on a text file, export GGUF",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, help="UTF-8 text file to train on")
    d.add_argument("--tokenizer", help="take the tokenizer from this GGUF (or tokenizer JSON)")
    d.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary to train (4096)")
    d.add_argument("--val-fraction", type=float, default=0.05, help="held-out tail (0.05)")
    d.add_argument("--init", help="fine-tune this llama GGUF (weights dequantized to float32; "
                   "its tokenizer and shape are used, the model options are ignored)")
    d.add_argument("--trainable", nargs="+", metavar="GLOB", help="train only these parameters "
                   "(e.g. 'blk.2*.*' '*norm.weight'); default all")
    m = p.add_argument_group("model")
    m.add_argument("--layers", type=int, default=4)
    m.add_argument("--d-model", type=int, default=256)
    m.add_argument("--heads", type=int, default=4)
    m.add_argument("--kv-heads", type=int, default=None, help="grouped-query heads (= heads)")
    m.add_argument("--ffn", type=int, default=None, help="SwiGLU width (default ~8/3 d_model)")
    m.add_argument("--context", type=int, default=256, help="training sequence length T")
    m.add_argument("--rope-base", type=float, default=10000.0)
    m.add_argument("--tie-embeddings", action="store_true", help="share input/output embeddings")
    o = p.add_argument_group("optimization")
    o.add_argument("--batch", type=int, default=8)
    o.add_argument("--steps", type=int, default=2000, help="maximum optimizer steps")
    o.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    o.add_argument("--lr", type=float, default=2e-3)
    o.add_argument("--min-lr", type=float, default=None, help="cosine floor (lr / 10)")
    o.add_argument("--warmup", type=int, default=None)
    o.add_argument("--weight-decay", type=float, default=0.1)
    o.add_argument("--grad-clip", type=float, default=1.0)
    o.add_argument("--eval-every", type=int, default=100)
    o.add_argument("--eval-batches", type=int, default=16)
    o.add_argument("--patience", type=int, default=5, help="evaluations without improvement "
                   "before stopping (0: never)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--threads", type=int, default=None)
    o.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (an error, "
                   "not a CPU fallback, when CUDA is not usable)")
    o.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="on CUDA: fp32, or bf16 activations with fp32 master weights")
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, help="GGUF file to write")
    out.add_argument("--dtype", default="F32", help="F32, F16 or a quantization (Q8_0, Q4_K, ...)")
    out.add_argument("--checkpoint", help="checkpoint file (default: OUT with .ckpt.npz)")
    out.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    out.add_argument("--plot", help="loss-curve PNG (default: OUT with .loss.png)")
    out.add_argument("--sample", default=None, help="prompt to continue with the exported model")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats/token) of the token frequency distribution: the loss of the best model
    that ignores context, which a trained model should beat by a wide margin."""
    counts = np.bincount(tokens).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def run(args) -> int:
    from ..train import LlamaConfig, LlamaModel, Trainer, make_tokenizer, split, tokenize

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    if args.device != "cpu":  # fail before tokenizing when the GPU is not usable
        from ..train.cuda_model import _cuda_module, parse_device

        _cuda_module(parse_device(args.device)[1])
    dev = {"device": args.device, "dtype": args.precision}
    text = Path(args.data).read_text(encoding="utf-8", errors="replace")
    if not text:
        raise ValueError(f"train: {args.data} is empty")
    out = Path(args.out)
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_suffix(".ckpt.npz")
    t0 = time.perf_counter()
    resuming = args.resume and ckpt.exists()
    tok = init_model = None
    if args.init and not resuming:
        init_model, tok = LlamaModel.from_gguf(args.init, args.context, args.threads)
        if tok is None:
            raise ValueError(f"train: {args.init} has no tokenizer")
        log(f"fine-tuning {args.init}: {init_model.config}")
    elif not resuming:
        tok = make_tokenizer(text, args.tokenizer, args.vocab_size, progress=not args.quiet)
        log(f"tokenizer: {tok.n_vocab} tokens ({time.perf_counter() - t0:.1f}s)")
    else:
        tok = Trainer.checkpoint_tokenizer(ckpt)
        if tok is None:
            raise ValueError(f"train: checkpoint {ckpt} has no tokenizer")
    tokens = tokenize(text, tok)
    train_tok, val_tok = split(tokens, args.val_fraction)
    h0 = unigram_entropy(train_tok)
    log(f"data: {len(tokens):,} tokens ({len(text) / max(1, len(tokens)):.2f} chars/token), "
        f"{len(train_tok):,} train / {len(val_tok):,} validation; unigram entropy {h0:.3f} nats")
    hyper = {"batch_size": args.batch, "lr": args.lr, "min_lr": args.min_lr,
             "warmup": args.warmup, "max_steps": args.steps, "weight_decay": args.weight_decay,
             "grad_clip": args.grad_clip, "eval_every": args.eval_every,
             "eval_batches": args.eval_batches, "patience": args.patience or None,
             "seed": args.seed, "trainable": args.trainable}
    if resuming:
        tr = Trainer.resume(ckpt, train_tok, val_tok, tokenizer=tok, threads=args.threads,
                            progress=not args.quiet, max_steps=args.steps, **dev)
        log(f"resumed {ckpt} at step {tr.step_num}")
    elif init_model is not None:
        tr = Trainer(init_model.config, train_tok, val_tok, tokenizer=tok, threads=args.threads,
                     checkpoint=ckpt, progress=not args.quiet, model=init_model, **dev,
                     **hyper)
    else:
        ffn = args.ffn or round(8 * args.d_model / 3 / 16) * 16
        cfg = LlamaConfig(vocab=int(tok.n_vocab), d_model=args.d_model, n_layers=args.layers,
                          n_heads=args.heads, n_kv_heads=args.kv_heads, ffn=ffn,
                          context=args.context, rope_base=args.rope_base,
                          tie_embeddings=args.tie_embeddings)
        tr = Trainer(cfg, train_tok, val_tok, tokenizer=tok, threads=args.threads,
                     checkpoint=ckpt, progress=not args.quiet, **dev, **hyper)
        log(f"model: {tr.model.n_params / 1e6:.2f}M parameters, {cfg}")
    tr.fit(time_limit=args.time_limit)
    h = tr.history
    tps = np.median(h["tokens_per_s"][-50:]) if h["tokens_per_s"] else math.nan
    best = tr.best_val if math.isfinite(tr.best_val) else math.nan
    log(f"done: {tr.step_num} steps, train loss {np.mean(h['loss'][-20:]):.3f}, best validation "
        f"{best:.3f} nats/token (unigram entropy {h0:.3f}), {tps:,.0f} tokens/s")
    path = tr.export(out, args.dtype, name=Path(args.data).stem)
    print(path)
    png = tr.plot(args.plot or out.with_suffix(".loss.png"))
    if png:
        log(f"loss curve: {png}")
    if args.sample:
        import pylm

        text = pylm.load(path).generate(args.sample, max_tokens=min(200, args.context // 2),
                                         temperature=0.8, seed=args.seed)
        print(args.sample + text)
    return 0
