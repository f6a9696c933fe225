"""Private numba kernels. Nothing here knows about YAML, networks or costs.

Formats reach the kernels as a tuple of int64 parameters (:func:`format_params`), so one
compiled kernel serves every format.
"""

import functools

import numpy as np

from ..formats import FloatFormat
from ._round import N_PARAMS


def format_params(fmt):
    """The kernel parameter tuple (int64 values) of a format; layout in ``_round``.
    Formats are immutable values, so the tuples are kept (the last 256 formats)."""
    try:
        return _format_params_cached(fmt)
    except TypeError:                   # an unhashable stand-in: compute it each time
        return _format_params(fmt)


def _format_params(fmt):
    p = [0] * N_PARAMS
    if isinstance(fmt, FloatFormat):
        p[0] = 0
        p[1] = fmt.man_bits
        p[2] = fmt.emin
        p[3] = fmt.emax
        p[4] = int(np.array(fmt.max_finite, dtype=np.float64).view(np.int64))
        p[5] = int(fmt.subnormals)
        p[6] = int(fmt.has_inf)
        p[7] = int(fmt.has_nan)
        p[8] = int(fmt.has_negative_zero)
        p[9] = 1 if fmt.overflow == "saturate" else 0
    else:
        p[0] = 1
        p[9] = 1 if fmt.overflow == "saturate" else 2
        p[10] = fmt.bits
        p[11] = fmt.frac_bits
        p[12] = int(fmt.signed)
    return tuple(np.int64(v) for v in p)


_format_params_cached = functools.lru_cache(maxsize=256)(_format_params)
