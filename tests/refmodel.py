"""An independent numpy reference forward pass for the GGUF models pylm runs.

Written from the architectures' definitions (HF transformers / llama.cpp graphs), with weights
dequantized by the `gguf` package — it shares no code with pylm's engine, so it is an oracle.
Float32 activations with float64 accumulation in the norms and softmax.

    ref = RefModel("SmolLM2-135M-Instruct.Q4_1.gguf")
    logits = ref.forward([504, 3575, 282, 4649, 314])   # (T, V) float32
"""

from __future__ import annotations

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def _field(reader: GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


class RefModel:
    def __init__(self, path):
        self.r = GGUFReader(str(path))
        self.arch = _field(self.r, "general.architecture")
        a = self.arch
        self.n_embd = int(_field(self.r, f"{a}.embedding_length"))
        self.n_layer = int(_field(self.r, f"{a}.block_count"))
        self.n_head = int(_field(self.r, f"{a}.attention.head_count"))
        self.n_head_kv = int(_field(self.r, f"{a}.attention.head_count_kv", self.n_head))
        self.eps = float(_field(self.r, f"{a}.attention.layer_norm_rms_epsilon"))
        self.head_dim = int(_field(self.r, f"{a}.attention.key_length", self.n_embd // self.n_head))
        self.rope_base = float(_field(self.r, f"{a}.rope.freq_base", 10000.0))
        self.window = int(_field(self.r, f"{a}.attention.sliding_window", 0) or 0)
        self._t = {t.name: t for t in self.r.tensors}
        self._cache: dict[str, np.ndarray] = {}
        if a not in ("llama", "gemma3"):
            raise ValueError(f"reference model: unsupported architecture {a!r}")

    def w(self, name: str) -> np.ndarray:
        """Dequantized tensor, numpy shape (rows, cols) = (out, in) for matrices."""
        if name not in self._cache:
            t = self._t[name]
            arr = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
            shape = tuple(int(s) for s in reversed(list(t.shape)))
            self._cache[name] = arr.reshape(shape)
        return self._cache[name]

    def has(self, name: str) -> bool:
        return name in self._t

    def rmsnorm(self, x, w):
        x64 = x.astype(np.float64)
        y = x64 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + self.eps)
        return (y * w).astype(np.float32)

    @staticmethod
    def rope(x, pos, base, neox):
        # x: (T, H, D); "normal" rotates pairs (2i, 2i+1); NeoX rotates (i, i + D/2).
        T, H, D = x.shape
        inv = base ** (-np.arange(0, D, 2, dtype=np.float64) / D)          # (D/2,)
        ang = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]     # (T, D/2)
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x = x.astype(np.float64)
        if neox:
            a, b = x[..., : D // 2], x[..., D // 2:]
            out = np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
        else:
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2] = a * cos - b * sin
            out[..., 1::2] = a * sin + b * cos
        return out.astype(np.float32)

    def attention(self, q, k, v, scale, window):
        # q: (T, Hq, D), k/v: (T, Hkv, D); causal, optional sliding window (last `window` keys).
        T, Hq, D = q.shape
        g = Hq // k.shape[1]
        out = np.empty_like(q)
        i = np.arange(T)[:, None]
        j = np.arange(T)[None, :]
        mask = j <= i
        if window:
            mask &= (i - j) < window
        for h in range(Hq):
            s = (q[:, h, :].astype(np.float64) @ k[:, h // g, :].astype(np.float64).T) * scale
            s = np.where(mask, s, -np.inf)
            s -= s.max(axis=-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=-1, keepdims=True)
            out[:, h, :] = (p @ v[:, h // g, :].astype(np.float64)).astype(np.float32)
        return out

    def forward(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        pos = np.arange(T)
        gemma = self.arch == "gemma3"
        x = self.w("token_embd.weight")[ids].copy()
        if gemma:
            x *= np.float32(np.sqrt(self.n_embd))
        Hq, Hkv, D = self.n_head, self.n_head_kv, self.head_dim
        for il in range(self.n_layer):
            p = f"blk.{il}."
            h = self.rmsnorm(x, self.w(p + "attn_norm.weight"))
            q = (h @ self.w(p + "attn_q.weight").T).reshape(T, Hq, D)
            k = (h @ self.w(p + "attn_k.weight").T).reshape(T, Hkv, D)
            v = (h @ self.w(p + "attn_v.weight").T).reshape(T, Hkv, D)
            if gemma:
                q = self.rmsnorm(q, self.w(p + "attn_q_norm.weight"))
                k = self.rmsnorm(k, self.w(p + "attn_k_norm.weight"))
                is_local = (il % 6) < 5  # five sliding-window layers per global one
                base = 10000.0 if is_local else self.rope_base
                window = self.window if is_local else 0
                q = self.rope(q, pos, base, neox=True)
                k = self.rope(k, pos, base, neox=True)
                scale = 1.0 / np.sqrt(D)
            else:
                q = self.rope(q, pos, self.rope_base, neox=False)
                k = self.rope(k, pos, self.rope_base, neox=False)
                window = 0
                scale = 1.0 / np.sqrt(D)
            a = self.attention(q, k, v, scale, window).reshape(T, Hq * D)
            a = a @ self.w(p + "attn_output.weight").T
            if gemma:
                a = self.rmsnorm(a, self.w(p + "post_attention_norm.weight"))
            x = x + a
            h = self.rmsnorm(x, self.w(p + "ffn_norm.weight"))
            gate = h @ self.w(p + "ffn_gate.weight").T
            up = h @ self.w(p + "ffn_up.weight").T
            if gemma:
                g64 = gate.astype(np.float64)
                act = 0.5 * g64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (g64 + 0.044715 * g64**3)))
            else:
                g64 = gate.astype(np.float64)
                act = g64 / (1 + np.exp(-g64))
            f = (act * up).astype(np.float32) @ self.w(p + "ffn_down.weight").T
            if gemma:
                f = self.rmsnorm(f, self.w(p + "post_ffw_norm.weight"))
            x = x + f
        x = self.rmsnorm(x, self.w("output_norm.weight"))
        out_w = self.w("output.weight") if self.has("output.weight") else self.w("token_embd.weight")
        return x @ out_w.T
