"""LlamaConfig: the hyperparameters of a Llama-architecture decoder (the architecture the
inference engine runs: RMSNorm, RoPE on adjacent pairs, grouped-query attention, SwiGLU)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class LlamaConfig:
    """Model shape. ``n_kv_heads`` defaults to ``n_heads`` (no grouping).

    >>> LlamaConfig(vocab=4096, d_model=256, n_layers=4, n_heads=4, ffn=688).head_dim
    64
    """

    vocab: int = 4096
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    ffn: int = 688
    context: int = 256
    rope_base: float = 10000.0
    eps: float = 1e-5
    tie_embeddings: bool = False
    init_std: float = 0.02

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        for name in ("vocab", "d_model", "n_layers", "n_heads", "n_kv_heads", "ffn", "context"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"LlamaConfig: {name} must be a positive int, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"LlamaConfig: d_model={self.d_model} is not a multiple of "
                             f"n_heads={self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig: head_dim={self.head_dim} must be even (RoPE pairs)")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"LlamaConfig: n_heads={self.n_heads} is not a multiple of "
                             f"n_kv_heads={self.n_kv_heads}")
        if not (self.eps > 0 and self.rope_base > 0):
            raise ValueError(f"LlamaConfig: eps={self.eps} and rope_base={self.rope_base} must be > 0")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def qkv_dim(self) -> int:
        """Rows of the fused q/k/v projection: (n_heads + 2 n_kv_heads) * head_dim."""
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LlamaConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
