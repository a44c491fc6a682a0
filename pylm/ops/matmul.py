"""f32 matrix multiply on the CPU (blocked, multi-threaded, AVX2 / AVX-512 microkernels).

>>> import numpy as np, pylm
>>> a = np.ones((2, 3), np.float32); b = np.ones((3, 4), np.float32)
>>> float(pylm.ops.matmul(a, b)[0, 0])
3.0
"""

from __future__ import annotations

import numpy as np

from .. import _core

__all__ = ["matmul"]


def matmul(
    a: np.ndarray,
    b: np.ndarray,
    transpose_b: bool = False,
    threads: int = 0,
    *,
    transpose_a: bool = False,
    out: np.ndarray | None = None,
    accumulate: bool = False,
) -> np.ndarray:
    """Matrix product of float32 arrays: ``op(a) @ op(b)``.

    Args:
        a: (M, K) float32, or (K,) for a single row (the result is then (N,)).
        b: (K, N) float32, or (N, K) with ``transpose_b=True`` (the weight layout: ``a @ b.T``).
        transpose_b: multiply by ``b.T``.
        threads: native threads (0 = the global default, see ``pylm.set_threads``).
        transpose_a: use ``a.T`` ((K, M) input), e.g. for weight gradients ``x.T @ dy``.
        out: optional float32 (M, N) result array with contiguous rows (may be a slice).
        accumulate: add the product into ``out`` instead of overwriting it.

    Returns:
        The (M, N) float32 product (``out`` when given). Transposed views (``x.T``) and row
        slices are used without copying.

    Raises:
        ValueError: wrong dtype (not float32), wrong rank, or shapes that do not align.
    """
    return _core.matmul(
        a, b, bool(transpose_b), bool(transpose_a), int(threads), out, bool(accumulate)
    )
