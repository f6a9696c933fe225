"""accsim.numerics.engine.matmul with floating-point accumulators, against tests/naive.py.

Oracle: ``naive.matmul`` (MPFR for rne/rz/ru/rd, exact Fractions for rna/ro and the fused
adder's alignment), one Python step per rounded add. Operands are drawn from the values
of small formats (fp8 / fp16 / bf16 grids), so every product is exact in float64 and the
engine accepts them.

Second peer: APyTypes 0.5.1 (``APyFloatAccumulatorContext``). Its semantics, found by
experiment here: the product of two APyFloat operands is first rounded to the
*accumulator* format with the context's quantization mode, then added with one more
rounding. It is a multiply-round-add, i.e. ``product=acc, product_rounding=rounding`` in
accsim's terms, not the fused ``product="exact"`` default (with exact products it agrees
on only ~20-40 % of random fp16 outputs). The cross-check below uses that setting and
keeps operands away from the subnormal range (APyTypes has a known rounding bug just
below the smallest normal).

What is compared: values bit for bit (signed zeros and NaN included) and the events per
output row (overflows, saturations, inexact) and the per-output flags. For the fused
structure the contract does not say whether bits dropped by the alignment make a step
"inexact"; these tests pin the reading the engine implements: a fused step is inexact
when the final rounding of the aligned sum is (``naive.matmul`` counts the lossy
alignments separately, in ``lossy_align``; see test_fused_inexact_convention).
"""

from __future__ import annotations

import math
import zlib
from fractions import Fraction

import naive
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accsim import FloatFormat, quantize
from accsim.numerics.engine import matmul

FP32 = FloatFormat(8, 23, name="fp32")
TF32 = FloatFormat(8, 10, name="tf32")
FP16 = FloatFormat(5, 10, name="fp16")
BF16 = FloatFormat(8, 7, name="bf16")
E5M2 = FloatFormat(5, 2, name="e5m2")
E4M3 = FloatFormat(4, 3, name="e4m3")  # IEEE-style: max 240
E6M9 = FloatFormat(6, 9, name="e6m9")
E5M7 = FloatFormat(5, 7, name="e5m7")
E8M13 = FloatFormat(8, 13, name="e8m13")
E3M4 = FloatFormat(3, 4, name="e3m4")
WIDE40 = FloatFormat(10, 40, name="e10m40")

# accumulator -> (operand format, operand exponent window [lo, hi])
ACCS = {
    "fp32": (FP32, FP16, -6, 6),
    "tf32": (TF32, FP16, -6, 6),
    "fp16": (FP16, FP16, -5, 4),
    "bf16": (BF16, BF16, -8, 8),
    "e5m2": (E5M2, E4M3, -4, 4),
    "e4m3": (E4M3, E4M3, -4, 2),
    "e6m9": (E6M9, FP16, -6, 6),
    "e5m7": (E5M7, E4M3, -5, 4),
    "e8m13": (E8M13, BF16, -8, 8),
    "e3m4": (E3M4, E4M3, -5, -1),
}
MODES = ["rne", "rna", "rz", "ru", "rd", "ro"]
STRUCTURES = ["sequential", "chunked", "tree", "fused"]
M, N, K = 4, 4, 23   # K = 23: partial last chunk (5) and fused step (3), odd tree levels


def draw(rng, shape, opfmt, lo, hi, zero_frac=0.06):
    """Values of ``opfmt`` with exponents in [lo, hi], some +-0."""
    grid = naive.grid_values(opfmt, min_exp=lo, max_exp=hi)
    grid = grid[grid != 0]
    x = rng.choice(grid, size=shape)
    z = rng.random(shape) < zero_frac
    x[z] = np.where(rng.random(int(z.sum())) < 0.5, 0.0, -0.0)
    return x


def wide_for(acc):
    return WIDE40 if acc == FP32 else FP32


def bias_for(acc, lo, hi, n=N):
    """A per-column bias representable in ``acc``: [0.75, -1.25, 0, -0] * 2**s."""
    s = max(lo + hi, acc.emin + 1)
    base = np.array([0.75, -1.25, 0.0, -0.0] * ((n + 3) // 4))[:n]
    return base * 2.0 ** s


def run_both(a, b, acc, label, *, check_inexact=True, signed_zero=True, **kw):
    got = matmul(a, b, acc, **kw)
    ref = naive.matmul(a, b, acc, **kw)
    naive.assert_values(got.values, ref.values, a, b, label, bias=kw.get("bias"),
                        signed_zero=signed_zero)
    naive.assert_events(got.events, ref, label, inexact=check_inexact)
    return got, ref


# ------------------------------------------------------------------------------------
# the oracle checked on its own (hand-computed values, MPFR vs Fraction, numpy fp16)

class TestOracle:
    def test_hand_cases_fp16(self):
        one = np.ones((3, 1))
        # 1 + 2**-11 is a tie: rne keeps 1 (even), rna goes to 1 + 2**-10
        a = np.array([[1.0, 2.0**-11, 2.0**-11]])
        r = naive.matmul(a, one, FP16)
        assert r.values[0, 0] == 1.0 and r.inexact.tolist() == [2]
        r = naive.matmul(a, one, FP16, rounding="rna")
        assert r.values[0, 0] == 1.0 + 2.0**-9   # 1 + 2^-10, then the next tie goes away
        # tree: (1 + 2^-11) -> 1, then + 2^-11 -> 1
        assert naive.matmul(a, one, FP16, structure="tree").values[0, 0] == 1.0
        # tree on [2^-11, 2^-11, 1]: 2^-10 exactly, then 1 + 2^-10
        a2 = np.array([[2.0**-11, 2.0**-11, 1.0]])
        r = naive.matmul(a2, one, FP16, structure="tree")
        assert r.values[0, 0] == 1.0 + 2.0**-10 and r.inexact.tolist() == [0]
        # fused, no guard bits: 2^-11 aligned to 2^-10 is truncated away
        r = naive.matmul(a, one, FP16, structure="fused", guard_bits=0)
        assert r.values[0, 0] == 1.0 and r.lossy_align.tolist() == [1]
        # fused with guard bits: exact 1 + 2^-10 in one rounding
        r = naive.matmul(a, one, FP16, structure="fused", guard_bits=2)
        assert r.values[0, 0] == 1.0 + 2.0**-10 and r.lossy_align.tolist() == [0]

    def test_hand_cases_overflow(self):
        a = np.array([[240.0, 240.0]])
        b = np.array([[240.0], [240.0]])     # 57600 + 57600 > 65504
        r = naive.matmul(a, b, FP16)
        assert r.values[0, 0] == math.inf and r.overflows.tolist() == [1]
        r = naive.matmul(a, b, FP16, rounding="rz")
        assert r.values[0, 0] == 65504.0 and r.overflows.tolist() == [1]
        r = naive.matmul(-a, b, FP16, rounding="ru")
        assert r.values[0, 0] == -65504.0
        r = naive.matmul(-a, b, FP16, rounding="rd")
        assert r.values[0, 0] == -math.inf
        sat = FloatFormat(5, 10, overflow="saturate")
        r = naive.matmul(a, b, sat)
        assert r.values[0, 0] == 65504.0 and r.saturations.tolist() == [1]
        # 65504 + 8 = 65512 rounds (rne) to 65504: not an overflow; 65520 is a tie -> inf
        r = naive.matmul(np.array([[65504.0, 8.0]]), np.ones((2, 1)), FP16)
        assert r.values[0, 0] == 65504.0 and r.overflows.tolist() == [0]
        r = naive.matmul(np.array([[65504.0, 16.0]]), np.ones((2, 1)), FP16)
        assert r.values[0, 0] == math.inf and r.overflows.tolist() == [1]

    def test_hand_cases_zero_and_subnormal(self):
        # -1 * 0 = -0; +0 + -0 = +0 (rne), -0 (rd)
        a = np.array([[-1.0, 1.0]])
        b = np.array([[0.0], [-0.0]])
        assert str(naive.matmul(a, b, FP16).values[0, 0]) == "0.0"
        assert str(naive.matmul(a, b, FP16, rounding="rd").values[0, 0]) == "-0.0"
        # 3 * 2^-26 is below half the smallest fp16 subnormal (2^-24)? 0.75 * 2^-24: rounds to 2^-24
        r = naive.matmul(np.array([[3.0 * 2.0**-26]]), np.ones((1, 1)), FP16)
        assert r.values[0, 0] == 2.0**-24
        r = naive.matmul(np.array([[3.0 * 2.0**-26]]), np.ones((1, 1)), FP16, rounding="rz")
        assert r.values[0, 0] == 0.0
        ftz = FloatFormat(5, 10, subnormals=False)
        r = naive.matmul(np.array([[2.0**-15]]), np.ones((1, 1)), ftz)
        assert r.values[0, 0] == 0.0 and r.inexact.tolist() == [1]
        # e4m3fn: 464 is a tie between 448 (even) and 480 (not representable): 448
        fn = FloatFormat(4, 3, specials="fn")
        r = naive.matmul(np.array([[464.0]]), np.ones((1, 1)), fn)
        assert r.values[0, 0] == 448.0 and r.overflows.tolist() == [0]
        r = naive.matmul(np.array([[480.0]]), np.ones((1, 1)), fn)
        assert math.isnan(r.values[0, 0]) and r.overflows.tolist() == [1]

    @pytest.mark.parametrize("fmt", [FP16, BF16, E5M2, E4M3, E3M4,
                                     FloatFormat(5, 10, subnormals=False),
                                     FloatFormat(4, 3, specials="fn"),
                                     FloatFormat(4, 3, specials="fnuz", overflow="saturate")])
    @pytest.mark.parametrize("mode", ["rne", "rz", "ru", "rd"])
    def test_mpfr_equals_fraction(self, fmt, mode):
        """The two rounding oracles agree on boundary-heavy values."""
        spec = naive.spec_of(fmt)
        rng = np.random.default_rng(7)
        grid = naive.grid_values(fmt)
        if grid.size > 400:   # keep both ends and the middle (zero, subnormals), sample the rest
            grid = np.unique(np.concatenate([grid[:80], grid[-80:],
                                             grid[grid.size // 2 - 80:grid.size // 2 + 80],
                                             rng.choice(grid, 80)]))
        mids = (grid[1:] + grid[:-1]) / 2
        xs = np.concatenate([grid, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                             rng.choice(grid, 200) * (1 + rng.random(200) * 2.0**-3),
                             [float(spec.maxf) * 1.03, -float(spec.maxf) * 1.5, 1e300]])
        for x in xs:
            x = float(x)
            a = naive.round_float(x, spec, mode)
            b = naive.frac_round_float(Fraction(x), spec, mode, zero_neg=math.copysign(1, x) < 0)
            assert naive.same_bits(np.array(a[0]), np.array(b[0])) and a[1] == b[1], (x, a, b)

    def test_fraction_rne_equals_numpy_float16(self):
        spec = naive.spec_of(FP16)
        rng = np.random.default_rng(3)
        mids = (naive.grid_values(FP16)[1:] + naive.grid_values(FP16)[:-1]) / 2
        xs = np.concatenate([rng.standard_normal(300) * 2.0 ** rng.integers(-26, 17, 300),
                             mids[:200], mids[-200:], rng.choice(mids, 400)])
        with np.errstate(over="ignore"):
            ref = xs.astype(np.float16).astype(np.float64)
        for x, r in zip(xs, ref):
            v, _ = naive.round_float(float(x), spec, "rne")
            assert naive.same_bits(np.array(v), np.array(r)), x


# ------------------------------------------------------------------------------------
# the main grid: accumulator x rounding x structure x product, random operands

@pytest.mark.parametrize("product", ["exact", "acc"])
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("accname", list(ACCS))
def test_random_vs_oracle(accname, mode, structure, product):
    acc, opfmt, lo, hi = ACCS[accname]
    seed = zlib.crc32(f"{accname}/{mode}/{structure}/{product}".encode())
    # a bias on every other combination (half of each mode / structure / product)
    with_bias = (MODES.index(mode) + STRUCTURES.index(structure) + (product == "acc")) % 2 == 1
    rng = np.random.default_rng(seed)
    a = draw(rng, (M, K), opfmt, lo, hi)
    b = draw(rng, (K, N), opfmt, lo, hi)
    kw = dict(rounding=mode, structure=structure)
    if product == "acc":
        kw["product"] = acc
    if structure == "chunked":
        kw.update(chunk_size=5, wide=wide_for(acc))
    if structure == "fused":
        kw.update(terms=3, guard_bits=3, align_rounding="rz")
    if with_bias:
        kw["bias"] = bias_for(wide_for(acc) if structure == "chunked" else acc, lo, hi)
    run_both(a, b, acc, f"{accname}/{mode}/{structure}/{product}/bias={with_bias}", **kw)


# ------------------------------------------------------------------------------------
# adversarial matrices

ADV_ACCS = ["fp16", "bf16", "e4m3", "e3m4"]


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("accname", ADV_ACCS)
def test_cancellation(accname, mode, structure):
    """Big terms that cancel around small ones: the small ones' fate shows the order."""
    acc, opfmt, lo, hi = ACCS[accname]
    rng = np.random.default_rng(11)
    k = 16
    big = 2.0 ** (hi + 1)
    a = draw(rng, (M, k), opfmt, lo, hi - 2)
    a[:, 0] = big
    a[:, k // 2] = -big
    a[:, -1] = rng.choice([big, -big], M)
    a[:, -2] = -a[:, -1]
    b = np.ones((k, N))
    b[:, 1] = -1.0
    b[:, 2] = draw(rng, (k,), opfmt, 0, 1)
    b[:, 3] = 2.0 ** lo
    kw = dict(rounding=mode, structure=structure)
    if structure == "chunked":
        kw.update(chunk_size=3, wide=wide_for(acc))
    if structure == "fused":
        kw.update(terms=4, guard_bits=2)
    run_both(a, b, acc, f"cancel {accname}/{mode}/{structure}", **kw)


OVF_CASES = [
    # acc, operand scale: products near max_finite
    (FP16, 240.0), (BF16, 2.0**63), (E5M2, 192.0), (E4M3, 14.0), (E3M4, 3.5),
    (E5M7, 240.0), (FloatFormat(5, 10, overflow="saturate", name="fp16sat"), 240.0),
    (FloatFormat(4, 3, specials="fn", name="e4m3fn"), 20.0),
    (FloatFormat(4, 3, specials="fnuz", overflow="saturate", name="e4m3fnuz_sat"), 15.0),
    (FloatFormat(5, 2, specials="fnuz", name="e5m2fnuz"), 240.0),
]


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("acc,scale", OVF_CASES, ids=[c[0].name for c in OVF_CASES])
def test_overflow_threshold(acc, scale, mode, structure):
    """Products around the overflow threshold, both signs, some cancelling: events
    and IEEE results (inf vs largest finite per rounding direction, saturation, NaN in
    formats without infinity)."""
    rng = np.random.default_rng(5)
    k = 8
    opvals = np.array([1.0, 0.75, 1.125, 0.5, 0.875]) * scale
    a = rng.choice(opvals, (M + 2, k)) * rng.choice([-1.0, 1.0], (M + 2, k))
    b = rng.choice(opvals, (k, N)) * rng.choice([1.0, 1.0, -1.0], (k, N))
    a[M, :] = scale              # all positive: must overflow in every format
    a[M + 1, :] = -scale
    b[:, 0] = np.abs(b[:, 0])
    kw = dict(rounding=mode, structure=structure)
    if structure == "chunked":
        kw.update(chunk_size=3, wide=acc)   # promotion into the same narrow format
    if structure == "fused":
        kw.update(terms=2, guard_bits=3)
    _, ref = run_both(a, b, acc, f"overflow {acc.name}/{mode}/{structure}", **kw)
    assert ref.total["overflows"] > 0


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("acc", [FP16, BF16, E4M3, FloatFormat(5, 10, subnormals=False, name="fp16ftz"),
                                 FloatFormat(4, 3, subnormals=False, name="e4m3ftz")],
                         ids=lambda f: f.name)
def test_subnormal_partial_sums(acc, mode, structure):
    """Products and partial sums around the smallest normal and in the subnormal range."""
    rng = np.random.default_rng(13)
    k = 12
    # operands from fp16 so that products have up to 22 bits; scale so that products are
    # between 2^(emin - man - 3) and 2^(emin + 2)
    e_lo = acc.emin - acc.man_bits - 3
    e_hi = acc.emin + 2
    ea = rng.integers(e_lo // 2 - 1, e_hi // 2 + 1, (M, k))
    eb = rng.integers(e_lo // 2 - 1, e_hi // 2 + 1, (k, N))
    a = (1 + rng.integers(0, 1 << 10, (M, k)) / 1024) * 2.0 ** ea * rng.choice([-1, 1], (M, k))
    b = (1 + rng.integers(0, 1 << 10, (k, N)) / 1024) * 2.0 ** eb * rng.choice([-1, 1, 1], (k, N))
    kw = dict(rounding=mode, structure=structure)
    if structure == "chunked":
        kw.update(chunk_size=4, wide=acc)
    if structure == "fused":
        kw.update(terms=3, guard_bits=4)
    run_both(a, b, acc, f"subnormal {acc.name}/{mode}/{structure}", **kw)


def _tie_rows(acc):
    """Rows whose partial sums land exactly on midpoints of ``acc`` (and 1 ulp of float64
    or a tiny amount beside them)."""
    u = 2.0 ** -acc.man_bits          # ulp of 1
    rows = [
        [1.0, u / 2, u / 2, u / 2, u / 2],                  # 1 + half ulp ties, repeated
        [1.0 + u, u / 2, u / 2, -u / 2, u / 2],             # odd start: ties go up
        [-1.0, -u / 2, -u / 2, -u / 2, -u / 2],             # negative ties
        [1.0, u / 2 + u * 2.0**-12, u / 2 - u * 2.0**-12, u / 2, -u / 2],   # tie +- tiny
        [2.0, -u / 2, -u / 4, u / 4, -u],                   # ties below a power of two
        [1.0, 3 * u / 2, u / 2, 5 * u / 2, -7 * u / 2],
        # ties +- (almost) one float64 ulp: 52-bit addends, so s + p needs > 53 bits
        [1.0, u / 2 * (1 + 2.0**-51), u / 2 * (1 - 2.0**-51), -u / 2 * (1 + 2.0**-51)],
        [-1.0 - u, u / 2 * (1 - 2.0**-51), -u / 2 * (1 + 2.0**-51), u * (1 - 2.0**-51)],
    ]
    width = max(len(r) for r in rows)
    return np.array([r + [0.0] * (width - len(r)) for r in rows])


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("accname", ["fp16", "bf16", "e5m2", "e3m4", "tf32"])
def test_exact_ties(accname, mode, structure):
    acc = ACCS[accname][0]
    a = _tie_rows(acc)
    k = a.shape[1]
    b = np.ones((k, 3))
    b[:, 1] = 2.0 ** (acc.emax - 2)       # same ties, near the top of the range
    b[:, 2] = -(2.0 ** (acc.emin + 1))    # ties in the lowest normal binade
    if acc == E3M4:
        b[:, 1] = 2.0
    kw = dict(rounding=mode, structure=structure)
    if structure == "chunked":
        kw.update(chunk_size=2, wide=acc)
    if structure == "fused":
        kw.update(terms=2, guard_bits=1, align_rounding="rne")
    run_both(a, b, acc, f"ties {accname}/{mode}/{structure}", **kw)


BOUNDARY_ACCS = [FP16, BF16, E5M2, E4M3, E3M4, TF32,
                  FloatFormat(5, 10, overflow="saturate", name="fp16sat"),
                  FloatFormat(4, 3, specials="fn", name="e4m3fn")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("acc", BOUNDARY_ACCS, ids=lambda f: f.name)
def test_max_finite_boundary(acc, mode):
    """max finite + half an ulp (the overflow tie), +- a little, and exactly below."""
    mx = acc.max_finite
    h = 2.0 ** (acc.emax - acc.man_bits - 1)      # half an ulp at the top binade
    a = np.array([
        [mx, h], [mx, h * (1 - 2.0**-20)], [mx, h * (1 + 2.0**-20)],
        [-mx, -h], [-mx, -h * (1 - 2.0**-20)], [mx, -h], [mx - 2 * h, h], [mx, 2 * h],
    ])
    b = np.ones((2, 2))
    b[:, 1] = [1.0, 0.5]
    for structure in STRUCTURES:
        kw = dict(rounding=mode, structure=structure)
        if structure == "chunked":
            kw.update(chunk_size=1, wide=acc)
        if structure == "fused":
            kw.update(terms=1, guard_bits=3)
        run_both(a, b, acc, f"max finite {acc.name}/{mode}/{structure}", **kw)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("mode", MODES)
def test_signed_zero_results(mode, structure):
    """+-0 products, +-0 bias, and exact cancellation: IEEE signs of zero sums."""
    a = np.array([
        [0.0, 0.0, 0.0, 0.0],
        [-0.0, -0.0, -0.0, -0.0],
        [1.0, -1.0, 2.0, -2.0],
        [-1.0, 1.0, 0.0, 0.0],
        [3.0, 0.0, -3.0, -0.0],
    ])
    b = np.array([[1.0, -1.0, 0.0], [1.0, -1.0, -0.0], [1.0, -1.0, 0.0], [1.0, -1.0, -0.0]])
    kw = dict(rounding=mode, structure=structure)
    if structure == "chunked":
        kw.update(chunk_size=2, wide=FP32)
    if structure == "fused":
        kw.update(terms=2)
    for acc in (FP16, E4M3, BF16):
        run_both(a, b, acc, f"zeros {acc.name}/{mode}/{structure}", **kw)
        run_both(a, b, acc, f"zeros bias=-0 {acc.name}/{mode}/{structure}", bias=-0.0, **kw)
        run_both(a, b, acc, f"zeros bias=+0 {acc.name}/{mode}/{structure}", bias=0.0, **kw)


# ------------------------------------------------------------------------------------
# structures' own parameters

@pytest.mark.parametrize("align", ["rz", "rd", "rne"])
@pytest.mark.parametrize("guard", [0, 3, 8])
@pytest.mark.parametrize("terms", [1, 3, 8])
@pytest.mark.parametrize("mode", ["rne", "rd"])
def test_fused_alignment(align, guard, terms, mode):
    rng = np.random.default_rng(17 + guard + 10 * terms)
    a = draw(rng, (M, 16), FP16, -8, 6)
    b = draw(rng, (16, N), E4M3, -4, 4)
    b[:, 0] = 1.0
    run_both(a, b, E5M7, f"fused T={terms} G={guard} {align} {mode}", rounding=mode,
             structure="fused", terms=terms, guard_bits=guard, align_rounding=align)
    run_both(a, b, FP16, f"fused fp16 T={terms} G={guard} {align} {mode}", rounding=mode,
             structure="fused", terms=terms, guard_bits=guard, align_rounding=align)


def test_fused_inexact_convention():
    """1 + 2**-14 in one fp16 fused step with no guard bits: the alignment drops
    2**-14, the aligned sum 1 rounds exactly; reported as not inexact."""
    a = np.array([[1.0, 2.0**-14]])
    b = np.ones((2, 1))
    got, ref = run_both(a, b, FP16, "fused convention", structure="fused", terms=2,
                        guard_bits=0)
    assert ref.lossy_align.tolist() == [1] and ref.inexact.tolist() == [0]
    assert got.values[0, 0] == 1.0 and got.events.inexact.tolist() == [0]


@pytest.mark.parametrize("mode", ["rne", "rz", "ru", "rd"])
def test_fused_large_guard_is_correctly_rounded_sum(mode):
    """With enough guard bits nothing is dropped: each step is a correctly rounded
    (T+1)-term sum (oracle: MPFR rounding of the exact sum)."""
    rng = np.random.default_rng(19)
    a = draw(rng, (M, 12), E4M3, -3, 3)
    b = draw(rng, (12, N), E4M3, -3, 3)
    got = matmul(a, b, FP16, rounding=mode, structure="fused", terms=4, guard_bits=30)
    ref = naive.matmul(a, b, FP16, rounding=mode, structure="fused", terms=4, guard_bits=30)
    assert ref.lossy_align.sum() == 0
    naive.assert_values(got.values, ref.values, a, b, f"fused G=30 {mode}")
    naive.assert_events(got.events, ref, f"fused G=30 {mode}")


@pytest.mark.parametrize("chunk", [1, 7, 100])
@pytest.mark.parametrize("wide_rounding", [None, "rz"])
@pytest.mark.parametrize("mode", ["rne", "ru"])
def test_chunked_parameters(chunk, wide_rounding, mode):
    rng = np.random.default_rng(23 + chunk)
    a = draw(rng, (M, K), E4M3, -4, 4)
    b = draw(rng, (K, N), E4M3, -4, 4)
    bias = np.array([0.1, -3.0, 1e3, 0.0])   # 0.1 is rounded into the wide register
    kw = dict(rounding=mode, structure="chunked", chunk_size=chunk, wide=FP32,
              wide_rounding=wide_rounding)
    got, ref = run_both(a, b, E5M7, f"chunked L={chunk} wr={wide_rounding} {mode}",
                        bias=bias[[1, 2, 3, 3]], **kw)
    # values only with a bias that is not representable in the wide format
    got = matmul(a, b, E5M7, bias=bias, **kw)
    ref = naive.matmul(a, b, E5M7, bias=bias, **kw)
    naive.assert_values(got.values, ref.values, a, b, "chunked inexact bias", bias=bias)


def test_chunked_single_chunk_equals_sequential_then_promotion():
    """L >= K: one chunk, so the result is round_wide(sequential narrow result + bias)."""
    rng = np.random.default_rng(29)
    a = draw(rng, (M, K), E4M3, -3, 3)
    b = draw(rng, (K, N), E4M3, -3, 3)
    seq = matmul(a, b, E5M7).values
    ch = matmul(a, b, E5M7, structure="chunked", chunk_size=K, wide=FP32).values
    naive.assert_values(ch, seq, a, b, "L=K chunk vs sequential")


@pytest.mark.parametrize("mode", ["rne", "rz"])
@pytest.mark.parametrize("pfmt,prnd", [(FP16, None), (BF16, "rz"), (E5M7, "rna"),
                                       (E4M3, "rne"), (FloatFormat(5, 10, overflow="saturate"), "ru")])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_product_formats(pfmt, prnd, mode, structure):
    """Multiply-round-add: products first rounded to ``pfmt`` (their events count)."""
    rng = np.random.default_rng(31)
    a = draw(rng, (M, 12), FP16, -4, 8)
    b = draw(rng, (12, N), FP16, -4, 8)
    kw = dict(rounding=mode, structure=structure, product=pfmt, product_rounding=prnd)
    if structure == "chunked":
        kw.update(chunk_size=5, wide=FP32)
    if structure == "fused":
        kw.update(terms=4)
    run_both(a, b, FP32, f"product {pfmt} {prnd} {mode} {structure}", **kw)


def test_tree_order():
    """Pairwise tree: (p0+p1), (p2+p3), ... with an odd element passed up unchanged."""
    u = 2.0 ** -10
    # fp16: leaves [1, u/2, u/2, u/2, u/2] -> level1 [1 (tie), u, u/2] -> [1+u, u/2] -> tie
    a = np.array([[1.0, u / 2, u / 2, u / 2, u / 2]])
    got = matmul(a, np.ones((5, 1)), FP16, structure="tree").values[0, 0]
    ref = naive.matmul(a, np.ones((5, 1)), FP16, structure="tree").values[0, 0]
    assert ref == 1.0 + 2 * u
    assert got == ref


def test_tree_single_term_is_rounded():
    """K = 1 without bias: the register still holds a value of acc (one rounding)."""
    a = np.array([[1.0 + 2.0**-12, -(1.0 + 3 * 2.0**-11)]]).T
    run_both(a, np.ones((1, 2)), FP16, "tree K=1", structure="tree")


def test_tree_bias_added_at_root():
    """The bias is added to the root with one more rounding (representable bias)."""
    a = np.array([[1.0, 2.0**-11]])
    b = np.ones((2, 2))
    bias = np.array([2.0**-11, 1.0])
    got = matmul(a, b, FP16, structure="tree", bias=bias)
    ref = naive.matmul(a, b, FP16, structure="tree", bias=bias)
    naive.assert_values(got.values, ref.values, a, b, "tree bias", bias=bias)
    naive.assert_events(got.events, ref, "tree bias")


def test_sequential_unrepresentable_bias_is_rounded_first():
    """Sequential: the register starts at round(bias) (rne), then each add rounds."""
    a = np.array([[2.0**-11, 2.0**-11]])
    b = np.ones((2, 1))
    bias = 1.0 + 2.0**-11 + 2.0**-20       # rounds up to 1 + 2^-10 as a start value
    got = matmul(a, b, FP16, bias=bias).values
    ref = naive.matmul(a, b, FP16, bias=bias).values
    assert ref[0, 0] == 1.0 + 2.0**-9       # (1+2^-10) + 2^-11: tie to even -> 1+2^-9
    naive.assert_values(got, ref, a, b, "unrepresentable bias")


# ------------------------------------------------------------------------------------
# property test: hypothesis draws matrices of fp16 / bf16 values

@st.composite
def small_problem(draw_):
    fmt = draw_(st.sampled_from([(FP16, FP16), (BF16, BF16), (E5M7, E4M3), (E4M3, E4M3)]))
    acc, opf = fmt
    m = draw_(st.integers(1, 3))
    n = draw_(st.integers(1, 3))
    k = draw_(st.integers(1, 9))
    grid = naive.grid_values(opf)
    grid = grid[np.abs(grid) <= 2.0 ** (acc.emax // 2)]
    idx = st.integers(0, len(grid) - 1)
    a = np.array(draw_(st.lists(idx, min_size=m * k, max_size=m * k)), dtype=np.int64)
    b = np.array(draw_(st.lists(idx, min_size=k * n, max_size=k * n)), dtype=np.int64)
    return acc, grid[a].reshape(m, k), grid[b].reshape(k, n)


@settings(max_examples=60, deadline=None)
@given(small_problem(), st.sampled_from(MODES), st.sampled_from(["sequential", "chunked", "fused"]))
def test_hypothesis_vs_oracle(prob, mode, structure):
    acc, a, b = prob
    kw = dict(rounding=mode, structure=structure)
    if structure == "chunked":
        kw.update(chunk_size=2, wide=FP32)
    run_both(a, b, acc, f"hypothesis {acc.name}/{mode}/{structure}", **kw)


# ------------------------------------------------------------------------------------
# API shape, names, integer inputs, threads

def test_result_types():
    rng = np.random.default_rng(37)
    a = draw(rng, (3, 7), FP16, -3, 3)
    b = draw(rng, (7, 5), FP16, -3, 3)
    r = matmul(a, b, FP16)
    assert isinstance(r.values, np.ndarray)
    assert r.values.shape == (3, 5) and r.values.dtype == np.float64
    ev = r.events
    for nm in ("overflows", "saturations", "inexact"):
        arr = np.asarray(getattr(ev, nm))
        assert arr.shape == (3,) and arr.dtype == np.int64, nm
    assert np.asarray(ev.flags).shape == (3, 5) and np.asarray(ev.flags).dtype == np.uint8
    assert set(ev.total) == {"overflows", "saturations", "inexact"}
    assert all(isinstance(v, int) for v in ev.total.values())


@pytest.mark.parametrize("name,fmt", [("fp16", FP16), ("bf16", BF16), ("fp32", FP32),
                                      ("tf32", TF32), ("e5m7", E5M7), ("fp8_e4m3", E4M3)])
def test_format_names(name, fmt):
    rng = np.random.default_rng(41)
    a = draw(rng, (3, 9), E4M3, -2, 2)
    b = draw(rng, (9, 4), E4M3, -2, 2)
    by_name = matmul(a, b, name, rounding="rz")
    by_fmt = matmul(a, b, fmt, rounding="rz")
    naive.assert_values(by_name.values, by_fmt.values, label=f"name {name}")


def test_integer_input_arrays():
    rng = np.random.default_rng(43)
    a = rng.integers(-100, 100, (4, 20)).astype(np.int8)
    b = rng.integers(-100, 100, (20, 3)).astype(np.int16)
    got = matmul(a, b, FP16)
    ref = naive.matmul(a.astype(float), b.astype(float), FP16)
    naive.assert_values(got.values, ref.values, label="int8/int16 inputs, fp16 acc")
    naive.assert_events(got.events, ref, "int inputs")


def _all_struct_kw():
    return [dict(structure="sequential"), dict(structure="chunked", chunk_size=16, wide=FP32),
            dict(structure="tree"), dict(structure="fused", terms=4, guard_bits=3),
            dict(structure="sequential", product=E5M7)]


def test_thread_count_independence():
    """Same values and events with 1 thread and with all threads (deterministic and sr)."""
    rng = np.random.default_rng(47)
    a = draw(rng, (48, 96), E4M3, -4, 4)
    b = draw(rng, (96, 40), E4M3, -4, 4)
    nmax = numba.config.NUMBA_NUM_THREADS
    prev = numba.get_num_threads()
    try:
        for kw in _all_struct_kw():
            for mode in ("rne", "rz", "sr"):
                out = []
                for nt in (1, nmax):
                    numba.set_num_threads(nt)
                    r = matmul(a, b, FP16, rounding=mode, seed=123, **kw)
                    out.append((r.values, r.events))
                naive.assert_values(out[1][0], out[0][0], label=f"threads {kw} {mode}")
                for nm in ("overflows", "saturations", "inexact", "flags"):
                    assert np.array_equal(getattr(out[0][1], nm), getattr(out[1][1], nm)), (kw, mode, nm)
    finally:
        numba.set_num_threads(prev)


# ------------------------------------------------------------------------------------
# stochastic rounding: reproducibility and statistics only

@pytest.mark.parametrize("kw", _all_struct_kw(), ids=lambda d: d["structure"] + ("+prod" if "product" in d else ""))
def test_sr_reproducible(kw):
    rng = np.random.default_rng(53)
    a = draw(rng, (6, 40), FP16, -4, 4)
    b = draw(rng, (40, 5), FP16, -4, 4)
    r1 = matmul(a, b, E5M7, rounding="sr", seed=99, **kw)
    r2 = matmul(a, b, E5M7, rounding="sr", seed=99, **kw)
    r3 = matmul(a, b, E5M7, rounding="sr", seed=100, **kw)
    naive.assert_values(r1.values, r2.values, label=f"sr same seed {kw}")
    assert np.array_equal(r1.events.inexact, r2.events.inexact)
    assert not np.array_equal(r1.values, r3.values), "different seeds gave identical results"
    # every result lies in the register's format (the wide one for chunked)
    held = kw.get("wide", E5M7) if kw["structure"] == "chunked" else E5M7
    assert np.array_equal(quantize(r1.values, held, "rz"), r1.values)


def test_sr_single_step_brackets_and_is_unbiased():
    """K = 1: each output is round-down or round-up of the exact value, and over many
    outputs the fraction rounded up is close to the distance / ulp."""
    spec = naive.spec_of(FP16)
    frac = 0.3125                        # exact dyadic fraction of an ulp: 5/16
    x = 1.0 + frac * 2.0**-10
    a = np.full((64, 1), x)
    b = np.ones((1, 64))
    r = matmul(a, b, FP16, rounding="sr", seed=2024).values
    lo, _ = naive.round_float(x, spec, "rd")
    hi, _ = naive.round_float(x, spec, "ru")
    assert np.all((r == lo) | (r == hi))
    p_up = np.mean(r == hi)
    # 4096 Bernoulli(5/16) draws: sd ~ 0.0072
    assert abs(p_up - frac) < 0.04, p_up


def test_sr_sum_is_unbiased():
    """Mean error of an SR sequential sum over many outputs is far below RZ's bias."""
    rng = np.random.default_rng(59)
    a = draw(rng, (64, 64), FP16, -2, 2)
    a = np.abs(a)
    b = np.abs(draw(rng, (64, 64), FP16, -2, 2))
    exact = a @ b                        # exact enough: float64 of fp16 products
    sr = matmul(a, b, E5M7, rounding="sr", seed=7).values
    rz = matmul(a, b, E5M7, rounding="rz").values
    bias_sr = np.mean((sr - exact) / exact)
    bias_rz = np.mean((rz - exact) / exact)
    assert bias_rz < -1e-3
    assert abs(bias_sr) < abs(bias_rz) / 5, (bias_sr, bias_rz)


# ------------------------------------------------------------------------------------
# second peer: APyTypes accumulator context (multiply-round-add into the accumulator)

# accsim mode -> apytypes.QuantizationMode name
_APY_Q = {"rne": "TIES_EVEN", "rz": "TO_ZERO", "ru": "TO_POS", "rd": "TO_NEG", "rna": "TIES_AWAY"}


def _apy_matmul(a, b, opfmt, acc, mode):
    import apytypes  # test extra: must be installed, never skipped
    A = apytypes.APyFloatArray.from_float(a, exp_bits=opfmt.exp_bits, man_bits=opfmt.man_bits)
    B = apytypes.APyFloatArray.from_float(b, exp_bits=opfmt.exp_bits, man_bits=opfmt.man_bits)
    q = getattr(apytypes.QuantizationMode, _APY_Q[mode])
    with apytypes.APyFloatAccumulatorContext(exp_bits=acc.exp_bits, man_bits=acc.man_bits,
                                             quantization=q):
        C = A @ B
    return np.asarray(C.to_numpy(), dtype=np.float64)


@pytest.mark.parametrize("mode", list(_APY_Q))
@pytest.mark.parametrize("acc,opfmt,lo,hi", [(FP16, FP16, -3, 3), (BF16, BF16, -6, 6),
                                             (FP16, E5M2, -3, 3), (BF16, FP16, -4, 4),
                                             (E6M9, FP16, -3, 3)],
                         ids=["fp16/fp16", "bf16/bf16", "fp16/e5m2", "bf16/fp16", "e6m9/fp16"])
def test_apytypes_sequential(acc, opfmt, lo, hi, mode):
    rng = np.random.default_rng(61)
    a = draw(rng, (8, 64), opfmt, lo, hi, zero_frac=0.0)
    b = draw(rng, (64, 8), opfmt, lo, hi, zero_frac=0.0)
    apy = _apy_matmul(a, b, opfmt, acc, mode)
    got = matmul(a, b, acc, rounding=mode, product=acc).values
    # keep away from APyTypes' known subnormal bug: the check is meaningful only if no
    # output is below the smallest normal (exact zeros from cancellation are fine)
    assert np.all((apy == 0) | (np.abs(apy) >= acc.min_normal))
    naive.assert_values(got, apy, a, b, f"apytypes {acc.name} {opfmt.name} {mode}",
                        signed_zero=False)


def test_apytypes_exact_products_into_fp32():
    """fp16 x fp16 products fit fp32 exactly: there APyTypes equals product='exact'."""
    rng = np.random.default_rng(67)
    a = draw(rng, (8, 64), FP16, -3, 3, zero_frac=0.0)
    b = draw(rng, (64, 8), FP16, -3, 3, zero_frac=0.0)
    for mode in ("rne", "rz"):
        apy = _apy_matmul(a, b, FP16, FP32, mode)
        got = matmul(a, b, FP32, rounding=mode).values
        naive.assert_values(got, apy, a, b, f"apytypes fp32 exact {mode}", signed_zero=False)
