"""Export a trained model (and its tokenizer) as a GGUF file of the standard `llama`
architecture: the keys and tensor names llama.cpp's converter writes, so `pylm.load` and
llama.cpp both run it.

Training's fused projections are split back: attn_qkv -> attn_q, attn_k, attn_v and
ffn_gate_up -> ffn_gate, ffn_up. RoPE needs no permutation: training already rotates adjacent
pairs, GGUF llama's convention ("normal" RoPE).

Weight types: "F32", "F16", or a block quantization of pylm.ops.quantize ("Q8_0", "Q4_0",
"Q4_K", ...). Norm weights always stay F32 (llama.cpp requires it), and a matrix whose
row length is not a multiple of the block size falls back to F16, as llama.cpp's quantizer does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..gguf_write import write
from ..ops import quantize
from .model import LlamaModel

_FILE_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
              "Q2_K": 10, "Q3_K": 11, "Q4_K": 15, "Q5_K": 17, "Q6_K": 18}


_EMPTY_DTYPES = {"token_type": np.int32, "scores": np.float32}


def _block_size(qtype: str) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    return GGML_QUANT_SIZES[GGMLQuantizationType[qtype]][0]


def gguf_tensors(model: LlamaModel, dtype: str = "F32") -> dict:
    """name -> array (F32 / F16) or (array, qtype) in llama.cpp's names and layouts."""
    cfg, p = model.config, model.params
    dtype = dtype.upper()
    if dtype not in _FILE_TYPE:
        raise ValueError(f"export: unsupported dtype {dtype!r} (one of {', '.join(_FILE_TYPE)})")
    block = 1 if dtype in ("F32", "F16") else _block_size(dtype)

    def mat(w: np.ndarray):
        w = np.ascontiguousarray(w, dtype=np.float32)
        if dtype == "F32":
            return w
        if dtype == "F16" or w.shape[-1] % block:
            return w.astype(np.float16)
        return (quantize(w, dtype), dtype)  # pylm's native quantizer: raw GGUF blocks

    H, Hkv, D, F = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn
    out = {"token_embd.weight": mat(p["token_embd.weight"])}
    for i in range(cfg.n_layers):
        b = f"blk.{i}."
        qkv, gu = p[b + "attn_qkv.weight"], p[b + "ffn_gate_up.weight"]
        out[b + "attn_norm.weight"] = p[b + "attn_norm.weight"].copy()
        out[b + "attn_q.weight"] = mat(qkv[: H * D])
        out[b + "attn_k.weight"] = mat(qkv[H * D:(H + Hkv) * D])
        out[b + "attn_v.weight"] = mat(qkv[(H + Hkv) * D:])
        out[b + "attn_output.weight"] = mat(p[b + "attn_output.weight"])
        out[b + "ffn_norm.weight"] = p[b + "ffn_norm.weight"].copy()
        out[b + "ffn_gate.weight"] = mat(gu[:F])
        out[b + "ffn_up.weight"] = mat(gu[F:])
        out[b + "ffn_down.weight"] = mat(p[b + "ffn_down.weight"])
    out["output_norm.weight"] = p["output_norm.weight"].copy()
    if not cfg.tie_embeddings:
        out["output.weight"] = mat(p["output.weight"])
    return out


def gguf_metadata(model: LlamaModel, tokenizer=None, dtype: str = "F32",
                  name: str = "pylm-llama") -> dict:
    cfg = model.config
    u32 = np.uint32
    meta = {
        "general.architecture": "llama",
        "general.name": name,
        "general.file_type": u32(_FILE_TYPE[dtype.upper()]),
        "general.quantization_version": u32(2),  # ggml's block formats (as llama.cpp writes)
        "llama.vocab_size": u32(cfg.vocab),
        "llama.context_length": u32(cfg.context),
        "llama.embedding_length": u32(cfg.d_model),
        "llama.block_count": u32(cfg.n_layers),
        "llama.feed_forward_length": u32(cfg.ffn),
        "llama.attention.head_count": u32(cfg.n_heads),
        "llama.attention.head_count_kv": u32(cfg.n_kv_heads),
        "llama.rope.dimension_count": u32(cfg.head_dim),
        "llama.rope.freq_base": np.float32(cfg.rope_base),
        "llama.attention.layer_norm_rms_epsilon": np.float32(cfg.eps),
    }
    if tokenizer is not None:
        tmeta = dict(tokenizer.to_gguf_metadata())
        n_tok = len(tmeta.get("tokenizer.ggml.tokens", []))
        if n_tok > cfg.vocab:
            raise ValueError(f"export: the tokenizer has {n_tok} tokens but the model's vocab "
                             f"is {cfg.vocab}")
        for k, v in tmeta.items():
            if k.endswith("_token_id") and isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                v = u32(v)
            elif isinstance(v, (list, tuple)) and not v:  # typed empty arrays (no merges)
                v = np.array([], dtype=_EMPTY_DTYPES.get(k.rsplit(".", 1)[-1], str))
            meta[k] = v
    return meta


def export_gguf(model: LlamaModel, path: str | os.PathLike, tokenizer=None, dtype: str = "F32",
                name: str = "pylm-llama") -> Path:
    """Writes model (+ tokenizer) to path as a llama GGUF; returns the path."""
    meta = gguf_metadata(model, tokenizer, dtype, name)
    return write(path, meta, gguf_tensors(model, dtype))
