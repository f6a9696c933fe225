"""One add of a float register: the general scalar step and the vector steps.

Private module. :func:`fadd` is the register's general add (any float format and
mode, stochastic rounding included). The vector steps below are branch-free versions of
it for the common case; each has the signature

    step(x, p, v, C) -> (value, bad, inexact)

for the register value x and the exact product p (both float64, or both float32 on
float32 lanes), or ``v``, the float32 round-to-odd of their exact sum
(:func:`ro_sum32`), which the last two steps of the table take instead of x and p
(the lane loop then forms those sums for a whole row first, :func:`ro_sums`, with two
directed adds where the CPU has them; the other steps ignore v). ``C`` is the step's
loop-invariant constants (a tuple from its ``consts`` function, empty for steps that
need none). ``bad`` is nonzero where the step cannot give the result (a tiny sum,
overflow, inf/NaN): the caller then redoes that lane with :func:`fadd` from the same x
and p, and ``value`` is meaningless there. ``bad`` is any nonzero integer where bad
and 0 where good (the caller ORs it over the lanes: a
few bit operations instead of turning a compare into a count). ``inexact`` is 1 where
the step was good and inexact, 0 or 1 where bad (the caller takes it back when it
redoes the lane). ``bad`` and ``inexact`` are int64 beside float64 lanes and int32
beside float32 lanes (16 lanes per AVX-512 register).

Exact sums: ``x + p`` is formed exactly as ``hi + lo`` (TwoSum) and compressed with
round-to-odd (``hi`` nudged to the odd neighbour toward ``lo`` when ``lo != 0``).
Rounding that value to a format with at least two fewer significant bits than the
container (float64: at most 51, float32: at most 22) gives the correctly rounded exact
sum in every mode (Boldo & Melquiond, "When double rounding is odd", 2005).

=================  ======  =====================================================
step               lanes   register
=================  ======  =====================================================
step64             f64     any format of at most 51 significant bits, any mode
step64_native      f64     IEEE binary64 with rne: the hardware add
step32             f32     at most 22 significant bits in float32's range
step32_native      f32     IEEE binary32 with rne: the hardware add
round32_rne        f32     rne into a format with -0 and 1..21 fraction bits
round32_half       f32     IEEE binary16 with rne, hardware conversion (F16C)
=================  ======  =====================================================
"""

import math

from numba import njit, float32, int32, int64, uint64

from ._codes import F_INEXACT, F_OVERFLOW, JIT, RD, RNA, RNE, RO, RU, SR
from ._round import b2f, element_key, f2b, f2i, i2f, round_float
from ._simd import ADD_ROUNDING, ro_sums16, round_half


@njit(inline="always", **JIT)
def two_sum(x, p):
    """(hi, lo) with hi + lo = x + p exactly (TwoSum; hi the rounded sum). lo is NaN
    wherever hi is inf or NaN."""
    hi = x + p
    bp = hi - x
    lo = (x - (hi - bp)) + (p - bp)
    return hi, lo


@njit(inline="always", **JIT)
def ro_bits32(hi, lo):
    """int32 pattern of the float32 round-to-odd of the exact hi + lo (from
    :func:`two_sum`): where lo != 0 (and not NaN), the odd one of hi and its neighbour
    toward lo, i.e. hi truncated toward zero with its last bit set: hi's pattern, less
    one where lo has the other sign (one ulp toward zero), OR 1. Unchanged where lo is
    0 or NaN."""
    hb = f2i(hi)
    toward0 = int32(int32(f2i(lo) ^ hb) >> int32(31))    # -1 where lo has the other sign
    ro = int32(int32(hb + toward0) | int32(1))
    return ro if (lo != float32(0.0)) & (lo == lo) else hb


@njit(inline="always", **JIT)
def ro_sum(s, p):
    """float64 round-to-odd of the exact s + p (both float64)."""
    hi, lo = two_sum(s, p)
    # branch-free: when lo != 0 (and not NaN) and hi's last bit is even, step hi one
    # ulp toward lo (up in magnitude if lo has hi's sign, down otherwise)
    hb = f2b(hi)
    fix = uint64((lo != 0.0) & (lo == lo)) & ~hb & uint64(1)
    toward = uint64((lo > 0.0) == (hi > 0.0))
    return b2f(hb + ((toward + toward - uint64(1)) & (uint64(0) - fix)))


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
    if s == 0.0 and p == 0.0 and (f2b(s) >> uint64(63)) == (f2b(p) >> uint64(63)):
        return s
    return -0.0 if mode == RD else 0.0


@njit(inline="always", **JIT)
def fadd(s, p, P, mode, key, srbits, native):
    """One rounded add of the register: round(s + p) into float format P: (value, flags).
    ``native``: P is IEEE binary64 with rne (the hardware add)."""
    if native:
        return _fadd_native(s, p)
    v = ro_sum(s, p)
    if v == 0.0:
        v = _zero_sum(s, p, mode)
    return round_float(v, P, mode, key, srbits)


@njit(**JIT)
def fadd_call(s, p, P, mode, key, srbits, native):
    """:func:`fadd` compiled once as a function of its own, for the slow paths (a lane
    redone by the general code, a chunk promoted into the wide register): each inlined
    copy of the general rounding costs seconds of cold-cache compile."""
    return fadd(s, p, P, mode, key, srbits, native)


@njit(**JIT)
def register_step(s, p, P, mode, native):
    """One step of the float register P, called from Python: the value s is first
    loaded into the register (rounded into P with ``mode``, as
    :func:`accsim.numerics.kernels.quantize_float_kernel`
    rounds element 0 with seed 0; not counted), then rounded s + p with :func:`fadd`:
    (value, flags of the add)."""
    key = element_key(uint64(0), 0) if mode == SR else uint64(0)
    v, _ = round_float(s, P, mode, key, int64(0))
    return fadd(v, p, P, mode, uint64(0), int64(0), native)


# ------------------------------------------------------------------------------------
# float64 lanes

@njit(inline="always", **JIT)
def mode_consts(mode, s):
    """Rounding constants of :func:`step64` for rounding at shift s (1..52).

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
def zero_consts(mode, P):
    """(zrd, znz) of :func:`step64` for rounding mode ``mode`` and format ``P``."""
    return int64(-1) if mode == RD else int64(0), int64(-1) if P.neg_zero else int64(0)


@njit(inline="always", **JIT)
def consts64(P, mode):
    """The constants C of :func:`step64` for format P and rounding ``mode``: (s, lowmask,
    base, lsb_en, dpos, dxor, ro_mask, minb, maxb, zrd, znz), s = 52 - man_bits the
    dropped bits, minb and maxb the patterns of the smallest normal and the largest
    finite value."""
    s = int64(52 - P.man_bits)
    maxb = int64(P.max_finite_bits)
    minb = int64(P.emin + 1023) << 52  # pattern of the smallest normal
    lowmask, base, lsb_en, dpos, dxor, ro_mask = mode_consts(mode, s)
    zrd, znz = zero_consts(mode, P)
    return s, lowmask, base, lsb_en, dpos, dxor, ro_mask, minb, maxb, zrd, znz


@njit(inline="always", **JIT)
def step64(x, p, v, C):
    """Branch-free round(x + p) on float64 lanes; C from :func:`consts64`.

    Bad where the exact sum is not zero and not a normal number of the target below
    its overflow threshold (tiny, overflow, inf/NaN).

    The exact sum is hi + lo (TwoSum); when lo != 0 and hi's last bit is even, hi
    steps one ulp toward lo: round-to-odd in float64, which keeps the sticky
    information for the second rounding.

    An exact zero sum (IEEE 754 6.3) is negative when both addends are (``sx & sp``),
    or, under round-down (``zrd`` all ones), when either is; ``znz`` (all ones when the
    format has -0, else 0) clears the sign for formats without negative zero. Adding
    an exact zero product to a nonzero register keeps it, exactly (subnormal, inf and
    NaN registers included).
    """
    s, lowmask, base, lsb_en, dpos, dxor, ro_mask, minb, maxb, zrd, znz = C
    hi, lo = two_sum(x, p)
    hb = f2i(hi)
    # lo is NaN when hi overflowed to inf: no nudge then (inf stays inf, not the
    # largest finite float64, and the caller's general path takes over)
    fix = int64((lo != 0.0) & (lo == lo)) & ~hb & 1
    delta = ((f2i(lo) ^ hb) >> 63) | 1  # +1 if lo has hi's sign, else -1
    hb = hb + (delta & -fix)
    mag = hb & 0x7FFFFFFFFFFFFFFF
    neg = hb >> 63
    rem = mag & lowmask
    inexact = int64(rem != 0)
    add = base + ((mag >> s) & lsb_en) + (dpos ^ (neg & dxor))
    r = ((mag + add) & ~lowmask) | ((inexact << s) & ro_mask)
    # r >= minb also rejects an int64 wrap of mag + add (inf/NaN patterns)
    good = (mag >= minb) & (r >= minb) & (r <= maxb)
    xb = f2i(x)
    zero = mag == 0
    sx = xb >> 63
    sp = f2i(p) >> 63
    zb = ((sx & sp) | (zrd & (sx | sp))) & znz & ~0x7FFFFFFFFFFFFFFF
    keep = (p == 0.0) & (x != 0.0)       # x + 0 = x exactly: any register value
    bits = ((hb & ~0x7FFFFFFFFFFFFFFF) | r) if not zero else zb
    bits = bits if not keep else xb
    easy = zero | keep
    ok = good | easy
    gi = int64(ok)
    return (i2f(bits) if ok else x), 1 - gi, inexact & int64(~easy) & gi


@njit(inline="always", **JIT)
def step64_native(x, p, v, C):
    """The IEEE binary64 register with rne: the hardware add is the register (IEEE sign
    of zero sums, subnormals, ties to even), TwoSum gives the inexact flag. Bad where
    the sum is inf or NaN (overflow, or an inf/NaN operand): the general code gives
    the flags there. C is empty."""
    hi, lo = two_sum(x, p)
    # lo is NaN wherever hi is inf or NaN, so a bad lane counts no inexact here
    return hi, int64((hi - hi) != 0.0), int64((lo != 0.0) & (lo == lo))


# ------------------------------------------------------------------------------------
# float32 lanes: registers of at most 22 significant bits (and IEEE binary32 with rne)

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
def _limits32(P):
    """(lsb, minb, maxb) of format P on float32 patterns: the kept LSB 2^(23 - man_bits)
    and the patterns of the smallest normal and the largest finite value (int32)."""
    lsb = int32(int32(1) << int32(23 - P.man_bits))
    maxb = f2i(float32(i2f(int64(P.max_finite_bits))))
    minb = int32(int32(P.emin + 127) << int32(23))
    return lsb, minb, maxb


@njit(inline="always", **JIT)
def consts32(P, mode):
    """The constants C of :func:`step32`: (lsb, lowmask, base, lsb_en, dpos, dxor,
    ro_mask, minb, maxb, zrd, znz), int32 (:func:`consts64` on float32 patterns)."""
    lsb, minb, maxb = _limits32(P)
    lowmask, base, lsb_en, dpos, dxor, ro_mask = mode_consts32(mode, lsb)
    zrd64, znz64 = zero_consts(mode, P)
    return (lsb, lowmask, base, lsb_en, dpos, dxor, ro_mask, minb, maxb, int32(zrd64),
            int32(znz64))


@njit(inline="always", **JIT)
def step32(x, p, v, C):
    """:func:`step64` in float32: round(x + p) to a format of p <= 22 bits; C from
    :func:`consts32`.

    x and p are float32 and the product p is exact (the engine checks it), so TwoSum
    gives x + p exactly as hi + lo, round-to-odd keeps 24 >= p + 2 bits and the second
    rounding is correct (Boldo–Melquiond). Every select is an int32 mask, so the whole
    step stays in 8-lane registers. Exact zero sums as in :func:`step64`.
    """
    lsb, lowmask, base, lsb_en, dpos, dxor, ro_mask, minb, maxb, zrd, znz = C
    hi, lo = two_sum(x, p)
    hb = ro_bits32(hi, lo)
    mag = int32(hb & int32(0x7FFFFFFF))
    neg = int32(hb >> int32(31))
    rem = int32(mag & lowmask)
    nz = int32(int32(rem | int32(-rem)) >> int32(31))       # -1 where inexact
    odd = int32(int32(int32(mag & lsb) != int32(0)) & lsb_en)
    add = int32(int32(base + odd) + int32(dpos ^ int32(neg & dxor)))
    r = int32(int32(int32(mag + add) & int32(~lowmask)) | int32(int32(nz & lsb) & ro_mask))
    gm = int32(-int32((mag >= minb) & (r >= minb) & (r <= maxb)))
    xb = f2i(x)
    zm = int32(-int32(mag == int32(0)))
    km = int32(-int32((p == float32(0.0)) & (x != float32(0.0))))
    sx = int32(xb >> int32(31))
    sp = int32(f2i(p) >> int32(31))
    zb = int32(int32(int32(int32(sx & sp) | int32(zrd & int32(sx | sp))) & znz)
               & int32(-0x80000000))
    easy = int32(zm | km)
    bits = int32(int32(int32(int32(hb & int32(-0x80000000)) | r) & int32(~easy))
                 | int32(int32(zb & zm) | int32(xb & km)))
    ok = int32(gm | easy)
    # not ok: the value is meaningless (the caller redoes the step with the general code)
    gi = int32(ok & int32(1))
    inexact = int32(int32(-nz) & int32(~easy) & int32(1))
    return i2f(bits), int32(int32(1) - gi), int32(inexact & gi)


@njit(inline="always", **JIT)
def ro_sum32(x, p):
    """float32 round-to-odd of the exact x + p (both float32): :func:`two_sum` then
    :func:`ro_bits32`."""
    hi, lo = two_sum(x, p)
    return i2f(ro_bits32(hi, lo))


@njit(inline="always", **JIT)
def ro_sums(X, Bv, a, D, w):
    """``D[t]`` = :func:`ro_sum32` ``(X[t], a * Bv[t])`` for t < w (float32 vectors,
    exact products): sixteen at a time by :func:`accsim.numerics.kernels._simd.ro_sums16`
    where the CPU adds with a rounding direction (two adds instead of TwoSum's six
    operations and the nudge), the rest (everything elsewhere) by :func:`ro_sum32`."""
    t0 = 0
    if ADD_ROUNDING:
        while t0 + 16 <= w:
            ro_sums16(X, Bv, a, t0, D)
            t0 += 16
    for t in range(t0, w):
        D[t] = ro_sum32(X[t], a * Bv[t])


@njit(inline="always", **JIT)
def consts32_rne(P, mode):
    """The constants C of :func:`round32_rne`: (lsb, lowmask, halfm1, minb, maxb),
    int32: ``lsb`` the kept LSB of the float32 pattern (2^(23 - fraction bits)),
    ``lowmask`` = lsb - 1, ``halfm1`` = lsb / 2 - 1 (``mode`` is rne; taken so that
    every step's constants come from (P, mode))."""
    lsb, minb, maxb = _limits32(P)
    return lsb, int32(lsb - int32(1)), int32(int32(lsb >> int32(1)) - int32(1)), minb, maxb


@njit(inline="always", **JIT)
def round32_rne(x, p, v, C):
    """The rne step into a format with -0 and 1..21 fraction bits, from the float32
    round-to-odd ``v`` of the exact sum x + p (:func:`ro_sum32`, :func:`ro_sums`; float32
    keeps at least two more bits than the format, so rounding v is rounding the sum:
    Boldo & Melquiond): (value, bad, inexact) as a step. The common case of
    :func:`step32` in about half the operations: no direction constants, and an exact
    zero sum keeps the hardware add's sign, which under rne is IEEE's (x + (-x) = +0,
    (-0) + (-0) = -0). Tiny results (below the smallest normal, not zero) and
    overflows are bad (the general code gives their flags). C from
    :func:`consts32_rne`."""
    lsb, lowmask, halfm1, minb, maxb = C
    hb = f2i(v)
    mag = int32(hb & int32(0x7FFFFFFF))
    # ties to even: add half an LSB less one, plus one where the kept LSB is set
    odd = int32(int32(mag & lsb) != int32(0))
    r = int32(int32(int32(mag + halfm1) + odd) & int32(~lowmask))
    # bad, in the sign bit: 0 < mag < minb (mag - minb < 0 and mag - 1 >= 0), or
    # r > maxb (also where mag + halfm1 wrapped: a NaN pattern)
    tiny = int32(int32(mag - minb) & int32(~int32(mag - int32(1))))
    bad = int32(int32(tiny | int32(maxb - r)) >> int32(31))
    bits = int32(int32(hb & int32(-0x80000000)) | r)
    return i2f(bits), bad, int32(int32(mag & lowmask) != int32(0))


@njit(inline="always", **JIT)
def round32_half(x, p, v, C):
    """The IEEE binary16 rne step on float32 lanes, from the float32 round-to-odd
    ``v`` of the exact sum of the fp16 register x and the product p (:func:`ro_sum32`,
    :func:`ro_sums`; float32 keeps 13 more bits than binary16, so the second rounding
    is correct: Boldo & Melquiond): the hardware conversion to binary16 and back
    (:func:`accsim.numerics.kernels._simd.round_half`). An exact zero sum keeps the
    float32 add's sign, IEEE's under rne. Bad: an infinite or NaN result (overflow, or
    an inf/NaN operand). C is empty. (value, bad, inexact) as a step."""
    r = round_half(v)
    # bad: r - r is +0 where r is finite, NaN (nonzero bits) where r is inf or NaN.
    # inexact: r differs from v: v is the sum itself where float32 holds it exactly,
    # else a float32 value with its last bit set, which binary16 (11 bits) never holds
    return r, f2i(r - r), int32(r != v)


@njit(inline="always", **JIT)
def step32_native(x, p, v, C):
    """:func:`step64_native` for the IEEE binary32 register with rne on float32 lanes:
    the hardware float32 add is the register. C is empty."""
    hi, lo = two_sum(x, p)
    return (hi, int32((hi - hi) != float32(0.0)),
            int32((lo != float32(0.0)) & (lo == lo)))
