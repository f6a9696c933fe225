"""Index and layout helpers of the engine: which outputs to compute, operand copies,
scattering results. Private module; exact data movement only (no rounding, except
the float32 copies, which the engine makes only of values that are float32 values).

These are O(m n + m k + k n) passes around every product; numpy's generic strided
copies and fancy indexing cost as much as a small selection's whole computation.
"""

import numpy as np
from numba import njit, prange, int64, uint8

from ._codes import JIT
from ._simd import transpose8


@njit(inline="always", **JIT)
def _row_count(mask, i):
    c = int64(0)
    for j in range(mask.shape[1]):
        c += int64(mask[i, j])
    return c


@njit(inline="always", **JIT)
def _row_cols(mask, i, cols, e):
    for j in range(mask.shape[1]):
        if mask[i, j]:
            cols[e] = j
            e += 1


@njit(inline="always", **JIT)
def _csr_layout(counts):
    """(rows, ptr, start) from the per-row counts: start[i] is row i's first slot."""
    m = counts.shape[0]
    nrows = 0
    for i in range(m):
        nrows += int64(counts[i] > 0)
    rows = np.empty(nrows, dtype=np.int64)
    ptr = np.empty(nrows + 1, dtype=np.int64)
    start = np.empty(m, dtype=np.int64)
    ptr[0] = 0
    r = 0
    e = int64(0)
    for i in range(m):
        start[i] = e
        if counts[i] > 0:
            rows[r] = i
            e += counts[i]
            r += 1
            ptr[r] = e
    return rows, ptr, start


@njit(parallel=True, **JIT)
def mask_csr(mask):
    """(rows, ptr, cols) of the True entries of a 2-D boolean mask, in row-major order:
    the nonempty rows, their row pointers (len(rows) + 1) and the column indices, int64.
    Rows are counted and filled on the numba threads (each row writes its own slots)."""
    m = mask.shape[0]
    counts = np.empty(m, dtype=np.int64)
    for i in prange(m):
        counts[i] = _row_count(mask, i)
    rows, ptr, start = _csr_layout(counts)
    cols = np.empty(ptr[-1], dtype=np.int64)
    for i in prange(m):
        if counts[i] > 0:
            _row_cols(mask, i, cols, start[i])
    return rows, ptr, cols


@njit(**JIT)
def mask_csr_serial(mask):
    """:func:`mask_csr` on the calling thread (small masks)."""
    m = mask.shape[0]
    counts = np.empty(m, dtype=np.int64)
    for i in range(m):
        counts[i] = _row_count(mask, i)
    rows, ptr, start = _csr_layout(counts)
    cols = np.empty(ptr[-1], dtype=np.int64)
    for i in range(m):
        if counts[i] > 0:
            _row_cols(mask, i, cols, start[i])
    return rows, ptr, cols


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


@njit(parallel=True, **JIT)
def transpose_into(X, out):
    """out[j, i] = X[i, j] (converted to out's float dtype), 8 x 8 blocks transposed in
    vector registers, blocks of 8 rows on the numba threads. X and out C-contiguous."""
    for b in prange((X.shape[0] + 7) // 8):
        _transpose_rows(X, out, b * 8)


@njit(**JIT)
def transpose_into_serial(X, out):
    """:func:`transpose_into` on the calling thread (small arrays)."""
    for b in range((X.shape[0] + 7) // 8):
        _transpose_rows(X, out, b * 8)


@njit(inline="always", **JIT)
def _scatter_row(i, r, ptr, cols, vals_e, flags_e, cov, csat, cinx, fmask, fill, values,
                 flags, ov, sat, inx):
    for j in range(values.shape[1]):
        values[i, j] = fill
        flags[i, j] = 0
    so = int64(0)
    ss = int64(0)
    si = int64(0)
    if r >= 0:
        for e in range(ptr[r], ptr[r + 1]):
            j = cols[e]
            values[i, j] = vals_e[e]
            flags[i, j] = uint8(flags_e[e] & fmask)
            so += cov[e]
            ss += csat[e]
            si += cinx[e]
    ov[i] = so
    sat[i] = ss
    inx[i] = si


@njit(inline="always", **JIT)
def _row_positions(rows, m):
    rpos = np.full(m, -1, dtype=np.int64)
    for r in range(rows.shape[0]):
        rpos[rows[r]] = r
    return rpos


@njit(parallel=True, **JIT)
def scatter_results(rows, ptr, cols, vals_e, flags_e, cov, csat, cinx, fmask, fill, values,
                    flags, ov, sat, inx):
    """Per-output results in CSR order into (m, n) ``values`` (``fill`` elsewhere) and
    ``flags`` (masked by ``fmask``, 0 elsewhere); event counts summed per output row
    into ``ov``, ``sat``, ``inx`` (length m). Every entry of the outputs is written;
    output rows on the numba threads."""
    rpos = _row_positions(rows, values.shape[0])
    for i in prange(values.shape[0]):
        _scatter_row(i, rpos[i], ptr, cols, vals_e, flags_e, cov, csat, cinx, fmask, fill,
                     values, flags, ov, sat, inx)


@njit(**JIT)
def scatter_results_serial(rows, ptr, cols, vals_e, flags_e, cov, csat, cinx, fmask, fill,
                           values, flags, ov, sat, inx):
    """:func:`scatter_results` on the calling thread (small results)."""
    rpos = _row_positions(rows, values.shape[0])
    for i in range(values.shape[0]):
        _scatter_row(i, rpos[i], ptr, cols, vals_e, flags_e, cov, csat, cinx, fmask, fill,
                     values, flags, ov, sat, inx)
