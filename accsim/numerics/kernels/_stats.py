"""Operand statistics: what the engine checks before it trusts a product to be exact.

Private module (the kernels package re-exports :func:`sig_stats` and
:func:`sig_stats_f32`). Per entry: significant bits (leading one to trailing one
of the significand), the exponent of the last significant bit and of the leading bit;
branch-free, running extrema in scalars.
"""

from numba import njit, float32, float64, int32, int64

from ._codes import JIT
from ._round import f2i, i2f

_MAGIC52 = int64(0x4330000000000000)   # bits of 2^52
_TWO52 = float64(2.0**52)
_BIT52 = int64(1) << int64(52)
_MAGIC23 = int32(0x4B000000)           # bits of 2^23 (float32)
_TWO23 = float32(2.0**23)
_BIT23 = int32(1) << int32(23)


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
        b = f2i(x[idx])
        e = (b >> 52) & 0x7FF
        fr = b & 0xFFFFFFFFFFFFF
        valid = (e != 0x7FF) & ((e | fr) != 0)
        normal = e > 0
        m = fr | (int64(normal) << 52)
        low = m & (-m)                          # a power of two, at most 2^52
        # exponent of low (2^52 itself shares its bit with the magic number's exponent)
        ctz = ((f2i(i2f(low | _MAGIC52) - _TWO52) >> 52) & 0x7FF) - 1023
        ctz = int64(52) if low == _BIT52 else ctz
        # floor(log2(fr)) of a subnormal's fraction
        hsub = ((f2i(i2f(fr | _MAGIC52) - _TWO52) >> 52) & 0x7FF) - 1023
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
        b = f2i(out[idx])
        e = int32(int32(b >> int32(23)) & int32(0xFF))
        fr = int32(b & int32(0x7FFFFF))
        nonfin = int32(nonfin + int32(e == int32(0xFF)))
        valid = (e != int32(0xFF)) & (int32(e | fr) != int32(0))
        normal = e > int32(0)
        m = int32(fr | int32(int32(normal) << int32(23)))
        low = int32(m & int32(-m))
        ctz = int32(int32(int32(f2i(i2f(int32(low | _MAGIC23)) - _TWO23) >> int32(23))
                          & int32(0xFF)) - int32(127))
        ctz = int32(23) if low == _BIT23 else ctz
        hsub = int32(int32(int32(f2i(i2f(int32(fr | _MAGIC23)) - _TWO23) >> int32(23))
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
