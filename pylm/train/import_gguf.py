"""Load a `llama`-architecture GGUF (e.g. SmolLM2) as trainable float32 parameters, for
fine-tuning: quantized tensors are dequantized, q/k/v and gate/up are fused the way training
keeps them. The GGUF's weights are already in llama.cpp's RoPE layout (adjacent pairs), which
is the rotation training uses, so no permutation is needed either way.

>>> cfg, params, tok = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", context=256)  # doctest: +SKIP
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import PylmError
from ..gguf import GGUFFile
from .config import LlamaConfig
from .params import ParamBuffer


def _f32(f: GGUFFile, name: str) -> np.ndarray:
    from ..ops import dequantize

    info = f.tensors.get(name)
    if info is None:
        raise PylmError(f"{f.path}: missing tensor {name!r}")
    return dequantize(f.tensor_data(name), int(info.qtype_id), tuple(info.shape))


def load_gguf(path: str | os.PathLike, context: int | None = None):
    """(LlamaConfig, ParamBuffer, tokenizer or None) from a llama GGUF.

    Args:
        context: the training sequence length (default: the model's context_length, capped
            at 2048).
    """
    f = GGUFFile(path)
    g = f.metadata.get
    arch = g("general.architecture")
    if arch != "llama":
        raise PylmError(f"{path}: can only fine-tune the llama architecture, got {arch!r}")
    n_head = int(g("llama.attention.head_count"))
    d_model = int(g("llama.embedding_length"))
    head_dim = d_model // n_head
    if int(g("llama.rope.dimension_count", head_dim)) != head_dim:
        raise PylmError(f"{path}: partial RoPE (rope.dimension_count != head_dim) is not supported")
    if int(g("llama.attention.key_length", head_dim)) != head_dim:
        raise PylmError(f"{path}: attention.key_length != embedding_length / head_count")
    emb = f.tensors["token_embd.weight"]
    cfg = LlamaConfig(
        vocab=int(emb.ne[1]), d_model=d_model, n_layers=int(g("llama.block_count")),
        n_heads=n_head, n_kv_heads=int(g("llama.attention.head_count_kv", n_head)),
        ffn=int(g("llama.feed_forward_length")),
        context=int(context or min(int(g("llama.context_length", 2048)), 2048)),
        rope_base=float(g("llama.rope.freq_base", 10000.0)),
        # stored as float32: 1e-5 reads back as 9.9999997e-06; 7 digits give the written value
        eps=float(f'{float(g("llama.attention.layer_norm_rms_epsilon", 1e-5)):.7g}'),
        tie_embeddings="output.weight" not in f.tensors)
    p = ParamBuffer(cfg)
    p["token_embd.weight"][...] = _f32(f, "token_embd.weight")
    for i in range(cfg.n_layers):
        b = f"blk.{i}."
        p[b + "attn_qkv.weight"][...] = np.concatenate(
            [_f32(f, b + "attn_q.weight"), _f32(f, b + "attn_k.weight"), _f32(f, b + "attn_v.weight")])
        p[b + "attn_output.weight"][...] = _f32(f, b + "attn_output.weight")
        p[b + "ffn_gate_up.weight"][...] = np.concatenate(
            [_f32(f, b + "ffn_gate.weight"), _f32(f, b + "ffn_up.weight")])
        p[b + "ffn_down.weight"][...] = _f32(f, b + "ffn_down.weight")
        p[b + "attn_norm.weight"][...] = _f32(f, b + "attn_norm.weight")
        p[b + "ffn_norm.weight"][...] = _f32(f, b + "ffn_norm.weight")
    p["output_norm.weight"][...] = _f32(f, "output_norm.weight")
    if not cfg.tie_embeddings:
        p["output.weight"][...] = _f32(f, "output.weight")
    tok = None
    if "tokenizer.ggml.tokens" in f.metadata:
        from ..tokenizer import Tokenizer

        tok = Tokenizer.from_gguf(path)
    return cfg, p, tok
