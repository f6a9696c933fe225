"""Integer and fixed-point registers: exact adds into a ``bits``-bit two's-complement
register that wraps or saturates after every add.

Private module (the kernels package re-exports the kernels). Outputs to compute
come in CSR form as in :mod:`._accumulate`; the kernels run on one thread, and the
engine calls them on ranges of rows (or blocks of scattered outputs) from several, never
splitting the summation axis. A register's format arrives as
:class:`accsim.numerics.kernels.FormatParams` (``bits``, ``frac_bits``, ``signed``,
``overflow``), the datapath's other scalars as
:class:`accsim.numerics.kernels.DatapathParams`.
"""

import numpy as np
from llvmlite import ir
from numba import njit, int64, uint64, uint8, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

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


# ---- narrow lanes ------------------------------------------------------------------
# A saturating register whose range is exactly that of a narrower signed integer type T
# (the int16 register: [-2**15, 2**15 - 1]), with every product |p| <= pmax fitting T,
# runs in lanes of T: 16 per 256-bit vector instead of 4 int64. Each step is one
# saturating add y = sadd_sat(s, p) (vpaddsw), which IS the register, and the modular
# sum xw = s + p modulo 2**16: the exact sum left the range iff y != xw (exact also
# where it leaves T: then xw has the other sign). numba types arithmetic on int16 as
# int64: the casts back to T (``lane``) let LLVM narrow it. Only this variant runs in
# lanes: narrower saturating registers (a clamp), wrapping ones (a mask) and int32
# lanes were measured (1.5 to 7x faster than int64 for them) but each variant costs
# about one to five seconds more of cold-cache compile in every run that reaches the
# kernel; they run the int64 steps.

# groups of four steps after which the lanes' overflow counts (type T) move to the int64
# totals (4 * 8191 < 2**15)
_FLUSH_GROUPS = 8191


@intrinsic
def sadd_sat(typingctx, a, b):
    """Signed saturating a + b in a's type (LLVM ``llvm.sadd.sat``; vectorises)."""
    if not (isinstance(a, types.Integer) and a.signed and a == b):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t, t]),
                                            f"llvm.sadd.sat.i{t.width}")
        return builder.call(fn, args)
    return a(a, b), codegen


@intrinsic
def lane(typingctx, x, like):
    """The integer (or bool) x in like's integer type, truncated (modulo 2**width)."""
    if not (isinstance(x, (types.Integer, types.Boolean)) and isinstance(like, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], x, like)
    return like(x, like), codegen


def elem(x, t):
    """x[t] for an array x, x itself for a scalar (one step loop for a row's outputs,
    which share a[i, k], and for blocks of scattered outputs, which do not)."""
    return x[t]


@overload(elem, inline="always", jit_options=JIT)
def _elem_impl(x, t):
    if isinstance(x, types.Array):
        return lambda x, t: x[t]
    return lambda x, t: x


@njit(inline="always", **JIT)
def lanes_fit(lo, hi, pmax, sat, lane_bits):
    """Whether the register [lo, hi] runs in signed lanes of ``lane_bits`` bits: a
    saturating register whose range is the lane type's whole range (the saturating add
    is then the register itself) and products |p| <= pmax that fit the lanes. Other
    registers (wrapping, narrower, wider) run the int64 steps: each further lane
    variant measured about a second more of cold-cache compile for every run."""
    lim = int64(1) << int64(lane_bits - 1)
    return sat and lo == -lim and hi == lim - 1 and pmax < lim


@njit(inline="always", **JIT)
def _sat1(s, c, a, b):
    """One saturating step s + a*b in s's lane type, the register being the lane type's
    whole range: (register, c + (the exact sum left the range))."""
    p = lane(a * b, s)
    y = sadd_sat(s, p)
    return y, lane(c + lane(lane(s + p, s) != y, c), c)


@njit(inline="always", **JIT)
def _steps4(acc, nov, a0, a1, a2, a3, b0, b1, b2, b3):
    """Four saturating steps acc += a_j * b_j[t] (j = 0..3; a_j a scalar, or a_j[t]),
    counting in nov the steps whose exact sum left the register's range."""
    for t in range(acc.shape[0]):
        s, c = _sat1(acc[t], nov[t], elem(a0, t), b0[t])
        s, c = _sat1(s, c, elem(a1, t), b1[t])
        s, c = _sat1(s, c, elem(a2, t), b2[t])
        s, c = _sat1(s, c, elem(a3, t), b3[t])
        acc[t] = s
        nov[t] = c


@njit(inline="always", **JIT)
def _nonzero_ks(ai):
    """Positions k of the nonzero ai[k] (a zero a[k] adds nothing: its step is skipped),
    padded with three copies of the last so that groups of four can be read: (ks, count)."""
    K = ai.shape[0]
    ks = np.zeros(K + 3, dtype=np.int64)
    nk = 0
    for k in range(K):
        if ai[k] != 0:
            ks[nk] = k
            nk += 1
    for j in range(3):
        ks[nk + j] = ks[nk - 1] if nk > 0 else 0
    return ks, nk


@njit(inline="always", **JIT)
def _flush_counts(nov, tot):
    for t in range(nov.shape[0]):
        tot[t] += nov[t]
        nov[t] = 0


@njit(**JIT)
def _row_lanes(ai, Bi, cols, acc, tot):
    """The saturating registers ``acc`` (narrow lanes whose whole range is the
    register's, every product fitting: :func:`lanes_fit`) of one row's outputs (columns ``cols``) over the
    row ``ai`` of A and all of B, four nonzero a[k] at a time (the last group padded
    with zero steps, which change nothing). Overflow counts added to ``tot`` (int64)."""
    w = acc.shape[0]
    c0 = cols[0]
    contig = (cols[w - 1] - c0) == w - 1
    ks, nk = _nonzero_ks(ai)
    gb = np.empty((4, 0 if contig else w), dtype=Bi.dtype)
    nov = np.zeros_like(acc)
    z = lane(0, acc[0])     # zero of the lane type
    for g in range(0, nk, 4):
        a0 = lane(ai[ks[g]], z)
        a1 = lane(ai[ks[g + 1]], z) if g + 1 < nk else z
        a2 = lane(ai[ks[g + 2]], z) if g + 2 < nk else z
        a3 = lane(ai[ks[g + 3]], z) if g + 3 < nk else z
        if contig:
            b0 = Bi[ks[g], c0:c0 + w]
            b1 = Bi[ks[g + 1], c0:c0 + w]
            b2 = Bi[ks[g + 2], c0:c0 + w]
            b3 = Bi[ks[g + 3], c0:c0 + w]
        else:
            for j in range(4):
                bk = Bi[ks[g + j]]
                for t in range(w):
                    gb[j, t] = bk[cols[t]]
            b0, b1, b2, b3 = gb[0], gb[1], gb[2], gb[3]
        _steps4(acc, nov, a0, a1, a2, a3, b0, b1, b2, b3)
        if (g // 4) % _FLUSH_GROUPS == _FLUSH_GROUPS - 1:
            _flush_counts(nov, tot)
    _flush_counts(nov, tot)


@njit(**JIT)
def _row_exact64(ai, Bi, cols, lo, hi, sh, bits, signed, sat, acc, nov):
    """:func:`_row_exact32` in int64 lanes, for any register of up to 64 bits and
    products below 2**62 (the sum's own int64 overflow is detected), one step at a time."""
    w = acc.shape[0]
    c0 = cols[0]
    contig = (cols[w - 1] - c0) == w - 1
    gb = np.empty(w, dtype=Bi.dtype)
    for k in range(ai.shape[0]):
        a = ai[k]
        if a == 0:
            continue        # s + 0 = s: no wrap, no saturation, no event
        if contig:
            src = Bi[k, c0:c0 + w]
        else:
            bk = Bi[k]
            for t in range(w):
                gb[t] = bk[cols[t]]
            src = gb
        for t in range(w):
            p = int64(a) * int64(src[t])   # int32 operands: one vpmuldq
            v, outr = _iadd_exact(acc[t], p, lo, hi, sh, bits, signed, sat)
            acc[t] = v
            nov[t] += int64(outr)


@njit(**JIT)
def int_rows_exact(Ai, Bi, rows, ptr, cols, init, P, out, oflags, c_ov, c_sat):
    """Sequential integer register ``P`` (frac_bits 0) with int16, int32 or int64 operands
    whose products are exact integers (|a*b| < 2**62): branch-free wrap / saturate in
    int64 lanes, vectorised over a row's outputs (:func:`_row_exact64`)."""
    lo, hi, bits, signed, sat, sh = _exact_consts(P)
    for r in range(rows.shape[0]):
        e0 = ptr[r]
        e1 = ptr[r + 1]
        if e1 > e0:
            acc = init[e0:e1].copy()
            nov = np.zeros(e1 - e0, dtype=np.int64)
            _row_exact64(Ai[rows[r]], Bi, cols[e0:e1], lo, hi, sh, bits, signed, sat, acc,
                         nov)
            _store_exact(acc, nov, e0, sat, out, oflags, c_ov, c_sat)


@njit(**JIT)
def int_rows_lanes16(Ai, Bi, rows, ptr, cols, init, out, oflags, c_ov, c_sat):
    """:func:`int_rows_exact` for the saturating int16 register in int16 lanes
    (:func:`_row_lanes`): every product and every initial value fits int16
    (:func:`accsim.numerics.kernels.int16_lanes`, checked by the engine). A kernel of its
    own, so that a run compiles only the register loop it uses."""
    for r in range(rows.shape[0]):
        e0 = ptr[r]
        e1 = ptr[r + 1]
        if e1 > e0:
            acc = init[e0:e1].astype(np.int16)
            nov = np.zeros(e1 - e0, dtype=np.int64)
            _row_lanes(Ai[rows[r]], Bi, cols[e0:e1], acc, nov)
            _store_exact(acc, nov, e0, True, out, oflags, c_ov, c_sat)


@njit(**JIT)
def _block_lanes(abuf, bbuf, acc, tot):
    """The saturating registers ``acc`` (narrow lanes: :func:`lanes_fit`) of a block of scattered outputs over the k-major buffers abuf[k, t],
    bbuf[k, t] (rows a multiple of four, zero beyond the summation length: zero steps
    change nothing). Overflow counts added to ``tot`` (int64)."""
    nov = np.zeros_like(acc)
    for g in range(0, abuf.shape[0], 4):
        _steps4(acc, nov, abuf[g], abuf[g + 1], abuf[g + 2], abuf[g + 3], bbuf[g],
                bbuf[g + 1], bbuf[g + 2], bbuf[g + 3])
        if (g // 4) % _FLUSH_GROUPS == _FLUSH_GROUPS - 1:
            _flush_counts(nov, tot)
    _flush_counts(nov, tot)


@njit(**JIT)
def _pairs_block(Ai, Bit, pr, pc, init, e0, w, P, pmax, out, oflags, c_ov, c_sat):
    """Registers e0 .. e0 + w - 1 of :func:`int_pairs_exact`: the rows of A and of B
    transposed copied into k-major buffers, then the registers side by side, in int16
    lanes where they fit (:func:`lanes_fit`, every init in range), else int64."""
    K = Ai.shape[1]
    lo, hi, bits, signed, sat, sh = _exact_consts(P)
    K4 = (K + 3) // 4 * 4
    abuf = np.zeros((K4, w), dtype=Ai.dtype)
    bbuf = np.zeros((K4, w), dtype=Bit.dtype)
    inrange = True
    for t in range(w):
        inrange &= (init[e0 + t] >= lo) & (init[e0 + t] <= hi)
        ar = Ai[pr[e0 + t]]
        br = Bit[pc[e0 + t]]
        for k in range(K):
            abuf[k, t] = ar[k]
            bbuf[k, t] = br[k]
    nov = np.zeros(w, dtype=np.int64)
    if inrange and lanes_fit(lo, hi, pmax, sat, 16):
        acc_l = init[e0:e0 + w].astype(np.int16)
        _block_lanes(abuf, bbuf, acc_l, nov)
        _store_exact(acc_l, nov, e0, sat, out, oflags, c_ov, c_sat)
        return
    acc = init[e0:e0 + w].copy()
    for k in range(K):
        av = abuf[k]
        bv = bbuf[k]
        for t in range(w):
            v, outr = _iadd_exact(acc[t], int64(av[t]) * int64(bv[t]), lo, hi, sh, bits,
                                  signed, sat)
            acc[t] = v
            nov[t] += int64(outr)
    _store_exact(acc, nov, e0, sat, out, oflags, c_ov, c_sat)


@njit(**JIT)
def int_pairs_exact(Ai, Bit, pr, pc, init, lanes, b0, b1, P, out, oflags, c_ov, c_sat, pmax):
    """:func:`int_rows_exact` for scattered outputs (pr[e], pc[e]) in blocks of
    ``lanes`` registers (:func:`_pairs_block`). Each block first copies its rows of A and
    of B transposed into k-major buffers, reading every row contiguously (rows a multiple
    of 4 KiB apart, read in step, would evict each other from the L1 cache), then runs
    the registers side by side. This call runs blocks ``b0 <= b < b1``."""
    nnz = pr.shape[0]
    for blk in range(b0, b1):
        e0 = blk * lanes
        _pairs_block(Ai, Bit, pr, pc, init, e0, min(nnz, e0 + lanes) - e0, P, pmax, out,
                     oflags, c_ov, c_sat)


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


@njit(**JIT)
def wrap_product(P, init, bits, out):
    """out = init + P wrapped to a signed ``bits``-bit register (bits <= 52), as float64:
    ((x + h) & (2**bits - 1)) - h with h = 2**(bits-1), x = int64(P) + init. P (m, n)
    float64 (the engine passes no other dtype: one compiled kernel) holds exact integers
    below 2**53 (an exact BLAS product), init
    the m * n initial contents (int64, row-major) or an empty array (zeros). One pass."""
    m, n = P.shape
    h = int64(1) << int64(bits - 1)
    mask = (int64(1) << int64(bits)) - int64(1)
    with_init = init.shape[0] == m * n
    for i in range(m):
        for j in range(n):
            x = int64(P[i, j])
            if with_init:
                x += init[i * n + j]
            out[i, j] = float(((x + h) & mask) - h)


_NORM_CAP = 2.0**61      # |x| and row sums are capped here (int64 sums stay exact)


@njit(**JIT)
def f32_copy_norms(X, out):
    """out = float32(X) for a C-contiguous 2-D float64 array X of integers, in one
    pass, with (the largest row 1-norm of X, the largest |x|) as int64, both capped at
    2**61 (integer reductions vectorise; unreassociated float64 sums would not)."""
    rmax = int64(0)
    amax = int64(0)
    cap = int64(_NORM_CAP)
    for i in range(X.shape[0]):
        r = int64(0)
        m = int64(0)
        for j in range(X.shape[1]):
            x = X[i, j]
            out[i, j] = np.float32(x)
            ax = int64(min(abs(x), _NORM_CAP))
            r = min(r + ax, cap)
            m = max(m, ax)
        rmax = max(rmax, r)
        amax = max(amax, m)
    return rmax, amax
