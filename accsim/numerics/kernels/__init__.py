"""The numba kernels, private to :mod:`accsim.numerics`. Nothing here knows about YAML,
networks or costs.

This module is the kernels' interface: the rest of accsim.numerics imports only the
names below, never the submodules.

* :mod:`._codes`: rounding-mode, structure and event-flag codes, numba options;
* :mod:`._round`: scalar rounding of float64 values to any format,
  :func:`quantize_float_kernel` and :func:`quantize_int_kernel`;
* :mod:`._steps`: one add of a float register (:func:`register_step`) and its vector
  steps;
* :mod:`._accumulate`: the float MAC loops: one rows and one pairs kernel per vector
  step (:func:`lane_kernels` picks them), and the general :func:`float_rows`;
* :mod:`._fused`: the multi-term fused adder's step;
* :mod:`._integer`: integer and fixed-point registers (:func:`int_rows` ...);
* :mod:`._stats`: operand statistics (:func:`sig_stats` ...);
* :mod:`._layout`: operand transposes;
* :mod:`._simd`: vector code numba does not emit by itself;
* :func:`parallel_ranges` (from :mod:`accsim.numerics.threads`, re-exported) runs a
  kernel on ranges of its outer loop from several threads. Every kernel is compiled
  once, for one thread, whatever the size of the problem (no ``parallel=True`` twins).

Parameters: a format reaches the kernels as :class:`FormatParams`
(:func:`format_params`), a whole datapath as :class:`KernelParams`, built by
:func:`accsim.numerics.engine.kernel_params` alone. Every field is read by name.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..formats import FloatFormat
from . import _accumulate
from ._accumulate import float_rows
from ._codes import F_INEXACT, F_INVALID, F_OVERFLOW, F_SATURATE, F_UNREPR, RNE
from ._integer import (
    f32_copy_norms, int_pairs_exact, int_rows, int_rows_exact, int_rows_lanes16, wrap_product,
)
from ._layout import transpose_into
from ._round import quantize_float_kernel, quantize_int_kernel
from ._simd import ADD_ROUNDING, HALF_NATIVE
from ._stats import sig_stats, sig_stats_f32
from ._steps import register_step
from ..threads import PARALLEL_MIN, parallel_ranges

__all__ = [
    "FormatParams", "DatapathParams", "KernelParams", "format_params",
    "F_INEXACT", "F_INVALID", "F_OVERFLOW", "F_SATURATE", "F_UNREPR", "PARALLEL_MIN",
    "HALF_NATIVE", "ADD_ROUNDING", "register_step",
    "quantize_float_kernel", "quantize_int_kernel",
    "float_rows", "lane_step", "lane_kernels",
    "int_rows", "int_rows_exact", "int_rows_lanes16", "int16_lanes", "int_pairs_exact", "wrap_product", "f32_copy_norms",
    "sig_stats", "sig_stats_f32",
    "transpose_into", "parallel_ranges",
]



class FormatParams(NamedTuple):
    """A number format as the kernels read it. Every field is an int64, so numba types
    the tuple as one homogeneous named tuple and one compiled kernel serves every
    format. Fields of the other kind of format are 0."""

    kind: np.int64              # 0 float, 1 integer / fixed point
    man_bits: np.int64          # float: stored fraction bits (the hidden bit not counted)
    emin: np.int64              # float: unbiased exponent of the smallest normal
    emax: np.int64              # float: unbiased exponent of the largest finite value
    max_finite_bits: np.int64   # float: float64 bit pattern of the largest finite value
    subnormals: np.int64        # float: 1 with subnormals, 0 flush to zero
    has_inf: np.int64           # float: 1 when the format has infinities
    has_nan: np.int64           # float: 1 when the format has NaN
    neg_zero: np.int64          # float: 1 when the format has -0
    overflow: np.int64          # 0 to inf, 1 saturate, 2 wrap (integer / fixed point)
    bits: np.int64              # int/fixed: width in bits, the sign bit included
    frac_bits: np.int64         # int/fixed: fraction bits (value = stored * 2**-frac_bits)
    signed: np.int64            # int/fixed: 1 two's complement, 0 unsigned


def format_params(fmt) -> FormatParams:
    """The :class:`FormatParams` of a format. Formats are immutable values, so the
    parameters are kept (the last 256 formats)."""
    try:
        return _format_params_cached(fmt)
    except TypeError:                   # an unhashable stand-in: compute it each time
        return _format_params(fmt)


def _format_params(fmt):
    if isinstance(fmt, FloatFormat):
        fields = dict(
            kind=0, man_bits=fmt.man_bits, emin=fmt.emin, emax=fmt.emax,
            max_finite_bits=int(np.array(fmt.max_finite, dtype=np.float64).view(np.int64)),
            subnormals=int(fmt.subnormals), has_inf=int(fmt.has_inf),
            has_nan=int(fmt.has_nan), neg_zero=int(fmt.has_negative_zero),
            overflow=1 if fmt.overflow == "saturate" else 0)
    else:
        fields = dict(kind=1, overflow=1 if fmt.overflow == "saturate" else 2,
                      bits=fmt.bits, frac_bits=fmt.frac_bits, signed=int(fmt.signed))
    return FormatParams(*(np.int64(fields.get(f, 0)) for f in FormatParams._fields))


_format_params_cached = functools.lru_cache(maxsize=256)(_format_params)


class DatapathParams(NamedTuple):
    """The scalars of a datapath and of one product as the kernels read them. Every
    field is an int64 (numba then types the tuple as one homogeneous named tuple, which
    it passes to a kernel about ten times faster than a mixed one). Rounding modes are
    :func:`accsim.numerics.formats.rounding_code` values, the structure the position
    of its name in :data:`accsim.numerics.datapath.STRUCTURES`; fields of another
    structure are 0."""

    rounding: np.int64          # the register's rounding mode
    product_kind: np.int64      # 0 exact products, 1 products rounded to a format
    product_rounding: np.int64  # rounding of the products (product_kind 1)
    structure: np.int64         # sequential, chunked, tree, fused
    chunk_size: np.int64        # chunked: L products per chunk
    wide_rounding: np.int64     # chunked: rounding of the promotion into the wide register
    terms: np.int64             # fused: T products per step
    guard_bits: np.int64        # fused: G guard bits below the register's LSB
    align_rounding: np.int64    # fused: how alignment drops addend bits (rz, rd, rne)
    native: np.int64            # 1: the register is IEEE binary64 with rne (hardware add)
    wide_native: np.int64       # 1: the wide register is IEEE binary64 with rne
    sr_bits: np.int64           # random bits of stochastic rounding (0: exact probability)
    seed: np.int64              # seed of the stochastic-rounding streams (the uint64's bits)


class KernelParams(NamedTuple):
    """Everything the kernels take from a :class:`~accsim.numerics.datapath.Datapath` for
    one product. Passed to a kernel field by field (``acc, product, wide, datapath``):
    numba's parallel loops do not take a tuple that holds tuples."""

    acc: FormatParams           # the register
    product: FormatParams       # the product format (the register's when exact products)
    wide: FormatParams          # the wide register of "chunked" (the register's otherwise)
    datapath: DatapathParams


_BINARY32 = dict(man_bits=23, emin=-126, emax=127, max_finite_bits=0x47EFFFFFE0000000)
_BINARY16 = dict(man_bits=10, emin=-14, emax=15, max_finite_bits=0x40EFFC0000000000)


def _is_ieee(P: FormatParams, mode: int, fields: dict) -> bool:
    """Is format P with rounding ``mode`` exactly the IEEE 754 format of ``fields``
    (subnormals, inf, NaN and -0, overflow to inf) with round-to-nearest-even?"""
    return (int(P.kind) == 0 and all(int(getattr(P, k)) == v for k, v in fields.items())
            and int(P.subnormals) == 1 and int(P.has_inf) == 1 and int(P.has_nan) == 1
            and int(P.neg_zero) == 1 and int(P.overflow) == 0 and int(mode) == RNE)


def lane_step(P: FormatParams, mode: int, lanes32: bool, native: bool = False) -> str:
    """The vector step of the float register P with rounding ``mode`` (a
    :func:`accsim.numerics.formats.rounding_code`) on float32 lanes (``lanes32``) or
    float64 lanes (``native``: P is IEEE binary64 with rne). float32 lanes: ``half32``
    for IEEE binary16 with rne where the CPU converts (:data:`HALF_NATIVE`),
    ``native32`` for IEEE binary32 with rne, ``rne32`` for rne into a format with -0 and
    1..21 fraction bits, else ``step32``; float64 lanes: ``native64`` or ``step64``
    (see :mod:`._steps`)."""
    if not lanes32:
        return "native64" if native else "step64"
    if HALF_NATIVE and _is_ieee(P, mode, _BINARY16):
        return "half32"
    if _is_ieee(P, mode, _BINARY32):
        return "native32"
    if int(mode) == RNE and int(P.neg_zero) == 1 and 1 <= int(P.man_bits) <= 21:
        return "rne32"
    return "step32"


def lane_kernels(step: str):
    """(rows kernel, pairs kernel) of a :func:`lane_step` (the pairs kernel None for
    ``native64``): each compiled on its first call only, so a run compiles the steps
    its registers use and no other."""
    return (getattr(_accumulate, f"rows_{step}"),
            getattr(_accumulate, f"pairs_{step}", None))


def int16_lanes(P: FormatParams, pmax: int, init: np.ndarray) -> bool:
    """Does the integer register P run in int16 lanes (:func:`int_rows_lanes16`)? A
    saturating signed 16-bit register (whose range is int16's: the saturating add is
    the register), products |a*b| <= ``pmax`` and initial contents ``init`` (int64)
    within int16."""
    lim = 1 << 15
    return (int(P.kind) == 1 and int(P.overflow) == 1 and int(P.signed) == 1
            and int(P.bits) == 16 and int(P.frac_bits) == 0 and int(pmax) < lim
            and (init.size == 0 or (int(init.min()) >= -lim and int(init.max()) < lim)))
