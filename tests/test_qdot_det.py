"""Cross-ISA determinism of the legacy-block and float-weight dot products (qdot_canon.h).

Every ISA evaluates the same float operations in the same order, so scalar, AVX2 and AVX-512
results must be bit-identical (assert_array_equal), for qmatmul (gemm, every activation-row
count C) and for the per-type vec_dot kernel, on odd K tails and partial block units; and a
row's result must not depend on how many activation rows share the call (batch invariance).
The accuracy of these results against float64 / gguf references is checked in
test_qmatmul.py on every ISA.
"""

from __future__ import annotations

import zlib

import gguf
import numpy as np
import pytest
from gguf.quants import quantize

import pylm
from pylm import _core

T = gguf.GGMLQuantizationType
LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
FLOATS = ["F32", "F16", "BF16"]
# legacy: block counts 1, 3, 17 (partial 4-block units, partial 16-block groups), 35, 600
# (more than one 512-block scale batch); float: tails of every length class around 16
K_LEGACY = [32, 96, 32 * 17, 32 * 35, 32 * 600]
K_FLOAT = [1, 15, 17, 33, 600, 1031]


def weights(name: str, n: int, k: int, rng) -> np.ndarray:
    w = (rng.standard_normal((n, k)) * rng.uniform(0.1, 3.0, size=(n, 1))).astype(np.float32)
    if name == "F32":
        return w.view(np.uint8)
    if name == "F16":
        return w.astype(np.float16).view(np.uint8)
    if name == "BF16":
        return (w.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    return quantize(w, T[name]).view(np.uint8)


def activations(m: int, k: int, rng) -> np.ndarray:
    x = (rng.standard_normal((m, k)) * rng.uniform(0.01, 50.0, size=(m, 1))).astype(np.float32)
    if k >= 64:
        x[0, 32:64] = 0.0  # an all-zero activation block (d = 0)
    return x


def per_isa(fn) -> dict:
    out = {}
    for isa in pylm.available_isas():
        with pylm.use_isa(isa):
            out[isa] = fn()
    return out


@pytest.mark.parametrize("name", LEGACY + FLOATS)
def test_gemm_bit_identical_across_isas(name):
    ks = K_LEGACY if name in LEGACY else K_FLOAT
    for k in ks:
        rng = np.random.default_rng(zlib.crc32(f"{name}-{k}".encode()))
        n = 19
        raw = weights(name, n, k, rng)
        x = activations(11, k, rng)
        ys = per_isa(lambda: pylm.ops.qmatmul(x, raw, name, (n, k), threads=1))
        for isa, y in ys.items():
            np.testing.assert_array_equal(y, ys["scalar"], err_msg=f"{name} K={k} {isa}")


@pytest.mark.parametrize("name", LEGACY + FLOATS)
def test_batch_invariance_every_c(isa, name):
    """Row i of a C-row product equals the 1-row product, for every C = 1..11."""
    k = 32 * 35 if name in LEGACY else 600
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    raw = weights(name, 23, k, rng)
    x = activations(11, k, rng)
    single = np.stack([pylm.ops.qmatmul(x[i : i + 1], raw, name, (23, k))[0] for i in range(11)])
    for c in range(1, 12):
        y = pylm.ops.qmatmul(x[:c], raw, name, (23, k))
        np.testing.assert_array_equal(y, single[:c], err_msg=f"{name} C={c}")


@pytest.mark.parametrize("name", LEGACY + FLOATS)
def test_vec_dot_equals_gemm_on_every_isa(name):
    k = 32 * 17 if name in LEGACY else 33
    rng = np.random.default_rng(zlib.crc32(f"vd-{name}".encode()))
    raw = weights(name, 4, k, rng)
    x = activations(1, k, rng)[0]

    def run():
        dots = np.array([_core._vec_dot(x, raw[i], name) for i in range(4)], np.float32)
        return dots, pylm.ops.qmatvec(x, raw, name, (4, k))

    res = per_isa(run)
    for isa, (dots, y) in res.items():
        np.testing.assert_array_equal(dots, y, err_msg=f"{name} {isa}")
        np.testing.assert_array_equal(dots, res["scalar"][0], err_msg=f"{name} {isa}")


def test_threads_and_chunks_bit_identical():
    """Thread splits change the N / M chunks each gemm call sees, never a row's result."""
    rng = np.random.default_rng(4)
    k = 32 * 18
    for name in ("Q4_1", "Q5_0", "F16"):
        raw = weights(name, 301, k, rng)
        x = activations(13, k, rng)
        with pylm.use_isa("scalar"):
            y0 = pylm.ops.qmatmul(x, raw, name, (301, k), threads=1)
        for isa in pylm.available_isas():
            with pylm.use_isa(isa):
                for threads in (1, 3):
                    y = pylm.ops.qmatmul(x, raw, name, (301, k), threads=threads)
                    np.testing.assert_array_equal(y, y0, err_msg=f"{name} {isa} t={threads}")


PACKED = ["Q4_0", "Q4_1", "Q8_0"]


@pytest.mark.parametrize("packed_isa", [i for i in ("avx2", "avx512") if i in pylm.available_isas()])
@pytest.mark.parametrize("name", PACKED)
def test_packed_rows_bit_identical_to_scalar(packed_isa, name):
    """The engine's packed copy of a legacy weight (qdot.h) through the AVX2 / AVX-512
    gemm_packed: the scalar kernel's bits on the GGUF bytes, for every C = 1..11 and threads 1,
    3, on K with partial units and groups (block counts 1, 2, 3, 17, 18, 35, 600) and row counts
    around the 4-row pass."""
    for k in [32, 64, 96, 32 * 17, 32 * 18, 32 * 35, 32 * 600]:
        rng = np.random.default_rng(zlib.crc32(f"packed-{name}-{k}".encode()))
        for n in (1, 5, 37):
            raw = weights(name, n, k, rng)
            x = activations(11, k, rng)
            with pylm.use_isa("scalar"):
                ref = pylm.ops.qmatmul(x, raw, name, (n, k), threads=1)
            with pylm.use_isa(packed_isa):
                for c in range(1, 12):
                    for threads in (1, 3):
                        y = _core._qmatmul_packed(x[:c], raw, name, n, k, threads)
                        np.testing.assert_array_equal(
                            y, ref[:c], err_msg=f"{name} K={k} N={n} C={c} t={threads}")


def test_packed_kernels_refuse_other_isas_and_types():
    rng = np.random.default_rng(5)
    raw = weights("Q5_0", 4, 64, rng)
    x = activations(1, 64, rng)
    with pytest.raises(ValueError, match="no packed kernel for Q5_0"):
        _core._qmatmul_packed(x, raw, "Q5_0", 4, 64)
    with pylm.use_isa("scalar"), pytest.raises(ValueError, match="no packed kernel for Q4_1"):
        _core._qmatmul_packed(x, weights("Q4_1", 4, 64, rng), "Q4_1", 4, 64)
