"""The numba kernels, private to :mod:`accsim.numerics`. Nothing here knows about YAML,
networks or costs.

This module is the kernels' interface: the rest of accsim.numerics imports only the
names below, never the submodules.

* :mod:`._codes`: rounding-mode, structure and event-flag codes, numba options;
* :mod:`._round`: scalar rounding of float64 values to any format, :func:`quantize_kernel`;
* :mod:`._steps`: one add of a float register (:func:`register_step`) and its vector
  steps;
* :mod:`._accumulate`: the float MAC loops (:func:`float_rows`, :func:`float_rows32`,
  :func:`float_pairs`);
* :mod:`._fused`: the multi-term fused adder's step;
* :mod:`._integer`: integer and fixed-point registers (:func:`int_rows` ...);
* :mod:`._stats`: operand statistics (:func:`sig_stats` ...);
* :mod:`._layout`: CSR selections, transposes, scattering results;
* :mod:`._simd`: vector code numba does not emit by itself.

Parameters: a format reaches the kernels as :class:`FormatParams`
(:func:`format_params`), a whole datapath as :class:`KernelParams`, built by
:func:`accsim.numerics.engine.kernel_params` alone. Every field is read by name.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..formats import FloatFormat
from ._accumulate import (
    float_pairs, float_rows, float_rows32, float_rows32_serial, float_rows_serial,
)
from ._codes import F_INEXACT, F_INVALID, F_OVERFLOW, F_SATURATE, F_UNREPR
from ._integer import int_pairs_exact, int_rows, int_rows_exact
from ._layout import (
    mask_csr, mask_csr_serial, scatter_results, scatter_results_serial, transpose_into,
    transpose_into_serial,
)
from ._round import quantize_kernel, quantize_kernel_serial
from ._simd import ADD_ROUNDING, HALF_NATIVE
from ._stats import sig_stats, sig_stats_f32, sig_stats_f32_pair
from ._steps import register_step

__all__ = [
    "FormatParams", "DatapathParams", "KernelParams", "format_params",
    "F_INEXACT", "F_INVALID", "F_OVERFLOW", "F_SATURATE", "F_UNREPR", "PARALLEL_MIN",
    "HALF_NATIVE", "ADD_ROUNDING", "register_step", "quantize_kernel", "quantize_kernel_serial",
    "float_rows", "float_rows_serial", "float_rows32", "float_rows32_serial", "float_pairs",
    "int_rows", "int_rows_exact", "int_pairs_exact",
    "sig_stats", "sig_stats_f32", "sig_stats_f32_pair",
    "mask_csr", "mask_csr_serial", "transpose_into", "transpose_into_serial",
    "scatter_results", "scatter_results_serial",
]

PARALLEL_MIN = 1 << 16
"""Entries (of an array, a matrix or a selection) from which the callers run a kernel's
parallel version on the numba threads rather than its ``_serial`` one: below it,
starting the thread pool costs more than the work."""


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
