"""The two worked examples of gradient descent, through pylm's own ops (linear forward /
backward, squared error) and optimizer (SGD), on every ISA."""

from __future__ import annotations

import numpy as np
import pytest

from pylm.train import ops


def f32(*v):
    return np.array(v, np.float32)


def descend_quadratic(w0: float, lr: float, steps: int) -> tuple[float, float]:
    """Minimise f(w) = (w - 3)^2 as a 1x1 linear layer (x = 1) against the target 3."""
    W = f32(w0).reshape(1, 1)
    x = f32(1.0).reshape(1, 1)
    for _ in range(steps):
        y = ops.linear_fwd(x, W)
        _, dy = ops.sq_err(y, f32(3.0).reshape(1, 1))
        _, dW, _ = ops.linear_bwd(x, W, dy)
        ops.sgd(W, dW, lr)
    loss, _ = ops.sq_err(ops.linear_fwd(x, W), f32(3.0).reshape(1, 1))
    return float(W[0, 0]), loss


def test_quadratic_one_step(isa):
    w, f = descend_quadratic(5.0, 0.1, 1)
    assert w == pytest.approx(4.6, abs=1e-6)
    assert f == pytest.approx(2.56, abs=1e-5)


def test_quadratic_converges(isa):
    # Each step multiplies the error by (1 - 2 * 0.1) = 0.8: w_k = 3 + 2 * 0.8^k.
    w20, _ = descend_quadratic(5.0, 0.1, 20)
    assert w20 == pytest.approx(3 + 2 * 0.8**20, abs=1e-6)  # 3.0231 after 20 steps
    # "w ~ 3.001" takes 34 steps (2 * 0.8^34 = 0.00101), not 20.
    w34, f34 = descend_quadratic(5.0, 0.1, 34)
    assert round(w34, 3) == 3.001
    assert f34 < 1.1e-6


def test_one_neuron(isa):
    # y = w x + b, x = 2, t = 5, w = 1, b = 0, L = (y - t)^2, lr = 0.01
    x = f32(2.0).reshape(1, 1)
    t = f32(5.0).reshape(1, 1)
    W, b = f32(1.0).reshape(1, 1), f32(0.0)
    y = ops.linear_fwd(x, W, b)
    loss0, dy = ops.sq_err(y, t)
    _, dW, db = ops.linear_bwd(x, W, dy, bias=True)
    assert loss0 == pytest.approx(9.0)
    assert dW[0, 0] == pytest.approx(-12.0) and db[0] == pytest.approx(-6.0)
    ops.sgd(W, dW, 0.01)
    ops.sgd(b, db, 0.01)
    assert W[0, 0] == pytest.approx(1.12, abs=1e-6) and b[0] == pytest.approx(0.06, abs=1e-6)
    loss1, _ = ops.sq_err(ops.linear_fwd(x, W, b), t)
    assert loss1 == pytest.approx(7.29, abs=1e-5)
