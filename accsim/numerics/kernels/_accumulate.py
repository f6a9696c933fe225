"""MAC loops: what the accumulator register holds after every add.

Private module. Outputs to compute are given in CSR form (``rows[r]`` with columns
``cols[ptr[r]:ptr[r+1]]``), so the full product and a selection of outputs share one
kernel, and the work is proportional to the number of outputs computed. ``prange`` runs
over rows only (independent outputs), never along the summation axis, so results do not
depend on the thread count.

Exact sums: products of operands whose significands total at most 53 bits are exact in
float64 (checked by the engine). ``s + p`` is formed exactly as ``hi + lo`` (TwoSum) and
compressed to float64 with round-to-odd (``hi`` nudged to the odd neighbour toward
``lo`` when ``lo != 0``). Rounding that round-to-odd value to a format of at most 51
significant bits gives the correctly rounded exact sum in every mode (Boldo & Melquiond,
"When double rounding is odd", 2005), because float64 keeps at least two more bits.
"""

import math

import numpy as np
from numba.extending import overload
from numba import njit, prange, types, float32, float64, int32, int64, uint64, uint8

from ._simd import HALF_NATIVE, products_t8, round_half
from ._round import (
    F_INEXACT, F_OVERFLOW, F_SATURATE, RD, RNA, RNE, RO, RU, SR,
    _round_shift, _f2b, _b2f, _f2i, _i2f, round_any, round_float, splitmix64, _clz64, _ctz64,
)

JIT = dict(nogil=True, cache=True, error_model="numpy")

S_SEQ, S_CHUNK, S_TREE, S_FUSED = 0, 1, 2, 3
_MAGIC52 = int64(0x4330000000000000)   # bits of 2^52
_TWO52 = float64(2.0**52)
_BIT52 = int64(1) << int64(52)
_K_PROD = uint64(0xA0761D6478BD642F)
_K_WIDE = uint64(0xE7037ED1A0B428DB)


@njit(inline="always", **JIT)
def ro_sum(s, p):
    """float64 round-to-odd of the exact s + p (both float64)."""
    hi = s + p
    bp = hi - s
    lo = (s - (hi - bp)) + (p - bp)
    # branch-free: when lo != 0 (and not NaN) and hi's last bit is even, step hi one
    # ulp toward lo (up in magnitude if lo has hi's sign, down otherwise)
    hb = _f2b(hi)
    fix = uint64((lo != 0.0) & (lo == lo)) & ~hb & uint64(1)
    toward = uint64((lo > 0.0) == (hi > 0.0))
    return _b2f(hb + ((toward + toward - uint64(1)) & (uint64(0) - fix)))


@njit(**JIT)
def _fadd_native(s, p):
    """IEEE binary64 round-to-nearest-even add: the hardware add is the register."""
    hi = s + p
    if hi == 0.0:
        return hi, 0
    bp = hi - s
    lo = (s - (hi - bp)) + (p - bp)
    f = 0
    if lo != 0.0 and lo == lo:
        f = F_INEXACT
    if math.isinf(hi) and not math.isinf(s) and not math.isinf(p):
        f = F_OVERFLOW | F_INEXACT
    return hi, f


@njit(**JIT)
def _zero_sum(s, p, mode):
    """Sign of an exact zero sum (IEEE 754 6.3): x + x keeps x's sign; otherwise +0,
    or -0 under round-down."""
    if s == 0.0 and p == 0.0 and (_f2b(s) >> uint64(63)) == (_f2b(p) >> uint64(63)):
        return s
    return -0.0 if mode == RD else 0.0


@njit(inline="always", **JIT)
def fadd(s, p, P, mode, key, srbits, native):
    """One rounded add of the register: round(s + p) into float format P: (value, flags)."""
    if native:
        return _fadd_native(s, p)
    v = ro_sum(s, p)
    if v == 0.0:
        v = _zero_sum(s, p, mode)
    return round_float(v, P, mode, key, srbits)


@njit(**JIT)
def step_key(base, t):
    return base + uint64(t) * uint64(0x9E3779B97F4A7C15)


@njit(**JIT)
def out_key(seed, r, c):
    return splitmix64(uint64(seed) ^ splitmix64(uint64(r) * uint64(0x100000001B3) + uint64(c)))


@njit(inline="always", **JIT)
def mode_consts(mode, s):
    """Loop-invariant constants of :func:`fast_add` for rounding at shift s (1..52).

    With ``mag`` the float64 pattern without its sign, the increment added before
    clearing the s dropped bits is ``base + ((mag >> s) & lsb_en) + (dpos ^ (neg & dxor))``
    (``neg`` all ones for a negative value; at most one of dpos/dneg is nonzero, and
    dxor = dpos ^ dneg selects dneg for negatives); round-to-odd then ORs
    ``inexact << s`` masked by ``ro_mask``. With man_bits = 0 (s = 52) every normal
    significand is 1, i.e. odd: ties-to-even always goes up and round-to-odd truncates.
    All int64: signed compares and shifts vectorise on AVX2; unsigned 64-bit compares
    do not.
    """
    lowmask = (int64(1) << s) - 1
    base, lsb_en, dpos, dneg, ro_mask = int64(0), int64(0), int64(0), int64(0), int64(0)
    if mode == RNE:
        base = lowmask >> 1
        if s == 52:
            base += 1
        else:
            lsb_en = int64(1)
    elif mode == RNA:
        base = (lowmask + 1) >> 1
    elif mode == RU:
        dpos = lowmask
    elif mode == RD:
        dneg = lowmask
    elif mode == RO:
        if s < 52:
            ro_mask = int64(-1)
    return lowmask, base, lsb_en, dpos, dpos ^ dneg, ro_mask


@njit(inline="always", **JIT)
def fast_add(x, p, s, lowmask, base, lsb_en, dpos, dxor, ro_mask, minb, maxb, zrd, znz):
    """Branch-free round(x + p) for the common case: returns (value, good, inexact).

    ``good`` is False when the exact sum is not zero and not a normal number of the
    target below its overflow threshold (tiny, overflow, inf/NaN): the caller then
    redoes the step with the general code (:func:`fadd`) from the same x and p.

    The exact sum is hi + lo (TwoSum); when lo != 0 and hi's last bit is even, hi
    steps one ulp toward lo: round-to-odd in float64, which keeps the sticky
    information for the second rounding.

    An exact zero sum (IEEE 754 6.3) is negative when both addends are (``sx & sp``),
    or, under round-down (``zrd`` all ones), when either is; ``znz`` (all ones when the
    format has -0, else 0) clears the sign for formats without negative zero. Adding
    an exact zero product to a nonzero register keeps it, exactly (subnormal, inf and
    NaN registers included).
    """
    hi = x + p
    bp = hi - x
    lo = (x - (hi - bp)) + (p - bp)
    hb = _f2i(hi)
    # lo is NaN when hi overflowed to inf: no nudge then (inf stays inf, not the
    # largest finite float64, and the caller's general path takes over)
    fix = int64((lo != 0.0) & (lo == lo)) & ~hb & 1
    delta = ((_f2i(lo) ^ hb) >> 63) | 1  # +1 if lo has hi's sign, else -1
    hb = hb + (delta & -fix)
    mag = hb & 0x7FFFFFFFFFFFFFFF
    neg = hb >> 63
    rem = mag & lowmask
    inexact = int64(rem != 0)
    add = base + ((mag >> s) & lsb_en) + (dpos ^ (neg & dxor))
    r = ((mag + add) & ~lowmask) | ((inexact << s) & ro_mask)
    # r >= minb also rejects an int64 wrap of mag + add (inf/NaN patterns)
    good = (mag >= minb) & (r >= minb) & (r <= maxb)
    xb = _f2i(x)
    zero = mag == 0
    sx = xb >> 63
    sp = _f2i(p) >> 63
    zb = ((sx & sp) | (zrd & (sx | sp))) & znz & ~0x7FFFFFFFFFFFFFFF
    keep = (p == 0.0) & (x != 0.0)       # x + 0 = x exactly: any register value
    bits = ((hb & ~0x7FFFFFFFFFFFFFFF) | r) if not zero else zb
    bits = bits if not keep else xb
    easy = zero | keep
    return _i2f(bits), good | easy, inexact & int64(~easy)


@njit(inline="always", **JIT)
def zero_consts(mode, P):
    """(zrd, znz) of :func:`fast_add` for rounding mode ``mode`` and format ``P``."""
    return int64(-1) if mode == RD else int64(0), int64(-1) if P[8] else int64(0)


@njit(inline="always", **JIT)
def _step_src(B, k, cols, e0, w, contig, c0, gb):
    """The step's B entries of the w outputs: a view of row k when their columns are
    consecutive, else gathered into the scratch ``gb``."""
    if contig:
        return B[k, c0:c0 + w]
    bk = B[k]
    for t in range(w):
        gb[t] = bk[cols[e0 + t]]
    return gb


@njit(inline="always", **JIT)
def _settle(acc, tmp, w, swaps):
    """After ping-ponging between ``acc`` and ``tmp``: the registers end in ``acc``."""
    if swaps % 2 == 1:
        for t in range(w):
            acc[t] = tmp[t]


@njit(inline="always", **JIT)
def _all_zero(x, w):
    """True when every one of x[:w] is +-0."""
    nz = 0
    for t in range(w):
        nz += int64(x[t] != 0)
    return nz == 0


@njit(inline="always", **JIT)
def _skip_a(a, cur, w, skip0):
    """Skip a step whose a[i, k] is +-0 (``skip0`` 1: B all finite, so every product
    is +-0)? Only when no register is zero: x + (+-0) = x exactly for x != 0."""
    return skip0 == 1 and a == 0 and _no_zero(cur, w)


@njit(inline="always", **JIT)
def _skip_src(src, cur, w, skip0):
    """Skip a step whose products are all +-0 (``skip0`` 2: the products are ``src``
    itself)? Only when no register is zero."""
    return skip0 == 2 and src[0] == 0 and _all_zero(src, w) and _no_zero(cur, w)


@njit(inline="always", **JIT)
def _no_zero(x, w):
    """True when none of x[:w] is +-0 (a vectorised count, no early exit)."""
    nz = 0
    for t in range(w):
        nz += int64(x[t] == 0)
    return nz == 0


@njit(**JIT)
def seq_float_row(A, B, i, cols, e0, w, k0, k1, acc, fl, ninx, nov, nsat, P, mode, keys,
                  srbits, tmp, skip0=0):
    """Sequential float accumulation of one row's outputs, vectorisable over outputs.

    Steps k0 <= k < k1 of the products of row i with the outputs' columns, exact
    products. Pass 1 (branch-free, SIMD-friendly) does round-to-odd TwoSum and the
    bit-pattern rounding for every output whose sum is a normal number of the target
    and does not overflow; pass 2 redoes the rare others (tiny, overflow, zero, inf/NaN)
    with the general scalar code. Not used for stochastic rounding.

    The registers ping-pong between ``acc`` and the scratch ``tmp`` (length w): the
    step reads one and writes the other, so pass 2 still sees the old value and the
    store is a plain vector store (a conditional in-place store becomes a masked store,
    several times slower).

    ``skip0``: a step that adds exact zeros to every register leaves each nonzero
    register unchanged with no event, so it is skipped unless some register is zero
    (whose sign the zero sum may change). 1: the step's A[i, k] is +-0 (the engine sets
    it when every entry of B is finite, so that 0 * B[k, j] is a zero); 2: the step's
    products ``src`` are all +-0 (precomputed products, :func:`float_pairs`); 0: never.
    Zero pixels and ReLU zeros make this common.
    """
    s = int64(52 - P[1])
    maxb = int64(P[4])
    minb = int64(P[2] + 1023) << 52  # pattern of the smallest normal
    lowmask, base, lsb_en, dpos, dxor, ro_mask = mode_consts(mode, s)
    zrd, znz = zero_consts(mode, P)
    contig = (cols[e0 + w - 1] - cols[e0]) == w - 1
    c0 = cols[e0]
    gb = np.empty(0 if contig else w)
    cur = acc
    nxt = tmp
    swaps = 0
    for k in range(k0, k1):
        a = A[i, k]
        if _skip_a(a, cur, w, skip0):
            continue            # + (+-0) leaves every nonzero register as it is, exactly
        nbad = 0
        src = _step_src(B, k, cols, e0, w, contig, c0, gb)
        if _skip_src(src, cur, w, skip0):
            continue
        for t in range(w):
            x = cur[t]
            v, good, inexact = fast_add(x, a * src[t], s, lowmask, base, lsb_en, dpos,
                                        dxor, ro_mask, minb, maxb, zrd, znz)
            nxt[t] = v if good else x
            gi = int64(good)
            ninx[t] += inexact & gi
            nbad += 1 - gi
        if nbad:
            for t in range(w):
                x = cur[t]
                p = a * src[t]
                v, good, inexact = fast_add(x, p, s, lowmask, base, lsb_en, dpos, dxor,
                                            ro_mask, minb, maxb, zrd, znz)
                if not good:
                    v, f = fadd(x, p, P, mode, step_key(keys[t], k), srbits, False)
                    nxt[t] = v
                    _tally(f, t, fl, nov, nsat, ninx)
        cur, nxt = nxt, cur
        swaps += 1
    _settle(acc, tmp, w, swaps)


# ------------------------------------------------------------------------------------
# float32 lanes: accumulators of at most 22 significant bits

@njit(inline="always", **JIT)
def mode_consts32(mode, lsb):
    """:func:`mode_consts` for float32 patterns, at the kept LSB ``lsb`` = 2^s (s 1..23).

    Returns (lowmask, base, lsb_en, dpos, dxor, ro_mask), all int32. Every operation
    is cast back to int32 so LLVM keeps 8 lanes per AVX2 register.
    """
    lowmask = int32(lsb - int32(1))
    base, lsb_en, dpos, dneg, ro_mask = int32(0), int32(0), int32(0), int32(0), int32(0)
    top = int32(1 << 23)
    if mode == RNE:
        base = int32(lowmask >> int32(1))
        if lsb == top:
            base = int32(base + int32(1))
        else:
            lsb_en = int32(1)
    elif mode == RNA:
        base = int32(int32(lowmask + int32(1)) >> int32(1))
    elif mode == RU:
        dpos = lowmask
    elif mode == RD:
        dneg = lowmask
    elif mode == RO:
        if lsb < top:
            ro_mask = int32(-1)
    return lowmask, base, lsb_en, dpos, int32(dpos ^ dneg), ro_mask


@njit(inline="always", **JIT)
def fast_add32(x, p, lsb, lowmask, base, lsb_en, dpos, dxor, ro_mask, minb, maxb, zrd, znz):
    """:func:`fast_add` in float32: round(x + p) to a format of p <= 22 bits.

    x and p are float32 and the product p is exact (the engine checks it), so TwoSum
    gives x + p exactly as hi + lo, round-to-odd keeps 24 >= p + 2 bits and the second
    rounding is correct (Boldo–Melquiond). Returns (value, good, inexact): float32 (x
    itself where not good), int32 0/1, int32 0/1; every select is an int32 mask, so
    the whole step stays in 8-lane registers. Exact zero sums as in :func:`fast_add`.
    """
    hi = x + p
    bp = hi - x
    lo = (x - (hi - bp)) + (p - bp)
    hb = _f2i(hi)
    fix = int32(int32((lo != float32(0.0)) & (lo == lo)) & ~hb & int32(1))
    delta = int32(int32(int32(_f2i(lo) ^ hb) >> int32(31)) | int32(1))
    hb = int32(hb + int32(delta & int32(-fix)))
    mag = int32(hb & int32(0x7FFFFFFF))
    neg = int32(hb >> int32(31))
    rem = int32(mag & lowmask)
    nz = int32(int32(rem | int32(-rem)) >> int32(31))       # -1 where inexact
    odd = int32(int32(int32(mag & lsb) != int32(0)) & lsb_en)
    add = int32(int32(base + odd) + int32(dpos ^ int32(neg & dxor)))
    r = int32(int32(int32(mag + add) & int32(~lowmask)) | int32(int32(nz & lsb) & ro_mask))
    gm = int32(-int32((mag >= minb) & (r >= minb) & (r <= maxb)))
    xb = _f2i(x)
    zm = int32(-int32(mag == int32(0)))
    km = int32(-int32((p == float32(0.0)) & (x != float32(0.0))))
    sx = int32(xb >> int32(31))
    sp = int32(_f2i(p) >> int32(31))
    zb = int32(int32(int32(int32(sx & sp) | int32(zrd & int32(sx | sp))) & znz)
               & int32(-0x80000000))
    easy = int32(zm | km)
    bits = int32(int32(int32(int32(hb & int32(-0x80000000)) | r) & int32(~easy))
                 | int32(int32(zb & zm) | int32(xb & km)))
    ok = int32(gm | easy)
    # not ok: the register keeps x (the caller redoes the step with the general code)
    bits = int32(int32(bits & ok) | int32(xb & int32(~ok)))
    return _i2f(bits), int32(ok & int32(1)), int32(int32(-nz) & int32(~easy) & int32(1))


@njit(**JIT)
def _redo32(x, p, t, k, nxt, fl, ninx, nov, nsat, P, mode, keys, srbits):
    """Step k of float32 lane t by the general float64 code (the exact product p is a
    float32): register value into nxt[t], this step's events tallied."""
    v64, f = fadd(float64(x), float64(p), P, mode, step_key(keys[t], k), srbits, False)
    nxt[t] = float32(v64)
    fl[t] |= f
    nov[t] += (f >> 1) & 1
    nsat[t] += (f >> 2) & 1
    ninx[t] = int32(ninx[t] + int32(f & 1))


@njit(inline="always", **JIT)
def is_binary32(P, mode):
    """True when format P with rounding ``mode`` is exactly IEEE 754 binary32 with
    round-to-nearest-even: 23 fraction bits, exponents -126..127, subnormals, inf, NaN
    and -0, overflow to inf. Then the hardware float32 add is the register."""
    return (P[0] == 0 and P[1] == 23 and P[2] == -126 and P[3] == 127
            and P[4] == int64(0x47EFFFFFE0000000) and P[5] == 1 and P[6] == 1
            and P[7] == 1 and P[8] == 1 and P[9] == 0 and mode == RNE)


@njit(**JIT)
def seq_native_row32(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P,
                     mode, keys, srbits, skip0):
    """:func:`seq_native_row` for the IEEE binary32 register with rne, on float32
    operands whose products are exact in float32 (the engine checks it): the hardware
    float32 add is the register (IEEE sign of zero sums, subnormals, ties to even),
    TwoSum gives the inexact flag, 8 lanes per AVX2 register. Sums that overflow or
    meet inf/NaN are redone by the general float64 code for their flags."""
    contig = (cols[e0 + w - 1] - cols[e0]) == w - 1
    c0 = cols[e0]
    cur = acc
    nxt = tmp
    swaps = 0
    for k in range(k0, k1):
        a = A[i, k]
        if _skip_a(a, cur, w, skip0):
            continue
        src = _step_src(B, k, cols, e0, w, contig, c0, gb)
        if _skip_src(src, cur, w, skip0):
            continue
        nbad = int32(0)
        for t in range(w):
            x = cur[t]
            p = a * src[t]
            hi = x + p
            bp = hi - x
            lo = (x - (hi - bp)) + (p - bp)
            nxt[t] = hi
            ninx[t] = int32(ninx[t] + int32((lo != float32(0.0)) & (lo == lo)))
            nbad = int32(nbad + int32((hi - hi) != float32(0.0)))    # inf or NaN
        if nbad:
            for t in range(w):
                h = nxt[t]
                if (h - h) != float32(0.0):     # lo was NaN there, not counted
                    _redo32(cur[t], a * src[t], t, k, nxt, fl, ninx, nov, nsat, P, mode,
                            keys, srbits)
        cur, nxt = nxt, cur
        swaps += 1
    _settle(acc, tmp, w, swaps)


@njit(inline="always", **JIT)
def fast_add32_rne(x, p, lsb, lowmask, half, minb, maxb):
    """:func:`fast_add32` for rne into a format with -0 and 1..21 fraction bits, the
    common case, in about half the operations: no direction constants, and an exact
    zero sum keeps the hardware add's sign, which under rne is IEEE's (x + (-x) = +0,
    (-0) + (-0) = -0). Zero products on subnormal registers take the general code.
    ``lsb``: the kept LSB of the float32 pattern (2^(23 - fraction bits)), ``half``
    = lsb / 2, ``lowmask`` = lsb - 1.
    Returns (value, good, inexact) as :func:`fast_add32`.
    """
    hi = x + p
    bp = hi - x
    lo = (x - (hi - bp)) + (p - bp)
    hb = _f2i(hi)
    # round-to-odd of the exact sum (float32 keeps at least two more bits than P)
    fix = int32(int32((lo != float32(0.0)) & (lo == lo)) & ~hb & int32(1))
    delta = int32(int32(int32(_f2i(lo) ^ hb) >> int32(31)) | int32(1))
    hb = int32(hb + int32(delta & int32(-fix)))
    mag = int32(hb & int32(0x7FFFFFFF))
    rem = int32(mag & lowmask)
    # ties to even: add half an LSB, less one where the kept LSB is even
    even = int32(-int32(int32(mag & lsb) == int32(0)))
    r = int32(int32(int32(mag + half) + even) & int32(~lowmask))
    # good: normal result (a normal mag rounds to at least the smallest normal) within
    # range, or an exact zero sum; else the register keeps x for the general code
    ok = int32(-int32(((mag >= minb) & (r <= maxb)) | (mag == int32(0))))
    bits = int32(int32(hb & int32(-0x80000000)) | r)
    bits = int32(int32(bits & ok) | int32(_f2i(x) & int32(~ok)))
    return _i2f(bits), int32(ok & int32(1)), int32(rem != int32(0))


@njit(**JIT)
def seq_rne_row32(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P, mode,
                  keys, srbits, skip0):
    """:func:`seq_float_row32` with :func:`fast_add32_rne` (the caller checks the
    format and mode)."""
    lsb = int32(int32(1) << int32(23 - P[1]))
    lowmask = int32(lsb - int32(1))
    half = int32(lsb >> int32(1))
    maxb = _f2i(float32(_i2f(int64(P[4]))))
    minb = int32(int32(P[2] + 127) << int32(23))
    contig = (cols[e0 + w - 1] - cols[e0]) == w - 1
    c0 = cols[e0]
    cur = acc
    nxt = tmp
    swaps = 0
    for k in range(k0, k1):
        a = A[i, k]
        if _skip_a(a, cur, w, skip0):
            continue
        src = _step_src(B, k, cols, e0, w, contig, c0, gb)
        if _skip_src(src, cur, w, skip0):
            continue
        nbad = int32(0)
        for t in range(w):
            v, gi, inexact = fast_add32_rne(cur[t], a * src[t], lsb, lowmask, half, minb, maxb)
            nxt[t] = v
            ninx[t] = int32(ninx[t] + int32(inexact & gi))
            nbad = int32(nbad + int32(int32(1) - gi))
        if nbad:
            for t in range(w):
                x = cur[t]
                v, gi, inexact = fast_add32_rne(x, a * src[t], lsb, lowmask, half, minb, maxb)
                if gi == 0:
                    _redo32(x, a * src[t], t, k, nxt, fl, ninx, nov, nsat, P, mode, keys,
                            srbits)
        cur, nxt = nxt, cur
        swaps += 1
    _settle(acc, tmp, w, swaps)


@njit(inline="always", **JIT)
def is_binary16(P, mode):
    """True when format P with rounding ``mode`` is exactly IEEE 754 binary16 with
    round-to-nearest-even: 10 fraction bits, exponents -14..15, subnormals, inf, NaN
    and -0, overflow to inf."""
    return (P[0] == 0 and P[1] == 10 and P[2] == -14 and P[3] == 15
            and P[4] == int64(0x40EFFC0000000000) and P[5] == 1 and P[6] == 1
            and P[7] == 1 and P[8] == 1 and P[9] == 0 and mode == RNE)


@njit(inline="always", **JIT)
def fast_add32_half(x, p):
    """One binary16 rne step on float32 lanes (fp16 register x, exact float32 product
    p): TwoSum, round-to-odd to float32 (which keeps 13 more bits than binary16, so
    the second rounding is correct: Boldo & Melquiond), then the hardware conversion
    to binary16 and back (:func:`round_half`). An exact zero sum keeps the float32
    add's sign, IEEE's under rne. Returns (value, good, inexact) as
    :func:`fast_add32`; not good (the general code redoes it): an infinite or NaN
    result (overflow, or an inf/NaN operand)."""
    hi = x + p
    bp = hi - x
    lo = (x - (hi - bp)) + (p - bp)
    hb = _f2i(hi)
    fix = int32(int32((lo != float32(0.0)) & (lo == lo)) & ~hb & int32(1))
    delta = int32(int32(int32(_f2i(lo) ^ hb) >> int32(31)) | int32(1))
    r = round_half(_i2f(int32(hb + int32(delta & int32(-fix)))))
    good = int32((r - r) == float32(0.0))
    inexact = int32((r != hi) | (lo != float32(0.0)))
    return r, good, inexact


@njit(**JIT)
def seq_half_row32(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P, mode,
                   keys, srbits, skip0):
    """:func:`seq_float_row32` with :func:`fast_add32_half` for the IEEE binary16 register
    with rne where the hardware converts (the caller checks :data:`HALF_NATIVE`, the
    format and the mode)."""
    contig = (cols[e0 + w - 1] - cols[e0]) == w - 1
    c0 = cols[e0]
    cur = acc
    nxt = tmp
    swaps = 0
    for k in range(k0, k1):
        a = A[i, k]
        if _skip_a(a, cur, w, skip0):
            continue
        src = _step_src(B, k, cols, e0, w, contig, c0, gb)
        if _skip_src(src, cur, w, skip0):
            continue
        nbad = int32(0)
        for t in range(w):
            v, gi, inexact = fast_add32_half(cur[t], a * src[t])
            nxt[t] = v
            ninx[t] = int32(ninx[t] + int32(inexact & gi))
            nbad = int32(nbad + int32(int32(1) - gi))
        if nbad:
            for t in range(w):
                x = cur[t]
                v, gi, inexact = fast_add32_half(x, a * src[t])
                if gi == 0:
                    _redo32(x, a * src[t], t, k, nxt, fl, ninx, nov, nsat, P, mode, keys,
                            srbits)
        cur, nxt = nxt, cur
        swaps += 1
    _settle(acc, tmp, w, swaps)


@njit(**JIT)
def seq_float_row32(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P,
                    mode, keys, srbits, skip0=0):
    """:func:`seq_float_row` on float32 operands and registers (8 lanes per AVX2
    register). ``ninx`` is int32; ``acc``, ``tmp``, ``gb`` float32 scratch of length w.
    Rare steps (tiny, overflow, zero, inf/NaN sums) are redone exactly in float64 by
    the general code; every value of the format is a float32, so storing it is exact.
    The IEEE binary32 register with rne runs :func:`seq_native_row32`, other rne
    registers with -0 :func:`seq_rne_row32`.
    """
    if HALF_NATIVE and is_binary16(P, mode):
        seq_half_row32(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P,
                       mode, keys, srbits, skip0)
        return
    if is_binary32(P, mode):
        seq_native_row32(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat,
                         P, mode, keys, srbits, skip0)
        return
    if mode == RNE and P[8] == 1 and 1 <= P[1] <= 21:
        seq_rne_row32(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P,
                      mode, keys, srbits, skip0)
        return
    lsb = int32(int32(1) << int32(23 - P[1]))
    maxb = _f2i(float32(_i2f(int64(P[4]))))
    minb = int32(int32(P[2] + 127) << int32(23))
    lowmask, base, lsb_en, dpos, dxor, ro_mask = mode_consts32(mode, lsb)
    zrd64, znz64 = zero_consts(mode, P)
    zrd, znz = int32(zrd64), int32(znz64)
    contig = (cols[e0 + w - 1] - cols[e0]) == w - 1
    c0 = cols[e0]
    cur = acc
    nxt = tmp
    swaps = 0
    for k in range(k0, k1):
        a = A[i, k]
        if _skip_a(a, cur, w, skip0):
            continue            # + (+-0) leaves every nonzero register as it is, exactly
        nbad = int32(0)
        src = _step_src(B, k, cols, e0, w, contig, c0, gb)
        if _skip_src(src, cur, w, skip0):
            continue
        for t in range(w):
            x = cur[t]
            v, gi, inexact = fast_add32(x, a * src[t], lsb, lowmask, base, lsb_en, dpos,
                                        dxor, ro_mask, minb, maxb, zrd, znz)
            nxt[t] = v
            ninx[t] = int32(ninx[t] + int32(inexact & gi))
            nbad = int32(nbad + int32(int32(1) - gi))
        if nbad:
            for t in range(w):
                x = cur[t]
                v, gi, inexact = fast_add32(x, a * src[t], lsb, lowmask, base, lsb_en,
                                            dpos, dxor, ro_mask, minb, maxb, zrd, znz)
                if gi == 0:
                    _redo32(x, a * src[t], t, k, nxt, fl, ninx, nov, nsat, P, mode, keys,
                            srbits)
        cur, nxt = nxt, cur
        swaps += 1
    _settle(acc, tmp, w, swaps)


@njit(inline="always", **JIT)
def _row_events(w, seed, i, cols, e0):
    """Per-output event scratch of a row of w outputs: (flags, overflow count,
    saturation count, stochastic-rounding keys)."""
    fl = np.zeros(w, dtype=np.uint8)
    nov = np.zeros(w, dtype=np.int64)
    nsat = np.zeros(w, dtype=np.int64)
    keys = np.empty(w, dtype=np.uint64)
    for t in range(w):
        keys[t] = out_key(seed, i, cols[e0 + t])
    return fl, nov, nsat, keys


def _span(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P, mode, keys,
          srbits, skip0):
    """Sequential steps k0 <= k < k1 of w registers: :func:`seq_float_row32` for float32
    operands, :func:`seq_float_row` for float64 (chosen when numba types the call)."""


@overload(_span, jit_options=dict(nogil=True, error_model="numpy"))
def _span_typed(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P, mode,
                keys, srbits, skip0):
    if A.dtype == types.float32:
        def impl(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P, mode,
                 keys, srbits, skip0):
            seq_float_row32(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat,
                            P, mode, keys, srbits, skip0)
    else:
        def impl(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P, mode,
                 keys, srbits, skip0):
            seq_float_row(A, B, i, cols, e0, w, k0, k1, acc, fl, ninx, nov, nsat, P, mode,
                          keys, srbits, tmp, skip0)
    return impl


def _inx_scratch(A, w):
    """Inexact-count scratch: int32 beside float32 lanes (8 per register), else int64."""


@overload(_inx_scratch, jit_options=dict(nogil=True, error_model="numpy"))
def _inx_scratch_typed(A, w):
    if A.dtype == types.float32:
        return lambda A, w: np.zeros(w, dtype=np.int32)
    return lambda A, w: np.zeros(w, dtype=np.int64)


@njit(**JIT)
def _lanes(A, B, i, cols, e0, w, keys, init, o0, P, mode, struct, L, PW, wmode, srbits,
           wnative, skip0, out, oflags, c_ov, c_sat, c_inx):
    """w registers side by side over the products ``A[i, k] * B[k, cols[e0 + t]]``
    (exact in A's dtype), sequential or chunked (chunks of L steps from zero in the
    narrow register, each promoted into the wide register PW, which starts at the
    initial value); results and events go to index o0 + t, initial values come from
    init[o0 + t]. ``keys``: stochastic-rounding keys of the wide register."""
    K = A.shape[1]
    acc = np.empty(w, dtype=A.dtype)
    tmp = np.empty(w, dtype=A.dtype)
    gb = np.empty(w, dtype=B.dtype)
    ninx = _inx_scratch(A, w)
    winx = np.zeros(w, dtype=np.int64)
    fl = np.zeros(w, dtype=np.uint8)
    nov = np.zeros(w, dtype=np.int64)
    nsat = np.zeros(w, dtype=np.int64)
    if struct == S_SEQ:
        for t in range(w):
            acc[t] = init[o0 + t]
        if K > 0:
            _span(A, B, i, cols, e0, w, 0, K, acc, tmp, gb, fl, ninx, nov, nsat, P, mode,
                  keys, srbits, skip0)
        for t in range(w):
            out[o0 + t] = float64(acc[t])
    else:
        wide = np.empty(w)
        for t in range(w):
            wide[t] = init[o0 + t]
        k0 = 0
        while k0 < K:
            k1 = min(K, k0 + L)
            for t in range(w):
                acc[t] = 0.0
            _span(A, B, i, cols, e0, w, k0, k1, acc, tmp, gb, fl, ninx, nov, nsat, P, mode,
                  keys, srbits, skip0)
            for t in range(w):
                v, f = fadd(wide[t], float64(acc[t]), PW, wmode,
                            step_key(keys[t] ^ _K_WIDE, k0), srbits, wnative)
                wide[t] = v
                _tally(f, t, fl, nov, nsat, winx)
            k0 = k1
        for t in range(w):
            out[o0 + t] = wide[t]
    for t in range(w):
        n_inx = int64(ninx[t]) + winx[t]
        oflags[o0 + t] = fl[t] | (uint8(F_INEXACT) if n_inx > 0 else uint8(0))
        c_ov[o0 + t] = nov[t]
        c_sat[o0 + t] = nsat[t]
        c_inx[o0 + t] = n_inx


@njit(**JIT)
def _row32(r, A, B, rows, ptr, cols, init, P, mode, struct, L, PW, wmode, seed, srbits,
           wnative, skip0, out, oflags, c_ov, c_sat, c_inx):
    """CSR row r of :func:`float_rows32`."""
    e0 = ptr[r]
    w = ptr[r + 1] - e0
    if w > 0:
        keys = np.empty(w, dtype=np.uint64)
        for t in range(w):
            keys[t] = out_key(seed, rows[r], cols[e0 + t])
        _lanes(A, B, rows[r], cols, e0, w, keys, init, e0, P, mode, struct, L, PW, wmode,
               srbits, wnative, skip0, out, oflags, c_ov, c_sat, c_inx)


@njit(parallel=True, **JIT)
def float_rows32(A, B, rows, ptr, cols, init, P, mode, struct, L, PW, wmode, seed, srbits,
                 wnative, skip0, out, oflags, c_ov, c_sat, c_inx):
    """:func:`float_rows` for float32 operands A, B whose products are exact in float32,
    an accumulator of at most 22 significant bits inside float32's normal range, exact
    products, sequential or chunked structure, no stochastic rounding of the narrow
    register (the engine checks all of this)."""
    for r in prange(rows.shape[0]):
        _row32(r, A, B, rows, ptr, cols, init, P, mode, struct, L, PW, wmode, seed, srbits,
               wnative, skip0, out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def float_rows32_serial(A, B, rows, ptr, cols, init, P, mode, struct, L, PW, wmode, seed,
                        srbits, wnative, skip0, out, oflags, c_ov, c_sat, c_inx):
    """:func:`float_rows32` on the calling thread (small products)."""
    for r in range(rows.shape[0]):
        _row32(r, A, B, rows, ptr, cols, init, P, mode, struct, L, PW, wmode, seed, srbits,
               wnative, skip0, out, oflags, c_ov, c_sat, c_inx)


@njit(parallel=True, **JIT)
def float_pairs(A, Bt, pr, pc, init, P, mode, struct, L, PW, wmode, seed, srbits, wnative,
                lanes, out, oflags, c_ov, c_sat, c_inx):
    """Sequential or chunked float registers for scattered outputs (pr[e], pc[e]).

    Outputs run in blocks of ``lanes`` registers (any rows and columns), so the cost is
    proportional to the number of outputs however they are scattered. Each block first
    forms its exact products ``A[pr, k] * Bt[pc, k]`` in a k-major buffer, reading rows
    of A and of B transposed contiguously, then runs the same register steps as
    :func:`float_rows32` / the float64 row kernel on them (times 1, exact). float32 or
    float64 operands (the engine checks exactness); not for stochastic rounding of the
    narrow register.
    """
    K = A.shape[1]
    nnz = pr.shape[0]
    nblk = (nnz + lanes - 1) // lanes
    for blk in prange(nblk):
        e0 = blk * lanes
        w = min(nnz, e0 + lanes) - e0
        pbuf = np.empty((K, (w + 7) // 8 * 8), dtype=A.dtype)
        keys = np.empty(w, dtype=np.uint64)
        lane = np.empty(w, dtype=np.int64)
        for t in range(w):
            keys[t] = out_key(seed, pr[e0 + t], pc[e0 + t])
            lane[t] = t
        # products k-major, eight lanes by eight k at a time: contiguous vector loads
        # of rows of A and of B transposed, multiplied and transposed in registers
        # (a strided scalar store per product was most of this kernel's time)
        w8 = (w + 7) // 8 * 8
        K8 = K // 8 * 8
        offs = np.empty(16, dtype=np.int64)
        for t0 in range(0, w8, 8):
            for u in range(8):
                t = e0 + min(t0 + u, w - 1)
                offs[u] = pr[t] * K
                offs[8 + u] = pc[t] * K
            for k0 in range(0, K8, 8):
                products_t8(A, Bt, offs, k0, pbuf, k0 * w8 + t0, w8)
            for k in range(K8, K):
                for u in range(8):
                    t = e0 + min(t0 + u, w - 1)
                    pbuf[k, t0 + u] = A[pr[t], k] * Bt[pc[t], k]
        ones = np.ones((1, K), dtype=A.dtype)
        _lanes(ones, pbuf, 0, lane, 0, w, keys, init, e0, P, mode, struct, L, PW, wmode,
               srbits, wnative, 2, out, oflags, c_ov, c_sat, c_inx)


# ------------------------------------------------------------------------------------
# multi-term fused adder

@njit(**JIT)
def _decompose(x):
    """|x| = m * 2**E with integer m < 2**53; returns (m, E, neg)."""
    b = _f2b(x)
    neg = (b >> uint64(63)) != 0
    mag = b & uint64(0x7FFFFFFFFFFFFFFF)
    ef = int64(mag >> uint64(52))
    fr = mag & uint64(0x000FFFFFFFFFFFFF)
    if ef == 0:
        return fr, int64(-1074), neg
    return fr | uint64(0x0010000000000000), ef - 1075, neg


@njit(**JIT)
def _ilogb(x):
    m, E, neg = _decompose(x)
    return E + (63 - _clz64(m))


@njit(**JIT)
def _ro_ldexp(n_neg, u, qe):
    """float64 round-to-odd of (-1)**n_neg * u * 2**qe (u a uint64)."""
    if u == 0:
        return -0.0 if n_neg else 0.0
    nb = 64 - _clz64(u)
    d = 0
    if nb > 53:
        d = nb - 53
    if qe + d < -1074:
        d = -1074 - qe
    if d > 0:
        if d >= 64:
            q = uint64(0)
            sticky = True
        else:
            q = u >> uint64(d)
            sticky = (u & ((uint64(1) << uint64(d)) - uint64(1))) != 0
        if sticky:
            q = q | uint64(1)
        u = q
        qe = qe + d
    v = math.ldexp(np.float64(u), qe)
    return -v if n_neg else v


@njit(**JIT)
def fused_step(s, prods, cnt, P, mode, key, srbits, man, G, amode):
    """One step of the (cnt + 1)-term fused adder: returns (value, flags)."""
    # special and all-zero cases
    allzero = s == 0.0
    finite = not (math.isinf(s) or s != s)
    emax = int64(-100000)
    if s != 0.0 and finite:
        emax = _ilogb(s)
    fsum = s
    anyneg0 = s == 0.0 and _f2b(s) != 0
    for t in range(cnt):
        x = prods[t]
        fsum = fsum + x
        if x != 0.0:
            allzero = False
            if math.isinf(x) or x != x:
                finite = False
            else:
                e = _ilogb(x)
                if e > emax:
                    emax = e
        elif _f2b(x) != 0:
            anyneg0 = True
    if not finite:
        return round_float(fsum, P, mode, key, srbits)
    if allzero:
        v = fsum
        if mode == RD and anyneg0:
            v = -0.0
        return round_float(v, P, mode, key, srbits)
    qe = emax - man - G
    total = int64(0)
    # accumulator first, then the products
    for t in range(cnt + 1):
        x = s if t == 0 else prods[t - 1]
        if x == 0.0:
            continue
        m, E, neg = _decompose(x)
        sh = qe - E
        if sh <= 0:
            q = m << uint64(-sh)
            inexact = False
        else:
            q, inexact = _round_shift(m, sh, neg, amode, uint64(0), 0)
        if neg:
            total -= int64(q)
        else:
            total += int64(q)
    neg = total < 0
    u = uint64(-total) if neg else uint64(total)
    v = _ro_ldexp(neg, u, qe)
    if v == 0.0:
        v = -0.0 if mode == RD else 0.0
    return round_float(v, P, mode, key, srbits)


# ------------------------------------------------------------------------------------
# float accumulators

@njit(inline="always", **JIT)
def _tally(f, t, fl, nov, nsat, ninx):
    """Record the event flags f of one rounding of output t."""
    fl[t] |= f
    nov[t] += (f >> 1) & 1
    nsat[t] += (f >> 2) & 1
    ninx[t] += f & 1


@njit(inline="always", **JIT)
def _product(p, pkind, PP, pmode, key, srbits, t, fl, nov, nsat, ninx):
    """The product as the adder sees it: exact, or rounded to the product format."""
    if pkind == 1:
        p, pf = round_any(p, PP, pmode, key, srbits)
        _tally(pf, t, fl, nov, nsat, ninx)
    return p


@njit(**JIT)
def seq_native_row(A, B, i, cols, e0, w, k0, k1, acc, fl, ninx, nov, nsat, tmp, skip0):
    """:func:`seq_float_row` for the IEEE binary64 register with rne: the hardware add
    is the register (TwoSum only for the inexact flag), vectorised over outputs; sums
    that overflow (or meet inf/NaN) are redone by :func:`_fadd_native` for their flags.
    Zero sums take IEEE's sign from the hardware add itself. ``skip0`` as in
    :func:`seq_float_row` (1 or 0)."""
    contig = (cols[e0 + w - 1] - cols[e0]) == w - 1
    c0 = cols[e0]
    gb = np.empty(0 if contig else w)
    cur = acc
    nxt = tmp
    swaps = 0
    for k in range(k0, k1):
        a = A[i, k]
        if _skip_a(a, cur, w, skip0):
            continue
        src = _step_src(B, k, cols, e0, w, contig, c0, gb)
        nbad = 0
        for t in range(w):
            x = cur[t]
            p = a * src[t]
            hi = x + p
            bp = hi - x
            lo = (x - (hi - bp)) + (p - bp)
            nxt[t] = hi
            ninx[t] += int64((lo != 0.0) & (lo == lo))
            nbad += int64((hi - hi) != 0.0)        # inf or NaN (NaN != 0 is true)
        if nbad:
            for t in range(w):
                h = nxt[t]
                if (h - h) != 0.0:
                    v, f = _fadd_native(cur[t], a * src[t])
                    nxt[t] = v
                    _tally(f, t, fl, nov, nsat, ninx)
        cur, nxt = nxt, cur
        swaps += 1
    _settle(acc, tmp, w, swaps)


@njit(**JIT)
def _seq_span(A, B, i, cols, e0, w, k0, k1, acc, keys, P, mode, pkind, PP, pmode, srbits,
              native, fl, nov, nsat, ninx, tmp, skip0):
    """Sequential register steps k0 <= k < k1 for the outputs of row i: the vectorised
    loop when it applies (exact products, not native fp64, not stochastic), else the
    general scalar step."""
    if pkind == 0 and not native and mode != SR:
        seq_float_row(A, B, i, cols, e0, w, k0, k1, acc, fl, ninx, nov, nsat, P, mode, keys,
                      srbits, tmp, skip0)
        return
    if pkind == 0 and native and w > 0:
        seq_native_row(A, B, i, cols, e0, w, k0, k1, acc, fl, ninx, nov, nsat, tmp, skip0)
        return
    for k in range(k0, k1):
        a = A[i, k]
        for t in range(w):
            p = _product(a * B[k, cols[e0 + t]], pkind, PP, pmode,
                         step_key(keys[t] ^ _K_PROD, k), srbits, t, fl, nov, nsat, ninx)
            v, f = fadd(acc[t], p, P, mode, step_key(keys[t], k), srbits, native)
            acc[t] = v
            _tally(f, t, fl, nov, nsat, ninx)


@njit(**JIT)
def _float_row(r, A, B, rows, ptr, cols, init, P, mode, pkind, PP, pmode, struct, L, PW,
               wmode, T, G, amode, seed, srbits, native, wnative, has_bias, skip0,
               out, oflags, c_ov, c_sat, c_inx):
    """One CSR row of :func:`float_rows` (all its outputs, all K steps)."""
    K = A.shape[1]
    man = P[1]
    i = rows[r]
    e0 = ptr[r]
    e1 = ptr[r + 1]
    w = e1 - e0
    if w == 0:
        return
    acc = np.empty(w)
    ninx = np.zeros(w, dtype=np.int64)
    fl, nov, nsat, keys = _row_events(w, seed, i, cols, e0)
    tmp = np.empty(w)
    if struct == S_SEQ:
        for t in range(w):
            acc[t] = init[e0 + t]
        _seq_span(A, B, i, cols, e0, w, 0, K, acc, keys, P, mode, pkind, PP, pmode,
                  srbits, native, fl, nov, nsat, ninx, tmp, skip0)
    elif struct == S_CHUNK:
        # chunks of L steps from zero in the narrow register, each promoted into the
        # wide register (which starts at the bias)
        wide = np.empty(w)
        for t in range(w):
            wide[t] = init[e0 + t]
        k0 = 0
        while k0 < K:
            k1 = min(K, k0 + L)
            for t in range(w):
                acc[t] = 0.0
            _seq_span(A, B, i, cols, e0, w, k0, k1, acc, keys, P, mode, pkind, PP,
                      pmode, srbits, native, fl, nov, nsat, ninx, tmp, skip0)
            for t in range(w):
                v, f = fadd(wide[t], acc[t], PW, wmode, step_key(keys[t] ^ _K_WIDE, k0),
                            srbits, wnative)
                wide[t] = v
                _tally(f, t, fl, nov, nsat, ninx)
            k0 = k1
        for t in range(w):
            acc[t] = wide[t]
    elif struct == S_TREE:
        buf = np.empty((max(K, 1), w))
        for k in range(K):
            a = A[i, k]
            for t in range(w):
                buf[k, t] = _product(a * B[k, cols[e0 + t]], pkind, PP, pmode,
                                     step_key(keys[t] ^ _K_PROD, k), srbits, t, fl, nov,
                                     nsat, ninx)
        n_lv = K
        node = 0
        while n_lv > 1:
            half = n_lv // 2
            for h in range(half):
                for t in range(w):
                    v, f = fadd(buf[2 * h, t], buf[2 * h + 1, t], P, mode,
                                step_key(keys[t], K + node), srbits, native)
                    buf[h, t] = v
                    _tally(f, t, fl, nov, nsat, ninx)
                node += 1
            if n_lv % 2 == 1:
                for t in range(w):
                    buf[half, t] = buf[n_lv - 1, t]
            n_lv = half + (n_lv % 2)
        for t in range(w):
            if K == 0:
                acc[t] = init[e0 + t]
            else:
                if has_bias:
                    v, f = fadd(init[e0 + t], buf[0, t], P, mode,
                                step_key(keys[t], K + node), srbits, native)
                else:  # the root itself (a lone product still rounds into acc)
                    v, f = round_float(buf[0, t], P, mode, step_key(keys[t], K + node),
                                       srbits)
                acc[t] = v
                _tally(f, t, fl, nov, nsat, ninx)
    else:  # fused multi-term adder
        prods = np.empty(max(T, 1))
        for t in range(w):
            acc[t] = init[e0 + t]
        for t in range(w):
            j = cols[e0 + t]
            k0 = 0
            while k0 < K:
                k1 = min(K, k0 + T)
                cnt = k1 - k0
                for k in range(k0, k1):
                    prods[k - k0] = _product(A[i, k] * B[k, j], pkind, PP, pmode,
                                             step_key(keys[t] ^ _K_PROD, k), srbits, t,
                                             fl, nov, nsat, ninx)
                v, f = fused_step(acc[t], prods, cnt, P, mode, step_key(keys[t], k0),
                                  srbits, man, G, amode)
                acc[t] = v
                _tally(f, t, fl, nov, nsat, ninx)
                k0 = k1
    for t in range(w):
        out[e0 + t] = acc[t]
        oflags[e0 + t] = fl[t] | (uint8(F_INEXACT) if ninx[t] > 0 else uint8(0))
        c_ov[e0 + t] = nov[t]
        c_sat[e0 + t] = nsat[t]
        c_inx[e0 + t] = ninx[t]


@njit(parallel=True, **JIT)
def float_rows(A, B, rows, ptr, cols, init, P, mode, pkind, PP, pmode, struct, L, PW,
               wmode, T, G, amode, seed, srbits, native, wnative, has_bias, skip0,
               out, oflags, c_ov, c_sat, c_inx):
    """Accumulate the selected outputs of A @ B in a float register.

    A (m, K), B (K, n); entries e in ptr[r]:ptr[r+1] are outputs (rows[r], cols[e]);
    init[e] is the register's initial value (bias or 0, already in the format holding
    it); results and OR-ed flags go to out[e], oflags[e]; event counts to c_*[e].
    Rows run in parallel (independent outputs).
    """
    for r in prange(rows.shape[0]):
        _float_row(r, A, B, rows, ptr, cols, init, P, mode, pkind, PP, pmode, struct, L, PW,
               wmode, T, G, amode, seed, srbits, native, wnative, has_bias, skip0,
               out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def float_rows_serial(A, B, rows, ptr, cols, init, P, mode, pkind, PP, pmode, struct, L, PW,
               wmode, T, G, amode, seed, srbits, native, wnative, has_bias, skip0,
               out, oflags, c_ov, c_sat, c_inx):
    """:func:`float_rows` on the calling thread: small products, where starting the
    thread pool costs more than the work."""
    for r in range(rows.shape[0]):
        _float_row(r, A, B, rows, ptr, cols, init, P, mode, pkind, PP, pmode, struct, L, PW,
               wmode, T, G, amode, seed, srbits, native, wnative, has_bias, skip0,
               out, oflags, c_ov, c_sat, c_inx)


# ------------------------------------------------------------------------------------
# integer / fixed-point accumulators

@njit(**JIT)
def to_units(p, frac, mode, key, srbits):
    """Round float64 p to an integer number of 2**-frac units: (int64, inexact).

    The engine guarantees |p| * 2**frac < 2**62.
    """
    if p == 0.0:
        return int64(0), False
    m, E, neg = _decompose(p)
    sh = -frac - E
    if sh <= 0:
        q = m << uint64(-sh)
        inexact = False
    else:
        q, inexact = _round_shift(m, sh, neg, mode, key, srbits)
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


@njit(parallel=True, **JIT)
def int_rows_exact(Ai, Bi, rows, ptr, cols, init, lo, hi, bits, signed, sat,
                   out, oflags, c_ov, c_sat):
    """Sequential integer register with int64 (or int32) operands whose products are
    exact integers (|a*b| < 2**62): branch-free wrap/saturate, vectorisable over
    outputs."""
    K = Ai.shape[1]
    sh = int64(64 - bits)
    nrows = rows.shape[0]
    for r in prange(nrows):
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
        for t in range(w):
            out[e0 + t] = acc[t]
            oflags[e0 + t] = uint8(F_OVERFLOW | (F_SATURATE if sat else 0)) if nov[t] > 0 else uint8(0)
            c_ov[e0 + t] = nov[t]
            c_sat[e0 + t] = nov[t] if sat else 0


@njit(parallel=True, **JIT)
def int_pairs_exact(Ai, Bit, pr, pc, init, lo, hi, bits, signed, sat, lanes,
                    out, oflags, c_ov, c_sat):
    """:func:`int_rows_exact` for scattered outputs (pr[e], pc[e]) in blocks of
    ``lanes`` registers. Each block first copies its rows of A and of B transposed into
    k-major buffers, reading every row contiguously (rows a multiple of 4 KiB apart,
    read in step, would evict each other from the L1 cache), then runs the registers
    side by side."""
    K = Ai.shape[1]
    sh = int64(64 - bits)
    nnz = pr.shape[0]
    nblk = (nnz + lanes - 1) // lanes
    for blk in prange(nblk):
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
        for t in range(w):
            out[e0 + t] = acc[t]
            oflags[e0 + t] = uint8(F_OVERFLOW | (F_SATURATE if sat else 0)) if nov[t] > 0 else uint8(0)
            c_ov[e0 + t] = nov[t]
            c_sat[e0 + t] = nov[t] if sat else 0


@njit(parallel=True, **JIT)
def int_rows(A, B, rows, ptr, cols, init, frac, lo, hi, bits, sat, mode, struct, L,
             wlo, whi, wbits, wsat, seed, srbits, out, oflags, c_ov, c_sat, c_inx):
    """Integer/fixed register accumulation of the selected outputs (int64 units).

    Sequential (struct 0) or chunked (struct 1: chunks of L in the narrow register from
    zero, each added into the wide register [wlo, whi] which starts at init).
    """
    K = A.shape[1]
    nrows = rows.shape[0]
    for r in prange(nrows):
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
        Lc = L if struct == S_CHUNK else K
        if Lc < 1:
            Lc = 1
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
                    fl[t] |= f
                    nov[t] += (f >> 1) & 1
                    nsat[t] += (f >> 2) & 1
            if struct == S_CHUNK:
                for t in range(w):
                    v, f = iadd(wide[t], acc[t], wlo, whi, wbits, wsat)
                    wide[t] = v
                    fl[t] |= f
                    nov[t] += (f >> 1) & 1
                    nsat[t] += (f >> 2) & 1
            k0 = k1
        for t in range(w):
            out[e0 + t] = acc[t] if struct == S_SEQ else wide[t]
            oflags[e0 + t] = fl[t]
            c_ov[e0 + t] = nov[t]
            c_sat[e0 + t] = nsat[t]
            c_inx[e0 + t] = ninx[t]


@njit(inline="always", **JIT)
def _sig_range(x, lo, hi):
    """:func:`sig_stats` of x[lo:hi] (smax, lmin, emx, count of non-integer entries).

    Vectorised (no bit-count instructions, which AVX2 lacks for vectors): the lowest
    set bit of the significand is ``m & -m``, and the exponent of a power of two, or
    of an integer below 2^52, is read from its float64 conversion, made exactly by
    the 2^52 magic number (``bits(2^52) | v`` is 2^52 + v for v < 2^52).
    """
    smax = int64(0)
    lmin = int64(100000)
    emx = int64(-100000)
    nonint = int64(0)
    for idx in range(lo, hi):
        b = _f2i(x[idx])
        e = (b >> 52) & 0x7FF
        fr = b & 0xFFFFFFFFFFFFF
        valid = (e != 0x7FF) & ((e | fr) != 0)
        normal = e > 0
        m = fr | (int64(normal) << 52)
        low = m & (-m)                          # a power of two, at most 2^52
        # exponent of low (2^52 itself shares its bit with the magic number's exponent)
        ctz = ((_f2i(_i2f(low | _MAGIC52) - _TWO52) >> 52) & 0x7FF) - 1023
        ctz = int64(52) if low == _BIT52 else ctz
        # floor(log2(fr)) of a subnormal's fraction
        hsub = ((_f2i(_i2f(fr | _MAGIC52) - _TWO52) >> 52) & 0x7FF) - 1023
        lsb = max(e, int64(1)) - 1075 + ctz     # exponent of the last significant bit
        top = e - 1023 if normal else hsub - 1074
        nb = top - lsb + 1
        smax = max(smax, nb if valid else int64(0))
        lmin = min(lmin, lsb if valid else int64(100000))
        emx = max(emx, top if valid else int64(-100000))
        nonint += int64(valid & (lsb < 0))
    return smax, lmin, emx, nonint


@njit(**JIT)
def sig_stats(x):
    """(max significant bits, min exponent of the last significant bit, max ilogb,
    all-integer) over the finite nonzero entries of the 1-D float64 array x.
    Branch-free per entry (no data-dependent jumps), running extrema in scalars."""
    smax, lmin, emx, nonint = _sig_range(x, 0, x.shape[0])
    return smax, lmin, emx, nonint == 0


_MAGIC23 = int32(0x4B000000)     # bits of 2^23 (float32)
_TWO23 = float32(2.0**23)
_BIT23 = int32(1) << int32(23)


@njit(**JIT)
def _sig_range_f32(x, out, lo, hi):
    """:func:`sig_stats` of x[lo:hi] (1-D float64), computed from float32(x), which is
    written to ``out`` (the statistics then run on int32 patterns, 8 lanes per AVX2
    register).

    Returns (smax, lmin, emx, non-integer, not-float32, non-finite) counts: the statistics
    are those of x when ``not-float32`` (the number of entries that float32 changes)
    is 0; ``non-finite`` counts inf and NaN entries.
    """
    smax = int32(0)
    lmin = int32(100000)
    emx = int32(-100000)
    nonint = int32(0)
    nonrep = int32(0)
    nonfin = int32(0)
    for idx in range(lo, hi):                 # the copy (4 lanes: float64 loads)
        v = x[idx]
        f = float32(v)
        out[idx] = f
        nonrep = int32(nonrep + int32((float64(f) != v) & (v == v)))
    for idx in range(lo, hi):                 # the statistics (8 lanes)
        b = _f2i(out[idx])
        e = int32(int32(b >> int32(23)) & int32(0xFF))
        fr = int32(b & int32(0x7FFFFF))
        nonfin = int32(nonfin + int32(e == int32(0xFF)))
        valid = (e != int32(0xFF)) & (int32(e | fr) != int32(0))
        normal = e > int32(0)
        m = int32(fr | int32(int32(normal) << int32(23)))
        low = int32(m & int32(-m))
        ctz = int32(int32(int32(_f2i(_i2f(int32(low | _MAGIC23)) - _TWO23) >> int32(23))
                          & int32(0xFF)) - int32(127))
        ctz = int32(23) if low == _BIT23 else ctz
        hsub = int32(int32(int32(_f2i(_i2f(int32(fr | _MAGIC23)) - _TWO23) >> int32(23))
                           & int32(0xFF)) - int32(127))
        lsb = int32(int32(max(e, int32(1)) - int32(150)) + ctz)
        top = int32(e - int32(127)) if normal else int32(hsub - int32(149))
        nb = int32(int32(top - lsb) + int32(1))
        smax = max(smax, nb if valid else int32(0))
        lmin = min(lmin, lsb if valid else int32(100000))
        emx = max(emx, top if valid else int32(-100000))
        nonint = int32(nonint + int32(valid & (lsb < int32(0))))
    return int64(smax), int64(lmin), int64(emx), int64(nonint), int64(nonrep), int64(nonfin)


@njit(**JIT)
def sig_stats_f32(x, out):
    """:func:`_sig_range_f32` of all of x, on the calling thread (a chunked parallel
    version measured slower at 512 x 512). Returns (smax, lmin, emx, all-integer,
    not-float32 count, non-finite count)."""
    smax, lmin, emx, nonint, nonrep, nonfin = _sig_range_f32(x, out, 0, x.shape[0])
    return smax, lmin, emx, nonint == 0, nonrep, nonfin


@njit(parallel=True, **JIT)
def sig_stats_f32_pair(x, ox, y, oy):
    """:func:`sig_stats_f32` of two arrays at once, one per numba thread (about twice
    as fast as one after the other on two cores). Returns a (2, 6) int64 array: the
    :func:`sig_stats_f32` results of x, then of y (all-integer as 1 or 0)."""
    res = np.empty((2, 6), dtype=np.int64)
    for c in prange(2):
        if c == 0:
            r = _sig_range_f32(x, ox, 0, x.shape[0])
        else:
            r = _sig_range_f32(y, oy, 0, y.shape[0])
        for q in range(6):
            res[c, q] = r[q]
        res[c, 3] = int64(r[3] == 0)        # non-integer count -> all-integer
    return res
