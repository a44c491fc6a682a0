"""AdamW over the flat parameter buffer, global-norm gradient clipping, and the learning-rate
schedule (linear warm-up, then cosine decay to a floor).

>>> [round(cosine_lr(s, lr=1.0, warmup=2, max_steps=10, min_lr=0.1), 3) for s in (0, 1, 2, 6, 10)]
[0.5, 1.0, 1.0, 0.55, 0.1]
"""

from __future__ import annotations

import math

import numpy as np

from .. import _core
from .params import ParamBuffer

_t = _core.train


def cosine_lr(step: int, lr: float, warmup: int, max_steps: int, min_lr: float = 0.0) -> float:
    """LR for 0-based `step`: linear warm-up over `warmup` steps ((step+1)/warmup * lr), then
    a half cosine from lr at step `warmup` down to min_lr at `max_steps`, constant after."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= max_steps:
        return min_lr
    frac = (step - warmup) / max(1, max_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * frac)) * (lr - min_lr)


def grad_norm(grads: ParamBuffer, threads: int = 0) -> float:
    """Global L2 norm of all gradients (double accumulation, thread-count independent)."""
    return math.sqrt(_t.sum_squares(grads.data, threads))


def clip_scale(norm: float, max_norm: float | None) -> float:
    """The factor that brings a gradient of global norm `norm` down to max_norm (1 if below)."""
    if not max_norm or not math.isfinite(norm) or norm <= max_norm:
        return 1.0
    return max_norm / (norm + 1e-6)


def decay_segments(params: ParamBuffer, names, weight_decay: float) -> list[tuple[int, int, float]]:
    """Contiguous [start, end) ranges of the flat buffer holding the parameters in `names`, each
    with its weight decay (parameters before params.n_decay decay, the rest do not)."""
    names, segs = set(names), []
    for name in params:  # buffer order
        if name not in names:
            continue
        a = params.offsets[name]
        b = a + params[name].size
        wd = weight_decay if a < params.n_decay else 0.0
        if segs and segs[-1][1] == a and segs[-1][2] == wd:
            segs[-1] = (segs[-1][0], b, wd)
        else:
            segs.append((a, b, wd))
    return segs


class AdamW:
    """AdamW with decoupled weight decay on the matrices only (the ParamBuffer's prefix
    [0, n_decay)); norm weights are not decayed. Moments live in two flat buffers.
    `trainable` (parameter names; default all) restricts the updates: the others stay fixed."""

    def __init__(self, params: ParamBuffer, betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.1, threads: int = 0, trainable=None):
        self.params = params
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.m = np.zeros_like(params.data)
        self.v = np.zeros_like(params.data)
        self.t = 0
        self.threads = threads
        self.segments = decay_segments(params, params if trainable is None else trainable,
                                       self.weight_decay)

    def step(self, grads: ParamBuffer, lr: float, grad_scale: float = 1.0) -> None:
        """One update with gradients multiplied by grad_scale (clipping)."""
        self.t += 1
        p, g, m, v = self.params.data, grads.data, self.m, self.v
        for a, b, wd in self.segments:
            _t.adamw(p[a:b], g[a:b], m[a:b], v[a:b], lr, self.beta1, self.beta2, self.eps, wd,
                     self.t, grad_scale, self.threads)

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, d: dict) -> None:
        self.m[...] = d["m"]
        self.v[...] = d["v"]
        self.t = int(d["t"])
