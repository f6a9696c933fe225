"""accsim.numerics.engine.matmul with integer and fixed-point accumulators, against Python ints.

Oracle: ``naive.matmul`` keeps the register as a Python int (units of 2**-frac_bits).
Each product is rounded to the accumulator's grid (resolution only: the contract says
"rounded to the accumulator grid", then "added exactly into a bits-bit two's-complement
register that wraps or saturates after every add"), so a product larger than the
register's range is added exactly and only the sum is wrapped or saturated.

Events: one overflow per add whose exact sum is out of range (plus a saturation when the
register saturates); a product rounding to the grid that drops bits counts as inexact.

Second peer: APyTypes 0.5.1 ``APyFixedAccumulatorContext``. Found by experiment here: it
does not apply the context's overflow mode per add. ``to_numpy()`` returns the exact,
unwrapped sum (e.g. 123398 from a 16-bit context) while ``to_bits()`` returns its low
``bits`` bits; ``OverflowMode.SAT`` does not saturate at all. Because wrapping is modular,
the low bits of the exact sum are still the wrapping accumulator's result, so the
cross-check below uses wrap and ``to_bits()``; saturation has no APyTypes peer.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accsim import FixedFormat, IntFormat
from accsim.numerics import kernels
from accsim.numerics.datapath import Datapath
from accsim.numerics.engine import kernel_params, matmul

INT_ACCS = {
    "int8": IntFormat(8), "int8_sat": IntFormat(8, overflow="saturate"),
    "int16": IntFormat(16), "int16_sat": IntFormat(16, overflow="saturate"),
    "int32": IntFormat(32), "int32_sat": IntFormat(32, overflow="saturate"),
    "int12": IntFormat(12), "int20_sat": IntFormat(20, overflow="saturate"),
}


def ints(rng, shape, bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1))
    return rng.integers(lo, hi, shape).astype(np.float64)


def run_both(a, b, acc, label, *, inexact=True, **kw):
    got = matmul(a, b, acc, **kw)
    ref = naive.matmul(a, b, acc, **kw)
    naive.assert_values(got.values, ref.values, a, b, label, bias=kw.get("bias"),
                        signed_zero=False)
    naive.assert_events(got.events, ref, label, inexact=inexact)
    return got, ref


def operand_bits(acc):
    # operands whose products stay inside the register's range (int8 acc: int4 operands)
    return 4 if acc.bits <= 8 else 8


# ------------------------------------------------------------------------------------

class TestOracle:
    def test_wrap_and_saturate_by_hand(self):
        a = np.array([[100.0, 100.0, -100.0, 50.0]])
        b = np.array([[200.0], [100.0], [100.0], [-300.0]])
        # partial sums: 20000, 30000, 20000, 5000 (int16: no overflow)
        r = naive.matmul(a, b, IntFormat(16))
        assert r.values[0, 0] == 5000 and r.overflows.tolist() == [0]
        b2 = np.array([[200.0], [200.0], [-100.0], [-300.0]])
        # products 20000, 20000, 10000, -15000
        # wrap: 20000, 40000 -> -25536, -15536, -30536
        r = naive.matmul(a, b2, IntFormat(16))
        assert r.values[0, 0] == -30536 and r.overflows.tolist() == [1]
        # saturate: 20000, 32767 (sat), 42767 -> 32767 (sat), 17767
        r = naive.matmul(a, b2, IntFormat(16, overflow="saturate"))
        assert r.values[0, 0] == 17767
        assert r.overflows.tolist() == [2] and r.saturations.tolist() == [2]

    def test_fixed_product_rounding_by_hand(self):
        acc = FixedFormat(8, 2)                 # grid 0.25, range [-32, 31.75]
        a = np.array([[0.375, -0.375]])         # products 0.375*1 -> 0.25 or 0.5
        b = np.array([[1.0], [1.0]])
        assert naive.matmul(a, b, acc, rounding="rne").values[0, 0] == 0.5 - 0.5
        assert naive.matmul(a, b, acc, rounding="rd").values[0, 0] == 0.25 - 0.5
        assert naive.matmul(a, b, acc, rounding="ru").values[0, 0] == 0.5 - 0.25
        r = naive.matmul(a, b, acc, rounding="rz")
        assert r.values[0, 0] == 0.0 and r.inexact.tolist() == [2]


# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("structure", ["sequential", "chunked"])
@pytest.mark.parametrize("accname", list(INT_ACCS))
@pytest.mark.parametrize("seed", [1, 2])
def test_int_vs_oracle(accname, structure, seed):
    acc = INT_ACCS[accname]
    rng = np.random.default_rng(seed * 100 + acc.bits)
    ob = operand_bits(acc)
    k = 64
    a = ints(rng, (6, k), ob)
    b = ints(rng, (k, 5), ob)
    # push some rows to overflow: same-sign large products
    a[0, :] = (1 << (ob - 1)) - 1
    b[:, 0] = (1 << (ob - 1)) - 1
    a[1, :] = -(1 << (ob - 1))
    kw = dict(structure=structure)
    if structure == "chunked":
        kw.update(chunk_size=7, wide=IntFormat(acc.bits + 8, overflow=acc.overflow))
    _, ref = run_both(a, b, acc, f"{accname} {structure}", **kw)
    if acc.bits <= 16:
        assert ref.total["overflows"] > 0


@pytest.mark.parametrize("acc", [IntFormat(8), IntFormat(8, overflow="saturate")],
                         ids=["wrap", "saturate"])
def test_int8_acc_products_beyond_range(acc):
    """int8 x int8 products (up to 16384) into an int8 register: each product is added
    exactly and only the sum wraps / saturates (products are rounded to the grid only)."""
    rng = np.random.default_rng(3)
    a = ints(rng, (5, 24), 8)
    b = ints(rng, (24, 4), 8)
    run_both(a, b, acc, f"int8 acc, int8 operands ({acc.overflow})")


def test_int32_equals_exact():
    rng = np.random.default_rng(5)
    a = ints(rng, (8, 64), 8)
    b = ints(rng, (64, 8), 8)
    r = matmul(a, b, IntFormat(32))
    exact = a.astype(np.int64) @ b.astype(np.int64)
    assert np.array_equal(r.values, exact.astype(np.float64))
    assert r.events.total == {"overflows": 0, "saturations": 0, "inexact": 0}


@pytest.mark.parametrize("bits", [12, 16])
def test_wrap_is_modular_whatever_the_structure(bits):
    """Wrap-around is arithmetic mod 2**bits: sequential and chunked (narrow and wide of
    the same width) both equal the exact sum reduced mod 2**bits."""
    rng = np.random.default_rng(bits)
    a = ints(rng, (6, 64), 8)
    b = ints(rng, (64, 6), 8)
    exact = (a.astype(np.int64) @ b.astype(np.int64)) % (1 << bits)
    exact = np.where(exact >= 1 << (bits - 1), exact - (1 << bits), exact).astype(np.float64)
    acc = IntFormat(bits)
    seq = matmul(a, b, acc).values
    ch = matmul(a, b, acc, structure="chunked", chunk_size=5, wide=acc).values
    assert np.array_equal(seq, exact)
    assert np.array_equal(ch, exact)


def test_saturation_is_order_dependent():
    """Saturation is not modular: [big, big, -big] saturates then comes back down."""
    acc = IntFormat(16, overflow="saturate")
    a = np.array([[127.0, 127.0, 127.0, -127.0, -127.0]])
    b = np.full((5, 1), 127.0)      # products 16129: 16129, 32258, 32767 (sat), 16638, 509
    r = matmul(a, b, acc)
    assert r.values[0, 0] == 32767 - 2 * 16129
    assert r.events.overflows.tolist() == [1] and r.events.saturations.tolist() == [1]
    run_both(a, b, acc, "saturation order")


# ------------------------------------------------------------------------------------
# A2Q: ||w||_1 * max|x| < 2**(B-1)  =>  no overflow in a signed B-bit register

def _a2q_weights(rng, m, k, budget):
    """int8 weights, every row with L1 norm <= budget (some rows exactly at it)."""
    w = np.zeros((m, k))
    for i in range(m):
        left = budget
        for j in rng.permutation(k):
            if left <= 0:
                break
            v = int(min(rng.integers(0, 128), left))
            w[i, j] = v * rng.choice([-1, 1])
            left -= v
        if i % 2 == 0 and left > 0:    # fill to the budget exactly
            j = int(np.argmin(np.abs(w[i])))
            extra = min(left, 127 - int(abs(w[i, j])))
            w[i, j] = np.sign(w[i, j] or 1) * (abs(w[i, j]) + extra)
    return w


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
@pytest.mark.parametrize("bits", [12, 14, 16])
def test_a2q_bound_no_overflow(bits, overflow):
    rng = np.random.default_rng(bits)
    k = 64
    xmax = 128                                   # int8 activations, -128 included
    budget = ((1 << (bits - 1)) - 1) // xmax     # ||w||_1 * 128 < 2**(B-1)
    w = _a2q_weights(rng, 8, k, budget)
    assert np.all(np.abs(w).sum(axis=1) * xmax < 2 ** (bits - 1))
    x = ints(rng, (k, 8), 8)
    # worst case activations for row 0: x = -128 * sign(w) -> |sum| = 128 * ||w||_1
    x[:, 0] = np.where(w[0] >= 0, -128.0, 127.0)
    acc = IntFormat(bits, overflow=overflow)
    r = matmul(w, x, acc)
    assert r.events.total == {"overflows": 0, "saturations": 0, "inexact": 0}
    assert np.array_equal(r.values, (w.astype(np.int64) @ x.astype(np.int64)).astype(np.float64))


@settings(max_examples=40, deadline=None)
@given(st.integers(10, 20), st.integers(1, 48), st.integers(0, 2**32 - 1))
def test_a2q_bound_hypothesis(bits, k, seed):
    rng = np.random.default_rng(seed)
    budget = ((1 << (bits - 1)) - 1) // 128
    w = _a2q_weights(rng, 4, k, budget)
    x = ints(rng, (k, 3), 8)
    r = matmul(w, x, IntFormat(bits, overflow="saturate"))
    assert r.events.total["overflows"] == 0
    assert np.array_equal(r.values, w @ x)


def test_a2q_bound_violated_overflows():
    """One step past the bound with worst-case activations: an overflow must be reported
    (and matches the oracle)."""
    bits = 12
    budget = ((1 << (bits - 1)) - 1) // 128 + 2
    w = np.zeros((1, 16))
    w[0, :2] = [budget // 2, budget - budget // 2]
    x = np.full((16, 1), -128.0)
    for overflow in ("wrap", "saturate"):
        _, ref = run_both(w, x, IntFormat(bits, overflow=overflow), f"A2Q violated {overflow}")
        assert ref.total["overflows"] == 1


# ------------------------------------------------------------------------------------
# fixed point

FIXED_MODES = ["rne", "rna", "rz", "ru", "rd", "ro"]


@pytest.mark.parametrize("mode", FIXED_MODES)
@pytest.mark.parametrize("acc", [FixedFormat(16, 8), FixedFormat(16, 8, overflow="saturate"),
                                 FixedFormat(12, 4), FixedFormat(20, 10, overflow="saturate"),
                                 FixedFormat(16, -2)],
                         ids=lambda f: f"q{f.bits}.{f.frac_bits}{'s' if f.overflow == 'saturate' else 'w'}")
def test_fixed_vs_oracle(acc, mode):
    """Products with more fraction bits than the register are rounded to its grid."""
    rng = np.random.default_rng(acc.bits * 7 + acc.frac_bits)
    a = rng.integers(-128, 128, (5, 32)) / 2.0**6     # 6 fraction bits
    b = rng.integers(-128, 128, (32, 4)) / 2.0**5     # 5 fraction bits -> products: 11
    a[0, :] = 127 / 64
    b[:, 0] = 127 / 32
    bias = np.array([0.0, -1.0, 2.5, 0.25]) * (4.0 if acc.frac_bits < 0 else 1.0)
    run_both(a, b, acc, f"fixed {acc} {mode}", rounding=mode)
    run_both(a, b, acc, f"fixed {acc} {mode} bias", rounding=mode, bias=bias)


@pytest.mark.parametrize("mode", ["rne", "rz", "rd"])
def test_fixed_chunked(mode):
    acc = FixedFormat(12, 6, overflow="saturate")
    wide = FixedFormat(24, 6, overflow="saturate")
    rng = np.random.default_rng(71)
    a = rng.integers(-64, 64, (4, 40)) / 2.0**5
    b = rng.integers(-64, 64, (40, 4)) / 2.0**4
    run_both(a, b, acc, f"fixed chunked {mode}", rounding=mode, structure="chunked",
             chunk_size=8, wide=wide, bias=np.array([1.5, -2.0, 0.0, 3.25]))


def test_int_chunked_with_bias_in_wide():
    rng = np.random.default_rng(73)
    a = ints(rng, (4, 50), 8)
    b = ints(rng, (50, 3), 8)
    bias = np.array([1000.0, -70000.0, 123456.0])
    for narrow in (IntFormat(16), IntFormat(16, overflow="saturate")):
        run_both(a, b, narrow, f"chunked {narrow}", structure="chunked", chunk_size=16,
                 wide=IntFormat(32, overflow="saturate"), bias=bias)


def test_unsigned_accumulator():
    rng = np.random.default_rng(79)
    a = rng.integers(0, 16, (4, 30)).astype(float)
    b = rng.integers(0, 16, (30, 4)).astype(float)
    for acc in (IntFormat(10, signed=False), IntFormat(10, signed=False, overflow="saturate")):
        run_both(a, b, acc, f"unsigned {acc}")


def test_integer_dtype_inputs():
    rng = np.random.default_rng(83)
    a = rng.integers(-128, 128, (4, 40)).astype(np.int8)
    b = rng.integers(-128, 128, (40, 4)).astype(np.int8)
    got = matmul(a, b, IntFormat(16, overflow="saturate"))
    ref = naive.matmul(a.astype(float), b.astype(float), IntFormat(16, overflow="saturate"))
    naive.assert_values(got.values, ref.values, label="int8 dtype inputs", signed_zero=False)
    naive.assert_events(got.events, ref, "int8 dtype inputs")


def test_int_refusals():
    a = np.array([[0.5, 1.0]])
    b = np.ones((2, 1))
    with pytest.raises(ValueError):
        matmul(a, b, IntFormat(16))              # IntFormat needs integer operands
    for structure in ("tree", "fused"):
        with pytest.raises(ValueError):
            matmul(np.ones((1, 2)), b, IntFormat(16), structure=structure)


def test_fixed_sr_reproducible():
    rng = np.random.default_rng(89)
    a = rng.integers(-128, 128, (6, 32)) / 2.0**6
    b = rng.integers(-128, 128, (32, 6)) / 2.0**5
    acc = FixedFormat(16, 4)
    r1 = matmul(a, b, acc, rounding="sr", seed=5).values
    r2 = matmul(a, b, acc, rounding="sr", seed=5).values
    r3 = matmul(a, b, acc, rounding="sr", seed=6).values
    assert np.array_equal(r1, r2)
    assert not np.array_equal(r1, r3)
    lo = naive.matmul(a, b, acc, rounding="rd").values
    hi = naive.matmul(a, b, acc, rounding="ru").values
    assert np.all((lo <= r1) & (r1 <= hi))


# ------------------------------------------------------------------------------------
# APyTypes fixed-point accumulator context (wrap only; see module docstring)

def _from_bits(bits, nbits, frac):
    v = np.asarray(bits, dtype=np.int64)
    v = np.where(v >= 1 << (nbits - 1), v - (1 << nbits), v)
    return v / 2.0**frac


_APY_FX = {"rd": "TRN", "rne": "RND_CONV", "rz": "TRN_ZERO", "rna": "RND_INF", "ru": "TRN_INF"}


@pytest.mark.parametrize("mode", list(_APY_FX))
@pytest.mark.parametrize("int_bits,frac_bits", [(6, 4), (12, 4), (10, 0)])
def test_apytypes_fixed_wrap(int_bits, frac_bits, mode):
    import apytypes  # test extra: must be installed, never skipped
    rng = np.random.default_rng(97 + int_bits)
    if frac_bits:
        a = rng.integers(-128, 128, (8, 48)) / 16.0
        b = rng.integers(-128, 128, (48, 8)) / 32.0
        A = apytypes.APyFixedArray.from_float(a, int_bits=4, frac_bits=4)
        B = apytypes.APyFixedArray.from_float(b, int_bits=3, frac_bits=5)
    else:
        a = rng.integers(-128, 128, (8, 48)).astype(float)
        b = rng.integers(-128, 128, (48, 8)).astype(float)
        A = apytypes.APyFixedArray.from_float(a, int_bits=8, frac_bits=0)
        B = apytypes.APyFixedArray.from_float(b, int_bits=8, frac_bits=0)
    q = getattr(apytypes.QuantizationMode, _APY_FX[mode])
    with apytypes.APyFixedAccumulatorContext(int_bits=int_bits, frac_bits=frac_bits,
                                             overflow=apytypes.OverflowMode.WRAP,
                                             quantization=q):
        C = A @ B
    nb = int_bits + frac_bits
    apy = _from_bits(C.to_bits(), nb, frac_bits)
    acc = FixedFormat(nb, frac_bits) if frac_bits else IntFormat(nb)
    got = matmul(a, b, acc, rounding=mode).values
    naive.assert_values(got, apy, a, b, f"apytypes fixed {acc} {mode}", signed_zero=False)


def test_zero_operands_skipped_exactly():
    """Integer steps with a[i, k] == 0 leave the register alone: same values and events
    as Python integers, with saturation before and after the zeros."""
    rng = np.random.default_rng(11)
    a = rng.integers(-128, 128, (5, 300)).astype(np.float64)
    a[:, 100:200] = 0
    a[2, :] = 0
    b = rng.integers(-128, 128, (300, 4)).astype(np.float64)
    for ovf in ("saturate", "wrap"):
        fmt = IntFormat(12, overflow=ovf)
        got = matmul(a, b, fmt)
        lo, hi = -(1 << 11), (1 << 11) - 1
        ovf_rows = [0] * 5
        for i in range(5):
            for j in range(4):
                s = 0
                for k in range(300):
                    t = s + int(a[i, k]) * int(b[k, j])
                    if t < lo or t > hi:
                        ovf_rows[i] += 1
                        t = (max(lo, min(hi, t)) if ovf == "saturate"
                             else ((t - lo) % (1 << 12)) + lo)
                    s = t
                assert got.values[i, j] == s
        assert got.events.overflows.tolist() == ovf_rows
        assert ovf_rows[2] == 0 and sum(ovf_rows) > 0


def test_wrap_fast_path_values_and_int_values():
    """The BLAS-then-reduce wrap path (signed registers, no bias and with bias) against
    Python integers: values, int_values and events, for narrow and wide registers."""
    rng = np.random.default_rng(21)
    a = rng.integers(-128, 128, (7, 90)).astype(np.float64)
    b = rng.integers(-128, 128, (90, 5)).astype(np.float64)
    bias = rng.integers(-50, 50, (1, 5)).astype(np.float64)
    for bits in (8, 12, 16, 24, 40, 52, 53, 62):
        fmt = IntFormat(bits, overflow="wrap")
        for bb in (None, bias):
            got = matmul(a, b, fmt, bias=bb)
            h = 1 << (bits - 1)
            exp = np.zeros((7, 5), dtype=object)
            ovf = [0] * 7
            for i in range(7):
                for j in range(5):
                    s = 0 if bb is None else int(bb[0, j])
                    for k in range(90):
                        t = s + int(a[i, k]) * int(b[k, j])
                        if not -h <= t < h:
                            ovf[i] += 1
                            t = ((t + h) % (1 << bits)) - h
                        s = t
                    exp[i, j] = s
            assert got.int_values.dtype == np.int64
            assert got.int_values.tolist() == exp.tolist(), bits
            assert got.values.tolist() == [[float(v) for v in r] for r in exp.tolist()], bits
            assert got.events.overflows.tolist() == ovf, bits


# ------------------------------------------------------------------------------------
# narrow lanes: registers and products that fit int16 run in int16 lanes, others in int64
# (accsim.numerics.kernels._integer); checked here at the lanes' edges against Python ints

def _register_oracle(a, b, bits, signed, saturate, init):
    """Python-int register per output: (values, overflow counts), both (m, n) lists."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    m, k = a.shape
    n = b.shape[1]
    vals = [[0] * n for _ in range(m)]
    novs = [[0] * n for _ in range(m)]
    for i in range(m):
        for j in range(n):
            s, c = int(init[i][j]), 0
            for kk in range(k):
                t = s + int(a[i, kk]) * int(b[kk, j])
                if t < lo or t > hi:
                    c += 1
                    t = max(lo, min(hi, t)) if saturate else ((t - lo) % (1 << bits)) + lo
                s = t
            vals[i][j], novs[i][j] = s, c
    return vals, novs


def _matmul_vs_register_oracle(a, b, fmt, bias, label):
    """matmul(a, b, fmt, bias=bias): int_values, values and per-row overflow and
    saturation counts against :func:`_register_oracle`; returns its overflow counts."""
    m, n = a.shape[0], b.shape[1]
    init = np.broadcast_to(0.0 if bias is None else bias, (m, n)).tolist()
    sat = fmt.overflow == "saturate"
    vals, novs = _register_oracle(a, b, fmt.bits, fmt.signed, sat, init)
    got = matmul(a, b, fmt, bias=bias)
    label = f"{label} bias {bias is not None}"
    assert got.int_values.tolist() == vals, label
    assert got.values.tolist() == [[float(v) for v in r] for r in vals], label
    assert got.events.overflows.tolist() == [sum(r) for r in novs], label
    assert got.events.saturations.tolist() == [sum(r) if sat else 0 for r in novs], label
    return novs


def _edge_operands(rng, amax, k=37):
    """int operands in [-amax, amax] with all-extreme rows / columns (long runs of
    same-sign products) and zeros (skipped steps); k not a multiple of 4. Every output's
    partial sums may leave a 16-bit register (none stays on the exact BLAS path)."""
    a = rng.integers(-amax, amax + 1, (5, k)).astype(np.float64)
    b = rng.integers(-amax, amax + 1, (k, 4)).astype(np.float64)
    a[0, :], a[1, :], b[:, 0] = amax, -amax, amax
    a[2, 5:20] = 0
    a[3, :] = 0
    a[3, 9:] = amax
    return a, b


# (bits, signed): int16 lanes up to 16 signed / 15 unsigned bits, then int64 (and the
# int32 range's edges: 31 / 32 bits, products around 2^31)
LANE_REGISTERS = [(8, True), (15, True), (16, True), (17, True), (31, True), (32, True),
                  (15, False), (16, False), (31, False)]
# operand maxima around the lanes' product limits: 181^2 < 2^15 <= 182^2, 46340^2 < 2^31
LANE_AMAX = [181, 182, 46340, 46341]


@pytest.mark.parametrize("amax", LANE_AMAX)
@pytest.mark.parametrize("bits,signed", LANE_REGISTERS)
@pytest.mark.parametrize("ovf", ["saturate", "wrap"])
def test_lane_edges_vs_python_ints(bits, signed, ovf, amax):
    """Values, int_values and per-row overflow / saturation counts of every register at
    the int16 lanes' edges and around int32, with biases at the register's limits."""
    fmt = IntFormat(bits, signed=signed, overflow=ovf)
    rng = np.random.default_rng(bits * 1000 + amax)
    a, b = _edge_operands(rng, amax)
    lo, hi = fmt.min_int, fmt.max_int
    bias = np.array([[lo, hi, 0, lo + 1]], dtype=np.float64)
    for bb in (None, bias):
        _matmul_vs_register_oracle(a, b, fmt, bb, f"{fmt} amax {amax}")


@pytest.mark.parametrize("bits,signed", [(16, True), (12, True), (24, True), (15, False)])
@pytest.mark.parametrize("ovf", ["saturate", "wrap"])
def test_lane_rows_kernel_scattered_columns(bits, signed, ovf):
    """kernels.int_rows_exact (and int_rows_lanes16 for the saturating int16 register)
    on a selection whose rows take scattered columns (gathered from B) and contiguous
    ones, per output against Python ints, in int16 operands."""
    fmt = IntFormat(bits, signed=signed, overflow=ovf)
    rng = np.random.default_rng(bits + 7)
    a, b = _edge_operands(rng, 100, k=41)
    b = np.concatenate([b, -b, b[:, ::-1]], axis=1)     # 12 columns
    rows = np.array([0, 1, 2, 3, 4], dtype=np.int64)
    picks = [[0, 3, 5, 11], [2, 3, 4], [1, 7, 8, 9, 10], [6], [0, 1, 2, 3, 4, 5, 6, 7, 8]]
    ptr = np.cumsum([0] + [len(p) for p in picks]).astype(np.int64)
    cols = np.array([c for p in picks for c in p], dtype=np.int64)
    init = rng.integers(fmt.min_int, fmt.max_int + 1, cols.shape[0]).astype(np.int64)
    full_init = np.zeros((5, 12), dtype=np.int64)
    full_init[np.repeat(rows, np.diff(ptr)), cols] = init
    vals, novs = _register_oracle(a, b, bits, signed, ovf == "saturate", full_init.tolist())
    nnz = cols.shape[0]
    acc = kernel_params(Datapath.of(fmt)).acc
    a16, b16 = a.astype(np.int16), b.astype(np.int16)
    kerns = [lambda *res: kernels.int_rows_exact(a16, b16, rows, ptr, cols, init, acc, *res)]
    if kernels.int16_lanes(acc, 100 * 100, init):       # the int16 register: its lanes too
        kerns.append(lambda *res: kernels.int_rows_lanes16(a16, b16, rows, ptr, cols, init,
                                                           *res))
    assert len(kerns) == (2 if (bits, signed, ovf) == (16, True, "saturate") else 1)
    for kern in kerns:
        out = np.empty(nnz, dtype=np.int64)
        oflags = np.zeros(nnz, dtype=np.uint8)
        c_ov, c_sat = np.zeros(nnz, dtype=np.int64), np.zeros(nnz, dtype=np.int64)
        kern(out, oflags, c_ov, c_sat)
        e = 0
        for i, p in enumerate(picks):
            for j in p:
                assert (out[e], c_ov[e]) == (vals[i][j], novs[i][j]), (fmt, i, j)
                assert c_sat[e] == (novs[i][j] if ovf == "saturate" else 0)
                e += 1


def test_lane_counts_beyond_int16():
    """More than 2^15 overflows in one int16-lane register: the lanes' counts move to
    int64 totals before they could wrap."""
    k = 33000
    a = np.full((1, k), 100.0)
    b = np.full((k, 2), 100.0)
    b[:, 1] = -100.0
    for ovf in ("saturate", "wrap"):
        fmt = IntFormat(16, overflow=ovf)
        vals, novs = _register_oracle(a, b, 16, True, ovf == "saturate", [[0, 0]])
        got = matmul(a, b, fmt)
        assert got.int_values.tolist() == vals
        assert got.events.overflows.tolist() == [sum(novs[0])]
        assert sum(novs[0]) > 2 * 32767 if ovf == "saturate" else sum(novs[0]) > 400


@pytest.mark.parametrize("ovf", ["saturate", "wrap"])
@pytest.mark.parametrize("big_rows", [2, 6])
@pytest.mark.parametrize("mag", [1 << 7, 1 << 13])
def test_blas_path_float32_float64_and_risky_share(ovf, big_rows, mag):
    """Signed registers over all outputs, against Python ints: products whose partial
    sums stay below 2^24 (float32 BLAS) or not (float64), with few or most outputs able
    to leave the register (saturation: BLAS plus kernels on those, or kernels on all)."""
    rng = np.random.default_rng(mag + big_rows)
    k = 64
    a = rng.integers(-3, 4, (8, k)).astype(np.float64)        # rows that stay in range
    a[:big_rows] = rng.integers(-mag, mag, (big_rows, k))
    b = rng.integers(-mag, mag, (k, 5)).astype(np.float64)
    bias = rng.integers(-1000, 1000, (1, 5)).astype(np.float64)
    bits = 16 if mag < 1 << 10 else 28
    fmt = IntFormat(bits, overflow=ovf)
    for bb in (None, bias):
        novs = _matmul_vs_register_oracle(a, b, fmt, bb, f"{fmt} mag {mag} rows {big_rows}")
        assert sum(map(sum, novs[:big_rows])) > 0 and sum(map(sum, novs[big_rows:])) == 0


@pytest.mark.parametrize("ovf", ["saturate", "wrap"])
def test_blas_path_huge_operand_times_zeros(ovf):
    """Integer entries far beyond float32 (2^40, 2^100) times an all-zero B: every
    product is an exact 0 (float32 copies would hold inf, and inf * 0 is NaN)."""
    a = np.array([[2.0**40, -3.0], [2.0**100, 1.0]])
    b = np.zeros((2, 3))
    bias = np.array([[5.0, -7.0, 0.0]])
    for bb in (None, bias):
        got = matmul(a, b, IntFormat(16, overflow=ovf), bias=bb)
        exp = np.broadcast_to(0.0 if bb is None else bias, (2, 3))
        assert got.values.tolist() == exp.tolist()
        assert got.events.total == {"overflows": 0, "saturations": 0, "inexact": 0}
