"""Public rounding: :func:`quantize` values to a format."""

from __future__ import annotations

import numbers
import os

import numpy as np

from . import kernels
from .config import load_format
from .formats import FloatFormat, FixedFormat, IntFormat, rounding_code
from .kernels import format_params


def check_format(fmt, name="fmt"):
    if not isinstance(fmt, (FloatFormat, FixedFormat, IntFormat)):
        raise ValueError(f"{name}: expected a FloatFormat, IntFormat or FixedFormat, got {fmt!r}")


def sr_settings(rounding, seed, sr_bits):
    """Validate stochastic-rounding arguments; returns (mode_code, seed_u64, srbits)."""
    mode = rounding_code(rounding)
    if sr_bits is not None:
        if rounding != "sr":
            raise ValueError("sr_bits: only meaningful with rounding='sr'")
        if isinstance(sr_bits, bool) or not isinstance(sr_bits, numbers.Integral) or not 1 <= sr_bits <= 63:
            raise ValueError(f"sr_bits: expected an integer in [1, 63], got {sr_bits!r}")
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little") if rounding == "sr" else 0
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return mode, np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF), np.int64(sr_bits or 0)


def quantize(x, fmt, rounding="rne", *, seed=None, sr_bits=None):
    """Round ``x`` to the nearest values of ``fmt`` under ``rounding``.

    Parameters
    ----------
    x : array_like or scalar
        Values (converted to float64 first).
    fmt : FloatFormat | IntFormat | FixedFormat, or a name accepted by load_format
    rounding : {"rne", "rna", "rz", "ru", "rd", "ro", "sr"}
        Ties-to-even, ties-away, toward zero, up, down, to odd, stochastic.
    seed : int, optional
        Seed of the stochastic stream. Each element draws from a counter-based stream
        keyed by (seed, flat index), so results do not depend on the thread count.
    sr_bits : int, optional
        Random bits used by stochastic rounding (probabilities become multiples of
        2**-sr_bits, as hardware with a limited random source). Default: exact
        probability (distance / ulp).

    Returns
    -------
    float64 ndarray of the same shape (a Python float for a scalar input), each value
    exactly representable in ``fmt``. NaN stays NaN (refused for formats without NaN
    or for integers); infinities follow the format's specials and overflow policy.
    """
    if isinstance(fmt, str):
        fmt = load_format(fmt)
    check_format(fmt)
    mode, seed_u, srbits = sr_settings(rounding, seed, sr_bits)
    scalar = np.ndim(x) == 0 and not isinstance(x, np.ndarray)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"x: expected numbers convertible to float64 ({exc})") from None
    flat = np.ascontiguousarray(arr).reshape(-1)
    out = np.empty_like(flat)
    flags = np.empty(flat.shape[0], dtype=np.uint8)
    params = format_params(fmt)
    kern = _quantize_kernel(params)
    kernels.parallel_ranges(
        lambda lo, hi: kern(flat, out, params, mode, seed_u, srbits, flags, lo, hi),
        flat.shape[0], parallel=flat.shape[0] >= kernels.PARALLEL_MIN)
    if flat.shape[0]:
        bad = flags & np.uint8(kernels.F_INVALID | kernels.F_UNREPR)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            v = flat[i]
            if bad[i] & kernels.F_INVALID:
                what = "NaN" if np.isnan(v) else "infinity"
                raise ValueError(
                    f"x: {what} at index {i} has no representation in {fmt.label} "
                    f"(overflow={fmt.overflow!r})")
            raise ValueError(
                f"x: the result for {v!r} (index {i}) in {fmt.label} has more than 53 "
                "significant bits and cannot be returned exactly as float64")
    out = out.reshape(arr.shape)
    if scalar:
        return float(out)
    return out


def quantize_flags(x, fmt, rounding="rne"):
    """Round the 1-D ``x`` like :func:`quantize` without raising: (values, flags, valid).

    ``flags`` (uint8) per entry: bit 0 inexact, bit 1 overflow (the exact value lies
    beyond the largest finite value or the integer range), bit 2 saturated (clamped to
    the largest magnitude); the engine's FLAG_INEXACT/OVERFLOW/SATURATE. ``valid`` is
    False where :func:`quantize` would refuse the entry (NaN in a format without NaN,
    inf with wrap, an integer result beyond 53 significant bits); its value is then
    meaningless. Stochastic rounding is not accepted (no single reference value).
    """
    if rounding == "sr":
        raise ValueError("rounding: stochastic rounding has no single reference value")
    check_format(fmt)
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    out = np.empty_like(x)
    flags = np.zeros(x.shape[0], dtype=np.uint8)
    params = format_params(fmt)
    _quantize_kernel(params)(x, out, params, rounding_code(rounding), np.uint64(0),
                             np.int64(0), flags, 0, x.shape[0])
    valid = (flags & np.uint8(kernels.F_INVALID | kernels.F_UNREPR)) == 0
    events = np.uint8(kernels.F_INEXACT | kernels.F_OVERFLOW | kernels.F_SATURATE)
    return out, flags & events, valid


def _quantize_kernel(params):
    """The quantize kernel of a format's kind (float, or integer / fixed point)."""
    return kernels.quantize_float_kernel if params.kind == 0 else kernels.quantize_int_kernel
