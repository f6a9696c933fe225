"""Scalar rounding of float64 values to any accsim format, and the quantize kernel.

Private module (the kernels package re-exports what the engine and ``quantize`` call).
Formats reach these kernels as :class:`accsim.numerics.kernels.FormatParams`, a named
tuple of int64 fields read by name (``P.man_bits``), so one compiled kernel serves every
format.

Float formats are rounded on the float64 bit pattern. For a normal float64 x whose
exponent is at least the target's ``emin`` the target quantum is ``s = 52 - man_bits``
low bits of the pattern::

    sign | exponent (11) | fraction: kept (man_bits) | dropped (s) |
                                                      ^ rounding adds here, the
                                                        carry may ripple into the exponent

Adding the increment to the whole pattern and masking the dropped bits rounds
correctly, the carry into the exponent field doing the renormalisation. Values below
the target's smallest normal (and float64 subnormals) take the integer path
``round_shift`` on the 53-bit significand with SoftFloat-style sticky handling, safe
for every shift distance.
"""


import numpy as np
from llvmlite import ir
from numba import njit, uint64, int64, types
from numba.extending import intrinsic

from ._codes import (
    F_INEXACT, F_INVALID, F_OVERFLOW, F_SATURATE, F_UNDERFLOW, F_UNREPR, JIT,
    RD, RNA, RNE, RO, RU, RZ, SR,
)

_MASK63 = 0x7FFFFFFFFFFFFFFF
_FRAC_MASK = 0x000FFFFFFFFFFFFF
_HIDDEN = 0x0010000000000000
_SIGN = 0x8000000000000000
_QNAN = 0x7FF8000000000000
_INF = 0x7FF0000000000000


@njit(uint64(uint64), inline="always", **JIT)
def splitmix64(z):
    """SplitMix64 finaliser: a bijective mix used as a counter-based RNG."""
    z = z + uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint64(31))


@intrinsic
def f2b(typingctx, x):
    """Bit pattern of a float64 as uint64 (an LLVM bitcast, no memory traffic)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if x.bitwidth != 64:
            v = builder.fpext(v, ir.DoubleType())
        return builder.bitcast(v, ir.IntType(64))
    return uint64(x), codegen


@intrinsic
def b2f(typingctx, b):
    """float64 whose bit pattern is the 64-bit integer b."""
    if not isinstance(b, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if b.bitwidth != 64:
            v = builder.zext(v, ir.IntType(64))
        return builder.bitcast(v, ir.DoubleType())
    return types.float64(b), codegen


@njit(**JIT)
def _sr_up(rem, s, key, srbits):
    """Stochastic decision: round up with probability rem / 2**s (rem < 2**s, s >= 1).

    With srbits = r > 0 the remainder is truncated to its top r bits first, so the
    probability is a multiple of 2**-r, as hardware with r random bits does.
    ``key`` seeds a counter-based stream (splitmix64), so the draw depends only on it.
    """
    if srbits > 0:
        r = srbits
        if r >= s:
            # every remainder bit is kept: compare s random bits
            rnd = splitmix64(key) >> uint64(64 - s)
            return rnd < rem
        sh = s - r
        if sh >= 64:
            remr = uint64(0)
        else:
            remr = rem >> uint64(sh)
        rnd = splitmix64(key) >> uint64(64 - r)
        return rnd < remr
    if s <= 63:
        rnd = splitmix64(key) >> uint64(64 - s)
        return rnd < rem
    # s >= 64: rem < 2**53. R uniform in [0, 2**s): R < rem iff its top s-53 bits are 0
    # and its low 53 bits are < rem.
    need = s - 53
    k = key
    while need > 0:
        k = k + uint64(0x632BE59BD9B4E019)
        w = splitmix64(k)
        take = need if need < 64 else 64
        if take < 64:
            w = w >> uint64(64 - take)
        if w != 0:
            return False
        need -= take
    k = k + uint64(0x632BE59BD9B4E019)
    lo = splitmix64(k) >> uint64(11)
    return lo < rem


@intrinsic
def f2i(typingctx, x):
    """Bit pattern of a float64 (float32) as int64 (int32): signed compares vectorise on
    AVX2."""
    if not isinstance(x, types.Float) or x.bitwidth not in (32, 64):
        return None
    ity = types.int64 if x.bitwidth == 64 else types.int32

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(x.bitwidth))
    return ity(x), codegen


@intrinsic
def i2f(typingctx, b):
    """float64 (float32) whose bit pattern is the int64 (int32) b."""
    if not isinstance(b, types.Integer) or b.bitwidth not in (32, 64):
        return None
    fty = types.float64 if b.bitwidth == 64 else types.float32

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType() if b.bitwidth == 64
                               else ir.FloatType())
    return fty(b), codegen


@njit(**JIT)
def _sr_addend(s, key, srbits):
    """Random addend in [0, 2**s) for stochastic rounding at a shift of s < 64 bits.

    Adding it to the value and truncating the s low bits rounds up with probability
    rem / 2**s. With srbits = r < s only the top r bits of the addend are random (the
    rest are zero), so P(up) = floor(rem / 2**(s-r)) / 2**r, a multiple of 2**-r: the
    remainder is truncated to its top r bits, as hardware with r random bits does.
    """
    rnd = splitmix64(key) >> (uint64(64) - s)
    if srbits > 0 and uint64(srbits) < s:
        sh = s - uint64(srbits)
        rnd = (rnd >> sh) << sh
    return rnd


@njit(**JIT)
def round_shift(m, s, neg, mode, key, srbits):
    """Round the integer m / 2**s (m < 2**53, s >= 0, any size) to an integer.

    ``neg`` is the sign of the value (for directed modes). Returns (q, inexact).
    """
    if s == 0 or m == 0:
        return m, False
    if s >= 64:
        q = uint64(0)
        rem = m
        # half = 2**(s-1) > 2**53 > rem: strictly below half
        above_half = False
        is_half = False
    else:
        q = m >> uint64(s)
        rem = m & ((uint64(1) << uint64(s)) - uint64(1))
        if rem == 0:
            return q, False
        half = uint64(1) << uint64(s - 1)
        above_half = rem > half
        is_half = rem == half
    inc = False
    if mode == RNE:
        inc = above_half or (is_half and (q & uint64(1)) == 1)
    elif mode == RNA:
        inc = above_half or is_half
    elif mode == RZ:
        inc = False
    elif mode == RU:
        inc = not neg
    elif mode == RD:
        inc = neg
    elif mode == RO:
        q = q | uint64(1)
    else:  # SR
        inc = _sr_up(rem, s, key, srbits)
    if inc:
        q += uint64(1)
    return q, True


@njit(inline="always", **JIT)
def _overflow_result(neg, mode, P, up):
    """Result when the rounded magnitude exceeds max finite: (value, flags).

    ``up`` tells, for stochastic rounding, whether the draw went past max finite.
    """
    sign = uint64(_SIGN) if neg else uint64(0)
    maxb = uint64(P.max_finite_bits)
    if P.overflow == 1:
        return b2f(sign | maxb), F_OVERFLOW | F_SATURATE | F_INEXACT
    to_inf = True
    if mode == RZ or mode == RO:
        to_inf = False
    elif mode == RU:
        to_inf = not neg
    elif mode == RD:
        to_inf = neg
    elif mode == SR:
        to_inf = up
    if not to_inf:
        return b2f(sign | maxb), F_OVERFLOW | F_INEXACT
    if P.has_inf == 1:
        return b2f(sign | uint64(_INF)), F_OVERFLOW | F_INEXACT
    return b2f(uint64(_QNAN)), F_OVERFLOW | F_INEXACT


@njit(**JIT)
def _zero(neg, P):
    if neg and P.neg_zero == 1:
        return -0.0
    return 0.0


@njit(inline="always", **JIT)
def _scale2(v, e):
    """v * 2**e exactly, for a result representable in float64 (|e| <= 1100): two
    power-of-two multiplies built from bit patterns, no libm call."""
    if e >= -1022:
        if e <= 1023:
            return v * b2f(uint64(e + 1023) << uint64(52))
        return (v * b2f(uint64(e - 64 + 1023) << uint64(52))) * 1.8446744073709552e19
    # 2**e is subnormal or below: go through 2**(e + 128) then 2**-128
    return (v * b2f(uint64(e + 128 + 1023) << uint64(52))) * 2.938735877055719e-39


@njit(**JIT)
def _round_float_tiny(x, P, mode, key, srbits):
    """round_float for |x| below the target's smallest normal (x finite, nonzero)."""
    b = f2b(x)
    neg = (b >> uint64(63)) != 0
    mag = b & uint64(_MASK63)
    ef = mag >> uint64(52)
    man = P.man_bits
    emin = P.emin
    e = int64(ef) - 1023
    # ---- below the target's smallest normal (or float64 subnormal) ----
    if ef == 0:
        m = mag & uint64(_FRAC_MASK)
        E = int64(-1074)
        # true exponent of the leading bit
        e = int64(63 - int64(clz64(m))) - 1074
    else:
        m = (mag & uint64(_FRAC_MASK)) | uint64(_HIDDEN)
        E = e - 52
    if e >= emin:
        # a float64 subnormal that is normal in the target (emin < -1022)
        qe = e - man
        s = qe - E
        if s <= 0:
            return x, 0
        q, inexact = round_shift(m, s, neg, mode, key, srbits)
        val = _scale2(np.float64(q), qe)
        return (-val if neg else val), F_INEXACT if inexact else 0
    if P.subnormals == 1:
        qe = emin - man
        s = qe - E
        q, inexact = round_shift(m, s, neg, mode, key, srbits)
        if q == 0:
            return _zero(neg, P), (F_INEXACT | F_UNDERFLOW) if inexact else 0
        val = _scale2(np.float64(q), qe)
        if neg:
            val = -val
        return val, (F_INEXACT | F_UNDERFLOW) if inexact else 0
    # subnormals off: round to p bits with unbounded exponent, then flush if < 2**emin
    if e < emin - 1:
        return _zero(neg, P), F_INEXACT | F_UNDERFLOW
    qe = e - man  # e == emin - 1
    s = qe - E
    if s <= 0:
        return _zero(neg, P), F_INEXACT | F_UNDERFLOW
    q, inexact = round_shift(m, s, neg, mode, key, srbits)
    if q == (uint64(1) << uint64(man + 1)):
        val = _scale2(1.0, emin)
        if neg:
            val = -val
        return val, F_INEXACT
    return _zero(neg, P), F_INEXACT | F_UNDERFLOW



@njit(inline="always", **JIT)
def round_float(x, P, mode, key, srbits):
    """Round float64 ``x`` to the float format ``P``. Returns (value, flags)."""
    b = f2b(x)
    neg = (b >> uint64(63)) != 0
    mag = b & uint64(_MASK63)
    ef = mag >> uint64(52)
    if ef == 0x7FF:
        if (mag & uint64(_FRAC_MASK)) != 0:  # NaN
            if P.has_nan == 1:
                return x, 0
            return x, F_INVALID
        # infinity
        if P.has_inf == 1:
            return x, 0
        if P.overflow == 1:
            sign = uint64(_SIGN) if neg else uint64(0)
            return b2f(sign | uint64(P.max_finite_bits)), F_OVERFLOW | F_SATURATE
        return b2f(uint64(_QNAN)), F_OVERFLOW
    if mag == 0:
        return _zero(neg, P), 0
    man = P.man_bits
    emin = P.emin
    e = int64(ef) - 1023
    if ef != 0 and e >= emin:
        # ---- fast path: normal in the target ----
        # Branch-free: the dropped bits' increment is added to the whole pattern and
        # the dropped bits are cleared; the carry renormalises through the exponent.
        s = uint64(52 - man)
        one = uint64(1)
        lowmask = (one << s) - one
        rem = mag & lowmask
        inexact = uint64(rem != uint64(0))
        if mode == RNE:
            # with man_bits = 0 every normal significand is 1 (odd): ties go up
            lsb = ((mag >> s) | uint64(man == 0)) & one & uint64(s != uint64(0))
            add = (lowmask >> one) + lsb  # half - 1 + lsb
        elif mode == RNA:
            add = (lowmask + one) >> one
        elif mode == RZ:
            add = uint64(0)
        elif mode == RU:
            add = lowmask & (uint64(0) - uint64(not neg))
        elif mode == RD:
            add = lowmask & (uint64(0) - uint64(neg))
        elif mode == RO:
            add = uint64(0)
        else:
            add = _sr_addend(s, key, srbits)
        r = (mag + add) & ~lowmask
        if mode == RO and man > 0:  # man_bits = 0: the truncation is already odd
            r = r | (inexact << s)
        if r > uint64(P.max_finite_bits):
            return _overflow_result(neg, mode, P, True)
        sign = uint64(neg) << uint64(63)
        return b2f(sign | r), int64(inexact)
    if P.subnormals == 1 and ef != 0 and emin - e <= 9:
        # ---- subnormal in the target, float64 normal: a fixed quantum 2**(emin-man) ----
        # q = round(M / 2**s2) on the 53-bit significand M with the same increments
        # as the fast path; s2 = 52 - man + (emin - e) is at most 61 here.
        s2 = uint64(52 - man + (emin - e))
        one = uint64(1)
        m = (mag & uint64(_FRAC_MASK)) | uint64(_HIDDEN)
        lowmask = (one << s2) - one
        rem = m & lowmask
        q = m >> s2
        if mode == RNE:
            q = (m + (lowmask >> one) + (q & one)) >> s2
        elif mode == RNA:
            q = (m + ((lowmask + one) >> one)) >> s2
        elif mode == RU:
            if not neg:
                q = (m + lowmask) >> s2
        elif mode == RD:
            if neg:
                q = (m + lowmask) >> s2
        elif mode == RO:
            if rem != 0:
                q = q | one
        elif mode == SR:
            q = (m + _sr_addend(s2, key, srbits)) >> s2
        flags = (F_INEXACT | F_UNDERFLOW) if rem != 0 else 0
        if q == 0:
            return _zero(neg, P), flags
        val = _scale2(np.float64(q), emin - man)
        return (-val if neg else val), flags
    if P.subnormals == 1 and emin - e >= man + 2 and mode != SR:
        # ---- below half the smallest subnormal: 0 or the smallest subnormal ----
        up = (mode == RO) or (mode == RU and not neg) or (mode == RD and neg)
        if up:
            val = _scale2(1.0, emin - man)
            return (-val if neg else val), F_INEXACT | F_UNDERFLOW
        return _zero(neg, P), F_INEXACT | F_UNDERFLOW
    return _round_float_tiny(x, P, mode, key, srbits)


@intrinsic
def clz64(typingctx, v):
    """Leading zeros of a 64-bit integer (64 for zero): LLVM ctlz."""
    if not isinstance(v, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        x = args[0]
        if v.bitwidth != 64:
            x = builder.zext(x, ir.IntType(64))
        r = builder.ctlz(x, ir.Constant(ir.IntType(1), 0))
        return r
    return types.int64(v), codegen


@intrinsic
def ctz64(typingctx, v):
    """Trailing zeros of a 64-bit integer (64 for zero): LLVM cttz."""
    if not isinstance(v, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        x = args[0]
        if v.bitwidth != 64:
            x = builder.zext(x, ir.IntType(64))
        return builder.cttz(x, ir.Constant(ir.IntType(1), 0))
    return types.int64(v), codegen


@njit(inline="always", **JIT)
def _int_range(q, big, neg, P, flags):
    """:func:`round_int`'s range check of the rounded magnitude ``q`` (mod 2**64 when
    ``big``) with sign ``neg``: wrapped or saturated into format P. Returns (q, neg,
    flags), the magnitude and sign of the stored integer."""
    bits = P.bits
    signed = P.signed == 1
    sat = P.overflow == 1
    if signed:
        lim_pos = (uint64(1) << uint64(bits - 1)) - uint64(1)
        lim_neg = uint64(1) << uint64(bits - 1)
    else:
        lim_pos = ((uint64(1) << uint64(bits)) - uint64(1) if bits < 64
                   else uint64(0xFFFFFFFFFFFFFFFF))
        lim_neg = uint64(0)
    if neg:
        out = big or q > lim_neg
    else:
        out = big or q > lim_pos
    if out:
        flags |= F_OVERFLOW
        if sat:
            flags |= F_SATURATE
            if neg:
                q = lim_neg
            else:
                q = lim_pos
        else:
            # wrap modulo 2**bits, then reinterpret as signed when the format is signed
            w = (uint64(0) - q) if neg else q
            if bits < 64:
                w = w & ((uint64(1) << uint64(bits)) - uint64(1))
            if signed and w >= lim_neg:
                neg = True
                q = (uint64(1) << uint64(bits)) - w if bits < 64 else uint64(0) - w
            else:
                neg = False
                q = w
    return q, neg, flags


@njit(**JIT)
def round_int(x, P, mode, key, srbits):
    """Round float64 ``x`` to the integer / fixed-point format ``P``: (value, flags).

    The value is scaled by 2**frac_bits, rounded to an integer with ``mode``, then wrapped
    modulo 2**bits or saturated. The result is returned as float64 (exact unless flag
    F_UNREPR is set: more than 53 significant bits).
    """
    frac = P.frac_bits
    sat = P.overflow == 1
    b = f2b(x)
    neg = (b >> uint64(63)) != 0
    mag = b & uint64(_MASK63)
    ef = mag >> uint64(52)
    flags = 0
    if ef == 0x7FF:
        if (mag & uint64(_FRAC_MASK)) != 0 or not sat:
            return x, F_INVALID
        big = True
        q = uint64(0)
    elif mag == 0:
        return 0.0, 0
    else:
        if ef == 0:
            m = mag & uint64(_FRAC_MASK)
            E = int64(-1074)
        else:
            m = (mag & uint64(_FRAC_MASK)) | uint64(_HIDDEN)
            E = int64(ef) - 1075
        qe = -frac
        s = qe - E
        big = False
        if s >= 0:
            q, inexact = round_shift(m, s, neg, mode, key, srbits)
            if inexact:
                flags |= F_INEXACT
        else:
            sh = -s
            # leading bit of m at position 63 - clz; value needs (64 - clz + sh) bits
            if sh >= 64 or (64 - clz64(m)) + sh > 64:
                big = True
                q = (m << uint64(sh)) if sh < 64 else uint64(0)
            else:
                q = m << uint64(sh)
    if q == 0 and not big:
        return 0.0, flags
    q, neg, flags = _int_range(q, big, neg, P, flags)
    if q == 0:
        return 0.0, flags
    if q >= (uint64(1) << uint64(53)) and _sigbits(q) > 53:
        flags |= F_UNREPR
    fv = np.float64(q)
    if neg:
        fv = -fv
    return _scale2(fv, -frac), flags


@njit(**JIT)
def _sigbits(u):
    """Significant bits of the nonzero uint64 u (leading one to trailing one)."""
    return 64 - clz64(u) - ctz64(u)


@njit(**JIT)
def round_any(x, P, mode, key, srbits):
    """Round to a float, integer or fixed-point format: (value, flags)."""
    if P.kind == 0:
        return round_float(x, P, mode, key, srbits)
    return round_int(x, P, mode, key, srbits)


@njit(**JIT)
def element_key(seed, idx):
    """Counter-based key for element ``idx`` of a stream seeded by ``seed``."""
    return splitmix64(uint64(seed) ^ splitmix64(uint64(idx) * uint64(0xD1B54A32D192ED03)))


@njit(**JIT)
def out_key(seed, r, c):
    """Counter-based key of output (r, c) of a matrix product seeded by ``seed``."""
    return splitmix64(uint64(seed) ^ splitmix64(uint64(r) * uint64(0x100000001B3) + uint64(c)))


@njit(**JIT)
def step_key(base, t):
    """Key of rounding number ``t`` of the register whose key is ``base``."""
    return base + uint64(t) * uint64(0x9E3779B97F4A7C15)


@njit(**JIT)
def decompose(x):
    """|x| = m * 2**E with integer m < 2**53 (x finite); returns (m, E, neg)."""
    b = f2b(x)
    neg = (b >> uint64(63)) != 0
    mag = b & uint64(_MASK63)
    ef = int64(mag >> uint64(52))
    fr = mag & uint64(_FRAC_MASK)
    if ef == 0:
        return fr, int64(-1074), neg
    return fr | uint64(_HIDDEN), ef - 1075, neg


@njit(**JIT)
def quantize_float_kernel(x, out, P, mode, seed, srbits, flags_out, lo, hi):
    """Round elements ``lo <= i < hi`` of the 1-D float64 array ``x`` into the float
    format ``P`` (:func:`round_float`): values into ``out``, flags into ``flags_out``.
    The stochastic stream of element i is keyed by (seed, i), so the result does not
    depend on how the range is split over threads."""
    for i in range(lo, hi):
        key = element_key(seed, i) if mode == SR else uint64(0)
        out[i], flags_out[i] = round_float(x[i], P, mode, key, srbits)


@njit(**JIT)
def quantize_int_kernel(x, out, P, mode, seed, srbits, flags_out, lo, hi):
    """:func:`quantize_float_kernel` into an integer / fixed-point format ``P``
    (:func:`round_int`). A kernel of its own, so that a run that rounds only to one
    kind of format compiles only its rounding."""
    for i in range(lo, hi):
        key = element_key(seed, i) if mode == SR else uint64(0)
        out[i], flags_out[i] = round_int(x[i], P, mode, key, srbits)
