"""The kernel cases of ``pylm bench-kernels``: inputs, the pylm call, a numpy equivalent, and
the work (bytes moved, flops) that turns a time into GB/s and GFLOP/s.

Shapes are those of the models pylm targets: SmolLM2-135M (C=576, FFN 1536, V=49152, 9 query /
3 KV heads of D=64) and Gemma-3-270M (C=640, FFN 2048; its Q4_K/Q6_K tensors are ffn_down,
(N, K) = (640, 2048), since K-quants need K % 256 == 0, and its Q5_0 ones ffn_gate/up (2048, 640)).
Weight shapes are numpy order (N, K): N rows (output features) of K values (the block axis).

Op contracts written against (pylm.ops): dequantize(raw, qtype, shape), quantize(x, qtype),
qmatmul(x, w_raw, qtype, shape) -> x @ W.T, matmul(a, b) -> a @ b, rmsnorm(x, weight, eps),
rope(x, positions, base, mode), softmax(x), silu(x), gelu(x), swiglu(gate, up), geglu(gate, up),
attention(q, k, v, causal=True) with q (T, Hq, D), k and v (S, Hkv, D). qtype is a GGML name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

F32 = 4  # bytes


@dataclass
class Case:
    """One benchmark: ``setup(rng)`` builds inputs once (shared by every ISA); ``run(inp)`` is the
    timed pylm call; ``ref(inp)`` the numpy equivalent (None: numpy has no such op)."""

    name: str
    kernel: str  # the pylm.ops function
    setup: Callable[[np.random.Generator], dict]
    run: Callable[[dict], Any]
    ref: Callable[[dict], Any] | None = None
    bytes: Callable[[dict], float | None] = lambda inp: None
    flops: Callable[[dict], float | None] = lambda inp: None
    quick: bool = True  # part of --quick
    check: Callable[[dict], Any] | None = None  # a pylm call whose output ref(inp) should match
    exact: bool = False  # compare bytes (quantize) instead of values


def _ops():
    import pylm.ops

    return pylm.ops


def _qt(name: str):
    import gguf

    return gguf.GGMLQuantizationType[name]


# Byte offsets of the fp16 super-block scales (d, dmin) inside each K-quant block: random bytes
# there would give inf/nan or absurd magnitudes, so they get sane values instead.
_K_SCALE_OFFSETS = {
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
}


def make_weight(qtype: str, shape: tuple, rng: np.random.Generator) -> tuple:
    """A quantized (N, K) weight: (raw uint8 (N, K / block * type_size), its float32 values)."""
    import gguf
    from gguf import quants

    n, k = shape
    block, tsize = gguf.GGML_QUANT_SIZES[_qt(qtype)]
    if k % block:
        raise ValueError(f"{qtype}: K={k} is not a multiple of the block size {block}")
    if qtype in _K_SCALE_OFFSETS:
        raw = rng.integers(0, 256, size=(n, k // block, tsize), dtype=np.uint8)
        for off in _K_SCALE_OFFSETS[qtype]:
            d = rng.uniform(2e-4, 2e-3, size=(n, k // block)).astype(np.float16)
            raw[:, :, off : off + 2] = d.view(np.uint8).reshape(n, k // block, 2)
        raw = raw.reshape(n, k // block * tsize)
    else:
        raw = quants.quantize((rng.standard_normal(shape) * 0.05).astype(np.float32), _qt(qtype))
    return np.ascontiguousarray(raw), quants.dequantize(raw, _qt(qtype)).astype(np.float32)


def _randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- numpy references ----


def np_rmsnorm(x, w, eps):
    return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)) * w


def np_rope_neox(x, pos, base):
    # x is (T, H, D); rotates (x[i], x[i + D/2]) pairs by pos * base^(-2i/D).
    half = x.shape[-1] // 2
    inv = base ** (-np.arange(half, dtype=np.float32) * 2.0 / x.shape[-1])
    ang = (pos.astype(np.float32)[:, None] * inv[None, :])[:, None, :]  # (T, 1, D/2)
    c, s = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_silu(x):
    return x / (1.0 + np.exp(-x))


def np_gelu(x):  # tanh approximation (Gemma's gelu_pytorch_tanh)
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def np_attention(q, k, v, causal=True):
    # q is (T, Hq, D), k and v are (S, Hkv, D); query t sits at position S - T + t.
    t, hq, d = q.shape
    s, hkv, _ = k.shape
    kk = np.repeat(k, hq // hkv, axis=1).transpose(1, 2, 0)  # (Hq, D, S)
    vv = np.repeat(v, hq // hkv, axis=1).transpose(1, 0, 2)  # (Hq, S, D)
    att = (q.transpose(1, 0, 2) @ kk) * np.float32(1.0 / np.sqrt(d))  # (Hq, T, S)
    if causal:
        att[:, np.arange(s)[None, :] > np.arange(t)[:, None] + (s - t)] = -np.inf
    return (np_softmax(att) @ vv).transpose(1, 0, 2)  # (T, Hq, D)


def attention_pairs(t: int, s: int, causal: bool = True) -> int:
    """(query, key) pairs attention computes: all T*S, or the causal lower-right triangle."""
    return sum(s - t + i + 1 for i in range(t)) if causal else t * s


# ---- cases ----


def _dequant_cases():
    out = []
    for qtype, shape in [
        ("Q4_0", (1536, 576)),
        ("Q4_1", (1536, 576)),
        ("Q8_0", (1536, 576)),
        ("Q4_K", (640, 2048)),
        ("Q6_K", (640, 2048)),
    ]:

        def setup(rng, qtype=qtype, shape=shape):
            raw, _ = make_weight(qtype, shape, rng)
            return {"raw": raw, "qtype": qtype, "shape": shape}

        out.append(
            Case(
                f"dequantize {qtype} {shape[0]}x{shape[1]}",
                "dequantize",
                setup,
                run=lambda i: _ops().dequantize(i["raw"], i["qtype"], i["shape"]),
                ref=lambda i: _gguf_dequant(i["raw"], i["qtype"]),
                bytes=lambda i: i["raw"].nbytes + F32 * i["shape"][0] * i["shape"][1],
                quick=qtype in ("Q4_1", "Q4_K"),
            )
        )
    return out


def _gguf_dequant(raw, qtype):
    from gguf import quants

    return quants.dequantize(raw, _qt(qtype))


def _qmatmul_case(qtype, shape, m, quick, cold_bytes=0):
    n, k = shape

    def setup(rng):
        raw, w = make_weight(qtype, shape, rng)
        inp = {"raw": raw, "w": w, "x": _randn(rng, m, k)}
        if cold_bytes:
            # Out-of-cache matvec: one weight matrix fits in this CPU's last-level cache, so
            # timing the same one again measures cache bandwidth, not DRAM. Rotate through
            # copies (identical bytes, distinct memory) whose total, like the DRAM probe's
            # buffer, is beyond the LLC: each call reads a matrix evicted since its last use.
            copies = max(2, -(-cold_bytes // raw.nbytes))
            inp["ring"] = [raw.copy() for _ in range(copies)]
            inp["next"] = itertools.cycle(range(copies)).__next__
        return inp

    if cold_bytes:

        def run(i):
            return _ops().qmatmul(i["x"], i["ring"][i["next"]()], qtype, shape)
    else:

        def run(i):
            return _ops().qmatmul(i["x"], i["raw"], qtype, shape)

    tag = " cold" if cold_bytes else ""
    return Case(
        f"qmatmul {qtype} M={m} {n}x{k}{tag}",
        "qmatmul",
        setup,
        run=run,
        ref=lambda i: i["x"] @ i["w"].T,
        check=lambda i: _ops().qmatmul(i["x"], i["raw"], qtype, shape),
        bytes=lambda i: i["raw"].nbytes + F32 * (m * k + m * n),
        flops=lambda i: 2.0 * m * n * k,
        quick=quick,
    )


def _qmatmul_cases(cold_bytes):
    out = []
    for qtype in ("Q4_1", "Q8_0"):
        for shape in ((1536, 576), (576, 1536), (49152, 576)):
            out.append(_qmatmul_case(qtype, shape, 1, quick=shape == (1536, 576)))
    for qtype, shape in (("Q4_K", (640, 2048)), ("Q6_K", (640, 2048)), ("Q5_0", (2048, 640))):
        out.append(_qmatmul_case(qtype, shape, 1, quick=qtype == "Q4_K"))
    # The headline: an out-of-cache matvec should reach >= 0.8 of the measured read bandwidth.
    out.append(_qmatmul_case("Q8_0", (49152, 576), 1, quick=True, cold_bytes=cold_bytes))
    for qtype, shape in (
        ("Q4_1", (1536, 576)),
        ("Q8_0", (1536, 576)),
        ("Q4_K", (640, 2048)),
        ("Q6_K", (640, 2048)),
        ("Q5_0", (2048, 640)),
    ):
        out.append(_qmatmul_case(qtype, shape, 512, quick=qtype in ("Q4_1", "Q4_K")))
    return out


def _matmul_cases():
    out = []
    for m, k, n in ((512, 512, 512), (1, 576, 1536)):
        out.append(
            Case(
                f"matmul f32 {m}x{k} @ {k}x{n}",
                "matmul",
                lambda rng, m=m, k=k, n=n: {"a": _randn(rng, m, k), "b": _randn(rng, k, n)},
                run=lambda i: _ops().matmul(i["a"], i["b"]),
                ref=lambda i: i["a"] @ i["b"],
                bytes=lambda i: (
                    i["a"].nbytes + i["b"].nbytes + F32 * i["a"].shape[0] * i["b"].shape[1]
                ),
                flops=lambda i, m=m, k=k, n=n: 2.0 * m * n * k,
            )
        )
    return out


def _nn_cases():
    def unary(name, ref, shape, quick=True):
        return Case(
            f"{name} {'x'.join(map(str, shape))}",
            name,
            lambda rng: {"x": _randn(rng, *shape)},
            run=lambda i: getattr(_ops(), name)(i["x"]),
            ref=lambda i: ref(i["x"]),
            bytes=lambda i: 2 * i["x"].nbytes,
            quick=quick,
        )

    def gated(name, act, shape):
        return Case(
            f"{name} {'x'.join(map(str, shape))}",
            name,
            lambda rng: {"g": _randn(rng, *shape), "u": _randn(rng, *shape)},
            run=lambda i: getattr(_ops(), name)(i["g"], i["u"]),
            ref=lambda i: act(i["g"]) * i["u"],
            bytes=lambda i: 3 * i["g"].nbytes,
        )

    rope_shape = (512, 9, 64)
    return [
        Case(
            "rmsnorm 512x576",
            "rmsnorm",
            lambda rng: {"x": _randn(rng, 512, 576), "w": _randn(rng, 576)},
            run=lambda i: _ops().rmsnorm(i["x"], i["w"], 1e-5),
            ref=lambda i: np_rmsnorm(i["x"], i["w"], 1e-5),
            bytes=lambda i: 2 * i["x"].nbytes + i["w"].nbytes,
        ),
        Case(
            "rope neox 512x9x64",
            "rope",
            lambda rng: {
                "x": _randn(rng, *rope_shape),
                "pos": np.arange(rope_shape[0], dtype=np.int32),
            },
            run=lambda i: _ops().rope(i["x"], i["pos"], 10000.0, "neox"),
            ref=lambda i: np_rope_neox(i["x"], i["pos"], 10000.0),
            bytes=lambda i: 2 * i["x"].nbytes + i["pos"].nbytes,
        ),
        unary("softmax", np_softmax, (16, 49152)),
        unary("silu", np_silu, (512, 1536)),
        unary("gelu", np_gelu, (512, 2048), quick=False),
        gated("swiglu", np_silu, (512, 1536)),
        gated("geglu", np_gelu, (512, 2048)),
    ]


def _attention_cases():
    out = []
    hq, hkv, d = 9, 3, 64  # SmolLM2: 9 query heads sharing 3 KV heads of 64
    for t, s in ((512, 512), (1, 2048)):

        def setup(rng, t=t, s=s):
            return {
                "q": _randn(rng, t, hq, d),
                "k": _randn(rng, s, hkv, d),
                "v": _randn(rng, s, hkv, d),
            }

        pairs = attention_pairs(t, s)
        out.append(
            Case(
                f"attention {'prefill' if t > 1 else 'decode'} T={t} S={s} H={hq}/{hkv} D={d}",
                "attention",
                setup,
                run=lambda i: _ops().attention(i["q"], i["k"], i["v"], causal=True),
                ref=lambda i: np_attention(i["q"], i["k"], i["v"], causal=True),
                # QK^T and PV: 2 flops per multiply-add, D of them per (query, key) pair and head.
                flops=lambda i, pairs=pairs: 4.0 * d * hq * pairs,
                bytes=lambda i: i["q"].nbytes * 2 + i["k"].nbytes + i["v"].nbytes,
            )
        )
    return out


def _quantize_cases():
    out = []
    for qtype in ("Q8_0", "Q4_0"):

        def setup(rng, qtype=qtype):
            return {"x": _randn(rng, 1536, 576, scale=0.05), "qtype": qtype}

        out.append(
            Case(
                f"quantize {qtype} 1536x576",
                "quantize",
                setup,
                run=lambda i: _ops().quantize(i["x"], i["qtype"]),
                ref=lambda i: _gguf_quant(i["x"], i["qtype"]),
                bytes=lambda i: i["x"].nbytes * (1 + _bytes_per_f32(i["qtype"])),
                exact=True,
            )
        )
    return out


def _gguf_quant(x, qtype):
    from gguf import quants

    return quants.quantize(x, _qt(qtype))


def _bytes_per_f32(qtype):
    import gguf

    block, tsize = gguf.GGML_QUANT_SIZES[_qt(qtype)]
    return tsize / (block * F32)


def all_cases(cold_bytes: int) -> list:
    """Every case; ``cold_bytes``: total size of the rotating weights of the out-of-cache case."""
    return (
        _dequant_cases()
        + _qmatmul_cases(cold_bytes)
        + _matmul_cases()
        + _nn_cases()
        + _attention_cases()
        + _quantize_cases()
    )
