"""Exhaustive checks of quantize for every float format of at most 8 bits.

Oracles (tests/oracles.py, none of them uses accsim):

* the value set of each format is decoded from every bit pattern (``enumerate_values``);
* ``TableOracle`` rounds by bracketing |x| in that enumerated grid (vectorised);
* ``round_float_exact`` (exact integer / Fraction arithmetic) and ``round_float_mpfr``
  (GNU MPFR) cross-check the table oracle and accsim on a deterministic sample of the
  same inputs for every format.

Formats: every (exp_bits, man_bits) with 1 + exp_bits + man_bits <= 8, specials
ieee (exp_bits >= 2) / fn (not e1m0) / fnuz / none (saturating only), subnormals on and
off, overflow inf and saturate. Inputs: every representable value, every midpoint
between neighbours (including the overflow threshold max + ulp/2 and, without
subnormals, the p-bit grid just below the smallest normal), each of those +- one float64
ulp, values far beyond max, tiny values, +-0, +-inf (NaN separately).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import accsim
from oracles import (
    DETERMINISTIC_MODES,
    MPFR_MODES,
    FloatSpec,
    TableOracle,
    enumerate_values,
    mismatches,
    round_float_exact,
    round_float_mpfr,
)


def _small_specs():
    specs = []
    for e in range(1, 8):
        for m in range(0, 8 - e):
            for specials in ("ieee", "fn", "fnuz", "none"):
                if specials == "ieee" and e < 2:
                    continue
                if specials == "fn" and e == 1 and m == 0:
                    continue  # only zero and NaN
                for sub in (True, False):
                    for ovf in ("inf", "saturate"):
                        if specials == "none" and ovf != "saturate":
                            continue
                        specs.append(FloatSpec(e, m, subnormals=sub, specials=specials,
                                               overflow=ovf))
    return specs


SMALL_SPECS = _small_specs()
SPEC_IDS = [s.label() for s in SMALL_SPECS]


@functools.lru_cache(maxsize=None)
def _fmt(spec: FloatSpec):
    return accsim.FloatFormat(**spec.kwargs())


@functools.lru_cache(maxsize=None)
def _table(spec: FloatSpec):
    return TableOracle(spec)


@functools.lru_cache(maxsize=None)
def exhaustive_inputs(spec: FloatSpec) -> np.ndarray:
    """Adversarial inputs for a small format (both signs, no NaN)."""
    vals = enumerate_values(spec)
    pos = vals[vals >= 0]
    m = spec.man_bits
    big = spec.max_finite
    nxt = big + math.ldexp(1.0, spec.emax - m)  # next point of the grid unbounded above
    grid = set(pos.tolist()) | {nxt}
    # the p-bit grid in the two binades below the smallest normal (flush boundary
    # without subnormals; points between subnormals with them)
    for e in (spec.emin - 1, spec.emin - 2):
        grid |= {math.ldexp(k, e - m) for k in range(2 ** m, 2 ** (m + 1) + 1)}
    g = np.array(sorted(grid))
    mids = (g[:-1] + g[1:]) / 2
    tiny = spec.min_subnormal or spec.min_normal
    extra = np.array([
        2 * nxt, 4 * big, 1e300, np.finfo(np.float64).max, math.ldexp(1.0, spec.emax + 1),
        tiny / 2, tiny / 4, tiny * 0.75, tiny / 3, 5e-324, 1e-300, 2.2250738585072014e-308,
    ])
    base = np.concatenate([g, mids, extra])
    with np.errstate(over="ignore"):
        around = np.concatenate([np.nextafter(base, np.inf), np.nextafter(base, -np.inf)])
    allpos = np.unique(np.concatenate([base, around]))
    allpos = allpos[np.isfinite(allpos)]
    xs = np.concatenate([allpos, -allpos, [np.inf, -np.inf, 0.0, -0.0]])
    return xs


def test_format_count():
    # 28 (exp_bits, man_bits) pairs; see _small_specs for the exclusions
    assert len(SMALL_SPECS) == 360


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=SPEC_IDS)
def test_properties_match_enumeration(spec):
    """Derived properties agree with the decoded bit patterns."""
    fmt = _fmt(spec)
    vals = enumerate_values(spec)
    pos = vals[vals > 0]
    assert fmt.bits == 1 + spec.exp_bits + spec.man_bits
    assert fmt.precision == spec.man_bits + 1
    assert fmt.bias == spec.bias
    assert fmt.num_values == vals.size
    assert fmt.max_finite == pos.max() == spec.max_finite
    assert fmt.min_positive == pos.min()
    assert fmt.emin == spec.emin and fmt.emax == spec.emax
    assert fmt.min_normal == math.ldexp(1.0, spec.emin)
    if spec.subnormals:
        assert fmt.min_subnormal == pos.min()
    else:
        assert fmt.min_subnormal is None
        assert pos.min() == fmt.min_normal
    assert fmt.has_inf == (spec.specials == "ieee")
    assert fmt.has_nan == (spec.specials != "none")
    assert fmt.has_negative_zero == (spec.specials != "fnuz")


@pytest.mark.parametrize("mode", DETERMINISTIC_MODES)
@pytest.mark.parametrize("spec", SMALL_SPECS, ids=SPEC_IDS)
def test_exhaustive_vs_table(spec, mode):
    """accsim == table oracle on every adversarial input, bit for bit (signed zeros too)."""
    xs = exhaustive_inputs(spec)
    got = accsim.quantize(xs, _fmt(spec), mode)
    want = _table(spec)(xs, mode)
    report = mismatches(got, want, xs)
    assert not report, f"{spec.label()} {mode}\n{report}"
    # every finite result is a value of the format
    vals = enumerate_values(spec)
    fin = got[np.isfinite(got)]
    assert np.isin(fin, vals).all()


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=SPEC_IDS)
def test_sample_vs_exact_and_mpfr(spec):
    """On a deterministic sample of the inputs: table == exact oracle == MPFR == accsim."""
    xs = exhaustive_inputs(spec)
    # ~30 % of the overflow and underflow regions, ~4 % of the rest
    big = spec.max_finite
    lo = math.ldexp(1.0, spec.emin + 1)
    a = np.abs(xs)
    edge = (a >= big / 2) | (a <= lo)
    rng = np.random.default_rng(SMALL_SPECS.index(spec))
    u = rng.random(xs.size)
    keep = ~np.isfinite(a) | (edge & (u < 0.3)) | (u < 0.04)
    sample = xs[keep]
    fmt = _fmt(spec)
    table = _table(spec)
    for mode in DETERMINISTIC_MODES:
        exact = np.array([round_float_exact(float(x), spec, mode) for x in sample])
        # the oracles agree with each other first ...
        r = mismatches(table(sample, mode), exact, sample)
        assert not r, f"table oracle vs exact oracle, {spec.label()} {mode}\n{r}"
        if mode in MPFR_MODES:
            mp = np.array([round_float_mpfr(float(x), spec, mode) for x in sample])
            r = mismatches(mp, exact, sample)
            assert not r, f"MPFR vs exact oracle, {spec.label()} {mode}\n{r}"
    for mode in DETERMINISTIC_MODES:
        # ... then accsim agrees with them
        exact = np.array([round_float_exact(float(x), spec, mode) for x in sample])
        r = mismatches(accsim.quantize(sample, fmt, mode), exact, sample)
        assert not r, f"accsim vs exact oracle, {spec.label()} {mode}\n{r}"


@pytest.mark.parametrize("spec", [s for s in SMALL_SPECS if s.overflow == "inf"] +
                         [s for s in SMALL_SPECS if s.specials == "none"],
                         ids=lambda s: s.label())
def test_nan_input(spec):
    fmt = _fmt(spec)
    if spec.specials == "none":
        with pytest.raises(ValueError):
            accsim.quantize(np.array([1.0, np.nan]), fmt)
        with pytest.raises(ValueError):
            accsim.quantize(float("nan"), fmt, "rz")
    else:
        for mode in DETERMINISTIC_MODES:
            big = spec.max_finite
            out = accsim.quantize(np.array([np.nan, -np.nan, big]), fmt, mode)
            assert np.isnan(out[:2]).all() and out[2] == big
