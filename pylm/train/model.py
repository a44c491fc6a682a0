"""The training forward and backward pass of a Llama decoder, composed from native ops.

Like llm.c: every activation the backward needs is kept in a preallocated buffer (per batch
shape), every op has a hand-derived native backward, and Python only sequences the calls.

    x_0      = embed(ids)                                            [N, C], N = B * T
    per layer l:
      h      = rmsnorm(x_l) * attn_norm;  qkv = h Wqkv^T;  rope(q, k)
      a      = attention(q, k, v)                                    causal, grouped-query
      m_l    = x_l + a Wo^T
      g      = rmsnorm(m_l) * ffn_norm;   gu = g Wgu^T;  s = silu(gate) * up
      x_l+1  = m_l + s Wdown^T
    logits   = (rmsnorm(x_L) * output_norm) Wout^T;  loss = mean cross-entropy

>>> from pylm.train.config import LlamaConfig
>>> m = LlamaModel(LlamaConfig(vocab=32, d_model=16, n_layers=1, n_heads=2, ffn=24, context=8))
>>> ids = np.arange(8, dtype=np.int32).reshape(1, 8)
>>> loss = m.forward(ids, (ids + 1) % 32); m.backward()
>>> bool(abs(loss - np.log(32)) < 0.1)   # near-uniform predictions at initialisation
True
"""

from __future__ import annotations

import math

import numpy as np

from .. import _core
from .config import LlamaConfig
from .ops import rope_tables
from .params import ParamBuffer, init_params

_t = _core.train


class _Acts:
    """Activation and scratch buffers for one (B, T)."""

    def __init__(self, cfg: LlamaConfig, B: int, T: int, V: int):
        N, C, L, F = B * T, cfg.d_model, cfg.n_layers, cfg.ffn
        HD = cfg.n_heads * cfg.head_dim
        z = lambda *s: np.zeros(s, np.float32)
        self.B, self.T, self.N = B, T, N
        self.res = [z(N, C) for _ in range(L + 1)]  # x_l, the residual stream into layer l
        self.mid = [z(N, C) for _ in range(L)]      # m_l
        self.h1 = [z(N, C) for _ in range(L)]
        self.rstd1 = [z(N) for _ in range(L)]
        self.qkv = [z(N, cfg.qkv_dim) for _ in range(L)]  # after RoPE
        self.att = [z(N, HD) for _ in range(L)]
        self.lse = [z(B, cfg.n_heads, T) for _ in range(L)]
        self.h2 = [z(N, C) for _ in range(L)]
        self.rstd2 = [z(N) for _ in range(L)]
        self.gu = [z(N, 2 * F) for _ in range(L)]
        self.act = [z(N, F) for _ in range(L)]
        self.hf, self.rstdf = z(N, C), z(N)
        self.logits = z(N, V)  # V: the head's rows
        self.losses = z(N)
        # backward scratch
        self.tmp = z(N, C)
        self.dres = z(N, C)
        self.dh = z(N, C)
        self.datt = z(N, HD)
        self.dqkv = z(N, cfg.qkv_dim)
        self.dact = z(N, F)
        self.dgu = z(N, 2 * F)
        self.dnorm = z(C)  # gradient sink for frozen norm weights
        self.cos, self.sin = rope_tables(T, cfg.head_dim, cfg.rope_base)
        self.ids = np.zeros(N, np.int32)
        self.targets = np.zeros(N, np.int32)


class LlamaModel:
    """Parameters, gradients and the native forward / backward of a Llama decoder.

    Args:
        config: the model shape.
        params: a ParamBuffer to use (e.g. from a checkpoint); default: init_params(seed).
        threads: native threads per op (0 / None: pylm's default).
    """

    def __init__(self, config: LlamaConfig, params: ParamBuffer | None = None, seed: int = 0,
                 threads: int | None = None):
        self.config = config
        self.params = params if params is not None else init_params(config, seed)
        self.grads = ParamBuffer(config)
        self.threads = int(threads or 0)
        # Parameters without gradients (fine-tuning a subset): their dW GEMMs are skipped.
        self.frozen: set[str] = set()
        self._acts: _Acts | None = None
        self._have_fwd = False
        # zero_grad() defers the zeroing to the next backward(), whose weight-gradient GEMMs
        # then overwrite (beta 0) instead of accumulating into a separately zeroed buffer.
        self._grads_pending_zero = False
        self.scale = 1.0 / math.sqrt(config.head_dim)
        self._head_rows = config.vocab

    @property
    def head_rows(self) -> int:
        """Rows of the output head in use: logits cover token ids < head_rows, and targets at or
        above it are ignored (a draft model trained for a vocabulary-prefix head, FR-Spec;
        BPE ids follow merge order, i.e. frequency). Default: the whole vocabulary."""
        return self._head_rows

    @head_rows.setter
    def head_rows(self, n: int) -> None:
        if isinstance(n, bool) or not (isinstance(n, (int, np.integer)) and 1 <= n <= self.config.vocab):
            raise ValueError(f"head_rows={n!r} must be an int in [1, {self.config.vocab}]")
        if int(n) != self._head_rows:
            self._head_rows = int(n)
            self._acts = None
            self._have_fwd = False

    @classmethod
    def from_gguf(cls, path, context: int | None = None, threads: int | None = None):
        """(model, tokenizer) from a llama GGUF, dequantized to float32 (fine-tuning)."""
        from .import_gguf import load_gguf

        cfg, params, tok = load_gguf(path, context)
        return cls(cfg, params=params, threads=threads), tok

    @property
    def n_params(self) -> int:
        return self.params.size

    def _buffers(self, B: int, T: int) -> _Acts:
        if T > self.config.context:
            raise ValueError(f"sequence length T={T} exceeds the context {self.config.context}")
        if self._acts is None or (self._acts.B, self._acts.T) != (B, T):
            self._acts = None  # release before allocating the new shape
            self._acts = _Acts(self.config, B, T, self._head_rows)
        return self._acts

    # ---- forward ----
    def forward(self, ids, targets=None, grad: bool = True) -> float | np.ndarray:
        """Runs the model on ids [B, T]. With targets [B, T] (negative: ignored) returns the
        mean cross-entropy and, when grad, leaves d(loss)/d(logits) ready for backward().
        Without targets returns the logits [B*T, head_rows] (a view of an internal buffer)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must be (B, T), got shape {ids.shape}")
        cfg, p, th = self.config, self.params, self.threads
        B, T = ids.shape
        a = self._buffers(B, T)
        a.ids[:] = ids.reshape(-1)
        H, Hkv, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        _t.embedding_fwd(a.ids, p["token_embd.weight"], a.res[0], th)
        for li in range(cfg.n_layers):
            w = f"blk.{li}."
            _t.rmsnorm_fwd(a.res[li], p[w + "attn_norm.weight"], a.h1[li], a.rstd1[li], cfg.eps, th)
            _t.linear_fwd(a.h1[li], p[w + "attn_qkv.weight"], None, a.qkv[li], th)
            _t.rope(a.qkv[li], T, H + Hkv, D, a.cos, a.sin, False, th)
            _t.attention_fwd(a.qkv[li], a.att[li], a.lse[li], B, T, H, Hkv, self.scale, th)
            _t.linear_fwd(a.att[li], p[w + "attn_output.weight"], None, a.tmp, th)
            _t.add(a.res[li], a.tmp, a.mid[li], th)
            _t.rmsnorm_fwd(a.mid[li], p[w + "ffn_norm.weight"], a.h2[li], a.rstd2[li], cfg.eps, th)
            _t.linear_fwd(a.h2[li], p[w + "ffn_gate_up.weight"], None, a.gu[li], th)
            _t.swiglu_fwd(a.gu[li], a.act[li], th)
            _t.linear_fwd(a.act[li], p[w + "ffn_down.weight"], None, a.tmp, th)
            _t.add(a.mid[li], a.tmp, a.res[li + 1], th)
        L = cfg.n_layers
        _t.rmsnorm_fwd(a.res[L], p["output_norm.weight"], a.hf, a.rstdf, cfg.eps, th)
        _t.linear_fwd(a.hf, p.output_weight()[:self._head_rows], None, a.logits, th)
        if targets is None:
            self._have_fwd = False
            return a.logits
        a.targets[:] = np.asarray(targets).reshape(-1)
        if self._head_rows < cfg.vocab:  # outside the head: nothing to learn
            a.targets[a.targets >= self._head_rows] = -1
        n_valid = int((a.targets >= 0).sum())
        _t.softmax_xent(a.logits, a.targets, a.losses, 1.0 / max(1, n_valid), grad, th)
        self._have_fwd = grad
        return float(a.losses.sum(dtype=np.float64) / max(1, n_valid))

    def logits(self, ids) -> np.ndarray:
        """Logits [T, head_rows] (or [B*T, head_rows] for ids [B, T]) as a fresh array."""
        ids = np.asarray(ids, dtype=np.int32)
        if ids.ndim == 1:
            ids = ids[None]
        return self.forward(ids).copy()

    # ---- backward ----
    def zero_grad(self) -> None:
        """Resets the gradients to zero. Deferred: the next backward() writes instead of
        accumulating; anything reading self.grads before that sees zeros all the same."""
        self._grads_pending_zero = True

    def _flush_zero_grad(self) -> None:
        if self._grads_pending_zero:
            self._grads_pending_zero = False
            self._grads.data.fill(0.0)

    @property
    def grads(self) -> ParamBuffer:
        self._flush_zero_grad()
        return self._grads

    @grads.setter
    def grads(self, value: ParamBuffer) -> None:
        self._grads = value
        self._grads_pending_zero = False

    def backward(self) -> None:
        """Accumulates d(loss)/d(params) of the last forward(ids, targets) into self.grads."""
        if not self._have_fwd:
            raise RuntimeError("backward() needs a preceding forward(ids, targets, grad=True)")
        self._have_fwd = False
        cfg, p, a, th = self.config, self.params, self._acts, self.threads
        H, Hkv, D, L, T, B = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.n_layers, a.T, a.B
        frozen, dummy, grads = self.frozen, a.dnorm, self._grads
        out_name = "token_embd.weight" if cfg.tie_embeddings else "output.weight"
        # After zero_grad(): the trainable matrices below are each written by exactly one
        # weight-gradient GEMM (the first, for the tied embedding), which then overwrites;
        # every other gradient (norms, the untied embedding's scatter-add, frozen ones) is
        # zeroed here.
        acc = not self._grads_pending_zero
        if not acc:
            self._grads_pending_zero = False
            mats = {out_name} | {f"blk.{li}.{n}.weight" for li in range(L) for n in
                                 ("attn_qkv", "attn_output", "ffn_gate_up", "ffn_down")}
            for name in grads:
                if name not in mats or name in frozen:
                    grads[name].fill(0.0)
            if out_name not in frozen:  # the head's GEMM writes its first head_rows rows
                grads[out_name][self._head_rows:].fill(0.0)

        def g(name):  # the gradient buffer, or None / a scratch one when frozen
            if name not in frozen:
                return grads[name]
            return dummy if name.endswith("norm.weight") else None

        # logits = hf Wout[:head_rows]^T (a.logits now holds dlogits)
        R = self._head_rows
        d_out = g(out_name)
        _t.linear_bwd(a.hf, p.output_weight()[:R], a.logits, a.dh,
                      None if d_out is None else d_out[:R], None, False, th, acc)
        a.dres.fill(0.0)
        _t.rmsnorm_bwd(a.res[L], p["output_norm.weight"], a.rstdf, a.dh, a.dres,
                       g("output_norm.weight"), th)
        for li in reversed(range(L)):
            w = f"blk.{li}."
            # x_l+1 = m_l + swiglu(rmsnorm(m_l) Wgu^T) Wdown^T; dres = d x_l+1
            _t.linear_bwd(a.act[li], p[w + "ffn_down.weight"], a.dres, a.dact,
                          g(w + "ffn_down.weight"), None, False, th, acc)
            _t.swiglu_bwd(a.gu[li], a.dact, a.dgu, th)
            _t.linear_bwd(a.h2[li], p[w + "ffn_gate_up.weight"], a.dgu, a.dh,
                          g(w + "ffn_gate_up.weight"), None, False, th, acc)
            _t.rmsnorm_bwd(a.mid[li], p[w + "ffn_norm.weight"], a.rstd2[li], a.dh, a.dres,
                           g(w + "ffn_norm.weight"), th)
            # m_l = x_l + attention(rope(rmsnorm(x_l) Wqkv^T)) Wo^T; dres = d m_l
            _t.linear_bwd(a.att[li], p[w + "attn_output.weight"], a.dres, a.datt,
                          g(w + "attn_output.weight"), None, False, th, acc)
            _t.attention_bwd(a.qkv[li], a.att[li], a.lse[li], a.datt, a.dqkv, B, T, H, Hkv,
                             self.scale, th)
            _t.rope(a.dqkv, T, H + Hkv, D, a.cos, a.sin, True, th)
            _t.linear_bwd(a.h1[li], p[w + "attn_qkv.weight"], a.dqkv, a.dh,
                          g(w + "attn_qkv.weight"), None, False, th, acc)
            _t.rmsnorm_bwd(a.res[li], p[w + "attn_norm.weight"], a.rstd1[li], a.dh, a.dres,
                           g(w + "attn_norm.weight"), th)
        if g("token_embd.weight") is not None:
            _t.embedding_bwd(a.ids, a.dres, g("token_embd.weight"), th)
