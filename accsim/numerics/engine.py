"""The accumulation engine: bit-exact matrix products in any accumulator.

:func:`matmul` computes C = A @ B the way a MAC array does: for every output (i, j) an
accumulator register starts at zero (or at the bias, rounded to the accumulator format)
and, for k = 0 .. K-1, takes ``round_acc(s + p_k)`` with ``p_k = a[i, k] * b[k, j]``.
What the register holds after the last step is ``values[i, j]``.

Products (``product``)
    ``"exact"`` (default) / ``"fused"``: the adder sees the exact product, so each
    step is one rounding of ``s + a*b`` (a fused multiply-add). For the sequential and
    chunked structures the two are the same; in a tree the leaves are exact products.
    A format (or its name): the product is first rounded to that format with
    ``product_rounding`` (default: ``rounding``), then added (multiply-round-add).

Structures (``structure``)
    ``"sequential"``: one register, K rounded adds.
    ``"chunked"``: each chunk of ``chunk_size`` (L) terms is accumulated sequentially in
    ``acc`` starting from zero; the chunk's result is then added into a second register
    in the ``wide`` format (rounding ``wide_rounding``), which starts at the bias.
    Promotion every L terms, as FP8 GEMMs on Hopper are run in practice.
    ``"tree"``: pairwise adder tree over the K products (level by level, pairs (0,1),
    (2,3), ...; an odd element is passed up unchanged), every node rounded to ``acc``;
    the bias, if any, is added to the root with one more rounding (without a bias the
    root is the result; a lone product, K = 1, is rounded into ``acc``).
    ``"fused"``: a multi-term fused adder (tensor-core style). Each step takes the next
    ``terms`` (T) products and the accumulator; all T+1 addends are exact; with
    ``e_max`` the exponent (floor log2) of the largest-magnitude addend, each addend is
    rounded to a multiple of ``2**(e_max - acc.man_bits - guard_bits)`` with
    ``align_rounding`` ("rz": truncate magnitudes, as sign-magnitude datapaths do; "rd":
    truncate two's-complement, i.e. toward -inf; "rne"), the aligned addends are summed
    exactly, and the sum is rounded once into ``acc`` with ``rounding``. With
    ``guard_bits`` large enough nothing is dropped and each step is a correctly rounded
    (T+1)-term sum.

Integer and fixed-point accumulators (``acc`` an IntFormat / FixedFormat)
    Operands must be integer-valued for IntFormat. Each product is rounded to the
    accumulator grid (exact for integers) with ``rounding``, then added exactly into a
    ``bits``-bit two's-complement register that wraps or saturates after every add.
    Structures sequential and chunked are supported (chunked promotes into ``wide``).

Events
    Every register rounding reports overflow (exact value beyond the register's range),
    saturation (clamped) and inexact; ``result.events`` counts them per output row and in
    total, and keeps an OR of the flags per output. Counted roundings: each add (and
    each promotion add of "chunked", each tree node, each fused step — inexact there
    means the final rounding of the aligned sum was inexact; bits dropped by alignment
    are part of the model, not an event), and each product rounding of
    multiply-round-add. Loading the bias into the register is not counted. For integer
    registers a product is rounded to the grid only (exact for integers); only the sum
    wraps or saturates. For an integer register that wraps, values come from one exact
    float64 product reduced modulo 2**bits (wrap-around is modular) and the events are
    computed when ``result.events`` is first read.

Selected outputs (``select``)
    A boolean (m, n) mask or a pair ``(rows, cols)`` of index arrays: only those outputs
    are computed, in time proportional to their number; other entries of ``values`` are
    NaN.

Exactness
    Every supported combination is bit-exact. What cannot be simulated exactly is refused
    with ``ValueError`` saying why: products that need more than 53 significant bits or
    fall below float64's range, float accumulators with more than 50 fraction bits other
    than IEEE fp64 with rne, integer sums beyond 64 bits.

How it runs (results never depend on it)
    Sequential and chunked float registers step many outputs side by side with a
    branch-free TwoSum + round-to-odd + bit-pattern rounding, redoing the rare hard
    steps (subnormal results, overflow, inf/NaN) with the general code. When the register
    has at most 22 significant bits inside float32's exponent range and every operand
    and product is exact in float32, the same algorithm runs on float32 lanes (twice as
    many per vector register); otherwise on float64 lanes. Two registers have their own
    step on float32 lanes: IEEE binary32 with rne is the hardware float32 add itself
    (TwoSum only for the inexact count), and rne into formats with -0 (fp16, bf16,
    e4m3fn...) needs no direction constants and takes an exact zero sum's sign from the
    hardware add (IEEE's under rne): about half the operations of the general step.
    IEEE binary16 with rne, where the CPU converts float32 to binary16 in hardware (x86-64
    F16C), is a round-to-odd float32 sum converted to binary16 and back (correct by
    the double-rounding theorem). Those round-to-odd sums are formed for a whole row
    first, with two directed adds where the CPU has them (AVX-512F), else TwoSum; see
    bench/README.md for the operation counts.
    IEEE binary64 with rne is likewise the hardware float64 add. A selection with few
    outputs per row runs blocks of 128 or 256 (row, col) registers side by side, their
    exact products formed eight lanes by eight k at a time and transposed in vector
    registers. Steps that add exact zeros to nonzero registers (a zero a[i, k] with
    every entry of B finite) are skipped, since they change neither values nor events.
    Integer operands are held as int32 where they fit. A signed integer register over
    all outputs whose partial sums stay below 2^52 takes one exact float64 product (any
    summation order is exact then); only outputs that may leave the register's range
    run the register kernel.

The code
    :func:`matmul` makes a :class:`~accsim.numerics.datapath.Datapath` of its arguments
    (or takes one); ``_run`` checks the operands (their significant bits decide whether
    every product is exact in float64, or in float32) and the selection, and
    :func:`kernel_params` turns the datapath into the kernels' named parameters (the only
    place that does); ``_float_matmul`` and ``_int_matmul`` pick the kernel and gather
    per-output results into a :class:`MatmulResult`. The kernels live in
    :mod:`accsim.numerics.kernels`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import numpy as np

from . import kernels
from .datapath import STRUCTURES, Datapath
from .formats import FixedFormat, FloatFormat, IntFormat, rounding_code
from .kernels import DatapathParams, KernelParams, format_params
from .rounding import quantize, sr_settings

FLAG_INEXACT, FLAG_OVERFLOW, FLAG_SATURATE = (kernels.F_INEXACT, kernels.F_OVERFLOW,
                                              kernels.F_SATURATE)
_FLAG_MASK = np.uint8(FLAG_INEXACT | FLAG_OVERFLOW | FLAG_SATURATE)
_FP32 = FloatFormat(8, 23)
_FP64 = FloatFormat(11, 52)


class Events:
    """Event counts of a matrix product.

    ``overflows``, ``saturations``, ``inexact``: int64 arrays of length m, the number of
    register roundings (adds, promotions, tree nodes, fused steps, product roundings)
    of each output row that overflowed, saturated or were inexact. ``flags``: (m, n)
    uint8, per output the OR of FLAG_INEXACT (1), FLAG_OVERFLOW (2), FLAG_SATURATE (4).
    """

    def __init__(self, overflows, saturations, inexact, flags):
        self.overflows = overflows
        self.saturations = saturations
        self.inexact = inexact
        self.flags = flags

    @classmethod
    def none(cls, m, n):
        """No event in an (m, n) product."""
        return cls(*(np.zeros(m, dtype=np.int64) for _ in range(3)),
                   np.zeros((m, n), dtype=np.uint8))

    @property
    def total(self) -> dict:
        """Totals over all outputs: {"overflows", "saturations", "inexact"}."""
        return {"overflows": int(self.overflows.sum()),
                "saturations": int(self.saturations.sum()),
                "inexact": int(self.inexact.sum())}

    @property
    def overflowed(self):
        """(m, n) bool: outputs whose register overflowed (or saturated) at least once."""
        return (self.flags & (FLAG_OVERFLOW | FLAG_SATURATE)) != 0

    def __repr__(self):
        return f"Events({self.total})"


class MatmulResult:
    """Result of :func:`matmul`: ``values`` (m, n) float64 and ``events``.

    For integer / fixed-point accumulators ``int_values`` holds the register contents as
    int64 (units of 2**-frac_bits). Unselected outputs are NaN in ``values``.
    """

    def __init__(self, values, events=None, events_fn=None, int_values=None, selected=None):
        self._values = values
        self._events = events
        self._events_fn = events_fn
        self._int_values = int_values      # an array, or a function computing it on demand
        self.selected = selected

    @property
    def int_values(self):
        if callable(self._int_values):
            self._int_values = self._int_values()
        return self._int_values

    @property
    def values(self):
        if isinstance(self._values, Exception):
            raise self._values
        return self._values

    @property
    def events(self) -> Events:
        if self._events is None:
            self._events = self._events_fn()
            self._events_fn = None
        return self._events

    def __repr__(self):
        return f"MatmulResult(shape={self.int_values.shape if self.int_values is not None else self._values.shape})"


# ------------------------------------------------------------------------------------
# public entry points

def matmul(a, b, acc, *, rounding="rne", structure="sequential", product="exact",
           product_rounding=None, chunk_size=None, wide=None, wide_rounding=None,
           terms=4, guard_bits=3, align_rounding="rz", bias=None, select=None,
           seed=None, sr_bits=None) -> MatmulResult:
    """C = a @ b with every add rounded into the accumulator ``acc`` (see module doc).

    Parameters
    ----------
    a, b : (m, k) and (k, n) arrays of values representable in the operand formats.
    acc : Datapath | FloatFormat | IntFormat | FixedFormat | str | CModel
        A whole :class:`~accsim.numerics.datapath.Datapath` (then the datapath keywords
        below must be left at their defaults), the accumulator register's format (the
        keywords below complete the datapath), or a register that runs its own loop: any
        object with a ``drive_matmul(a, b, init)`` method, such as a user's compiled C
        step function (sequential, exact products, ``bias`` as initial value).
    rounding : rounding mode of the register ("rne", "rna", "rz", "ru", "rd", "ro", "sr").
    structure : "sequential" | "chunked" | "tree" | "fused".
    product : "exact" | "fused" | a format (multiply-round-add with ``product_rounding``).
    chunk_size, wide, wide_rounding : chunked structure (L and the promotion register).
    terms, guard_bits, align_rounding : fused multi-term adder (T, G, "rz"/"rd"/"rne").
    bias : array broadcastable to (m, n), rounded into the register's format as its
        initial value (the wide register for "chunked").
    select : (m, n) bool mask or (rows, cols): compute only these outputs.
    seed, sr_bits : stochastic rounding stream and random bits (see :func:`quantize`).
        In the engine ``sr_bits`` defaults to, and may not exceed, 51 - man_bits of every
        float format rounded stochastically (the bits that stay exact in the float64
        round-to-odd intermediate).
    """
    drive = getattr(acc, "drive_matmul", None)
    if callable(drive):  # a register that runs its own loop (accsim.interop.cmodel.CModel)
        if structure != "sequential" or product not in ("exact", "fused") or select is not None:
            raise ValueError("acc: a C model accumulator runs structure 'sequential' with exact "
                             "products on all outputs")
        return drive(a, b, init=bias)
    if isinstance(acc, Datapath):
        given = {k: v for k, v in dict(
            rounding=rounding, structure=structure, product=product,
            product_rounding=product_rounding, chunk_size=chunk_size, wide=wide,
            wide_rounding=wide_rounding, terms=terms, guard_bits=guard_bits,
            align_rounding=align_rounding).items() if v != _MATMUL_DEFAULTS[k]}
        if given:
            raise ValueError(f"{', '.join(given)}: part of the Datapath given as acc; "
                             "not accepted beside it")
        dp = acc
    else:
        dp = Datapath.of(acc, rounding=rounding, structure=structure, product=product,
                         product_rounding=product_rounding, chunk_size=chunk_size,
                         wide=wide, wide_rounding=wide_rounding, terms=terms,
                         guard_bits=guard_bits, align_rounding=align_rounding)
    return _run(dp, a, b, bias=bias, select=select, seed=seed, sr_bits=sr_bits)


_MATMUL_DEFAULTS = dict(rounding="rne", structure="sequential", product="exact",
                        product_rounding=None, chunk_size=None, wide=None, wide_rounding=None,
                        terms=4, guard_bits=3, align_rounding="rz")


def kernel_params(dp: Datapath, *, seed=None, sr_bits=None) -> KernelParams:
    """The kernels' parameters of the datapath ``dp`` for one product, whose stochastic
    rounding draws from ``seed`` with ``sr_bits`` random bits (see :func:`matmul`): the
    one place where a Datapath becomes kernel parameters.

    Raises ValueError for a register the engine cannot simulate exactly (float) or does
    not support (integer / fixed point), naming the field. Parameters of a structure
    other than ``dp.structure`` are 0; the product and wide formats are the register's
    when products are exact or the structure is not "chunked" (the kernels do not read
    them then).
    """
    acc, product, wide, fixed = _datapath_params(dp)
    if isinstance(dp.acc, FloatFormat):
        fm = [(dp.acc, dp.rounding), (dp.wide, dp.wide_rounding),
              (dp.product, dp.product_rounding) if dp.rounded_product else (None, None)]
        srb = _sr_limit(dp.rounding, sr_bits, fm)
        _, seed_u, srbits = sr_settings("sr" if srb is not None else "rne", seed, srb)
    else:
        _, seed_u, srbits = sr_settings(dp.rounding, seed, sr_bits)
    return KernelParams(acc, product, wide, fixed._replace(
        sr_bits=np.int64(srbits), seed=np.uint64(seed_u).view(np.int64)))


@functools.lru_cache(maxsize=256)
def _datapath_params(dp):
    """What :func:`kernel_params` takes from the datapath alone, checked: the register,
    product and wide :class:`~accsim.numerics.kernels.FormatParams` and the
    :class:`~accsim.numerics.kernels.DatapathParams` (``sr_bits`` and ``seed`` 0: set
    per product). Datapaths are frozen values, so this is kept (the last 256)."""
    if isinstance(dp.acc, FloatFormat):
        native, wide_native = _check_float_datapath(dp)
    else:
        _check_int_datapath(dp)
        native, wide_native = False, False
    chunked = dp.structure == "chunked"
    fixed = dict(
        rounding=rounding_code(dp.rounding),
        product_kind=int(dp.rounded_product),
        product_rounding=rounding_code(dp.product_rounding if dp.rounded_product else "rne"),
        structure=STRUCTURES.index(dp.structure),
        chunk_size=dp.chunk_size or 0,
        wide_rounding=rounding_code(dp.wide_rounding if chunked else dp.rounding),
        terms=dp.terms or 0,
        guard_bits=dp.guard_bits or 0,
        align_rounding=rounding_code(dp.align_rounding or "rz"),
        native=int(native),
        wide_native=int(wide_native),
        sr_bits=0,
        seed=0)
    return (format_params(dp.acc),
            format_params(dp.product if dp.rounded_product else dp.acc),
            format_params(dp.wide if chunked else dp.acc),
            DatapathParams(**{k: np.int64(v) for k, v in fixed.items()}))


def scalar_step(fmt, rounding, acc, a, b):
    """One register step round(acc + a*b) of a float register, on the engine's scalar
    add: (value, flags) with flags the OR of FLAG_INEXACT/OVERFLOW/SATURATE, or None when
    this fast path does not apply (not a float format, a non-finite input, a product that
    is not exact in float64 or is near its overflow); then use a 1x1 :func:`matmul`.
    ``acc`` is first rounded into ``fmt`` (a register holds format values); that rounding
    is not counted in the flags."""
    if not isinstance(fmt, FloatFormat) or not (
            math.isfinite(acc) and math.isfinite(a) and math.isfinite(b)):
        return None
    p = a * b
    if not abs(p) < 2.0**1019:
        return None
    if p != 0.0 or (a != 0.0 and b != 0.0):
        na, da = a.as_integer_ratio()
        nb, db = b.as_integer_ratio()
        npp, dp = p.as_integer_ratio()
        if na * nb * dp != npp * da * db:  # the product is not exact: refuse there
            return None
    native = _check_float_acc(fmt, rounding, "format")
    v, f = kernels.register_step(float(acc), p, format_params(fmt),
                                 np.int64(rounding_code(rounding)), native)
    return float(v), int(f) & (FLAG_INEXACT | FLAG_OVERFLOW | FLAG_SATURATE)


def float32_operands(acc, A, B, sta=None, stb=None, rounding=None, b_transposed=False,
                     A32=None, B32=None):
    """(A, B) as float32 when the float32-lane kernel is exact for them, else None
    (with ``b_transposed``: (A, B.T), both C-contiguous). ``A32``, ``B32``: float32
    copies already made (used instead of converting again).

    Conditions: the register has at most 22 significant bits (float32 round-to-odd
    keeps two more), or is IEEE binary32 with ``rounding`` "rne" (the hardware add is
    the register), and its normal range lies inside float32's (emin >= -126,
    emax <= 127); every operand is a float32 value and every product of an entry of A
    with an entry of B is exact in float32: significand widths add up to at most 24,
    lowest set bits to at least 2^-149, leading exponents to at most 126. ``sta``,
    ``stb``: (max significant bits, min last-bit exponent, max leading exponent) of the
    finite nonzero entries (:func:`accsim.numerics.kernels.sig_stats`). The kernel
    is the same algorithm as the float64 one; float32 is only a faster container.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if sta is None or stb is None:
        sta = _sig_stats(A)[:3]
        stb = _sig_stats(B)[:3]
    (sa, la, ea), (sb, lb, eb) = sta, stb
    if not _lanes32_register(acc, rounding) or A.size == 0 or B.size == 0:
        return None
    if sa == 0 or sb == 0:       # no finite nonzero entries: every product is 0, inf or NaN
        ok = (sa == 0 or (sa <= 24 and la >= -149 and ea <= 127)) and \
             (sb == 0 or (sb <= 24 and lb >= -149 and eb <= 127))
    else:
        ok = sa + sb <= 24 and la + lb >= -149 and ea + eb <= 126 and \
            la >= -149 and lb >= -149 and ea <= 127 and eb <= 127
    if not ok:
        return None
    A32 = A.astype(np.float32) if A32 is None else A32
    if b_transposed:
        return A32, _transposed(B if B32 is None else B32, np.float32)
    return A32, B.astype(np.float32) if B32 is None else B32


# ------------------------------------------------------------------------------------
# datapath checks (kernel_params)

def _native_fp64(fmt, mode):
    return isinstance(fmt, FloatFormat) and fmt == _FP64 and mode == "rne"


def _check_float_acc(fmt, mode, name):
    """Can round(s + p) into ``fmt`` be simulated exactly? Returns native flag."""
    if _native_fp64(fmt, mode):
        return True
    if fmt.man_bits > 50:
        raise ValueError(
            f"{name}: a float accumulator with {fmt.man_bits} fraction bits cannot be "
            "simulated exactly in float64 (at most 50, or IEEE fp64 with rounding 'rne')")
    if fmt.emax > 1019:
        raise ValueError(f"{name}: exponent range too large for exact simulation (emax > 1019)")
    if fmt.emin - fmt.man_bits - 2 < -1074 or (not fmt.subnormals and fmt.emin - fmt.man_bits - 3 < -1074):
        raise ValueError(f"{name}: smallest quantum too close to float64's (emin - man_bits too small)")
    return False


def _check_float_datapath(dp):
    """Checks of a float register datapath: (native, wide_native), whether the register
    and the wide register are IEEE binary64 with rne (the hardware add)."""
    acc = dp.acc
    native = _check_float_acc(acc, dp.rounding, "acc")
    wide_native = False
    if dp.structure == "chunked":
        if not isinstance(dp.wide, FloatFormat):
            raise ValueError("wide: a float accumulator promotes into a float wide format")
        wide_native = _check_float_acc(dp.wide, dp.wide_rounding, "wide")
    if dp.structure == "fused":
        carry = math.ceil(math.log2(dp.terms + 1))
        if acc.man_bits + dp.guard_bits + 2 + carry > 62:
            raise ValueError(
                f"guard_bits: the fused adder's aligned sum needs {acc.man_bits} + "
                f"{dp.guard_bits} + {carry + 2} bits; at most 62 fit")
        if native:
            raise ValueError("acc: the fused multi-term adder needs an accumulator of at most 50 fraction bits")
    return native, wide_native


def _sr_limit(rounding, sr_bits, fmts_modes):
    """Engine SR bits: default and maximum 51 - man_bits over stochastic float roundings."""
    lim = 63
    for f, md in fmts_modes:
        if md == "sr" and isinstance(f, FloatFormat):
            lim = min(lim, 51 - f.man_bits)
    if sr_bits is None:
        return lim if lim < 63 else None
    if sr_bits > lim:
        raise ValueError(
            f"sr_bits: at most {lim} random bits can be exact for these formats, got {sr_bits}")
    return sr_bits


def _check_int_datapath(dp):
    """Checks of an integer / fixed-point register datapath."""
    acc = dp.acc
    if dp.structure not in ("sequential", "chunked"):
        raise ValueError(f"structure: integer and fixed-point accumulators support "
                         f"'sequential' and 'chunked', not {dp.structure!r}")
    if dp.rounded_product:
        raise ValueError("product: integer and fixed-point accumulators take exact products "
                         "(each rounded to the accumulator's grid)")
    if not acc.signed and acc.bits >= 63:
        raise ValueError("acc: unsigned accumulators of 63 or 64 bits are not supported")
    if dp.structure == "chunked":
        wide = dp.wide
        if not isinstance(wide, (IntFormat, FixedFormat)) or wide.frac_bits != acc.frac_bits:
            raise ValueError("wide: an integer/fixed accumulator promotes into an integer/fixed "
                             "format with the same frac_bits")
        if not wide.signed and wide.bits >= 63:
            raise ValueError("wide: unsigned formats of 63 or 64 bits are not supported")


# ------------------------------------------------------------------------------------
# operands and selections

def _as_matrix(x, name):
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{name}: expected a numeric array ({exc})") from None
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        big = np.abs(arr.astype(np.float64)) >= 2.0**53
        if big.any():
            raise ValueError(f"{name}: integer entries must be below 2^53 in magnitude")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _sig_stats(X):
    """:func:`accsim.numerics.kernels.sig_stats` of every entry of X, on the calling
    thread (a parallel version was faster alone but left numba's threads spinning
    against the BLAS product of the integer wrap path right after it: 3x slower)."""
    if X.size == 0:
        return 0, 100000, -100000, True
    return kernels.sig_stats(X.reshape(-1))


class _Operand:
    """Statistics of a C-contiguous float64 operand X: ``stats`` (max significant bits,
    min last-bit exponent, max leading exponent, all-integer), ``f32`` its float32 copy
    when one was made and every entry is a float32 value (else None), and ``finite``
    (all entries finite; computed on first use when not known)."""

    def __init__(self, X, stats=None, f32=None, finite=None):
        self.X = X
        self.stats = _sig_stats(X) if stats is None else stats
        self.f32 = f32
        self._finite = finite

    @property
    def finite(self):
        if self._finite is None:
            self._finite = bool(np.isfinite(self.X).all())
        return self._finite


def _operands(A, B, want32):
    """:class:`_Operand` of A and B. With ``want32`` both are copied to float32 with
    their statistics in one pass each (both on the numba threads when large); an
    operand that float32 would change gets the float64 statistics instead."""
    if not (want32 and A.size and B.size):
        return _Operand(A), _Operand(B)
    A32 = np.empty(A.shape, dtype=np.float32)
    B32 = np.empty(B.shape, dtype=np.float32)
    pairs = ((A, A32), (B, B32))
    res = [None, None]

    def stats(lo, hi):                  # A and B on two threads when large
        for c in range(lo, hi):
            X, X32 = pairs[c]
            res[c] = kernels.sig_stats_f32(X.reshape(-1), X32.reshape(-1))

    kernels.parallel_ranges(stats, 2, parallel=A.size + B.size >= kernels.PARALLEL_MIN)
    ops = []
    for X, X32, (s, lo, e, integer, nonrep, nonfin) in zip((A, B), (A32, B32), res):
        if nonrep == 0:
            ops.append(_Operand(X, (int(s), int(lo), int(e), bool(integer)), X32, nonfin == 0))
        else:
            ops.append(_Operand(X))
    return ops[0], ops[1]


def _check_products(A, B, sta, stb):
    """Refuse operands some of whose products float64 cannot hold exactly."""
    sa, la, ea, _ = sta
    sb, lb, eb, _ = stb
    if not (A.size and B.size and sa > 0 and sb > 0):
        return
    # significands of sa and sb bits multiply to at most sa + sb bits (sa bits when
    # the other operand is a power of two)
    need = max(sa, sb) if min(sa, sb) == 1 else sa + sb
    if need > 53:
        raise ValueError(
            f"a, b: exact products need {need} significant bits (a has up to {sa}, "
            f"b up to {sb}); float64 holds 53. Use operands of narrower formats")
    if la + lb < -1074:
        raise ValueError("a, b: some products fall below float64's smallest subnormal")
    if ea + eb + 2 > 1019:
        raise ValueError("a, b: products may exceed float64's range")


class _Selection(NamedTuple):
    """The outputs to compute in CSR form: nonempty ``rows``, row pointers ``ptr``
    (len(rows) + 1) and columns ``cols`` (int64), and the (m, n) ``mask`` (None: all)."""
    rows: np.ndarray
    ptr: np.ndarray
    cols: np.ndarray
    mask: Optional[np.ndarray]

    def row_ids(self):
        """The row of every output (aligned with ``cols``)."""
        return np.repeat(self.rows, np.diff(self.ptr))


def _selection(select, m, n):
    """The :class:`_Selection` of ``select`` (None, an (m, n) bool mask or (rows, cols))."""
    if select is None:
        rows = np.arange(m, dtype=np.int64)
        ptr = np.arange(m + 1, dtype=np.int64) * n
        cols = np.tile(np.arange(n, dtype=np.int64), m)
        return _Selection(rows, ptr, cols, None)
    if isinstance(select, tuple) and len(select) == 2:
        mask = _pairs_mask(select, m, n)
    else:
        mask = np.asarray(select)
        if mask.dtype != bool or mask.shape != (m, n):
            raise ValueError(f"select: expected a boolean mask of shape ({m}, {n}) or (rows, cols)")
    return _Selection(*_mask_csr(mask), mask)


def _mask_csr(mask):
    """(rows, ptr, cols) of the True entries of a 2-D boolean mask in row-major order:
    the nonempty rows, their row pointers (len(rows) + 1) and the column indices, int64.
    numpy, not a kernel: as fast at 5 % of 512 x 512 (0.3 ms), and nothing to compile."""
    n = mask.shape[1]
    idx = np.flatnonzero(mask)
    r = idx // n
    counts = np.bincount(r, minlength=mask.shape[0])
    rows = np.flatnonzero(counts).astype(np.int64)
    ptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts[rows], out=ptr[1:])
    return rows, ptr, (idx - r * n).astype(np.int64)


def _pairs_mask(select, m, n):
    """The (m, n) mask of a selection given as (rows, cols) index arrays (negative
    indices count from the end)."""
    r = np.asarray(select[0]).reshape(-1)
    c = np.asarray(select[1]).reshape(-1)
    if r.shape != c.shape or r.dtype.kind not in "iu" or c.dtype.kind not in "iu":
        if not (r.size == 0 and c.size == 0):
            raise ValueError("select: expected (rows, cols) integer index arrays of equal length")
    r = r.astype(np.int64)
    c = c.astype(np.int64)
    if r.size and (r.min() < -m or r.max() >= m or c.min() < -n or c.max() >= n):
        raise ValueError(f"select: index out of range for a ({m}, {n}) result")
    r = np.where(r < 0, r + m, r)
    c = np.where(c < 0, c + n, c)
    mask = np.zeros((m, n), dtype=bool)
    mask[r, c] = True
    return mask


def _init_entries(bias, m, n, sel, fmt, mode, seed):
    """Initial register value of every computed output: bias rounded into ``fmt``."""
    nnz = sel.cols.shape[0]
    if bias is None:
        return np.zeros(nnz), None
    try:
        b = np.asarray(bias, dtype=np.float64)
        bb = np.broadcast_to(b, (m, n))
    except (ValueError, TypeError):
        raise ValueError(f"bias: expected an array broadcastable to ({m}, {n}), "
                         f"got shape {np.shape(bias)}") from None
    full = sel.mask is None
    vals = bb.reshape(-1) if full else bb[sel.row_ids(), sel.cols]
    if not np.all(np.isfinite(vals)):
        raise ValueError("bias: expected finite values")
    # rounding is elementwise and deterministic (round-to-nearest-even for "sr"), so the
    # bias is rounded before it is broadcast: once per column for a (n,) bias, not once
    # per output (entries never read are replaced by 0 first)
    q = quantize(np.where(np.isfinite(b), b, 0.0) if b.ndim else b, fmt,
                 mode if mode != "sr" else "rne")
    qb = np.broadcast_to(q, (m, n))
    return (qb.reshape(-1) if full else qb[sel.row_ids(), sel.cols]), bb


class _Outputs(NamedTuple):
    """Per-output kernel results, in selection order: register ``values`` and the OR of
    their event ``flags``; counts of ``overflows``, ``saturations`` and ``inexact``
    roundings (int64). Passed to a kernel as its last five arguments."""
    values: np.ndarray
    flags: np.ndarray
    overflows: np.ndarray
    saturations: np.ndarray
    inexact: np.ndarray

    @classmethod
    def empty(cls, nnz, dtype):
        """Results of nnz outputs whose register values have ``dtype``."""
        return cls(np.empty(nnz, dtype=dtype), np.zeros(nnz, dtype=np.uint8),
                   *(np.zeros(nnz, dtype=np.int64) for _ in range(3)))


def _gather(sel, values_e, res, m, n, fill):
    """(values, Events) of an (m, n) product from per-output ``values_e`` and the events
    of ``res``; outputs not selected are ``fill``, with no events."""
    rows, cols = sel.rows, sel.cols
    if (cols.shape[0] == m * n and rows.shape[0] == m and m * n > 0
            and np.array_equal(rows, np.arange(m))
            and np.array_equal(cols.reshape(m, n), np.broadcast_to(np.arange(n), (m, n)))):
        # every output, in row-major order: reshape instead of scattering
        return values_e.reshape(m, n), Events(
            res.overflows.reshape(m, n).sum(axis=1), res.saturations.reshape(m, n).sum(axis=1),
            res.inexact.reshape(m, n).sum(axis=1), res.flags.reshape(m, n) & _FLAG_MASK)
    # numpy, not a kernel: as fast at 5 % of 512 x 512 (0.4 ms), nothing to compile
    r = sel.row_ids()
    values = np.full((m, n), fill, dtype=np.float64)
    values[r, cols] = values_e
    flags = np.zeros((m, n), dtype=np.uint8)
    flags[r, cols] = res.flags & _FLAG_MASK
    ov, sat, inx = (_row_sums(r, c, m) for c in (res.overflows, res.saturations, res.inexact))
    return values, Events(ov, sat, inx, flags)


def _row_sums(r, counts, m):
    """Per-row sums (int64, length m) of the int64 ``counts`` of outputs in rows ``r``."""
    if counts.shape[0] and counts.max() >= 2**53 // max(counts.shape[0], 1):
        out = np.zeros(m, dtype=np.int64)       # float64 weights could round: exact add
        np.add.at(out, r, counts)
        return out
    return np.bincount(r, weights=counts, minlength=m).astype(np.int64)


# ------------------------------------------------------------------------------------
# the product

def _run(dp, a, b, *, bias, select, seed, sr_bits):
    """The product on the validated datapath ``dp``."""
    A = _as_matrix(a, "a")
    B = _as_matrix(b, "b")
    m, K = A.shape
    if B.shape[0] != K:
        raise ValueError(f"b: expected {K} rows to match a's {K} columns, got shape {B.shape}")
    opA, opB = _operands(A, B, _wants_float32(dp))
    _check_products(A, B, opA.stats, opB.stats)
    sel = _selection(select, m, B.shape[1])
    kp = kernel_params(dp, seed=seed, sr_bits=sr_bits)
    if isinstance(dp.acc, FloatFormat):
        return _float_matmul(A, B, dp, kp, sel, bias, seed, opA, opB)
    return _int_matmul(A, B, dp, kp, sel, bias, seed, opA.stats, opB.stats)


def _wants_float32(dp):
    """May the float32 lanes run this datapath (then the operands are copied to float32
    while their statistics are taken)? Checked in full by :func:`float32_operands`."""
    return (isinstance(dp.acc, FloatFormat) and dp.structure in ("sequential", "chunked")
            and not dp.rounded_product and dp.rounding != "sr"
            and _lanes32_register(dp.acc, dp.rounding))


def _lanes32_register(acc, rounding):
    """Can the float register ``acc`` with ``rounding`` run on float32 lanes? At most 22
    significant bits (float32 round-to-odd keeps two more) or IEEE binary32 with rne
    (the hardware add), and a normal range inside float32's."""
    return ((acc.man_bits <= 21 or (acc == _FP32 and rounding == "rne"))
            and acc.emin >= -126 and acc.emax <= 127)


def _transposed(X, dtype):
    """X.T as a C-contiguous array of ``dtype`` (a float dtype holding X's values)."""
    out = np.empty((X.shape[1], X.shape[0]), dtype=dtype)
    kernels.parallel_ranges(lambda b0, b1: kernels.transpose_into(X, out, b0, b1),
                            (X.shape[0] + 7) // 8, parallel=X.size >= kernels.PARALLEL_MIN)
    return out


_THREAD_MACS = 100_000
"""Multiply-adds from which a product's kernel runs on several threads (below it,
handing rows to other threads costs more than the work)."""


def _on_rows(sel, macs, call):
    """``call(rows, ptr)`` on slices of the selection's nonempty rows and their row
    pointers (entries keep their absolute positions), on several threads when the
    product has ``macs`` >= :data:`_THREAD_MACS` multiply-adds."""
    rows, ptr = sel.rows, sel.ptr
    kernels.parallel_ranges(lambda r0, r1: call(rows[r0:r1], ptr[r0:r1 + 1]),
                            rows.shape[0], parallel=macs >= _THREAD_MACS)


# ------------------------------------------------------------------------------------
# float registers

def _float_matmul(A, B, dp, kp, sel, bias, seed, opA, opB):
    """The product into a float register: the lane kernels where they apply (vectorised
    steps, float32 lanes when exact, blocks of scattered outputs for sparse
    selections), else the general row kernel (stochastic rounding, rounded products,
    tree, fused)."""
    m, n = A.shape[0], B.shape[1]
    chunked = dp.structure == "chunked"
    init, _ = _init_entries(bias, m, n, sel, dp.wide if chunked else dp.acc,
                            dp.wide_rounding if chunked else dp.rounding, seed)
    nnz = sel.cols.shape[0]
    res = _Outputs.empty(nnz, np.float64)
    cols = sel.cols
    macs = nnz * A.shape[1]
    if not (dp.structure in ("sequential", "chunked") and not dp.rounded_product
            and dp.rounding != "sr"):
        has_bias = bias is not None
        _on_rows(sel, macs, lambda rows, ptr: kernels.float_rows(
            A, B, rows, ptr, cols, init, has_bias, *kp, *res))
        return _float_result(sel, res, m, n)
    native = bool(kp.datapath.native)
    # a selection with few outputs per row: blocks of independent registers over
    # (row, col) pairs; with 32 or more per row on average the row kernels (columns
    # gathered) fill the vectors and skip a row's zero a[i, k] steps
    pairs = (not native and sel.mask is not None
             and nnz < 32 * max(sel.rows.shape[0], 1))
    ops32 = None if native else float32_operands(
        dp.acc, A, B, opA.stats[:3], opB.stats[:3], dp.rounding, b_transposed=pairs,
        A32=opA.f32, B32=opB.f32)
    rows_kernel, pairs_kernel = kernels.lane_kernels(kernels.lane_step(
        kp.acc, kp.datapath.rounding, ops32 is not None, native))
    P, PW, S = kp.acc, kp.wide, kp.datapath
    if pairs:
        _float_pairs(pairs_kernel, A, B, ops32, sel, init, (P, PW, S), res)
        return _float_result(sel, res, m, n)
    skip0 = np.int64(1 if opB.finite else 0)   # 0 * B[k, j] is an exact zero
    Aop, Bop = (A, B) if ops32 is None else ops32
    _on_rows(sel, macs, lambda rows, ptr: rows_kernel(
        Aop, Bop, rows, ptr, cols, init, skip0, P, PW, S, *res))
    return _float_result(sel, res, m, n)


def _float_pairs(kernel, A, B, ops32, sel, init, params, res):
    """Scattered outputs in blocks of registers (a pairs kernel of
    :func:`accsim.numerics.kernels.lane_kernels`), on float32 operands ``ops32`` (A, B
    transposed) when given."""
    Aop, Bt = (A, _transposed(B, np.float64)) if ops32 is None else ops32
    nnz = sel.cols.shape[0]
    # wider blocks spread each step's fixed cost over more registers (256 lanes
    # measured ~15 % faster than 128 on 13k outputs); narrower ones keep both
    # threads busy on small selections
    lanes = 256 if nnz >= 8192 else 128
    pr, pc = sel.row_ids(), sel.cols
    kernels.parallel_ranges(
        lambda b0, b1: kernel(Aop, Bt, pr, pc, init, np.int64(lanes), b0, b1, *params, *res),
        (nnz + lanes - 1) // lanes, parallel=nnz * A.shape[1] >= _THREAD_MACS)


def _float_result(sel, res, m, n):
    values, events = _gather(sel, res.values, res, m, n, np.nan)
    return MatmulResult(values, events, selected=sel.mask)


# ------------------------------------------------------------------------------------
# integer and fixed-point registers

def _int_matmul(A, B, dp, kp, sel, bias, seed, sta, stb):
    """The product into an integer / fixed-point register: one exact BLAS product where
    every partial sum is exact in float64 (signed integer registers over all outputs),
    else the register kernels."""
    acc = dp.acc
    m, n = A.shape[0], B.shape[1]
    _check_int_operands(acc, A, B, sta, stb)
    init = _int_init(bias, m, n, sel, dp, seed)
    exact_ints = (dp.structure == "sequential" and acc.frac_bits == 0 and sta[3] and stb[3]
                  and acc.bits < 64 and (acc.signed or acc.bits < 63))
    kern = _IntKernels(A, B, kp, exact_ints)
    if (sel.mask is None and dp.structure == "sequential" and isinstance(acc, IntFormat)
            and acc.signed):
        result = _int_blas(A, B, acc, bias, init, kern)
        if result is not None:
            return result
    return _int_result(kern.run(sel, init), sel, acc, m, n)


def _check_int_operands(acc, A, B, sta, stb):
    """Refuse operands an integer / fixed-point register cannot take."""
    _, _, ea, inta = sta
    _, _, eb, intb = stb
    if isinstance(acc, IntFormat) and not (inta and intb):
        raise ValueError("a, b: an integer accumulator needs integer-valued operands "
                         "(use a FixedFormat accumulator or scale the operands)")
    if A.size and B.size and ea > -100000 and eb > -100000 and \
            ea + eb + 2 + acc.frac_bits > 62:
        raise ValueError("a, b: products may exceed 2^62 units of the accumulator")


def _int_init(bias, m, n, sel, dp, seed):
    """Initial register contents of every computed output, int64 units of
    2**-frac_bits: the bias rounded into the register (the wide one for "chunked")."""
    chunked = dp.structure == "chunked"
    init_f, _ = _init_entries(bias, m, n, sel, dp.wide if chunked else dp.acc,
                              dp.wide_rounding if chunked else dp.rounding, seed)
    if bias is None:
        return np.zeros(init_f.shape[0], dtype=np.int64)
    return np.rint(np.ldexp(init_f, dp.acc.frac_bits)).astype(np.int64)


class _IntKernels:
    """Runs the integer register kernels on selections of A @ B. With ``exact_ints``
    (sequential, integer operands and register, frac_bits 0) the branch-free kernels on
    integer copies of the operands, made on first use: int16 where they fit, else int32,
    else int64 (narrow loads; 16 x 16 and 32 x 32-bit products vectorise, AVX2 has no
    64-bit multiply), with the largest |product| ``pmax``, from which the kernels run
    registers that fit in int16 lanes."""

    def __init__(self, A, B, kp, exact_ints):
        self.A, self.B, self.kp, self.exact_ints = A, B, kp, exact_ints
        self._ints = None
        self._bt = None

    def _int_operands(self):
        if self._ints is None:
            A, B = self.A, self.B
            amax = max(-A.min(initial=0), A.max(initial=0))
            bmax = max(-B.min(initial=0), B.max(initial=0))
            big = max(amax, bmax)
            ity = np.int16 if big < 2**15 else np.int32 if big < 2**31 else np.int64
            self._ints = (A.astype(ity), B.astype(ity))
            # the largest |product|: registers and products that fit run in narrow lanes
            self.pmax = np.int64(int(amax) * int(bmax))
        return self._ints

    def _int_b_transposed(self):
        if self._bt is None:
            self._bt = np.ascontiguousarray(self._int_operands()[1].T)
        return self._bt

    def run(self, sel, init):
        """:class:`_Outputs` (int64 register contents) of the outputs ``sel``, whose
        registers start at ``init``."""
        kp = self.kp
        nnz = sel.cols.shape[0]
        res = _Outputs.empty(nnz, np.int64)
        macs = nnz * self.A.shape[1]
        cols = sel.cols
        if not self.exact_ints:
            A, B = self.A, self.B
            _on_rows(sel, macs, lambda rows, ptr: kernels.int_rows(
                A, B, rows, ptr, cols, init, kp.acc, kp.wide, kp.datapath, *res))
        elif nnz < self.A.shape[0] * self.B.shape[1]:
            # a selection: blocks of scattered (row, col) registers
            Ai, Bit, pr, lanes = (self._int_operands()[0], self._int_b_transposed(),
                                  sel.row_ids(), 16)
            pmax = self.pmax
            kernels.parallel_ranges(
                lambda b0, b1: kernels.int_pairs_exact(Ai, Bit, pr, cols, init,
                                                       np.int64(lanes), b0, b1, kp.acc,
                                                       *res[:4], pmax),
                (nnz + lanes - 1) // lanes, parallel=macs >= _THREAD_MACS)
        else:
            Ai, Bi = self._int_operands()
            if kernels.int16_lanes(kp.acc, self.pmax, init):
                _on_rows(sel, macs, lambda rows, ptr: kernels.int_rows_lanes16(
                    Ai, Bi, rows, ptr, cols, init, *res[:4]))
            else:
                _on_rows(sel, macs, lambda rows, ptr: kernels.int_rows_exact(
                    Ai, Bi, rows, ptr, cols, init, kp.acc, *res[:4]))
        return res


def _exact_in_float64(vals, ivals, frac):
    """Whether every ``vals * 2**frac`` (float64) equals the int64 ``ivals``. A float of
    2**63 or more is no int64: it is compared as a float, never cast (numpy would warn
    "invalid value encountered in cast" and give an arbitrary integer)."""
    back = np.ldexp(vals, frac)
    fits = (back >= -2.0**63) & (back < 2.0**63)
    return bool(fits.all()) and bool(np.all(back.astype(np.int64) == ivals))


def _int_float_values(ivals, acc):
    """float64 values of register contents ``ivals`` (int64 units of 2**-frac_bits), or a
    ValueError (returned: raised when ``values`` is read) when some have more than 53
    significant bits."""
    frac = acc.frac_bits
    if frac == 0 and acc.bits <= 54:      # every register value is a float64
        return ivals.astype(np.float64)
    with np.errstate(all="ignore"):
        vals = np.ldexp(ivals.astype(np.float64), -frac)
    big = np.abs(ivals) > (1 << 53)
    if big.any() and not _exact_in_float64(vals[big], ivals[big], frac):
        return ValueError("values: some accumulator contents have more than 53 significant "
                          "bits; read result.int_values")
    return vals


def _int_result(res, sel, acc, m, n):
    """The :class:`MatmulResult` of the register kernels' results ``res``."""
    vals_e = _int_float_values(res.values, acc)
    if isinstance(vals_e, Exception):
        _, events = _gather(sel, res.values.astype(np.float64), res, m, n, np.nan)
        vals = vals_e
    else:
        vals, events = _gather(sel, vals_e, res, m, n, np.nan)
    if sel.mask is None and sel.cols.shape[0] == m * n:
        ivals = res.values.reshape(m, n)
    else:
        ivals = np.zeros((m, n), dtype=np.int64)
        ivals[sel.row_ids(), sel.cols] = res.values
    return MatmulResult(vals, events, int_values=ivals, selected=sel.mask)


# float32 holds every integer below this: a product whose partial sums all stay below it
# (in any order) is exact in float32 BLAS, twice as fast as float64
_F32_EXACT = 2.0**24
# saturating registers: from this fraction of outputs whose partial sums may leave the
# register, the kernels run on every output (the exact BLAS product would be wasted on
# most of them)
_RISKY_ALL = 0.5


def _int_blas(A, B, acc, bias, init, kern):
    """A signed sequential integer register over all outputs whose partial sums are all
    integers below 2^52 (a bound: the largest row 1-norm of A times max |B|, plus the
    bias): one exact BLAS product, since any summation order is exact; in float32 where
    that bound for the products and every |a| and |b| are below 2^24, as float32 holds
    every integer below 2^24 (taken with the float32 copies in one pass per operand). Only outputs whose partial sums may leave the
    register's range run the register kernels (for saturation: their values; for wrap:
    their events, computed when first read, as wrapping is modular and the exact sum
    reduced modulo 2^bits is the value). None when the bound does not hold, or when
    saturating and more than ``_RISKY_ALL`` of the outputs may leave the range (then
    the kernels run on all)."""
    m, n = A.shape[0], B.shape[1]
    A32 = np.empty(A.shape, dtype=np.float32)
    B32 = np.empty(B.shape, dtype=np.float32)
    rnorm, amax = kernels.f32_copy_norms(A, A32)
    bmax = kernels.f32_copy_norms(B, B32)[1]
    pbound = float(rnorm) * float(bmax)
    # the float32 copies where they are exact and so is every partial sum
    f32 = (A32, B32) if max(pbound, amax, bmax) < _F32_EXACT else None
    binit = None if bias is None else init.reshape(m, n)
    gbound = pbound + (float(np.abs(binit).max()) if binit is not None and binit.size else 0.0)
    if gbound >= 2.0**52:
        return None
    risky = functools.partial(_risky_mask, A, B, binit, f32, gbound, acc)
    if acc.overflow == "saturate":
        if _risky_share(A, B, binit, f32, gbound, acc) > _RISKY_ALL:
            return None
        rmask = risky()
        ivals = _exact_product(A, B, f32).astype(np.int64)
        if binit is not None:
            ivals += binit
        rsel, res = _run_risky(rmask, init, kern, m, n)
        if rsel is None:
            events = Events.none(m, n)
        else:
            ivals[rsel.row_ids(), rsel.cols] = res.values
            events = _gather(rsel, res.values.astype(np.float64), res, m, n, 0.0)[1]
        return MatmulResult(_int_float_values(ivals, acc), events, int_values=ivals)
    if acc.bits <= 52:
        vals = np.empty((m, n))
        # float64 whatever the product's dtype: one compiled wrap_product, not one more
        # when a larger K or larger operands switch the product from float32 to float64
        kernels.wrap_product(np.asarray(_exact_product(A, B, f32), dtype=np.float64),
                             init if binit is not None else init[:0], np.int64(acc.bits), vals)
        ivals = functools.partial(vals.astype, np.int64)      # on demand
    else:               # |partial sums| < 2^52 <= 2^(B-1): nothing wraps
        ivals = _exact_product(A, B, f32).astype(np.int64)
        if binit is not None:
            ivals += binit
        vals = _int_float_values(ivals, acc)
    return MatmulResult(vals, int_values=ivals,
                        events_fn=functools.partial(_risky_events, risky, init, kern, m, n))


def _exact_product(A, B, f32):
    """A @ B for integer-valued A, B whose partial sums are all below 2^52: the float32
    copies ``f32`` (A32, B32) multiplied where given (exact: see :func:`_int_blas`),
    else float64."""
    if f32 is not None:
        return f32[0] @ f32[1]
    return A @ B


def _risky_share(A, B, binit, f32, gbound, acc):
    """The fraction of outputs :func:`_risky_mask` marks, estimated on every
    (m // 32)-th row of A (a speed choice only: either answer gives exact results)."""
    if A.size == 0 or B.size == 0:
        return 0.0
    rows = slice(None, None, max(1, A.shape[0] // 32))
    sub = _risky_mask(A[rows], B, None if binit is None else binit[rows],
                      None if f32 is None else (f32[0][rows], f32[1]), gbound, acc)
    return np.count_nonzero(sub) / sub.size


def _risky_mask(A, B, binit, f32, gbound, acc):
    """(m, n) bool: outputs whose partial sums may exceed the register's largest value
    (bounded by (|A| @ |B|) + |bias|, or everywhere by ``gbound``); ``binit`` the (m, n)
    int64 bias or None, ``f32`` as for :func:`_exact_product`."""
    if gbound <= float(acc.max_int):
        return np.zeros((A.shape[0], B.shape[1]), dtype=bool)
    X, Y = (A, B) if f32 is None else f32
    bound = np.abs(X) @ np.abs(Y)
    if binit is not None:
        bound = bound + np.abs(binit)
    return bound > np.float64(acc.max_int)


def _run_risky(risky, init, kern, m, n):
    """(selection, :class:`_Outputs`) of the register kernels on the outputs of the mask
    ``risky`` (their registers start at ``init``, all (m, n) outputs' initial contents),
    or (None, None) when there are none."""
    if not risky.any():
        return None, None
    rsel = _selection(risky, m, n)
    res = kern.run(rsel, init.reshape(m, n)[rsel.row_ids(), rsel.cols].copy())
    return rsel, res


def _risky_events(risky, init, kern, m, n):
    """The Events of the BLAS path: those of the outputs ``risky()`` marks, by the
    register kernels."""
    rsel, res = _run_risky(risky(), init, kern, m, n)
    if rsel is None:
        return Events.none(m, n)
    return _gather(rsel, res.values.astype(np.float64), res, m, n, 0.0)[1]
