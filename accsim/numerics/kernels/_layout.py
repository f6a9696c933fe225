"""Layout helper of the engine: operand transposes. Private module; exact data movement
only (no rounding, except the float32 copies, which the engine makes only of values
that are float32 values).

An O(k n) pass around a product; numpy's generic strided transposing copy costs as
much as a small selection's whole computation. (Selections and the scattering of
results are numpy in the engine: as fast there, and nothing to compile.)
"""

import numpy as np
from numba import njit

from ._codes import JIT
from ._simd import transpose8


@njit(inline="always", **JIT)
def _transpose_rows(X, out, i0):
    """out[:, i0:i0 + 8] = X[i0:i0 + 8, :].T (the last block may be shorter)."""
    m, n = X.shape
    n8 = n // 8 * 8
    if i0 + 8 <= m:
        offs = np.empty(8, dtype=np.int64)
        for u in range(8):
            offs[u] = (i0 + u) * n
        for j0 in range(0, n8, 8):
            transpose8(X, offs, j0, out, j0 * m + i0, m)
        for i in range(i0, i0 + 8):
            for j in range(n8, n):
                out[j, i] = X[i, j]
    else:
        for i in range(i0, m):
            for j in range(n):
                out[j, i] = X[i, j]


@njit(**JIT)
def transpose_into(X, out, b0, b1):
    """out[j, i] = X[i, j] (converted to out's float dtype) for the rows i of the blocks
    ``b0 <= b < b1`` of 8 rows (the engine spreads the blocks over threads), 8 x 8
    blocks transposed in vector registers. X and out C-contiguous."""
    for b in range(b0, b1):
        _transpose_rows(X, out, b * 8)
