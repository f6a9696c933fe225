"""The engine's two containers for the same sequential/chunked float algorithm:
float64 lanes (any accumulator of at most 51 significant bits) and float32 lanes
(registers of at most 22 significant bits whose operands and products are exact in
float32). Both are checked against the step-by-step oracle ``naive.matmul`` (MPFR /
Fraction), at the boundaries where the engine switches between them, and against
each other.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import zlib

import naive
import numpy as np
import pytest

from accsim import FloatFormat
from accsim.numerics import kernels as K
from accsim.numerics.engine import float32_operands, matmul

FP16 = FloatFormat(5, 10, name="fp16")
BF16 = FloatFormat(8, 7, name="bf16")
E8M21 = FloatFormat(8, 21, name="e8m21")     # widest register the float32 lanes take
E8M22 = FloatFormat(8, 22, name="e8m22")     # one bit too wide: float64 lanes
E10M10 = FloatFormat(10, 10, name="e10m10")  # exponent range beyond float32's
MODES = ["rne", "rna", "rz", "ru", "rd", "ro"]


def check(a, b, acc, label, **kw):
    got = matmul(a, b, acc, **kw)
    ref = naive.matmul(a, b, acc, **kw)
    naive.assert_values(got.values, ref.values, a, b, label, bias=kw.get("bias"))
    naive.assert_events(got.events, ref, label)
    return got


def sig_values(rng, shape, bits, e_lo, e_hi):
    """Random values with exactly ``bits`` significant bits and exponents in [e_lo, e_hi]."""
    m = rng.integers(2 ** (bits - 1), 2 ** bits, size=shape) | 1
    e = rng.integers(e_lo, e_hi + 1, size=shape)
    s = rng.choice([-1.0, 1.0], size=shape)
    return s * np.ldexp(m.astype(np.float64), e - (bits - 1))


class TestEligibility:
    """Which operands the float32 lanes take (each case is then checked by the oracle)."""

    def test_fp16_operands_fp16_register(self):
        rng = np.random.default_rng(1)
        a, b = sig_values(rng, (3, 5), 11, -10, 10), sig_values(rng, (5, 3), 11, -10, 10)
        assert float32_operands(FP16, a, b) is not None

    def test_product_width_24_taken_25_refused(self):
        rng = np.random.default_rng(2)
        a, b = sig_values(rng, (3, 5), 12, -4, 4), sig_values(rng, (5, 3), 12, -4, 4)
        assert float32_operands(FP16, a, b) is not None
        b13 = sig_values(rng, (5, 3), 13, -4, 4)
        assert float32_operands(FP16, a, b13) is None

    def test_tiny_products_refused(self):
        # lowest set bits adding up to -150: a product would fall below float32's
        # subnormal quantum
        a = np.array([[2.0**-75, 1.0]])
        b = np.array([[2.0**-75], [1.0]])
        assert float32_operands(BF16, a, b) is None
        assert float32_operands(BF16, a, b * 2) is not None

    def test_huge_products_refused(self):
        a = np.array([[2.0**64]])
        assert float32_operands(BF16, a, np.array([[2.0**63]])) is None
        assert float32_operands(BF16, a, np.array([[2.0**62]])) is not None

    def test_register_limits(self):
        a = np.ones((2, 2))
        assert float32_operands(E8M21, a, a) is not None
        assert float32_operands(E8M22, a, a) is None
        assert float32_operands(E10M10, a, a) is None
        assert float32_operands(FloatFormat(9, 7), a, a) is None

    def test_operands_not_float32(self):
        a = np.array([[1.0 + 2.0**-30]])
        assert float32_operands(FP16, a, np.ones((1, 1))) is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("acc,bits,elo,ehi,lanes32", [
    (FP16, 11, -9, 3, True),      # fp16 products; partial sums cross fp16's subnormal range
    (BF16, 8, -67, -60, True),    # products down to 2^-148: float32 subnormals
    (BF16, 8, -70, -60, False),   # products below 2^-149: float64 lanes
    (BF16, 8, 55, 63, True),      # products up to 2^127: the float32 TwoSum overflows
                                  # (hi = inf, lo = NaN) just above bf16's largest value
    (E8M21, 12, -20, 20, True),   # 22-bit register, 24-bit products
    (E8M22, 12, -20, 20, False),  # float64 lanes, same data
    (FloatFormat(8, 7, subnormals=False, name="bf16ftz"), 8, -67, -60, True),
    (FloatFormat(5, 10, overflow="saturate", name="fp16sat"), 11, 4, 8, True),
    (FloatFormat(4, 3, specials="fn", name="e4m3fn"), 4, -4, 4, True),
])
def test_oracle_at_the_switch(acc, bits, elo, ehi, lanes32, mode):
    rng = np.random.default_rng(zlib.crc32(f"{acc.name}{elo}{mode}".encode()))
    a = sig_values(rng, (5, 40), bits, elo, ehi)
    b = sig_values(rng, (40, 6), bits, elo, ehi)
    a[0, :] = np.abs(a[0, :])
    b[:, 0] = np.abs(b[:, 0])        # output (0, 0): no cancellation, grows to overflow
    a[1, 3] = 0.0
    a[2, :20] = -a[2, :20]
    assert (float32_operands(acc, a, b) is not None) == lanes32
    check(a, b, acc, f"{acc.name}/{mode}", rounding=mode)
    check(a, b, acc, f"{acc.name}/{mode}/chunked", rounding=mode, structure="chunked",
          chunk_size=7, wide=FloatFormat(8, 23))


def test_ties_and_specials_in_float32_lanes():
    """Exact ties of fp16 (1 + 2^-11), ties +- 1 ulp of the product, +-0, inf, NaN."""
    t = 2.0**-11
    a = np.array([[1.0, t, t, t],
                  [1.0, t + 2.0**-21, 0.0, -0.0],
                  [1.0, t - 2.0**-22, np.inf, 1.0],
                  [-0.0, -0.0, 0.0, np.nan]])
    b = np.ones((4, 3))
    b[:, 1] = -1.0
    b[3, 2] = -0.0
    assert float32_operands(FP16, a, b) is not None
    for mode in MODES:
        check(a, b, FP16, f"ties/{mode}", rounding=mode)


def test_same_values_both_lanes():
    """fp16 data on a 22-bit register (float32 lanes) and through the float64 lanes
    (forced by one operand bit outside float32): identical except that output."""
    rng = np.random.default_rng(7)
    a = sig_values(rng, (16, 64), 11, -8, 8)
    b = sig_values(rng, (64, 16), 11, -8, 8)
    r32 = matmul(a, b, E8M21)
    a2 = a.copy()
    a2[15, 63] = 1.0 + 2.0**-40        # not a float32: the whole product takes float64 lanes
    b2 = b.copy()
    b2[63, :] = 0.0                    # ...but contributes nothing to the compared outputs
    r64 = matmul(a2, b2, E8M21)
    r32b = matmul(a, b2, E8M21)
    assert float32_operands(E8M21, a, b2) is not None
    assert float32_operands(E8M21, a2, b2) is None
    np.testing.assert_array_equal(r32b.values[:15], r64.values[:15])
    assert r32.values.shape == (16, 16)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("acc", [FP16, FloatFormat(5, 10, subnormals=False, name="fp16ftz"),
                                 FloatFormat(4, 3, specials="fnuz", name="e4m3fnuz"),
                                 FloatFormat(8, 23, name="fp32")], ids=lambda f: f.name)
def test_zero_products_and_zero_sums(acc, mode):
    """Exact zero sums (sign rules of IEEE 754 6.3, -0 only where the format has it),
    exact zero products added to zero, subnormal, normal, inf and NaN registers (the
    register keeps its value, no event), as in ReLU outputs and zero pixels."""
    sub = 2.0 ** (acc.emin - 1) if acc.subnormals else 0.0
    a = np.array([[0.0, -0.0, 0.0, 0.0, 1.0, -1.0, 0.0],
                  [-0.0, -0.0, 0.0, -0.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                  [1.0, -1.0, 0.0, -0.0, 0.5, -0.5, 0.0]])
    b = np.array([[1.0, -1.0, 0.0],
                  [1.0, 1.0, -0.0],
                  [0.0, 2.0, 1.0],
                  [1.0, 0.0, 1.0],
                  [1.0, 1.0, -1.0],
                  [1.0, 1.0, -1.0],
                  [0.0, 0.0, 0.0]])
    bias = np.array([[sub, -sub, 0.0], [0.0, -0.0, -0.0], [0.0, -0.0, sub],
                     [-0.0, 0.0, sub]])
    if not acc.has_negative_zero:
        bias = np.where(bias == 0, 0.0, bias)
    check(a, b, acc, f"zeros/{acc.name}/{mode}", rounding=mode, bias=bias)
    check(a, b, acc, f"zeros/{acc.name}/{mode}/no-bias", rounding=mode)
    # overflowed registers (inf, or the largest value when saturating / rounding
    # toward zero) then zero products
    big = acc.max_finite
    a2 = np.array([[big, big, 0.0, -0.0, 0.0], [-big, -big, -0.0, 0.0, 0.0]])
    b2 = np.array([[1.0, 0.5], [1.0, 0.5], [3.0, 0.0], [1.0, -0.0], [0.0, 0.0]])
    check(a2, b2, acc, f"overflow-then-zeros/{acc.name}/{mode}", rounding=mode)


@pytest.mark.parametrize("acc", [FP16, FloatFormat(8, 23, name="fp32")], ids=lambda f: f.name)
@pytest.mark.parametrize("mode", MODES)
def test_zero_rows_of_a(acc, mode):
    """Steps whose a[i, k] is 0 (zero pixels, ReLU zeros): skipped by the kernels only
    when that cannot change anything; 0 * inf = NaN in B must still poison the register,
    and zero registers must still take the zero-sum sign rule."""
    rng = np.random.default_rng(3)
    a = sig_values(rng, (6, 50), 11, -6, 3)
    a[:, ::2] = 0.0
    a[1, :] = 0.0
    a[2, 1::4] = -0.0
    a[3, :25] = 0.0
    b = sig_values(rng, (50, 5), 11, -6, 3)
    check(a, b, acc, f"zero-a/{acc.name}/{mode}", rounding=mode)
    bias = np.array([[0.0, -0.0, 1.0, -2.0, 0.5]] * 6)
    check(a, b, acc, f"zero-a/{acc.name}/{mode}/bias", rounding=mode, bias=bias)
    b2 = b.copy()
    b2[4, 0] = np.inf              # a[:, 4] == 0: 0 * inf is NaN in column 0
    b2[7, 1] = -np.inf
    got = check(a, b2, acc, f"zero-a/{acc.name}/{mode}/inf", rounding=mode)
    assert np.isnan(got.values[1, 0])


@pytest.mark.parametrize("density", [0.3, 0.8])   # pairs path / row kernels (>= 32 a row)
@pytest.mark.parametrize("acc", [FP16, FloatFormat(8, 23, name="fp32")], ids=lambda f: f.name)
@pytest.mark.parametrize("mode", ["rne", "rd", "ru"])
def test_zero_steps_in_selected_outputs(acc, mode, density):
    """Selected outputs (scattered pairs, or rows with gathered columns) skip steps that
    add only zeros: identical bits (signed zeros, NaN from 0 * inf) and flags to the full
    product, which the oracle checks."""
    rng = np.random.default_rng(5)
    a = sig_values(rng, (40, 60), 11, -6, 3)
    a[:, 10:30] = 0.0                 # zero columns in every row: all-zero product steps
    a[::3, 40:] = -0.0
    a[5, :] = 0.0
    b = sig_values(rng, (60, 50), 11, -6, 3)
    b[45, 2] = np.inf
    bias = np.where(rng.random((40, 50)) < 0.3, 0.0, 0.25)
    bias[::4] = -0.0
    full = check(a, b, acc, f"sel-zero/{acc.name}/{mode}", rounding=mode, bias=bias)
    mask = rng.random((40, 50)) < density
    sel = matmul(a, b, acc, rounding=mode, bias=bias, select=mask)
    gv, fv = sel.values[mask], full.values[mask]
    assert np.array_equal(gv.view(np.int64), fv.view(np.int64)) or \
        np.array_equal(np.isnan(gv), np.isnan(fv)) and \
        np.array_equal(gv[~np.isnan(gv)].view(np.int64), fv[~np.isnan(fv)].view(np.int64))
    assert np.array_equal(sel.events.flags[mask], full.events.flags[mask])


FP64 = FloatFormat(11, 52, name="fp64")


def test_fp64_register_against_oracle():
    """The IEEE binary64 register (rne: the hardware add), vectorised: values, inexact
    counts, zero sums, zero steps, overflow to inf (and its flags), against MPFR."""
    rng = np.random.default_rng(17)
    a = sig_values(rng, (6, 300), 26, -30, 30)
    b = sig_values(rng, (300, 5), 26, -30, 30)
    a[:, 50:120] = 0.0
    a[1] = 0.0
    a[2, :150] = -a[2, :150]
    check(a, b, FP64, "fp64")
    check(a, b, FP64, "fp64/bias", bias=np.array([[0.0, -0.0, 1.5, -2.0**-40, 3.0]]))
    mask = rng.random((6, 5)) < 0.5
    full = matmul(a, b, FP64)
    sel = matmul(a, b, FP64, select=mask)
    assert np.array_equal(sel.values[mask], full.values[mask])
    # overflow: products 2.6 * 2^1016, 128 of them pass 2^1024
    s = 2.0**508
    a2 = np.full((2, 128), 1.5 * s)
    a2[1] = -a2[1]
    b2 = np.full((128, 2), 1.75 * s)
    b2[:, 1] = 0.0
    got = check(a2, b2, FP64, "fp64/overflow")
    assert np.isinf(got.values[:, 0]).all() and got.events.overflows.sum() == 2


@pytest.mark.parametrize("density", [0.3, 0.8])
@pytest.mark.parametrize("acc", [FP16, FloatFormat(8, 23, name="fp32")], ids=lambda f: f.name)
def test_zero_skips_in_selected_rows(acc, density):
    """As above with every entry of B finite, so that the row kernels may skip a row's
    zero a[i, k] steps: selected values and flags equal the oracle-checked full product."""
    rng = np.random.default_rng(9)
    a = sig_values(rng, (30, 70), 11, -6, 3)
    a[:, 5:40] = 0.0
    a[4] = -0.0
    b = sig_values(rng, (70, 60), 11, -6, 3)
    bias = np.where(rng.random((30, 60)) < 0.3, 0.0, -0.5)
    for mode in ("rne", "rd"):
        full = check(a, b, acc, f"sel-rows/{acc.name}/{mode}", rounding=mode, bias=bias)
        mask = rng.random((30, 60)) < density
        sel = matmul(a, b, acc, rounding=mode, bias=bias, select=mask)
        assert np.array_equal(sel.values[mask].view(np.int64), full.values[mask].view(np.int64))
        assert np.array_equal(sel.events.flags[mask], full.events.flags[mask])


FP32 = FloatFormat(8, 23, name="fp32")


class TestBinary32Register:
    """The IEEE binary32 register with rne on float32 lanes: the hardware float32 add
    is the register (TwoSum only for the inexact count). Checked against the MPFR /
    Fraction oracle where it could go wrong: ties of 24 bits, subnormal partial sums,
    overflow to inf, cancellation to exact zero, +-0, inf and NaN."""

    def test_eligibility(self):
        a = np.ones((2, 2))
        assert float32_operands(FP32, a, a, rounding="rne") is not None
        for mode in ["rz", "rd", "ru", "rna", "ro"]:
            assert float32_operands(FP32, a, a, rounding=mode) is None
        for other in [FloatFormat(8, 23, subnormals=False), FloatFormat(8, 23, overflow="saturate")]:
            assert float32_operands(other, a, a, rounding="rne") is None
        assert float32_operands(FP32, a, np.array([[2.0**-100, 1.0], [1.0, 1.0]]) * 2.0**-50,
                                 rounding="rne") is None      # a product below 2^-149

    @pytest.mark.parametrize("bits,elo,ehi", [
        (12, -8, 8),       # fp16-like operands: 24-bit products, inexact adds, ties
        (8, -67, -62),     # bf16 operands: products and partial sums in the subnormal range
        (8, 55, 63),       # products up to 2^127: overflow to inf
    ])
    def test_oracle(self, bits, elo, ehi):
        rng = np.random.default_rng(zlib.crc32(f"b32{elo}".encode()))
        a = sig_values(rng, (6, 70), bits, elo, ehi)
        b = sig_values(rng, (70, 7), bits, elo, ehi)
        a[0, :] = np.abs(a[0, :])
        b[:, 0] = np.abs(b[:, 0])
        a[1, 5] = 0.0
        a[2, :35] = -a[2, :35]
        assert float32_operands(FP32, a, b, rounding="rne") is not None
        got = check(a, b, FP32, f"binary32/{elo}")
        check(a, b, FP32, f"binary32/{elo}/bias", bias=np.full((6, 7), 2.0**elo))
        mask = rng.random((6, 7)) < 0.3                   # scattered pairs
        sel = matmul(a, b, FP32, select=mask)
        assert np.array_equal(sel.values[mask].view(np.int64),
                              got.values[mask].view(np.int64))
        assert np.array_equal(sel.events.flags[mask], got.events.flags[mask])
        if elo > 50:
            assert got.events.total["overflows"] > 0

    def test_ties_zeros_and_specials(self):
        u = 2.0**-24                      # half an ulp of 1 in binary32
        a = np.array([[1.0, u, u, u, 0.0],
                      [1.0, u + 2.0**-36, -1.0, 0.0, -0.0],
                      [1.0 + 2.0**-22, u, -1.0 - 2.0**-22, -u, 0.0],
                      [-0.0, -0.0, 0.0, np.inf, 1.0],
                      [2.0**-126, -2.0**-149, 2.0**-149, 0.0, np.nan],
                      [1.5 * 2.0**126, 1.5 * 2.0**126, 1.5 * 2.0**126, -1.0, 1.0]])
        b = np.ones((5, 3))
        b[:, 1] = -1.0
        b[3, 2] = -0.0
        assert float32_operands(FP32, a, b, rounding="rne") is not None
        got = check(a, b, FP32, "binary32/ties")
        assert got.events.total["overflows"] > 0
        check(a, b, FP32, "binary32/ties/chunked", structure="chunked", chunk_size=2,
              wide=FloatFormat(8, 30))


def test_fp16_rne_step_against_numpy_float16_cast():
    """Every finite fp16 register value x, one step x + p with p half an ulp of x times
    multipliers that hit the tie exactly, one product-ulp either side, and a few ulps
    away, and ties missed by less than float32 resolves, with both signs, plus zero
    products: the register must hold numpy's float16 cast of the exact sum (x + p is
    exact in float64 here: its bits span under 50), and
    count an inexact add exactly where that cast is inexact (independent oracle: numpy's
    correctly rounded float64 -> float16 conversion)."""
    x = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    x = np.concatenate([x, -x])                         # +-0 .. +-65504, subnormals
    ex = np.clip(np.floor(np.log2(np.where(x == 0, 1.0, np.abs(x)))), -14, 15)
    rows_a = [np.exp2(ex), np.exp2(ex) * (1 + 2.0**-10), -np.exp2(ex) * (2 - 2.0**-10)]
    a = np.concatenate(rows_a)[:, None]                 # fp16 values
    xs = np.concatenate([x] * len(rows_a))
    # 1 - 2^-10 with the row a = 2^e (1 + 2^-10): p = half an ulp times (1 - 2^-20), a
    # tie missed by far less than float32 resolves (double-rounding hazards: x + p and
    # x - p round to a float32 tie at binary16 precision)
    c = np.array([1.0, -1.0, 1 - 2.0**-11, -(1 - 2.0**-11), 1 + 2.0**-10, 3.0, -5.0,
                  2.0, 0.0, -0.0, 2.0**-10, -(2 - 2.0**-10), 1 - 2.0**-10,
                  -(1 - 2.0**-10)])
    b = (c * 2.0**-11)[None, :]                         # fp16 values
    assert np.array_equal(np.float16(a).astype(np.float64), a)
    assert np.array_equal(np.float16(b).astype(np.float64), b)
    bias = np.repeat(xs[:, None], b.shape[1], axis=1)
    exact = bias + a * b                                # exact in float64
    with np.errstate(over="ignore"):
        ref = exact.astype(np.float16).astype(np.float64)
    assert float32_operands(FP16, a, b) is not None
    got = matmul(a, b, FP16, bias=bias)
    same = (got.values.view(np.int64) == ref.view(np.int64))
    bad = np.argwhere(~same)
    assert same.all(), (f"{bad.shape[0]} mismatches, first x={bias[tuple(bad[0])]!r} "
                        f"p={(a * b)[tuple(bad[0])]!r}: got {got.values[tuple(bad[0])]!r}, "
                        f"float16 cast {ref[tuple(bad[0])]!r}")
    inexact = (ref != exact) & np.isfinite(ref)
    overflow = np.isinf(ref)
    np.testing.assert_array_equal(got.events.flags & 1, (inexact | overflow).astype(np.uint8))
    np.testing.assert_array_equal((got.events.flags & 2) != 0, overflow)
    assert inexact.sum() > 100_000 and overflow.sum() > 0


def test_operand_statistics_against_python():
    """The operand statistics that decide exactness (max significant bits, lowest and
    highest bit exponents, all-integer) equal a Python computation from
    ``float.as_integer_ratio`` (subnormals, +-0, inf, NaN)."""
    rng = np.random.default_rng(11)
    x = sig_values(rng, 300_000, 24, -60, 60)
    x[::5] = np.round(x[::5])
    x[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -2.0**-1070 * 3, 2.0**1000]
    smax, lmin, emax, nonint = 0, 100000, -100000, False
    for v in x.tolist():
        if v == 0 or not np.isfinite(v):
            continue
        num, den = abs(v).as_integer_ratio()          # den a power of two
        low = (num & -num).bit_length() - 1 - (den.bit_length() - 1)
        top = num.bit_length() - 1 - (den.bit_length() - 1)
        smax, lmin, emax = max(smax, top - low + 1), min(lmin, low), max(emax, top)
        nonint |= low < 0
    want = (smax, lmin, emax, not nonint)
    assert tuple(K.sig_stats(x)) == want


def test_operand_statistics_per_entry():
    """Each entry's statistics alone (powers of two, the largest and smallest normals
    and subnormals, odd significands of every width) equal the Python computation."""
    rng = np.random.default_rng(12)
    vals = [2.0**e for e in range(-1074, 1024, 7)] + [5e-324, 2.0**-1022, 2.0**1023,
                                                       1.7976931348623157e308,
                                                       2.2250738585072009e-308]
    for bits in range(1, 54, 2):
        vals += [v for v in sig_values(rng, 100, bits, -1080, 1000) if v != 0]
    for v in vals:
        for s in (1.0, -1.0):
            x = s * v
            num, den = abs(x).as_integer_ratio()
            low = (num & -num).bit_length() - 1 - (den.bit_length() - 1)
            top = num.bit_length() - 1 - (den.bit_length() - 1)
            got = tuple(K.sig_stats(np.array([x])))
            assert got == (top - low + 1, low, top, low >= 0), (x, got)


def test_float32_operand_statistics():
    """The statistics computed from float32 copies (fp16/bf16-style operands) equal the
    Python computation entry by entry and over a whole array; entries float32 would
    change are counted (then the float64 statistics are used), as are inf and NaN."""
    rng = np.random.default_rng(13)
    vals = [2.0**e for e in range(-149, 128)] + [3.4028234663852886e38,
                                                  1.1754942106924411e-38, 1.5, 12345.0]
    for bits in range(1, 25):
        vals += [v for v in sig_values(rng, 40, bits, -150, 127)
                 if v != 0 and np.float32(v) == v]
    for v in vals:
        for x in (v, -v):
            num, den = abs(x).as_integer_ratio()
            low = (num & -num).bit_length() - 1 - (den.bit_length() - 1)
            top = num.bit_length() - 1 - (den.bit_length() - 1)
            out = np.empty(1, dtype=np.float32)
            got = K.sig_stats_f32(np.array([x]), out)
            assert got == (top - low + 1, low, top, low >= 0, 0, 0), (x, got)
            assert out[0] == x
    x = np.array(vals + [0.0, -0.0, np.inf, -np.inf, np.nan])
    out = np.empty(x.size, dtype=np.float32)
    got = K.sig_stats_f32(x, out)
    assert got[:4] == tuple(K.sig_stats(x)) and got[4:] == (0, 3)
    np.testing.assert_array_equal(out, x.astype(np.float32))
    bad = np.array([1.0, 1 + 2.0**-30, 1e300, 2.0**-160, 3 * 2.0**-150])
    assert K.sig_stats_f32(bad, np.empty(5, dtype=np.float32))[4] == 4


@pytest.mark.parametrize("flag, feature", [("HALF_NATIVE", "f16c"), ("ADD_ROUNDING", "avx512f")])
def test_cpu_feature_detection(flag, feature):
    """The binary16 register uses the hardware conversion exactly where the CPU has it
    (x86-64 with F16C), and the float32 lanes form their round-to-odd sums with two
    directed adds exactly where the CPU has them (AVX-512F), so the oracles here check
    those paths on such CPUs (and the test below the others)."""
    if platform.machine() in ("x86_64", "AMD64") and os.path.exists("/proc/cpuinfo") \
            and "NUMBA_CPU_NAME" not in os.environ and "NUMBA_CPU_FEATURES" not in os.environ:
        with open("/proc/cpuinfo") as f:
            flags = f.read().split()
        assert getattr(K, flag) == (feature in flags)
    else:
        assert isinstance(getattr(K, flag), bool)


@pytest.mark.parametrize("acc", [FP16, BF16, FloatFormat(5, 7, name="e5m7")])
def test_ties_decided_below_float32_on_wide_rows(acc):
    """Register ties that only a product bit below float32's precision decides (the
    round-to-odd sum must keep it), with both signs, exact ties, and zero sums, on 37
    outputs per row: two blocks of 16 lanes (directed adds where the CPU has them) and
    a tail of 5 (TwoSum). Against the step-by-step oracle, values and events."""
    h = 2.0 ** -(acc.man_bits + 1)             # half an ulp of 1 in the register
    n = 37
    j = np.arange(n)
    b0 = np.where(j % 2 == 0, 1.0, 1.0 + 2 * h) * np.where(j % 7 < 4, 1.0, -1.0)
    tweak = np.array([2.0**-22, -2.0**-23, 0.0, 2.0**-21, -2.0**-22, 2.0**-20])
    b1 = (1.0 + tweak[j % 6]) * np.where(j % 5 < 3, 1.0, -1.0)
    b = np.stack([b0, b1, np.where(j % 3 == 0, -b0, b0)])
    a = np.array([[1.0, h, 0.0], [1.0, -h, 1.0], [1.0, -h / 4, -1.0], [-1.0, h / 2, 1.0]])
    assert float32_operands(acc, a, b) is not None
    check(a, b, acc, f"ro-sums/{acc.name}")


@pytest.mark.slow
def test_fp16_oracle_without_hardware_conversion(tmp_path):
    """Where the CPU has no binary16 conversion and no directed adds (here: numba told
    to target a generic x86-64), the fp16 register takes the general float32 rne step
    and the round-to-odd sums come from TwoSum; the float16-cast oracle and the ties
    above must hold for it too (a separate process, kernels compiled afresh)."""
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_FEATURES", None)
    code = ("import sys, test_engine_lanes as t\n"
            "from accsim.numerics.kernels import ADD_ROUNDING, HALF_NATIVE\n"
            "assert not HALF_NATIVE and not ADD_ROUNDING\n"
            "t.test_fp16_rne_step_against_numpy_float16_cast()\n"
            "for acc in (t.FP16, t.BF16):\n"
            "    t.test_ties_decided_below_float32_on_wide_rows(acc)\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, cwd=os.path.dirname(__file__), timeout=900)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]
