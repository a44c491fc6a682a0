"""Parameter layout: every weight is a view into one flat float32 buffer (llm.c style), so the
optimizer, gradient clipping and checkpoints each touch one array.

Training keeps two fused projections; export splits them back into llama.cpp's tensors:
    blk.N.attn_qkv      [(H + 2 Hkv) D, C]  = attn_q ; attn_k ; attn_v  (rows)
    blk.N.ffn_gate_up   [2 F, C]            = ffn_gate ; ffn_up          (rows)
Matrices come first and norm weights last, so weight decay applies to the prefix
[0, n_decay) of the buffer and not to the rest.
"""

from __future__ import annotations

import math

import numpy as np

from .config import LlamaConfig


def param_shapes(cfg: LlamaConfig) -> tuple[list[tuple[str, tuple]], list[tuple[str, tuple]]]:
    """(matrices, vectors): names and shapes in buffer order."""
    C, F, V = cfg.d_model, cfg.ffn, cfg.vocab
    mats = [("token_embd.weight", (V, C))]
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        mats += [(p + "attn_qkv.weight", (cfg.qkv_dim, C)),
                 (p + "attn_output.weight", (C, cfg.n_heads * cfg.head_dim)),
                 (p + "ffn_gate_up.weight", (2 * F, C)),
                 (p + "ffn_down.weight", (C, F))]
    if not cfg.tie_embeddings:
        mats.append(("output.weight", (V, C)))
    vecs = []
    for i in range(cfg.n_layers):
        vecs += [(f"blk.{i}.attn_norm.weight", (C,)), (f"blk.{i}.ffn_norm.weight", (C,))]
    vecs.append(("output_norm.weight", (C,)))
    return mats, vecs


class ParamBuffer:
    """A flat float32 array with named views. ``n_decay`` elements of matrices come first."""

    def __init__(self, cfg: LlamaConfig, data: np.ndarray | None = None):
        mats, vecs = param_shapes(cfg)
        self.shapes = dict(mats + vecs)
        self.offsets: dict[str, int] = {}
        off = 0
        for name, shape in mats + vecs:
            self.offsets[name] = off
            off += math.prod(shape)
            if name == mats[-1][0]:
                self.n_decay = off
        self.size = off
        if data is None:
            data = np.zeros(off, np.float32)
        elif data.shape != (off,) or data.dtype != np.float32:
            raise ValueError(f"ParamBuffer: expected float32 data of shape ({off},), got "
                             f"{data.dtype} {data.shape}")
        self.data = data
        self.views = {n: self.data[o:o + math.prod(self.shapes[n])].reshape(self.shapes[n])
                      for n, o in self.offsets.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]

    def __iter__(self):
        return iter(self.views)

    def output_weight(self) -> np.ndarray:
        return self.views.get("output.weight", self.views["token_embd.weight"])


def init_params(cfg: LlamaConfig, seed: int = 0) -> ParamBuffer:
    """GPT-2 / Llama style: weights ~ N(0, init_std), the two projections that write into the
    residual stream (attn_output, ffn_down) scaled by 1/sqrt(2 n_layers), norms = 1."""
    rng = np.random.default_rng(seed)
    p = ParamBuffer(cfg)
    resid_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
    for name in p:
        w = p[name]
        if name.endswith("norm.weight"):
            w[...] = 1.0
        else:
            std = resid_std if ("attn_output" in name or "ffn_down" in name) else cfg.init_std
            w[...] = rng.standard_normal(w.shape, dtype=np.float32) * np.float32(std)
    return p
