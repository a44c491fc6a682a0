"""Architectures: GGUF metadata and tensor names -> the native engine's config and weight table.

Each architecture is one function below; adding a Qwen2/Qwen3/Phi-3-style model means writing
one more (biases, QK-norm, fused projections map onto the same engine flags).
"""

from __future__ import annotations

import math
from typing import Callable

from .errors import PylmError

ROPE_NORMAL, ROPE_NEOX = 0, 2
ACT_SILU, ACT_GELU_TANH = 0, 1


class UnsupportedArchitectureError(PylmError, ValueError):
    """The GGUF file's general.architecture is not one pylm can run."""


def _weight(f, name: str, required: bool = True):
    """(uint8 view, ggml type id, ne0, ne1) for the engine, or None when absent and optional."""
    info = f.tensors.get(name)
    if info is None:
        if required:
            raise PylmError(f"{f.path}: missing tensor {name!r}")
        return None
    ne0 = int(info.ne[0])
    ne1 = 1
    for d in info.ne[1:]:
        ne1 *= int(d)
    return (f.tensor_data(name), int(info.qtype_id), ne0, ne1)


def _common(f, arch: str) -> dict:
    g = f.metadata.get
    n_embd = int(g(f"{arch}.embedding_length"))
    n_head = int(g(f"{arch}.attention.head_count"))
    head_dim = int(g(f"{arch}.attention.key_length", n_embd // n_head))
    tok = f.tensors.get("token_embd.weight")
    if tok is None:
        raise PylmError(f"{f.path}: missing tensor 'token_embd.weight'")
    n_vocab = int(tok.ne[1])
    return {
        "arch": arch,
        "n_embd": n_embd,
        "n_layer": int(g(f"{arch}.block_count")),
        "n_head": n_head,
        "n_head_kv": int(g(f"{arch}.attention.head_count_kv", n_head)),
        "head_dim": head_dim,
        "n_ff": int(g(f"{arch}.feed_forward_length")),
        "n_vocab": n_vocab,
        "n_ctx_train": int(g(f"{arch}.context_length", 2048)),
        "eps": float(g(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_dims": int(g(f"{arch}.rope.dimension_count", head_dim)),
        "rope_freq_scale": 1.0 / float(g(f"{arch}.rope.scaling.factor", 1.0) or 1.0),
        "rope_base": float(g(f"{arch}.rope.freq_base", 10000.0)),
        "window": 0,
        "embed_scale": 1.0,
        "attn_scale": 0.0,
        "attn_softcap": 0.0,
        "final_softcap": 0.0,
    }


def _layer(f, il: int, extra: dict) -> dict:
    p = f"blk.{il}."
    w = {
        "attn_norm": _weight(f, p + "attn_norm.weight"),
        "wq": _weight(f, p + "attn_q.weight"),
        "wk": _weight(f, p + "attn_k.weight"),
        "wv": _weight(f, p + "attn_v.weight"),
        "wo": _weight(f, p + "attn_output.weight"),
        "bq": _weight(f, p + "attn_q.bias", False),
        "bk": _weight(f, p + "attn_k.bias", False),
        "bv": _weight(f, p + "attn_v.bias", False),
        "q_norm": _weight(f, p + "attn_q_norm.weight", False),
        "k_norm": _weight(f, p + "attn_k_norm.weight", False),
        "post_attn_norm": _weight(f, p + "post_attention_norm.weight", False),
        "ffn_norm": _weight(f, p + "ffn_norm.weight"),
        "w_gate": _weight(f, p + "ffn_gate.weight"),
        "w_up": _weight(f, p + "ffn_up.weight"),
        "w_down": _weight(f, p + "ffn_down.weight"),
        "post_ffn_norm": _weight(f, p + "post_ffw_norm.weight", False),
    }
    w.update(extra)
    return {k: v for k, v in w.items() if v is not None}


def _globals(f) -> dict:
    out = _weight(f, "output.weight", False) or _weight(f, "token_embd.weight")
    return {
        "tok_embd": _weight(f, "token_embd.weight"),
        "output_norm": _weight(f, "output_norm.weight"),
        "output": out,
    }


def llama(f) -> tuple[dict, dict]:
    """Llama family (SmolLM2, Llama 2/3, TinyLlama): RMSNorm, RoPE on adjacent pairs, SwiGLU."""
    cfg = _common(f, "llama")
    cfg.update(rope_mode=ROPE_NORMAL, act=ACT_SILU)
    layers = [_layer(f, il, {"sliding": False, "rope_base": cfg["rope_base"]})
              for il in range(cfg["n_layer"])]
    return cfg, {**_globals(f), "layers": layers}


def gemma3(f) -> tuple[dict, dict]:
    """Gemma 3: 5 sliding-window layers per global one, local/global RoPE bases, QK-norm,
    post-attention/post-FFN norms, GeGLU, embeddings scaled by sqrt(d_model)."""
    cfg = _common(f, "gemma3")
    g = f.metadata.get
    cfg.update(
        rope_mode=ROPE_NEOX,
        act=ACT_GELU_TANH,
        window=int(g("gemma3.attention.sliding_window", 0) or 0),
        embed_scale=math.sqrt(cfg["n_embd"]),
        attn_scale=1.0 / math.sqrt(cfg["head_dim"]),
    )
    # llama.cpp: local layers use RoPE base 10000; every 6th layer (il % 6 == 5) is global.
    pattern = 6
    layers = []
    for il in range(cfg["n_layer"]):
        sliding = (il % pattern) < pattern - 1
        base = 10000.0 if sliding else cfg["rope_base"]
        layers.append(_layer(f, il, {"sliding": sliding, "rope_base": base}))
    return cfg, {**_globals(f), "layers": layers}


ARCHITECTURES: dict[str, Callable] = {"llama": llama, "gemma3": gemma3}


def build(f) -> tuple[dict, dict]:
    """(config, weights) for the engine from an open pylm.gguf.GGUFFile."""
    arch = f.metadata.get("general.architecture")
    fn = ARCHITECTURES.get(arch)
    if fn is None:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {arch!r} in {f.path} (supported: {', '.join(ARCHITECTURES)})")
    return fn(f)
