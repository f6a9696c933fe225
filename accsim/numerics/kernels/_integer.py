"""Integer and fixed-point registers: exact adds into a ``bits``-bit two's-complement
register that wraps or saturates after every add.

Private module (the kernels package re-exports the three kernels). Outputs to compute
come in CSR form as in :mod:`._accumulate`; the kernels run on one thread, and the
engine calls them on ranges of rows (or blocks of scattered outputs) from several, never
splitting the summation axis. A register's format arrives as
:class:`accsim.numerics.kernels.FormatParams` (``bits``, ``frac_bits``, ``signed``,
``overflow``), the datapath's other scalars as
:class:`accsim.numerics.kernels.DatapathParams`.
"""

import numpy as np
from numba import njit, int64, uint64, uint8

from ._codes import F_INEXACT, F_OVERFLOW, F_SATURATE, JIT, S_CHUNK, S_SEQ
from ._round import decompose, out_key, round_shift, step_key


@njit(inline="always", **JIT)
def int_limits(P):
    """(smallest, largest) stored integer of the integer / fixed-point format P, as
    int64: the format's ``min_int`` and ``max_int``. Signed formats of up to 64 bits,
    unsigned of up to 62 (the engine refuses wider unsigned registers)."""
    if P.signed == 1:
        hi = int64((uint64(1) << uint64(P.bits - 1)) - uint64(1))
        return -hi - 1, hi
    return int64(0), int64((uint64(1) << uint64(P.bits)) - uint64(1))


@njit(inline="always", **JIT)
def _exact_consts(P):
    """(lo, hi, bits, signed, sat, sh) of :func:`_iadd_exact` for the register P."""
    lo, hi = int_limits(P)
    return lo, hi, P.bits, P.signed == 1, P.overflow == 1, int64(64 - P.bits)


@njit(**JIT)
def to_units(p, frac, mode, key, srbits):
    """Round float64 p to an integer number of 2**-frac units: (int64, inexact).

    The engine guarantees |p| * 2**frac < 2**62.
    """
    if p == 0.0:
        return int64(0), False
    m, E, neg = decompose(p)
    sh = -frac - E
    if sh <= 0:
        q = m << uint64(-sh)
        inexact = False
    else:
        q, inexact = round_shift(m, sh, neg, mode, key, srbits)
    v = int64(q)
    return (-v if neg else v), inexact


@njit(**JIT)
def iadd(s, p, lo, hi, bits, sat):
    """Exact s + p into a bits-bit register [lo, hi]: wrap or saturate. (value, flags)."""
    r = s + p  # wraps modulo 2**64
    o64 = ((s ^ r) & (p ^ r)) < 0
    if o64:
        positive = s > 0
        out = True
    else:
        positive = r > 0
        out = r < lo or r > hi
    if not out:
        return r, 0
    if sat:
        return (hi if positive else lo), F_OVERFLOW | F_SATURATE
    if bits < 64:
        mask = (int64(1) << int64(bits)) - 1
        u = r & mask
        if lo < 0 and u > hi:
            u = u - (int64(1) << int64(bits))
        return u, F_OVERFLOW
    return r, F_OVERFLOW


@njit(inline="always", **JIT)
def _iadd_exact(s, p, lo, hi, sh, bits, signed, sat):
    """Branch-free s + p into a bits-bit register [lo, hi] (sh = 64 - bits):
    (value, out of range). Detects int64 overflow of the sum itself too."""
    x = s + p
    o64 = ((s ^ x) & (p ^ x)) < 0
    outr = o64 | (x < lo) | (x > hi)
    positive = (o64 & (s > 0)) | ((not o64) & (x > 0))
    if sat:
        v = (hi if positive else lo) if outr else x
    elif signed:
        v = (x << sh) >> sh
    else:
        v = x & ((int64(1) << int64(bits)) - 1)
    return v, outr


@njit(inline="always", **JIT)
def _store_exact(acc, nov, e0, sat, out, oflags, c_ov, c_sat):
    """Results of w = len(acc) exact registers into out[e0 + t], with their overflow
    counts ``nov`` (every one a saturation too when ``sat``)."""
    for t in range(acc.shape[0]):
        out[e0 + t] = acc[t]
        oflags[e0 + t] = uint8(F_OVERFLOW | (F_SATURATE if sat else 0)) if nov[t] > 0 else uint8(0)
        c_ov[e0 + t] = nov[t]
        c_sat[e0 + t] = nov[t] if sat else 0


@njit(**JIT)
def int_rows_exact(Ai, Bi, rows, ptr, cols, init, P, out, oflags, c_ov, c_sat):
    """Sequential integer register ``P`` (frac_bits 0) with int64 (or int32) operands
    whose products are exact integers (|a*b| < 2**62): branch-free wrap/saturate,
    vectorisable over outputs."""
    K = Ai.shape[1]
    lo, hi, bits, signed, sat, sh = _exact_consts(P)
    nrows = rows.shape[0]
    for r in range(nrows):
        i = rows[r]
        e0 = ptr[r]
        w = ptr[r + 1] - e0
        if w == 0:
            continue
        acc = np.empty(w, dtype=np.int64)
        nov = np.zeros(w, dtype=np.int64)
        gb = np.empty(w, dtype=Bi.dtype)
        contig = (cols[e0 + w - 1] - cols[e0]) == w - 1
        c0 = cols[e0] if contig else 0
        for t in range(w):
            acc[t] = init[e0 + t]
        for k in range(K):
            a = Ai[i, k]
            if a == 0:
                continue        # s + 0 = s: no wrap, no saturation, no event
            if contig:
                src = Bi[k]
            else:
                bk = Bi[k]
                for t in range(w):
                    gb[t] = bk[cols[e0 + t]]
                src = gb
            for t in range(w):
                s = acc[t]
                p = int64(a) * int64(src[c0 + t])   # int32 operands: one vpmuldq
                v, outr = _iadd_exact(s, p, lo, hi, sh, bits, signed, sat)
                acc[t] = v
                nov[t] += int64(outr)
        _store_exact(acc, nov, e0, sat, out, oflags, c_ov, c_sat)


@njit(**JIT)
def int_pairs_exact(Ai, Bit, pr, pc, init, lanes, b0, b1, P, out, oflags, c_ov, c_sat):
    """:func:`int_rows_exact` for scattered outputs (pr[e], pc[e]) in blocks of
    ``lanes`` registers. Each block first copies its rows of A and of B transposed into
    k-major buffers, reading every row contiguously (rows a multiple of 4 KiB apart,
    read in step, would evict each other from the L1 cache), then runs the registers
    side by side. This call runs blocks ``b0 <= b < b1``."""
    K = Ai.shape[1]
    lo, hi, bits, signed, sat, sh = _exact_consts(P)
    nnz = pr.shape[0]
    for blk in range(b0, b1):
        e0 = blk * lanes
        w = min(nnz, e0 + lanes) - e0
        acc = np.empty(w, dtype=np.int64)
        nov = np.zeros(w, dtype=np.int64)
        abuf = np.empty((K, w), dtype=Ai.dtype)
        bbuf = np.empty((K, w), dtype=Bit.dtype)
        for t in range(w):
            acc[t] = init[e0 + t]
            ar = Ai[pr[e0 + t]]
            br = Bit[pc[e0 + t]]
            for k in range(K):
                abuf[k, t] = ar[k]
                bbuf[k, t] = br[k]
        for k in range(K):
            av = abuf[k]
            bv = bbuf[k]
            for t in range(w):
                v, outr = _iadd_exact(acc[t], int64(av[t]) * int64(bv[t]), lo, hi, sh, bits,
                                      signed, sat)
                acc[t] = v
                nov[t] += int64(outr)
        _store_exact(acc, nov, e0, sat, out, oflags, c_ov, c_sat)


@njit(inline="always", **JIT)
def _int_tally(f, t, fl, nov, nsat):
    fl[t] |= f
    nov[t] += (f >> 1) & 1
    nsat[t] += (f >> 2) & 1


@njit(**JIT)
def int_rows(A, B, rows, ptr, cols, init, P, PW, S, out, oflags, c_ov, c_sat, c_inx):
    """Integer/fixed register ``P`` accumulating the selected outputs (int64 units of
    2**-frac_bits), each product rounded to the grid with ``S.rounding``.

    Sequential (``S.structure`` S_SEQ) or chunked (S_CHUNK: chunks of ``S.chunk_size``
    in the narrow register from zero, each added into the wide register ``PW``, which
    starts at init).
    """
    K = A.shape[1]
    frac = P.frac_bits
    lo, hi = int_limits(P)
    bits = P.bits
    sat = P.overflow == 1
    wlo, whi = int_limits(PW)
    wbits = PW.bits
    wsat = PW.overflow == 1
    mode = S.rounding
    struct = S.structure
    seed = S.seed
    srbits = S.sr_bits
    Lc = S.chunk_size if struct == S_CHUNK else K
    if Lc < 1:
        Lc = 1
    nrows = rows.shape[0]
    for r in range(nrows):
        i = rows[r]
        e0 = ptr[r]
        e1 = ptr[r + 1]
        w = e1 - e0
        if w == 0:
            continue
        acc = np.empty(w, dtype=np.int64)
        wide = np.empty(w, dtype=np.int64)
        fl = np.zeros(w, dtype=np.uint8)
        nov = np.zeros(w, dtype=np.int64)
        nsat = np.zeros(w, dtype=np.int64)
        ninx = np.zeros(w, dtype=np.int64)
        keys = np.empty(w, dtype=np.uint64)
        for t in range(w):
            keys[t] = out_key(seed, i, cols[e0 + t])
            if struct == S_SEQ:
                acc[t] = init[e0 + t]
            else:
                wide[t] = init[e0 + t]
        k0 = 0
        while k0 < K:
            k1 = min(K, k0 + Lc)
            if struct == S_CHUNK:
                for t in range(w):
                    acc[t] = 0
            for k in range(k0, k1):
                a = A[i, k]
                for t in range(w):
                    p = a * B[k, cols[e0 + t]]
                    q, inexact = to_units(p, frac, mode, step_key(keys[t], k), srbits)
                    if inexact:
                        fl[t] |= F_INEXACT
                        ninx[t] += 1
                    v, f = iadd(acc[t], q, lo, hi, bits, sat)
                    acc[t] = v
                    _int_tally(f, t, fl, nov, nsat)
            if struct == S_CHUNK:
                for t in range(w):
                    v, f = iadd(wide[t], acc[t], wlo, whi, wbits, wsat)
                    wide[t] = v
                    _int_tally(f, t, fl, nov, nsat)
            k0 = k1
        for t in range(w):
            out[e0 + t] = acc[t] if struct == S_SEQ else wide[t]
            oflags[e0 + t] = fl[t]
            c_ov[e0 + t] = nov[t]
            c_sat[e0 + t] = nsat[t]
            c_inx[e0 + t] = ninx[t]
