"""Activations and the vectorized exp/tanh (pylm.ops) against float64 numpy, on every ISA.

Lengths cover 1, odd sizes (masked tails), model widths and a multi-chunk array (> 64K
elements, split across threads); edge values check saturation, +-inf limits and NaN.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from pylm import ops

LENGTHS = [1, 7, 17, 576, 640, 2049, 49152, 200_003]

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


# ---- float64 references (exact identities of the textbook forms, stable in the tails) ----


def ref_silu(x):
    x = x.astype(np.float64)
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-x))


def ref_gelu_tanh(x):
    # 0.5 x (1 + tanh(y)) == x / (1 + exp(-2y)); the second has no cancellation for x << 0.
    x = x.astype(np.float64)
    y = SQRT_2_OVER_PI * (x + 0.044715 * x**3)
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-2.0 * y))


def ref_gelu_erf(x):
    x = x.astype(np.float64)
    return 0.5 * x * _erfc(-x / math.sqrt(2.0))


def sample(n, key, scale=3.0):
    rng = np.random.default_rng(zlib.crc32(repr(("act", n, key)).encode()))
    return (rng.standard_normal(n) * scale).astype(np.float32)


def test_gelu_reference_identity():
    """The sigmoid form used by the reference equals the tanh form where float64 is exact."""
    x = np.linspace(-6, 6, 1001)
    tanh_form = 0.5 * x * (1 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(ref_gelu_tanh(x), tanh_form, rtol=1e-9, atol=1e-12)


# ---- activations ----

UNARY = {
    "silu": (ops.silu, ref_silu),
    "gelu_tanh": (lambda x, **k: ops.gelu(x, approximate="tanh", **k), ref_gelu_tanh),
    "gelu_erf": (lambda x, **k: ops.gelu(x, approximate="none", **k), ref_gelu_erf),
}


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("name", list(UNARY))
def test_activation_matches_numpy(isa, name, n):
    fn, ref = UNARY[name]
    x = sample(n, name)
    y = fn(x)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(UNARY))
def test_activation_edges(isa, name):
    fn, ref = UNARY[name]
    x = np.array(
        [
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            1e-3,
            -1e-3,
            20.0,
            -20.0,
            1000.0,
            -1000.0,
            3e38,
            -3e38,
            np.inf,
            -np.inf,
            np.nan,
        ],
        np.float32,
    )
    y = fn(x)
    assert np.isnan(y[-1])
    assert y[-3] == np.inf  # f(+inf) = +inf
    assert y[-2] == 0.0  # f(-inf) = -0: the limit, not NaN
    finite = np.isfinite(x)
    want = ref(x[finite])
    want[np.isnan(want)] = 0.0  # float64 x/inf at -3e38 (0 by limit)
    np.testing.assert_allclose(y[finite], want, rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("n", [1, 7, 640, 2049, 200_003])
def test_swiglu_geglu(isa, n):
    gate, up = sample(n, "gate"), sample(n, "up", 1.0)
    np.testing.assert_allclose(ops.swiglu(gate, up), ref_silu(gate) * up, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ops.geglu(gate, up), ref_gelu_tanh(gate) * up, rtol=1e-5, atol=1e-7)


def test_gated_shapes_and_threads(isa):
    gate = sample(3 * 70_000, "g2").reshape(3, 70_000)
    up = sample(3 * 70_000, "u2").reshape(3, 70_000)
    y1, y2 = ops.swiglu(gate, up, threads=1), ops.swiglu(gate, up, threads=2)
    assert y1.shape == (3, 70_000)
    assert np.array_equal(y1, y2)
    assert np.array_equal(ops.gelu(gate, threads=1), ops.gelu(gate, threads=2))
    with pytest.raises(ValueError, match=r"gate.shape=\(3, 70000\) but up.shape=\(70000, 3\)"):
        ops.geglu(gate, up.reshape(70_000, 3))


def test_activation_errors():
    with pytest.raises(ValueError, match="'erf'"):
        ops.gelu(np.zeros(3, np.float32), approximate="erf")
    with pytest.raises(ValueError, match="float32"):
        ops.silu(np.zeros(3))
    with pytest.raises(ValueError, match="threads"):
        ops.silu(np.zeros(3, np.float32), threads=-1)


# ---- the vectorized exp / tanh themselves ----


def test_exp_accuracy(isa):
    x = np.linspace(-87.3, 88.7, 300_001).astype(np.float32)  # normal-range results
    np.testing.assert_allclose(ops.exp(x), np.exp(x.astype(np.float64)), rtol=1e-6)
    x = np.linspace(-103.0, -87.4, 1001).astype(np.float32)  # denormal results
    np.testing.assert_allclose(ops.exp(x), np.exp(x.astype(np.float64)), rtol=0, atol=2e-45)


def test_exp_saturates(isa):
    x = np.array([-1000, -200, -104, 89, 100, 1000, np.inf, -np.inf, np.nan, 0.0], np.float32)
    y = ops.exp(x)
    assert np.array_equal(y[:3], [0, 0, 0])
    assert np.all(y[3:7] == np.inf)
    assert y[7] == 0.0 and np.isnan(y[8]) and y[9] == 1.0
    assert not np.isnan(ops.exp(np.full(33, -1000, np.float32))).any()


@pytest.mark.parametrize("n", [7, 49152])
def test_tanh_accuracy(isa, n):
    x = np.concatenate(
        [
            np.linspace(-12, 12, n),
            [0.0, 0.6249, 0.6251, -0.625, 1e-20, -50.0, 50.0, np.inf, -np.inf],
        ]
    ).astype(np.float32)
    y = ops.tanh(x)
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=1e-6, atol=1e-30)
    assert np.isnan(ops.tanh(np.array([np.nan], np.float32)))[0]
