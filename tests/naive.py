"""Slow, obviously-correct references for :func:`accsim.numerics.engine.matmul`.

One Python loop per output and one step per rounded add, exactly as the engine's module
docstring describes the hardware. The arithmetic comes from three independent places:

* MPFR (through gmpy2) rounds float accumulators under rne / rz / ru / rd: the exact sum
  ``s + p`` is formed at 3400 bits (enough for any two float64-range addends) and rounded
  once in a context with the accumulator's precision and subnormal range
  (``emin = emin_ieee - p + 2``, ``subnormalize=True``). The exponent range is left open
  above, and overflow is decided here the IEEE way: the value rounded to p bits with an
  unbounded exponent exceeds the largest finite value. That also covers ``fn`` formats,
  whose largest significand at the top exponent is one short of all ones.
* Exact ``fractions.Fraction`` arithmetic rounds under rna / ro (MPFR has neither), and
  computes the fused multi-term adder (alignment of every addend to a multiple of
  ``2**(e_max - man_bits - guard_bits)``, exact sum, one rounding).
* Python ints hold integer and fixed-point registers (units of ``2**-frac_bits``), with
  two's-complement wrap or saturation after every add.

Nothing here calls accsim's rounding. The accsim format objects are read only for their
fields (``exp_bits``, ``man_bits``, ``bias``, ``specials``, ...); every derived constant
(``emin``, ``emax``, largest finite value) is recomputed from those fields by the
oracles' ``FloatSpec`` (tests/oracles.py).

Event conventions (the engine docstring's "Events"): every rounding into the accumulator
(and into the wide register of ``chunked``, every tree node, every fused step, every
product rounded to a product format) reports ``inexact`` (result differs from the exact
value), ``overflow`` (the value rounded with an unbounded exponent exceeds the largest
finite value; for integers: the exact sum is out of range) and ``saturate`` (the format's
overflow policy clamped it). Rounding the bias into the starting register is not an add
and reports nothing (tests keep biases representable when they compare events). Additions
whose input is already infinite or NaN report nothing.

Flag bits: 1 inexact, 2 overflow, 4 saturate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import gmpy2
import numpy as np
from gmpy2 import mpfr

from accsim.numerics.config import load_format  # YAML -> format value; no rounding
from oracles import FloatSpec

F_INEXACT = 1
F_OVERFLOW = 2
F_SATURATE = 4

FLOAT_MODES = ("rne", "rna", "rz", "ru", "rd", "ro")
_MPFR_ROUND = {
    "rne": gmpy2.RoundToNearest, "rz": gmpy2.RoundToZero,
    "ru": gmpy2.RoundUp, "rd": gmpy2.RoundDown,
}
_EXACT_PREC = 3400  # float64 span 2**-2148 (product of subnormals) .. 2**1024, plus slack


# ------------------------------------------------------------------------------------
# format specs, re-derived from the fields (floats: FloatSpec of tests/oracles.py)

@dataclass(frozen=True)
class IntSpec:
    bits: int
    frac: int
    signed: bool
    saturate: bool

    @property
    def lo(self):
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self):
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


def _load(fmt):
    return load_format(fmt) if isinstance(fmt, str) else fmt


def spec_of(fmt):
    """FloatSpec or IntSpec of an accsim format (or format name), from its fields only
    (FloatSpec derives emin, emax and the largest finite value itself)."""
    fmt = _load(fmt)
    if hasattr(fmt, "exp_bits"):
        return FloatSpec(fmt.exp_bits, fmt.man_bits, subnormals=fmt.subnormals,
                         specials=fmt.specials, overflow=fmt.overflow, bias=fmt.bias)
    return IntSpec(bits=fmt.bits, frac=getattr(fmt, "frac_bits", 0), signed=fmt.signed,
                   saturate=(fmt.overflow == "saturate"))


def _pow2(k):
    return Fraction(1 << k) if k >= 0 else Fraction(1, 1 << -k)


def _floor_log2(q: Fraction) -> int:
    """floor(log2(q)) for a positive Fraction, exactly."""
    n, d = q.numerator, q.denominator
    e = n.bit_length() - d.bit_length()
    # 2**e <= n/d < 2**(e+1) ?  adjust by one if needed
    if e >= 0:
        if n < d << e:
            e -= 1
    else:
        if n << -e < d:
            e -= 1
    return e


# ------------------------------------------------------------------------------------
# rounding a positive rational to an integer (Fraction oracle, all deterministic modes)

def round_to_int(q: Fraction, neg: bool, mode: str):
    """Round the magnitude ``q >= 0`` to an integer; ``neg`` is the sign of the value.

    Returns (integer magnitude, inexact).
    """
    n = q.numerator // q.denominator
    rem = q - n
    if rem == 0:
        return n, False
    half = Fraction(1, 2)
    if mode == "rne":
        up = rem > half or (rem == half and n % 2 == 1)
    elif mode == "rna":
        up = rem >= half
    elif mode == "rz":
        up = False
    elif mode == "ru":
        up = not neg
    elif mode == "rd":
        up = neg
    elif mode == "ro":
        return n | 1, True
    else:
        raise ValueError(f"mode: no deterministic oracle for {mode!r}")
    return n + (1 if up else 0), True


def round_to_multiple(x: Fraction, quantum: Fraction, mode: str) -> Fraction:
    """Round the signed rational x to a multiple of ``quantum`` (align rounding).

    ``rz`` truncates the magnitude, ``rd`` truncates two's complement (toward -inf),
    ``rne`` is nearest with ties to an even multiple.
    """
    neg = x < 0
    k, _ = round_to_int(abs(x) / quantum, neg, mode)
    return (-k if neg else k) * quantum


# ------------------------------------------------------------------------------------
# float rounding: overflow, zero and flush rules shared by both oracles

def _signed_zero(neg, spec):
    return -0.0 if (neg and spec.has_negative_zero) else 0.0


def _overflow(neg, spec, mode):
    """IEEE 754 overflow result and flags (RZ / RO and the 'wrong' directed side give
    the largest finite value; a format without infinity gives NaN instead of inf)."""
    mx = float(spec.maxf)
    if spec.saturate:
        return (-mx if neg else mx), F_OVERFLOW | F_SATURATE | F_INEXACT
    if mode in ("rne", "rna"):
        to_inf = True
    elif mode == "ru":
        to_inf = not neg
    elif mode == "rd":
        to_inf = neg
    else:  # rz, ro
        to_inf = False
    if not to_inf:
        return (-mx if neg else mx), F_OVERFLOW | F_INEXACT
    if spec.has_inf:
        return (-math.inf if neg else math.inf), F_OVERFLOW | F_INEXACT
    return math.nan, F_OVERFLOW | F_INEXACT


def _special(x: float, spec):
    """A non-finite register/addend value passing through a rounding: (value, flags)."""
    if math.isnan(x):
        return math.nan, 0
    if spec.has_inf:
        return x, 0
    if spec.saturate:
        return (-float(spec.maxf) if x < 0 else float(spec.maxf)), F_OVERFLOW | F_SATURATE
    return math.nan, F_OVERFLOW


def frac_round_float(q: Fraction, spec: FloatSpec, mode: str, zero_neg: bool = False):
    """Round the exact rational q to the float format (Fraction oracle, any det. mode).

    ``zero_neg``: sign of an exact zero. Returns (float value, flags).
    """
    if q == 0:
        return _signed_zero(zero_neg, spec), 0
    neg = q < 0
    a = -q if neg else q
    e = _floor_log2(a)
    if spec.subnormals:
        qe = max(e, spec.emin) - (spec.p - 1)
    else:
        qe = e - (spec.p - 1)
    n, inexact = round_to_int(a / _pow2(qe), neg, mode)
    r = n * _pow2(qe)
    if not spec.subnormals and r < _pow2(spec.emin):
        return _signed_zero(neg, spec), F_INEXACT
    if r > spec.maxf:
        return _overflow(neg, spec, mode)
    if r == 0:
        return _signed_zero(neg, spec), F_INEXACT
    v = float(r)
    assert Fraction(v) == r
    return (-v if neg else v), (F_INEXACT if inexact else 0)


_CTX_CACHE = {}


def _mpfr_ctx(spec: FloatSpec, mode: str):
    key = (spec, mode)
    ctx = _CTX_CACHE.get(key)
    if ctx is None:
        if spec.subnormals:
            ctx = gmpy2.context(precision=spec.p, emin=spec.emin - spec.p + 2, emax=100000,
                                subnormalize=True, round=_MPFR_ROUND[mode])
        else:
            ctx = gmpy2.context(precision=spec.p, emin=-100000, emax=100000,
                                subnormalize=False, round=_MPFR_ROUND[mode])
        _CTX_CACHE[key] = ctx
    return ctx


def _exact_ctx(mode: str):
    """Context for exact sums; its rounding mode only decides the sign of a zero sum
    (IEEE: x + (-x) is -0 under round-down, +0 otherwise)."""
    key = ("exact", mode)
    ctx = _CTX_CACHE.get(key)
    if ctx is None:
        ctx = gmpy2.context(precision=_EXACT_PREC, emin=-200000, emax=200000,
                            round=gmpy2.RoundDown if mode == "rd" else gmpy2.RoundToNearest)
        _CTX_CACHE[key] = ctx
    return ctx


def mpfr_round_float(x, spec: FloatSpec, mode: str):
    """Round the exact mpfr x to the float format with MPFR (rne / rz / ru / rd)."""
    if gmpy2.is_nan(x):
        return math.nan, 0
    if gmpy2.is_infinite(x):
        return _special(float(x), spec)
    ctx = _mpfr_ctx(spec, mode)
    ctx.clear_flags()
    r = ctx.plus(x)
    inexact = bool(ctx.inexact)
    neg = gmpy2.is_signed(r)
    if gmpy2.is_zero(r):
        return _signed_zero(neg, spec), (F_INEXACT if inexact else 0)
    ar = abs(r)
    if not spec.subnormals and ar < mpfr(_pow2(spec.emin)):
        return _signed_zero(neg, spec), F_INEXACT
    if ar > mpfr(spec.maxf):  # maxf is dyadic with <= 53 bits: exact in mpfr
        return _overflow(neg, spec, mode)
    return float(r), (F_INEXACT if inexact else 0)


def round_float(x, spec: FloatSpec, mode: str):
    """Round an exact value (mpfr, float or Fraction) into a float format: (float, flags).

    rne / rz / ru / rd go through MPFR, rna / ro through the Fraction oracle.
    """
    if isinstance(x, Fraction):
        x = _exact_mpfr(x)
    elif isinstance(x, float):
        x = mpfr(x, 53)
    if mode in _MPFR_ROUND:
        return mpfr_round_float(x, spec, mode)
    if gmpy2.is_nan(x):
        return math.nan, 0
    if gmpy2.is_infinite(x):
        return _special(float(x), spec)
    return frac_round_float(_as_frac(x), spec, mode, zero_neg=gmpy2.is_signed(x))


def _exact_mpfr(q: Fraction):
    v = gmpy2.mpfr(gmpy2.mpq(q.numerator, q.denominator), _EXACT_PREC)
    assert _as_frac(v) == q, "not dyadic / out of range"
    return v


def exact_add(x, y, mode):
    """x + y exactly (mpfr inputs), with the IEEE sign of a zero sum under ``mode``."""
    return _exact_ctx(mode).add(x, y)


def exact_mul(x: float, y: float, mode):
    return _exact_ctx(mode).mul(mpfr(x, 53), mpfr(y, 53))


# ------------------------------------------------------------------------------------
# the matmul oracle

@dataclass
class NaiveResult:
    values: np.ndarray       # (m, n) float64, NaN where not computed
    overflows: np.ndarray    # (m,) int64
    saturations: np.ndarray  # (m,) int64
    inexact: np.ndarray      # (m,) int64
    flags: np.ndarray        # (m, n) uint8
    lossy_align: np.ndarray  # (m,) int64: fused steps whose alignment dropped bits

    @property
    def total(self):
        return {"overflows": int(self.overflows.sum()),
                "saturations": int(self.saturations.sum()),
                "inexact": int(self.inexact.sum())}


class _Ev:
    def __init__(self):
        self.flags = 0
        self.ovf = 0
        self.sat = 0
        self.inx = 0
        self.lossy = 0

    def __call__(self, f):
        self.flags |= f
        self.ovf += bool(f & F_OVERFLOW)
        self.sat += bool(f & F_SATURATE)
        self.inx += bool(f & F_INEXACT)


class _FloatAcc:
    """Float accumulator arithmetic: exact sum, one rounding."""

    def __init__(self, fmt, mode):
        self.spec = spec_of(fmt)
        self.mode = mode

    def start(self, bias):
        if bias is None:
            return mpfr(0.0, 53)
        v, _ = round_float(float(bias), self.spec, self.mode)
        return mpfr(v, 53)

    def add(self, s, x, ev):
        """round(s + x); s, x mpfr (exact)."""
        v, f = round_float(exact_add(s, x, self.mode), self.spec, self.mode)
        ev(f)
        return mpfr(v, 53)


def _products(a_row, b_col, product, product_rounding, mode, ev):
    """The K addends as exact mpfr values (exact products, or rounded to a format)."""
    out = []
    pspec = None if product in ("exact", "fused") else spec_of(product)
    prm = product_rounding or mode
    for x, y in zip(a_row, b_col):
        p = exact_mul(float(x), float(y), prm if pspec is not None else mode)
        if pspec is not None:
            v, f = round_float(p, pspec, prm)
            ev(f)
            p = mpfr(v, 53)
        out.append(p)
    return out


def _as_frac(x):
    n, d = x.as_integer_ratio()
    return Fraction(int(n), int(d))


def _fused_step(addends, spec, mode, guard_bits, align_rounding, ev):
    """One multi-term fused add: align to e_max - man_bits - guard_bits, sum, round."""
    if any(not gmpy2.is_finite(x) for x in addends):
        acc = addends[0]
        for x in addends[1:]:
            acc = exact_add(acc, x, mode)
        v, f = round_float(acc, spec, mode)
        ev(f)
        return mpfr(v, 53)
    fr = [_as_frac(x) for x in addends]
    nz = [abs(q) for q in fr if q != 0]
    if not nz:
        # a sum of zeros: IEEE sign rule
        signs = [gmpy2.is_signed(x) for x in addends]
        neg = any(signs) if mode == "rd" else all(signs)
        v, f = round_float(mpfr(-0.0 if neg else 0.0, 53), spec, mode)
        ev(f)
        return mpfr(v, 53)
    e_max = _floor_log2(max(nz))
    quantum = _pow2(e_max - (spec.p - 1) - guard_bits)
    aligned = [round_to_multiple(q, quantum, align_rounding) for q in fr]
    if aligned != fr:
        ev.lossy += 1
    total = sum(aligned, Fraction(0))
    if total == 0:
        v, f = round_float(mpfr(-0.0 if mode == "rd" else 0.0, 53), spec, mode)
    else:
        v, f = round_float(total, spec, mode)
    ev(f)
    return mpfr(v, 53)


def _float_output(a_row, b_col, bias, acc, mode, structure, product, product_rounding,
                  chunk_size, wide, wide_rounding, terms, guard_bits, align_rounding, ev):
    A = _FloatAcc(acc, mode)
    prods = _products(a_row, b_col, product, product_rounding, mode, ev)
    if structure == "sequential":
        s = A.start(bias)
        for p in prods:
            s = A.add(s, p, ev)
        return float(s)
    if structure == "chunked":
        W = _FloatAcc(wide, wide_rounding or mode)
        w = W.start(bias)
        for c0 in range(0, len(prods), chunk_size):
            s = A.start(None)
            for p in prods[c0:c0 + chunk_size]:
                s = A.add(s, p, ev)
            w = W.add(w, s, ev)
        return float(w)
    if structure == "tree":
        level = list(prods)
        rounded = False
        while len(level) > 1:
            nxt = [A.add(level[i], level[i + 1], ev) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
            rounded = True
        root = level[0] if level else mpfr(0.0, 53)
        if bias is not None:
            root = A.add(root, mpfr(float(bias), 53), ev)
        elif not rounded:
            # K == 1 without bias: the register still has to hold a value of acc
            v, f = round_float(root, A.spec, mode)
            ev(f)
            root = mpfr(v, 53)
        return float(root)
    if structure == "fused":
        s = A.start(bias)
        for c0 in range(0, len(prods), terms):
            s = _fused_step([s] + prods[c0:c0 + terms], A.spec, mode, guard_bits,
                            align_rounding, ev)
        return float(s)
    raise ValueError(f"structure: unknown {structure!r}")


# ---- integer / fixed point ---------------------------------------------------------

def int_round_to_grid(q: Fraction, spec: IntSpec, mode: str):
    """Round the exact value q to the grid 2**-frac: (integer in units, inexact). No range."""
    neg = q < 0
    k, inexact = round_to_int(abs(q) * _pow2(spec.frac), neg, mode)
    return (-k if neg else k), inexact


def int_fit(t: int, spec: IntSpec):
    """Wrap or saturate the exact integer t into the register: (integer, flags)."""
    if spec.lo <= t <= spec.hi:
        return t, 0
    if spec.saturate:
        return (spec.hi if t > spec.hi else spec.lo), F_OVERFLOW | F_SATURATE
    w = t % (1 << spec.bits)
    if spec.signed and w > spec.hi:
        w -= 1 << spec.bits
    return w, F_OVERFLOW


def _int_output(a_row, b_col, bias, acc, mode, structure, chunk_size, wide, wide_rounding, ev):
    S = spec_of(acc)
    prods = []
    for x, y in zip(a_row, b_col):
        k, inexact = int_round_to_grid(Fraction(float(x)) * Fraction(float(y)), S, mode)
        if inexact:
            ev(F_INEXACT)
        prods.append(k)

    def start(spec, rmode):
        if bias is None:
            return 0
        k, _ = int_round_to_grid(Fraction(float(bias)), spec, rmode)
        return int_fit(k, spec)[0]

    if structure == "sequential":
        r = start(S, mode)
        for k in prods:
            r, f = int_fit(r + k, S)
            ev(f)
        return math.ldexp(float(r), -S.frac) if r else 0.0
    if structure == "chunked":
        WS = spec_of(wide)
        wmode = wide_rounding or mode
        w = start(WS, wmode)
        for c0 in range(0, len(prods), chunk_size):
            r = 0
            for k in prods[c0:c0 + chunk_size]:
                r, f = int_fit(r + k, S)
                ev(f)
            kk, inexact = int_round_to_grid(Fraction(r) * _pow2(-S.frac), WS, wmode)
            w, f = int_fit(w + kk, WS)
            ev(f | (F_INEXACT if inexact else 0))
        return math.ldexp(float(w), -WS.frac) if w else 0.0
    raise ValueError(f"structure: {structure!r} not supported for integer accumulators")


def matmul(a, b, acc, *, rounding="rne", structure="sequential", product="exact",
           product_rounding=None, chunk_size=None, wide=None, wide_rounding=None, terms=4,
           guard_bits=3, align_rounding="rz", bias=None, outputs=None) -> NaiveResult:
    """Step-by-step reference of ``accsim.numerics.engine.matmul`` (deterministic modes only).

    ``outputs``: optional iterable of (i, j) to compute; others are NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m, k = a.shape
    k2, n = b.shape
    assert k == k2
    accf = _load(acc)
    is_float = hasattr(accf, "exp_bits")
    if wide is not None:
        wide = _load(wide)
    if product not in ("exact", "fused"):
        product = _load(product)
    biasm = None
    if bias is not None:
        biasm = np.broadcast_to(np.asarray(bias, dtype=np.float64), (m, n))
    vals = np.full((m, n), np.nan)
    flags = np.zeros((m, n), dtype=np.uint8)
    ovf = np.zeros(m, dtype=np.int64)
    sat = np.zeros(m, dtype=np.int64)
    inx = np.zeros(m, dtype=np.int64)
    lossy = np.zeros(m, dtype=np.int64)
    todo = [(i, j) for i in range(m) for j in range(n)] if outputs is None else list(outputs)
    for i, j in todo:
        ev = _Ev()
        bv = None if biasm is None else biasm[i, j]
        if is_float:
            v = _float_output(a[i, :], b[:, j], bv, accf, rounding, structure, product,
                              product_rounding, chunk_size, wide, wide_rounding, terms,
                              guard_bits, align_rounding, ev)
        else:
            v = _int_output(a[i, :], b[:, j], bv, accf, rounding, structure, chunk_size, wide,
                            wide_rounding, ev)
        vals[i, j] = v
        flags[i, j] = ev.flags
        ovf[i] += ev.ovf
        sat[i] += ev.sat
        inx[i] += ev.inx
        lossy[i] += ev.lossy
    return NaiveResult(vals, ovf, sat, inx, flags, lossy)


# ------------------------------------------------------------------------------------
# helpers for tests: representable values of a small float format

def grid_values(fmt, *, max_exp=None, min_exp=None):
    """Every finite value of a small float format (from its fields), as a sorted array.

    ``min_exp`` / ``max_exp`` restrict to magnitudes in [2**min_exp, 2**(max_exp+1)).
    Cached; the returned array is read-only.
    """
    return _grid_values(spec_of(fmt), max_exp, min_exp)


@functools.cache
def _grid_values(spec, max_exp, min_exp):
    m = spec.p - 1
    pos = set()
    lo = spec.emin if min_exp is None else max(min_exp, spec.emin)
    hi = spec.emax if max_exp is None else min(max_exp, spec.emax)
    for e in range(lo, hi + 1):
        for f in range(1 << m):
            v = Fraction((1 << m) + f) * _pow2(e - m)
            if v <= spec.maxf:
                pos.add(float(v))
    if spec.subnormals and min_exp is None:
        for f in range(1, 1 << m):
            pos.add(float(Fraction(f) * _pow2(spec.emin - m)))
    pos = np.array(sorted(pos))
    out = np.concatenate([-pos[::-1], [0.0], pos])
    out.flags.writeable = False
    return out


# ------------------------------------------------------------------------------------
# comparison helpers (used by the engine tests; they report what differs, precisely)

def same_bits(x, y):
    """Elementwise: identical float64 bit patterns (NaN == NaN whatever its payload)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    return (x.view(np.int64) == y.view(np.int64)) | (np.isnan(x) & np.isnan(y))


def mismatch_report(got, exp, a=None, b=None, label="", limit=4, bias=None):
    """A readable description of the first ``limit`` outputs where got != exp (bitwise)."""
    bad = np.argwhere(~same_bits(got, exp))
    lines = [f"{label}: {len(bad)} of {np.size(exp)} outputs differ"]
    for i, j in bad[:limit]:
        line = f"  [{i},{j}] expected {exp[i, j]!r} got {got[i, j]!r}"
        if a is not None and b is not None:
            line += f"\n     a[{i},:]={a[i, :].tolist()}\n     b[:,{j}]={b[:, j].tolist()}"
        if bias is not None:
            line += f"\n     bias={np.broadcast_to(bias, np.shape(exp))[i, j]!r}"
        lines.append(line)
    return "\n".join(lines)


def assert_values(got, exp, a=None, b=None, label="", bias=None, signed_zero=True):
    got = np.asarray(got)
    exp = np.asarray(exp)
    assert got.shape == exp.shape, f"{label}: shape {got.shape} != {exp.shape}"
    if signed_zero:
        ok = same_bits(got, exp)
    else:
        ok = (got == exp) | (np.isnan(got) & np.isnan(exp))
    if not ok.all():
        raise AssertionError(mismatch_report(got, exp, a, b, label, bias=bias))


def assert_events(ev, ref: NaiveResult, label="", inexact=True, flags=True):
    """Compare engine events with the oracle's, per row, with a readable message."""
    names = ["overflows", "saturations"] + (["inexact"] if inexact else [])
    for nm in names:
        g = np.asarray(getattr(ev, nm))
        e = getattr(ref, nm)
        assert g.dtype == np.int64, f"{label}: events.{nm} dtype {g.dtype}"
        if not np.array_equal(g, e):
            raise AssertionError(f"{label}: events.{nm} per row: expected {e.tolist()} got {g.tolist()}")
    tot = ev.total
    for nm in names:
        assert tot[nm] == ref.total[nm], f"{label}: events.total[{nm!r}] {tot[nm]} != {ref.total[nm]}"
    if flags:
        f = np.asarray(ev.flags)
        e = ref.flags if inexact else ref.flags & np.uint8(F_OVERFLOW | F_SATURATE)
        if not inexact:
            f = f & np.uint8(F_OVERFLOW | F_SATURATE)
        if not np.array_equal(f, e):
            bad = np.argwhere(f != e)[:4].tolist()
            raise AssertionError(f"{label}: events.flags differ at {bad}: expected "
                                 f"{[int(e[i, j]) for i, j in bad]} got {[int(f[i, j]) for i, j in bad]}")
