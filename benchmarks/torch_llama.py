"""The training benchmarks' PyTorch twin of pylm.train.LlamaModel (bench_train.py on the CPU,
bench_train_cuda.py on the GPU): the same parameters by name, RMSNorm, RoPE on (even, odd)
pairs, causal attention with grouped-query heads, SwiGLU, an untied output head, mean
cross-entropy; plus the flop count both benchmarks report."""

from __future__ import annotations


def model_flops(cfg, B: int, T: int) -> float:
    """Training flops per step: 3 x (forward matmuls + causal attention scores and mixing)."""
    C, F, L, V = cfg.d_model, cfg.ffn, cfg.n_layers, cfg.vocab
    mat = L * (cfg.qkv_dim * C + C * C + 3 * C * F) + V * C
    attn = L * 2 * 2 * cfg.n_heads * cfg.head_dim * (T * (T + 1) / 2)  # QK^T and PV, per seq
    return 3 * (2 * mat * B * T + attn * B)


class TorchLlama:
    """params: name -> numpy array (pylm's ParamBuffer views), copied to `device`."""

    def __init__(self, torch, cfg, params, device: str = "cpu"):
        self.torch, self.cfg = torch, cfg
        self.P = {n: torch.nn.Parameter(torch.tensor(params[n], device=device)) for n in params}
        T, D = cfg.context, cfg.head_dim
        i = torch.arange(D // 2, dtype=torch.float64)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * cfg.rope_base ** (-2.0 * i / D)
        self.cos = torch.cos(ang).float()[None, :, None].to(device)
        self.sin = torch.sin(ang).float()[None, :, None].to(device)

    def rope(self, x):
        x0, x1 = x[..., 0::2], x[..., 1::2]
        c, s = self.cos[:, : x.shape[1]], self.sin[:, : x.shape[1]]
        return self.torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2).type_as(x)

    def loss(self, ids, tg):
        """ids, tg: int64 tensors (B, T) on the model's device -> the mean loss."""
        torch, cfg, P = self.torch, self.cfg, self.P
        F_ = torch.nn.functional
        B, T = ids.shape
        H, Hkv, D, F, C = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn, cfg.d_model
        x = F_.embedding(ids, P["token_embd.weight"])
        for li in range(cfg.n_layers):
            w = f"blk.{li}."
            h = F_.rms_norm(x, (C,), P[w + "attn_norm.weight"], cfg.eps)
            qkv = F_.linear(h, P[w + "attn_qkv.weight"]).view(B, T, H + 2 * Hkv, D)
            q, k, v = self.rope(qkv[:, :, :H]), self.rope(qkv[:, :, H:H + Hkv]), qkv[:, :, H + Hkv:]
            a = F_.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                v.transpose(1, 2), is_causal=True,
                                                enable_gqa=Hkv != H)
            x = x + F_.linear(a.transpose(1, 2).reshape(B, T, H * D), P[w + "attn_output.weight"])
            gu = F_.linear(F_.rms_norm(x, (C,), P[w + "ffn_norm.weight"], cfg.eps),
                           P[w + "ffn_gate_up.weight"])
            x = x + F_.linear(F_.silu(gu[..., :F]) * gu[..., F:], P[w + "ffn_down.weight"])
        z = F_.linear(F_.rms_norm(x, (C,), P["output_norm.weight"], cfg.eps), P["output.weight"])
        return F_.cross_entropy(z.view(B * T, -1).float(), tg.view(-1))
