"""Training ops: native forward passes and their hand-derived backward passes.

Thin wrappers over ``pylm._core.train`` that allocate outputs; the training loop
(``pylm.train.model``) calls the native functions directly with preallocated buffers.
Shapes: N rows (= B sequences x T tokens), C channels, V vocab, H heads, D head dim.

>>> import numpy as np
>>> x = np.ones((2, 4), np.float32)
>>> y, rstd = rmsnorm_fwd(x, np.full(4, 2.0, np.float32))
>>> np.round(y[0], 4).tolist(), round(float(rstd[0]), 4)
([2.0, 2.0, 2.0, 2.0], 1.0)
"""

from __future__ import annotations

import math

import numpy as np

from .. import _core

_t = _core.train

__all__ = [
    "adamw",
    "add",
    "attention_bwd",
    "attention_fwd",
    "embedding_bwd",
    "embedding_fwd",
    "linear_bwd",
    "linear_fwd",
    "rmsnorm_bwd",
    "rmsnorm_fwd",
    "rope",
    "rope_tables",
    "scale",
    "sgd",
    "softmax_xent",
    "sq_err",
    "sum_squares",
    "swiglu_bwd",
    "swiglu_fwd",
]


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def rmsnorm_fwd(x, weight, eps: float = 1e-5, threads: int = 0):
    """y = x / sqrt(mean(x^2) + eps) * weight per row. Returns (y [R, C], rstd [R])."""
    x, weight = _f32(x), _f32(weight)
    y = np.empty_like(x)
    rstd = np.empty(x.shape[0], np.float32)
    _t.rmsnorm_fwd(x, weight, y, rstd, eps, threads)
    return y, rstd


def rmsnorm_bwd(x, weight, rstd, dy, dx=None, dweight=None, threads: int = 0):
    """Gradients of rmsnorm_fwd. dx and dweight are accumulated into when given."""
    x = _f32(x)
    dx = np.zeros_like(x) if dx is None else dx
    dweight = np.zeros(x.shape[1], np.float32) if dweight is None else dweight
    _t.rmsnorm_bwd(x, _f32(weight), _f32(rstd), _f32(dy), dx, dweight, threads)
    return dx, dweight


def linear_fwd(x, weight, bias=None, threads: int = 0):
    """y [N, OUT] = x [N, IN] @ weight [OUT, IN]^T (+ bias [OUT])."""
    x, weight = _f32(x), _f32(weight)
    y = np.empty((x.shape[0], weight.shape[0]), np.float32)
    _t.linear_fwd(x, weight, None if bias is None else _f32(bias), y, threads)
    return y


def linear_bwd(x, weight, dy, bias: bool = False, threads: int = 0):
    """(dx, dweight, dbias or None) of linear_fwd for the upstream gradient dy [N, OUT]."""
    x, weight = _f32(x), _f32(weight)
    dx = np.empty_like(x)
    dw = np.empty_like(weight)  # overwritten (accumulate_dw=False): no zero fill
    db = np.zeros(weight.shape[0], np.float32) if bias else None
    _t.linear_bwd(x, weight, _f32(dy), dx, dw, db, False, threads, False)
    return dx, dw, db


def attention_fwd(qkv, B: int, T: int, n_heads: int, n_kv_heads: int, scale: float | None = None,
                  threads: int = 0):
    """Causal GQA attention over a fused qkv [B*T, (H + 2 Hkv) D] (q heads, then k, then v).

    Returns (out [B*T, H*D], lse [B, H, T]); lse is all the backward needs besides qkv and out.
    """
    qkv = _f32(qkv)
    D = qkv.shape[1] // (n_heads + 2 * n_kv_heads)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    out = np.empty((B * T, n_heads * D), np.float32)
    lse = np.empty((B, n_heads, T), np.float32)
    _t.attention_fwd(qkv, out, lse, B, T, n_heads, n_kv_heads, scale, threads)
    return out, lse


def attention_bwd(qkv, out, lse, dout, B: int, T: int, n_heads: int, n_kv_heads: int,
                  scale: float | None = None, threads: int = 0):
    """dqkv [B*T, (H + 2 Hkv) D] of attention_fwd (recomputes the attention weights from lse)."""
    qkv = _f32(qkv)
    D = qkv.shape[1] // (n_heads + 2 * n_kv_heads)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    dqkv = np.empty_like(qkv)
    _t.attention_bwd(qkv, _f32(out), _f32(lse), _f32(dout), dqkv, B, T, n_heads, n_kv_heads,
                     scale, threads)
    return dqkv


def rope_tables(T: int, head_dim: int, base: float = 10000.0, freq_scale: float = 1.0):
    """(cos, sin) [T, head_dim/2] float32 for positions 0..T-1, angles computed in float64
    exactly as the inference engine does: pos * freq_scale * base^(-2i/head_dim)."""
    i = np.arange(head_dim // 2, dtype=np.float64)
    inv_freq = freq_scale * np.power(float(base), -2.0 * i / head_dim)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def rope(x: np.ndarray, T: int, n_heads: int, head_dim: int, cos, sin, inverse: bool = False,
         threads: int = 0) -> np.ndarray:
    """Rotates adjacent pairs of the first n_heads heads of every row of x [B*T, cols] in place
    (row n at position n % T); inverse=True rotates back (the backward pass)."""
    _t.rope(x, T, n_heads, head_dim, _f32(cos), _f32(sin), inverse, threads)
    return x


def swiglu_fwd(gate_up, threads: int = 0):
    """h [N, F] = silu(gate) * up for gate_up [N, 2F] = (gate, up)."""
    gate_up = _f32(gate_up)
    h = np.empty((gate_up.shape[0], gate_up.shape[1] // 2), np.float32)
    _t.swiglu_fwd(gate_up, h, threads)
    return h


def swiglu_bwd(gate_up, dout, threads: int = 0):
    """dgate_up [N, 2F] of swiglu_fwd."""
    gate_up = _f32(gate_up)
    dgu = np.empty_like(gate_up)
    _t.swiglu_bwd(gate_up, _f32(dout), dgu, threads)
    return dgu


def embedding_fwd(ids, weight, threads: int = 0):
    """out [N, C] = weight[ids]."""
    ids = np.ascontiguousarray(ids, dtype=np.int32).reshape(-1)
    weight = _f32(weight)
    out = np.empty((ids.size, weight.shape[1]), np.float32)
    _t.embedding_fwd(ids, weight, out, threads)
    return out


def embedding_bwd(ids, dout, dweight: np.ndarray, threads: int = 0):
    """dweight[ids[n]] += dout[n] (in place; returns dweight)."""
    ids = np.ascontiguousarray(ids, dtype=np.int32).reshape(-1)
    _t.embedding_bwd(ids, _f32(dout), dweight, threads)
    return dweight


def softmax_xent(logits: np.ndarray, targets, grad: bool = True, grad_scale: float | None = None,
                 threads: int = 0) -> np.ndarray:
    """Per-row cross-entropy losses [N] of logits [N, V] (float32, C-contiguous) vs targets [N]
    (negative: ignored). With grad, logits is overwritten by d(mean loss)/d(logits) unless
    grad_scale says otherwise (default 1 / number of counted rows)."""
    t = np.ascontiguousarray(targets, dtype=np.int32).reshape(-1)
    if grad_scale is None:
        grad_scale = 1.0 / max(1, int((t >= 0).sum()))
    losses = np.empty(t.size, np.float32)
    _t.softmax_xent(logits, t, losses, grad_scale, grad, threads)
    return losses


def add(a, b, threads: int = 0):
    a = _f32(a)
    out = np.empty_like(a)
    _t.add(a, _f32(b), out, threads)
    return out


def sq_err(y, target):
    """(sum((y - target)^2), dy = 2 (y - target))."""
    y = _f32(y)
    dy = np.empty_like(y)
    return _t.sq_err(y, _f32(target), dy), dy


def adamw(param, grad, m, v, lr: float, step: int, beta1: float = 0.9, beta2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.0, grad_scale: float = 1.0, threads: int = 0):
    """One AdamW update of param (in place, with its moments m and v), PyTorch's formula."""
    _t.adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, grad_scale, threads)


def sgd(param, grad, lr: float, threads: int = 0):
    """param -= lr * grad (in place)."""
    _t.sgd(param, grad, lr, threads)


def sum_squares(x, threads: int = 0) -> float:
    return _t.sum_squares(_f32(x), threads)


def scale(x: np.ndarray, s: float, threads: int = 0) -> np.ndarray:
    _t.scale(x, s, threads)
    return x
