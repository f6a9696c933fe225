"""quantize(): float formats against MPFR, exact rationals, numpy float16 and gfloat;
stochastic rounding statistics; integers and fixed point against Python ints.

Each test names its oracle in its docstring. Oracles live in tests/oracles.py and do not
use accsim.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import gfloat
import numba
import numpy as np
import pytest
from gfloat import Domain, FormatInfo, RoundMode
from gfloat import formats as gf
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import accsim
from accsim import FixedFormat, FloatFormat, IntFormat, quantize
from oracles import (
    DETERMINISTIC_MODES,
    MPFR_MODES,
    FloatSpec,
    as_bits,
    enumerate_values,
    mismatches,
    round_float_exact,
    round_float_mpfr,
    round_int_exact,
)

F64_MAX = np.finfo(np.float64).max
F64_TINY = 5e-324


def _fmt(spec: FloatSpec) -> FloatFormat:
    return FloatFormat(**spec.kwargs())


def _finite(a):
    a = np.asarray(a, dtype=np.float64)
    return a[np.isfinite(a)]


def _around(a):
    """a, and a +- one float64 ulp."""
    a = _finite(a)
    with np.errstate(over="ignore"):
        return np.concatenate([a, np.nextafter(a, np.inf), np.nextafter(a, -np.inf)])


def adversarial(spec: FloatSpec, seed: int = 0, n_random: int = 20) -> np.ndarray:
    """Boundary and tie inputs for any float format (TestFloat / CPFloat style).

    Overflow threshold, max +- half ulp, the subnormal/normal boundary, ties between
    0 and the smallest subnormal, random exact ties in the normal and subnormal ranges,
    each +- one float64 ulp; random values across the whole float64 exponent range
    (float64 subnormals included) and across the format's range; +-0, +-inf, NaN.
    """
    rng = np.random.default_rng(seed)
    m, emin, emax = spec.man_bits, spec.emin, spec.emax
    big = spec.max_finite
    ulp_max = math.ldexp(1.0, emax - m)
    qs = math.ldexp(1.0, emin - m)  # subnormal quantum (also the binade-emin quantum)
    mn = math.ldexp(1.0, emin)
    pts = [big, big + ulp_max / 2, big + ulp_max, big - ulp_max / 2, 2 * big,
           mn, mn - qs / 2, mn - qs, mn - qs / 4, mn + qs / 2, mn / 2, mn * 0.75,
           qs, qs / 2, qs * 1.5, qs / 4, qs * 0.75, qs * 2.5,
           1.0, 1.5, 3.0, F64_MAX, F64_TINY, 2.2250738585072014e-308]
    # exact ties in the normal range: (2k + 1) * 2**(e - m - 1), k a p-bit significand
    if m <= 51:
        for _ in range(n_random):
            k = int(rng.integers(2 ** m, 2 ** (m + 1)))
            e = int(rng.integers(max(emin, -1000), emax + 1))
            pts.append(math.ldexp(2 * k + 1, e - m - 1))
        pts.append(math.ldexp(2 ** (m + 2) - 1, emax - m - 1))  # the overflow tie
    # ties in the subnormal range (and between 0 and the smallest subnormal)
    for _ in range(n_random // 2):
        k = int(rng.integers(0, 2 ** m)) if m < 63 else 0
        pts.append(math.ldexp(2 * k + 1, emin - m - 1))
    # random values: whole float64 range, float64 subnormals, the format's range
    pts += list(np.ldexp(rng.uniform(1, 2, n_random), rng.integers(-1074, 1024, n_random)))
    pts += list(np.ldexp(rng.integers(1, 2 ** 52, n_random // 2).astype(np.float64), -1074))
    lo = max(emin - m - 3, -1074)
    hi = min(emax + 3, 1023)
    pts += list(np.ldexp(rng.uniform(1, 2, n_random), rng.integers(lo, hi + 1, n_random)))
    with np.errstate(over="ignore"):
        base = _around(np.array(pts, dtype=np.float64))
    base = np.unique(np.abs(base[np.isfinite(base)]))
    return np.concatenate([base, -base, [0.0, -0.0, np.inf, -np.inf, np.nan]])


def _exact_all(xs, spec, mode):
    return np.array([round_float_exact(float(x), spec, mode) for x in xs])


def _mpfr_all(xs, spec, mode):
    return np.array([round_float_mpfr(float(x), spec, mode) for x in xs])


# ---------------------------------------------------------------------------------------
# oracle: numpy float64 -> float16 cast (correctly rounded, RNE)


def test_fp16_vs_numpy_cast():
    """Oracle: numpy ``astype(float16)``. All 65,536 fp16 patterns, every midpoint between
    consecutive finite fp16 values (and the overflow threshold 65520), each +- 1 ulp."""
    pats = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    vals = pats.astype(np.float64)
    fin = np.unique(vals[np.isfinite(vals)])  # -0 and +0 collapse: one zero
    assert fin.size == 63487
    mids = (fin[:-1] + fin[1:]) / 2
    thr = np.array([65520.0, -65520.0])
    xs = np.concatenate([vals, _around(np.concatenate([mids, thr]))])
    with np.errstate(over="ignore"):
        want = xs.astype(np.float16).astype(np.float64)
    fmt = accsim.load_format("fp16")
    got = quantize(xs, fmt)
    report = mismatches(got, want, xs)
    assert not report, report
    assert got.dtype == np.float64 and got.shape == xs.shape


# ---------------------------------------------------------------------------------------
# oracle: MPFR (rne rz ru rd) and the exact rational oracle (rna ro), broad grid

BROAD_MANS = (0, 1, 2, 3, 4, 5, 7, 10, 13, 17, 23, 30, 37, 44, 51, 52)
BROAD_SPECS = [FloatSpec(e, m, subnormals=sub)
               for e in range(2, 12) for m in BROAD_MANS for sub in (True, False)]
BROAD_SPECS += [
    # other specials / saturation at larger widths
    FloatSpec(5, 10, specials="fn"), FloatSpec(8, 7, specials="fnuz"),
    FloatSpec(8, 23, specials="none", overflow="saturate"),
    FloatSpec(11, 40, specials="fn", subnormals=False, bias=1024),
    FloatSpec(5, 10, overflow="saturate"), FloatSpec(8, 7, overflow="saturate"),
    FloatSpec(11, 52, overflow="saturate"), FloatSpec(6, 20, specials="fnuz", overflow="saturate"),
    # custom biases: smallest normal below float64's (float64 subnormals are normal in
    # the target), and ranges shifted far up or down
    FloatSpec(11, 10, bias=1040), FloatSpec(11, 10, bias=1040, subnormals=False),
    FloatSpec(11, 1, bias=1070), FloatSpec(11, 0, bias=1073, subnormals=False),
    FloatSpec(11, 30, bias=1030), FloatSpec(10, 8, bias=0), FloatSpec(4, 3, bias=-5),
    FloatSpec(4, 3, bias=20, subnormals=False), FloatSpec(8, 7, bias=1000),
]


@pytest.mark.parametrize("spec", BROAD_SPECS, ids=[s.label() for s in BROAD_SPECS])
def test_broad_vs_mpfr(spec):
    """Oracle: MPFR for rne/rz/ru/rd, exact rationals for rna/ro, on adversarial inputs."""
    xs = adversarial(spec, seed=spec.exp_bits * 100 + spec.man_bits)
    fmt = _fmt(spec)
    if spec.specials == "none":
        xs = xs[~np.isnan(xs)]
    for mode in DETERMINISTIC_MODES:
        want = _mpfr_all(xs, spec, mode) if mode in MPFR_MODES else _exact_all(xs, spec, mode)
        got = quantize(xs, fmt, mode)
        report = mismatches(got, want, xs)
        assert not report, f"{spec.label()} {mode}\n{report}"


_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.builds(lambda k, e: math.ldexp(k, e), st.integers(1, 2 ** 53 - 1), st.integers(-1074, 970)),
    st.builds(lambda k, e: math.ldexp(2 * k + 1, e),  # short odd significands: ties
              st.integers(0, 2 ** 12), st.integers(-1074, 1010)),
)


@st.composite
def _float_specs(draw):
    e = draw(st.integers(2, 11))
    m = draw(st.integers(0, 52))
    specials = draw(st.sampled_from(("ieee", "fn", "fnuz", "none")))
    overflow = "saturate" if specials == "none" else draw(st.sampled_from(("inf", "saturate")))
    return FloatSpec(e, m, subnormals=draw(st.booleans()), specials=specials, overflow=overflow)


@given(spec=_float_specs(), x=_values, neg=st.booleans())
@settings(deadline=None)
def test_random_formats_vs_oracles(spec, x, neg):
    """Oracles: MPFR (rne rz ru rd) and exact rationals (all modes), random format and value;
    also the midpoint between x's neighbours in the format (a tie), and each +- 1 ulp."""
    lowest = spec.emin - (spec.man_bits if spec.subnormals else 0)
    assume(spec.emax <= 1023 and lowest >= -1074)  # every value fits in float64
    fmt = _fmt(spec)
    x = -x if neg else x
    xs = [x]
    # the midpoint of x's two neighbours in the format, when float64 holds it exactly
    lo = round_float_exact(x, spec, "rz")
    hi = round_float_exact(x, spec, "rd" if neg else "ru")
    if math.isfinite(lo) and math.isfinite(hi) and lo != hi:
        mid = lo + (hi - lo) / 2
        if Fraction(mid) * 2 == Fraction(lo) + Fraction(hi):
            xs.append(mid)
    with np.errstate(over="ignore"):  # nextafter(max float64, inf) is inf: dropped below
        xs += [float(np.nextafter(v, w)) for v in xs for w in (np.inf, -np.inf)]
    xs = [v for v in xs if math.isfinite(v)]
    arr = np.array(xs)
    for mode in DETERMINISTIC_MODES:
        want = _exact_all(arr, spec, mode)
        assert not mismatches(quantize(arr, fmt, mode), want, arr), (spec, mode, xs)
        if mode in MPFR_MODES:
            assert not mismatches(_mpfr_all(arr, spec, mode), want, arr), (spec, mode, xs)


# ---------------------------------------------------------------------------------------
# targeted IEEE 754 facts (oracle: the standard's text, cross-checked by MPFR above)


def test_overflow_rules_fp16():
    """IEEE 754 overflow: RN -> inf from the threshold max + ulp/2 (a tie there goes to
    inf since 65504 has an odd significand); RZ -> max; RU/RD toward their infinity."""
    f = accsim.load_format("fp16")
    x = np.array([65519.99, 65520.0, 1e6, -65520.0, -1e6])
    assert quantize(x, f, "rne").tolist() == [65504.0, math.inf, math.inf, -math.inf, -math.inf]
    assert quantize(x, f, "rna").tolist() == [65504.0, math.inf, math.inf, -math.inf, -math.inf]
    assert quantize(x, f, "rz").tolist() == [65504.0, 65504.0, 65504.0, -65504.0, -65504.0]
    assert quantize(x, f, "ro").tolist() == [65504.0, 65504.0, 65504.0, -65504.0, -65504.0]
    assert quantize(x, f, "ru").tolist() == [math.inf, math.inf, math.inf, -65504.0, -65504.0]
    assert quantize(x, f, "rd").tolist() == [65504.0, 65504.0, 65504.0, -math.inf, -math.inf]
    sat = dataclasses.replace(f, overflow="saturate")
    for mode in DETERMINISTIC_MODES:
        got = quantize(x, sat, mode).tolist()
        assert got[1:] == [65504.0, 65504.0, -65504.0, -65504.0], mode
    # an infinite input stays infinite in a format with infinities, even saturating
    assert quantize(np.array([np.inf, -np.inf]), sat).tolist() == [math.inf, -math.inf]


def test_e4m3fn_overflow_threshold():
    """e4m3fn: max 448; the next point of the unbounded grid is 480, so the RNE threshold
    is the tie 464 (which goes to 448, even); above it the infinite result is NaN."""
    f = accsim.load_format("fp8_e4m3fn")
    x = np.array([448.0, 463.9, 464.0, np.nextafter(464.0, np.inf), 1e6, -464.0, -465.0])
    got = quantize(x, f, "rne")
    assert got[:3].tolist() == [448.0, 448.0, 448.0] and got[5] == -448.0
    assert np.isnan(got[[3, 4, 6]]).all()
    got = quantize(x, f, "rz")
    assert got.tolist() == [448.0] * 5 + [-448.0, -448.0]
    sat = dataclasses.replace(f, overflow="saturate")
    assert quantize(np.array([1e9, -np.inf, np.inf]), sat).tolist() == [448.0, -448.0, 448.0]
    assert np.isnan(quantize(np.array([np.inf]), f)).all()


def test_fnuz_has_no_negative_zero():
    """fnuz: every zero result is +0 (tiny negatives, -0 input, every mode)."""
    f = accsim.load_format("fp8_e4m3fnuz")
    x = np.array([-0.0, -1e-30, -F64_TINY, -2.0 ** -12])
    for mode in DETERMINISTIC_MODES:
        got = quantize(x, f, mode)
        zeros = got[got == 0]
        assert not np.signbit(zeros).any(), (mode, got)
    assert quantize(np.array([-2.0 ** -12]), f, "rd")[0] == -(2.0 ** -10)


def test_flush_to_zero_after_rounding():
    """subnormals=False: round to p bits with an unbounded exponent, then flush below
    2**emin keeping the sign (oracle: the definition, cross-checked by MPFR above)."""
    f = FloatFormat(5, 10, subnormals=False)
    mn = 2.0 ** -14
    just_below = mn - 2.0 ** -26  # rounds to mn at 11 bits in binade -15 (tie, up: even)
    assert quantize(just_below, f) == mn
    assert quantize(-just_below, f) == -mn
    assert quantize(mn - 2.0 ** -24, f, "rz") == 0.0
    assert math.copysign(1.0, quantize(-(mn - 2.0 ** -24), f, "rz")) == -1.0
    assert quantize(1e-30, f, "ru") == 0.0  # ru of a tiny positive value: +0
    assert math.copysign(1.0, quantize(1e-30, f, "ru")) == 1.0
    assert math.copysign(1.0, quantize(-1e-30, f, "rd")) == -1.0
    assert quantize(mn - 2.0 ** -30, f, "ru") == mn


@pytest.mark.parametrize("name", ["fp6_e3m2fn", "fp6_e2m3fn", "fp4_e2m1fn"])
def test_specials_none(name):
    """OCP MX formats: every pattern finite; saturate; NaN refused with ValueError."""
    f = accsim.load_format(name)
    big = f.max_finite
    got = quantize(np.array([1e9, -1e9, np.inf, -np.inf]), f)
    assert got.tolist() == [big, -big, big, -big]
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([0.0, np.nan]), f)
    with pytest.raises(ValueError):
        FloatFormat(f.exp_bits, f.man_bits, specials="none", overflow="inf")


# ---------------------------------------------------------------------------------------
# oracle: gfloat


def _fnuz_info(name, k, precision, bias):
    return FormatInfo(name, k=k, precision=precision, bias=bias, has_nz=False,
                      domain=Domain.Finite, num_high_nans=0, has_subnormals=True,
                      is_signed=True, is_twos_complement=False)


GFLOAT_CASES = [
    ("fp8_e4m3fn", gf.format_info_ocp_e4m3, FloatSpec(4, 3, specials="fn")),
    ("fp8_e5m2", gf.format_info_ocp_e5m2, FloatSpec(5, 2)),
    ("fp8_e4m3fnuz", _fnuz_info("e4m3fnuz", 8, 4, 8), FloatSpec(4, 3, specials="fnuz")),
    ("fp8_e5m2fnuz", _fnuz_info("e5m2fnuz", 8, 3, 16), FloatSpec(5, 2, specials="fnuz")),
    ("fp6_e3m2fn", gf.format_info_ocp_e3m2, FloatSpec(3, 2, specials="none", overflow="saturate")),
    ("fp6_e2m3fn", gf.format_info_ocp_e2m3, FloatSpec(2, 3, specials="none", overflow="saturate")),
    ("fp4_e2m1fn", gf.format_info_ocp_e2m1, FloatSpec(2, 1, specials="none", overflow="saturate")),
    ("fp16", gf.format_info_binary16, FloatSpec(5, 10)),
    ("bf16", gf.format_info_bfloat16, FloatSpec(8, 7)),
]
GF_MODES = {"rne": RoundMode.TiesToEven, "rna": RoundMode.TiesToAway,
            "rz": RoundMode.TowardZero, "ru": RoundMode.TowardPositive,
            "rd": RoundMode.TowardNegative}


def _gfloat_inputs(spec: FloatSpec) -> np.ndarray:
    if spec.exp_bits + spec.man_bits < 8:
        vals = enumerate_values(spec)
        grid = np.concatenate([vals, [spec.max_finite + 2.0 ** (spec.emax - spec.man_bits)]])
        grid = np.unique(grid)
        mids = (grid[:-1] + grid[1:]) / 2
        xs = _around(np.concatenate([grid, mids, [1e9, 1e-30, F64_TINY]]))
    else:
        xs = adversarial(spec, seed=7)
    xs = np.unique(np.abs(_finite(xs)))
    return np.concatenate([xs, -xs, [0.0, -0.0, np.inf, -np.inf, np.nan]])


# formats without specials always saturate: no sat=False variant for them
GFLOAT_PARAMS = [(*c, sat) for c in GFLOAT_CASES for sat in (False, True)
                 if sat or c[2].specials != "none"]


@pytest.mark.parametrize("name,fi,spec,sat", GFLOAT_PARAMS,
                         ids=[f"{p[0]}-sat{p[3]}" for p in GFLOAT_PARAMS])
def test_vs_gfloat(name, fi, spec, sat):
    """Oracle: gfloat.round_ndarray (fn / fnuz / MX formats, saturation on and off)."""
    base = accsim.load_format(name)
    assert base == _fmt(spec)
    fmt = dataclasses.replace(base, overflow="saturate" if sat else "inf")
    xs = _gfloat_inputs(spec)
    if spec.specials == "none":
        xs = xs[~np.isnan(xs)]
    if spec.specials == "ieee" and sat:
        # gfloat saturates infinite inputs too; accsim keeps them (checked elsewhere)
        xs = xs[np.isfinite(xs) | np.isnan(xs)]
    for mode, rm in GF_MODES.items():
        with np.errstate(all="ignore"):  # gfloat's internal ldexp overflows on 1e308
            want = gfloat.round_ndarray(fi, xs, rm, sat=sat)
        got = quantize(xs, fmt, mode)
        report = mismatches(got, want, xs)
        assert not report, f"{name} sat={sat} {mode}\n{report}"


# ---------------------------------------------------------------------------------------
# stochastic rounding (oracle: binomial statistics; neighbours from the exact oracle)

FP16 = FloatSpec(5, 10)
N_SR = 200_000


def _sr_check_neighbours(xs, got, spec):
    g = as_bits(got)
    ok = (g == as_bits(_exact_all(xs, spec, "rd"))) | (g == as_bits(_exact_all(xs, spec, "ru")))
    assert ok.all(), (spec.label(), xs[~ok][:5], got[~ok][:5])


@pytest.mark.parametrize("x", [1.0 + 0.3 * 2.0 ** -10, -(1.0 + 0.7 * 2.0 ** -10),
                               3.3e-6, -1234.5678, 0.1])
def test_sr_unbiased(x):
    """Mean of N roundings matches x within 6 standard errors (fixed seed)."""
    fmt = _fmt(FP16)
    lo = round_float_exact(x, FP16, "rd")
    hi = round_float_exact(x, FP16, "ru")
    got = quantize(np.full(N_SR, x), fmt, "sr", seed=12345)
    assert set(np.unique(got).tolist()) <= {lo, hi}
    p = (x - lo) / (hi - lo)
    se = (hi - lo) * math.sqrt(p * (1 - p) / N_SR)
    assert abs(got.mean() - x) <= 6 * se + 1e-300, (got.mean(), x, se)


SR_SPECS = [FloatSpec(4, 3, specials="fn", overflow="saturate"), FloatSpec(4, 3, specials="fn"),
            FloatSpec(4, 3, specials="fnuz", subnormals=False), FloatSpec(5, 2, subnormals=False),
            FloatSpec(2, 1, specials="none", overflow="saturate"), FloatSpec(8, 7),
            FloatSpec(11, 50), FloatSpec(3, 0)]


@pytest.mark.parametrize("spec", SR_SPECS, ids=[s.label() for s in SR_SPECS])
def test_sr_results_are_neighbours(spec):
    """Every SR result is one of the two neighbours: the rd or ru result of the exact
    oracle (flush, overflow, NaN and signed zeros included)."""
    xs = adversarial(spec, seed=3)
    xs = xs[np.isfinite(xs)]
    xs = np.concatenate([xs] * 4)  # several draws per value
    got = quantize(xs, _fmt(spec), "sr", seed=99)
    _sr_check_neighbours(xs, got, spec)
    for sr_bits in (1, 3, 8, 60):
        got = quantize(xs, _fmt(spec), "sr", seed=5, sr_bits=sr_bits)
        _sr_check_neighbours(xs, got, spec)


def test_sr_exact_values_unchanged():
    spec = FloatSpec(5, 2)
    vals = enumerate_values(spec)
    vals = np.concatenate([vals, -vals])
    got = quantize(vals, _fmt(spec), "sr", seed=1)
    assert not mismatches(got, vals, vals)


@pytest.mark.parametrize("frac,r", [(0.3, 4), (0.3, 1), (0.9, 2), (0.05, 4), (0.0625, 4),
                                    (0.999, 3), (0.3, 30), (0.7, 60)])
def test_sr_bits_probability(frac, r):
    """sr_bits=r: P(up) = floor(frac * 2**r) / 2**r, frac = remainder / ulp. A remainder
    below 2**-r ulp never rounds up."""
    ulp = 2.0 ** -10
    x = 1.0 + frac * ulp
    exact_frac = (x - 1.0) / ulp  # frac as actually stored in float64
    p = math.floor(exact_frac * 2 ** r) / 2 ** r
    got = quantize(np.full(N_SR, x), _fmt(FP16), "sr", seed=2024, sr_bits=r)
    up = np.count_nonzero(got == 1.0 + ulp)
    assert np.count_nonzero(got == 1.0) + up == N_SR
    if p == 0:
        assert up == 0
    else:
        se = math.sqrt(p * (1 - p) / N_SR)
        assert abs(up / N_SR - p) <= 6 * se + 1e-12, (up / N_SR, p)


@pytest.mark.parametrize("fmt,lo,x,hi,r,p", [
    # subnormal range of fp16: 5.3 quanta
    (FloatFormat(5, 10), 5 * 2.0 ** -24, 5.3 * 2.0 ** -24, 6 * 2.0 ** -24, 2, 0.25),
    (FloatFormat(5, 10), 5 * 2.0 ** -24, 5.3 * 2.0 ** -24, 6 * 2.0 ** -24, None, 0.3),
    # integers: 100.3 -> P(up) = floor(0.3 * 8) / 8 with 3 bits
    (IntFormat(16), 100.0, 100.3, 101.0, 3, 0.25),
    (FixedFormat(16, 4), -6.25, -6.25 - 0.7 / 16, -6.3125, 1, 0.5),
    # fewer remainder bits than random bits: exact probability 1/4
    (FloatFormat(11, 50), 1.0, 1.0 + 2.0 ** -52, 1.0 + 2.0 ** -50, 4, 0.25),
    # negative value: "up" is away from zero in magnitude
    (FloatFormat(8, 7), -1.0, -(1.0 + 0.6 * 2.0 ** -7), -(1.0 + 2.0 ** -7), 2, 0.5),
])
def test_sr_probability_paths(fmt, lo, x, hi, r, p):
    """P(round away from the truncated neighbour) on the subnormal, integer, fixed and
    float paths, with and without sr_bits (binomial tolerance, 6 standard errors)."""
    got = quantize(np.full(N_SR, x), fmt, "sr", seed=77, sr_bits=r)
    n_hi = np.count_nonzero(got == hi)
    assert np.count_nonzero(got == lo) + n_hi == N_SR
    se = math.sqrt(p * (1 - p) / N_SR)
    assert abs(n_hi / N_SR - p) <= 6 * se, (n_hi / N_SR, p)


def test_sr_tiny_remainder_large_shift():
    """Remainders far below the quantum (shift > 64 bits) round up with probability
    ~ remainder / ulp, i.e. never in practice; with sr_bits never at all."""
    fmt = IntFormat(8)
    got = quantize(np.full(10_000, 2.0 ** -100), fmt, "sr", seed=1)
    assert (got == 0).all()
    got = quantize(np.full(10_000, 1 - 2.0 ** -53), fmt, "sr", seed=1)
    assert (got == 1).all()
    bf16 = FloatFormat(8, 7)  # smallest subnormal 2**-133: P(up) = 2**-67 for 2**-200
    assert (quantize(np.full(10_000, 2.0 ** -200), bf16, "sr", seed=1) == 0).all()
    # remainder 2**-9 ulp < 2**-8: never up with 8 random bits
    assert (quantize(np.full(10_000, 2.0 ** -142), bf16, "sr", seed=1, sr_bits=8) == 0).all()
    neg = quantize(np.full(10_000, -(2.0 ** -200)), bf16, "sr", seed=1)
    assert (neg == 0).all() and np.signbit(neg).all()


def test_sr_integer_unbiased():
    fmt = IntFormat(8)
    got = quantize(np.full(N_SR, -2.25), fmt, "sr", seed=3)
    assert set(np.unique(got).tolist()) == {-3.0, -2.0}
    se = math.sqrt(0.25 * 0.75 / N_SR)
    assert abs(got.mean() + 2.25) <= 6 * se


def test_sr_overflow():
    """Between max and the next grid point: max or the overflow result (inf / NaN)."""
    f = accsim.load_format("fp16")
    x = 65504.0 + 8.0  # a quarter of the way to 65536
    got = quantize(np.full(N_SR, x), f, "sr", seed=8)
    n_inf = np.count_nonzero(np.isinf(got))
    assert np.count_nonzero(got == 65504.0) + n_inf == N_SR
    se = math.sqrt(0.25 * 0.75 / N_SR)
    assert abs(n_inf / N_SR - 0.25) <= 6 * se
    sat = dataclasses.replace(f, overflow="saturate")
    assert (quantize(np.full(1000, x), sat, "sr", seed=8) == 65504.0).all()


def test_sr_deterministic_per_seed_and_index():
    """Same seed -> same result; the draw depends only on (seed, flat index): a prefix
    and a reshaped array give the same values; another seed gives other values."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(70_000)  # above the parallel threshold
    f = accsim.load_format("bf16")
    a = quantize(x, f, "sr", seed=42)
    b = quantize(x, f, "sr", seed=42)
    assert not mismatches(a, b, x)
    c = quantize(x.reshape(700, 100), f, "sr", seed=42)
    assert not mismatches(c.reshape(-1), a, x)
    d = quantize(x[:1000], f, "sr", seed=42)  # serial kernel
    assert not mismatches(d, a[:1000], x[:1000])
    e = quantize(x, f, "sr", seed=43)
    assert np.count_nonzero(e != a) > 1000
    r = quantize(x, f, "sr", seed=42, sr_bits=4)
    assert not mismatches(r, quantize(x, f, "sr", seed=42, sr_bits=4), x)


def test_sr_thread_count_independent():
    """numba.set_num_threads(1) vs all threads on 2**17 elements: identical results."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1 << 17) * 1000
    f = FloatFormat(5, 7)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = quantize(x, f, "sr", seed=7)
        one_b = quantize(x, f, "sr", seed=7, sr_bits=5)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = quantize(x, f, "sr", seed=7)
        many_b = quantize(x, f, "sr", seed=7, sr_bits=5)
    finally:
        numba.set_num_threads(old)
    assert not mismatches(one, many, x)
    assert not mismatches(one_b, many_b, x)


def test_sr_argument_errors():
    f = accsim.load_format("fp16")
    with pytest.raises(ValueError, match="sr_bits"):
        quantize(1.0, f, "rne", sr_bits=4)
    for bad in (0, 64, -1, True, 2.5):
        with pytest.raises(ValueError, match="sr_bits"):
            quantize(1.0, f, "sr", seed=1, sr_bits=bad)
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="seed"):
            quantize(1.0, f, "sr", seed=bad)


# ---------------------------------------------------------------------------------------
# integers and fixed point (oracle: Fraction and Python ints)

INT_CASES = [(bits, signed, ovf) for bits in (2, 3, 4, 8, 16, 24, 32, 53, 54, 63, 64)
             for signed in (True, False) for ovf in ("wrap", "saturate")]


def _int_inputs(bits, frac, signed, seed=0):
    rng = np.random.default_rng(seed)
    res = 2.0 ** -frac
    lo = -(2 ** (bits - 1)) if signed else 0
    hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    ints = [0, 1, 2, 3, lo, hi, lo - 1, hi + 1, hi + 2, lo - 2, 2 ** bits, 2 ** bits + 5,
            2 ** (bits - 1), -(2 ** (bits - 1)) - 1, 2 ** 53 + 1, 2 ** 60 + 2 ** 8, 2 ** 64,
            2 ** 64 + 2 ** 12, 2 ** 70, 3 * 2 ** 62, 2 ** 63 - 2 ** 10]
    pts = []
    for i in ints:
        for d in (0.0, 0.5, 0.25, 0.75, -0.5):
            pts.append(float(i) + d)  # float64 rounding of the sum is fine: still inputs
    pts = [p * res for p in pts]
    pts += list(rng.uniform(-1, 1, 60) * 2.0 ** rng.integers(-5, bits + 5, 60) * res)
    pts += [1e-300, F64_TINY, 1e300, F64_MAX, 0.5 * res, 1.5 * res, 2.5 * res]
    a = _around(np.array(pts))
    a = np.unique(np.abs(a))
    return np.concatenate([a, -a, [-0.0]])


def _check_int_format(fmt, bits, frac, signed, ovf, modes=DETERMINISTIC_MODES, seed=0):
    xs = _int_inputs(bits, frac, signed, seed)
    for mode in modes:
        want, ok_x, bad_x = [], [], []
        for x in xs:
            try:
                want.append(round_int_exact(float(x), bits, frac, signed=signed,
                                            overflow=ovf, mode=mode))
                ok_x.append(x)
            except ValueError:
                bad_x.append(x)
        ok_x = np.array(ok_x)
        got = quantize(ok_x, fmt, mode)
        report = mismatches(got, want, ok_x)
        assert not report, f"{fmt!r} {mode}\n{report}"
        for x in bad_x[:6]:  # results with > 53 significant bits are refused
            with pytest.raises(ValueError):
                quantize(np.array([x]), fmt, mode)
    # specials
    if ovf == "saturate":  # clamp; the oracle refuses what float64 cannot hold exactly
        for x in (math.inf, -math.inf):
            try:
                want = round_int_exact(x, bits, frac, signed=signed, overflow=ovf)
            except ValueError:
                with pytest.raises(ValueError):
                    quantize(x, fmt)
            else:
                assert quantize(x, fmt) == want
    else:
        with pytest.raises(ValueError):
            quantize(np.array([1.0, np.inf]), fmt)
    with pytest.raises(ValueError):
        quantize(np.array([np.nan]), fmt)


@pytest.mark.parametrize("bits,signed,ovf", INT_CASES)
def test_int_vs_python_ints(bits, signed, ovf):
    """Oracle: Fraction / Python ints (round, then wrap mod 2**bits or clamp)."""
    fmt = IntFormat(bits, signed=signed, overflow=ovf)
    _check_int_format(fmt, bits, 0, signed, ovf)
    assert not np.signbit(quantize(np.array([-0.0, -0.3]), fmt, "rz")).any()  # no -0


FIXED_CASES = [(8, 4, True, "wrap"), (8, 4, True, "saturate"), (16, 8, True, "saturate"),
               (32, 16, True, "wrap"), (12, -3, True, "wrap"), (12, -3, False, "saturate"),
               (8, 12, False, "wrap"), (64, 32, True, "wrap"), (64, 60, False, "saturate"),
               (20, 1000, True, "saturate"), (40, -900, True, "wrap"), (2, 1, True, "wrap")]


@pytest.mark.parametrize("bits,frac,signed,ovf", FIXED_CASES)
def test_fixed_vs_python_ints(bits, frac, signed, ovf):
    """Oracle: Fraction / Python ints on x * 2**frac_bits."""
    fmt = FixedFormat(bits, frac, signed=signed, overflow=ovf)
    _check_int_format(fmt, bits, frac, signed, ovf, seed=abs(bits + frac))


@given(bits=st.integers(2, 64), frac=st.integers(-70, 80), signed=st.booleans(),
       ovf=st.sampled_from(("wrap", "saturate")), mode=st.sampled_from(DETERMINISTIC_MODES),
       x=_values, neg=st.booleans())
@settings(deadline=None)
def test_random_int_fixed_vs_python_ints(bits, frac, signed, ovf, mode, x, neg):
    """Oracle: Python ints, random integer / fixed format and value."""
    x = -x if neg else x
    fmt = FixedFormat(bits, frac, signed=signed, overflow=ovf)
    try:
        want = round_int_exact(x, bits, frac, signed=signed, overflow=ovf, mode=mode)
    except ValueError:
        with pytest.raises(ValueError):
            quantize(x, fmt, mode)
        return
    got = quantize(x, fmt, mode)
    assert as_bits([got])[0] == as_bits([want])[0], (got, want)


def test_int_examples():
    i8 = IntFormat(8)
    assert quantize(np.array([127.5, 128.0, -129.0, 300.0]), i8).tolist() == [
        -128.0, -128.0, 127.0, 44.0]
    s8 = IntFormat(8, overflow="saturate")
    assert quantize(np.array([127.5, -200.0, 2.5, 3.5, -2.5]), s8).tolist() == [
        127.0, -128.0, 2.0, 4.0, -2.0]
    assert quantize(np.array([2.5, -2.5, 2.2, -2.2]), s8, "rna").tolist() == [3, -3, 2, -2]
    assert quantize(np.array([2.2, -2.2, 2.0, 4.5]), s8, "ro").tolist() == [3, -3, 2, 5]
    u8 = IntFormat(8, signed=False)
    assert quantize(np.array([-1.0, 256.0, 255.4]), u8).tolist() == [255.0, 0.0, 255.0]
    i64 = IntFormat(64)
    assert quantize(2.0 ** 63, i64) == -(2.0 ** 63)
    assert quantize(-(2.0 ** 63), i64) == -(2.0 ** 63)
    assert quantize(2.0 ** 64 + 2.0 ** 12, i64) == 2.0 ** 12
    with pytest.raises(ValueError, match="53"):
        quantize(2.0 ** 63, IntFormat(64, overflow="saturate"))  # 2**63 - 1: 63 bits
    q = FixedFormat(16, 8, overflow="saturate")
    assert quantize(np.array([1 / 3, 200.0, -200.0]), q).tolist() == [
        85 / 256, 32767 / 256, -128.0]


# ---------------------------------------------------------------------------------------
# API shape / type contract


def test_scalar_and_array_types():
    f = accsim.load_format("fp16")
    r = quantize(0.1, f)
    assert type(r) is float and r == float(np.float16(0.1))
    assert type(quantize(np.float32(0.1), f)) is float
    assert type(quantize(3, IntFormat(8))) is float
    a = quantize([0.1, 0.2], f)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (2,)
    m = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    out = quantize(m, f)
    assert out.shape == (3, 4) and out.dtype == np.float64
    nc = np.linspace(0, 1, 40).reshape(5, 8)[:, ::3]  # not contiguous
    before = nc.copy()
    assert not mismatches(quantize(nc, f).reshape(-1),
                          quantize(np.ascontiguousarray(nc), f).reshape(-1), nc)
    assert (nc == before).all()  # input untouched
    assert quantize(np.empty((0, 3)), f).shape == (0, 3)


def test_bad_arguments():
    f = accsim.load_format("fp16")
    with pytest.raises(ValueError, match="rounding"):
        quantize(1.0, f, "nearest")
    # a format name is resolved with load_format; an unknown one is refused
    assert quantize(1.0001, "fp16") == 1.0
    with pytest.raises(ValueError, match="unknown format"):
        quantize(1.0, "fp99")
    with pytest.raises(ValueError, match="fmt"):
        quantize(1.0, 16)
    with pytest.raises(ValueError, match="x"):
        quantize(["a", "b"], f)
