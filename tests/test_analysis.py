"""accsim.precision.analysis: condition numbers and the componentwise error bounds.

Oracle for the bounds: the engine's bit-exact result against the float64 product of the
same operands (its own error is accounted for by ``check_bound``'s slack). The bound must
never be exceeded: on every bundled trace and on deliberately ill-conditioned layers.
"""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accsim.precision import analysis as an
from accsim import load_accelerator, quantize
from accsim.numerics.engine import matmul
from accsim.network.simulation import resolve_accelerator, simulate

BUNDLED = ("digits-mlp-relu", "mnist-mlp-relu", "mnist-mlp-tanh", "mnist-cnn")


# ---------------------------------------------------------------------------------------
# condition numbers
# ---------------------------------------------------------------------------------------
def test_kappa_inner_conventions():
    A = np.array([[1.0, -1.0], [0.0, 0.0], [1.0, 1.0]])
    B = np.array([[1.0], [1.0]])
    k = an.kappa_inner(A, B)
    assert k[0, 0] == math.inf          # exact cancellation: z == 0, S > 0
    assert k[1, 0] == 1.0               # S == 0
    assert k[2, 0] == 1.0
    k = an.kappa_inner(A, B, np.array([0.5]))
    assert k[0, 0] == pytest.approx(2.5 / 0.5)


def test_kappa_phi_values():
    t = np.array([-3.0, -1e-12, 0.0, 0.5, 4.0])
    assert np.all(an.kappa_phi("identity", t) == 1)
    assert np.all(an.kappa_phi("relu", t) == 1)
    assert list(an.kappa_phi("relu", t, relu_negative="zero")) == [0, 0, 1, 1, 1]
    kt = an.kappa_phi("tanh", t)
    assert kt[2] == 1.0
    assert kt[3] == pytest.approx(1.0 / math.sinh(1.0))
    assert np.all(kt <= 1)
    ks = an.kappa_phi("sigmoid", t)
    assert ks[4] == pytest.approx(4 / (1 + math.exp(4)))
    # gelu against a finite difference of t*Phi(t)
    def cdf(v):
        return 0.5 * math.erfc(-v / math.sqrt(2))
    for x in (-2.0, -0.3, 0.7, 3.0):
        h = 1e-6
        d = ((x + h) * cdf(x + h) - (x - h) * cdf(x - h)) / (2 * h)
        assert an.kappa_phi("gelu", np.array([x]))[0] == pytest.approx(
            abs(x * d / (x * cdf(x))), rel=1e-5)
    # very negative inputs stay finite (asymptotic Mills ratio)
    assert np.all(np.isfinite(an.kappa_phi("gelu", np.array([-40.0, -200.0]))))
    assert np.all(np.isfinite(an.kappa_phi("tanh", np.array([1e4, -1e4]))))
    z = np.array([[1.0, 2.0, -3.0]])
    ksm = an.kappa_phi("softmax", z)
    assert ksm.shape == z.shape and np.all(ksm >= 0)
    with pytest.raises(ValueError):
        an.kappa_phi("swish", t)


def test_n_eff_and_gamma():
    assert an.n_eff(100, "sequential") == 101
    assert an.n_eff(300, "chunked", chunk_size=128) == (128, 4)
    assert an.n_eff(1024, "tree") == 12
    assert an.n_eff(10, "fused", terms=4) == 4
    assert an.gamma(10, 1e-3) == pytest.approx(0.01 / 0.99)
    assert an.gamma(2000, 1e-3) == math.inf


# ---------------------------------------------------------------------------------------
# bounds on ill-conditioned layers
# ---------------------------------------------------------------------------------------
def _accelerators():
    out = []
    for name in ("fp16-fp16acc", "fp16-fp32acc", "bf16-fp32acc", "fp8-e4m3-fp16acc",
                 "fp8-hopper", "tensorcore-4term", "int8-int16acc-sat",
                 "int8-int16acc-wrap", "int8-int32acc"):
        acc = load_accelerator(name)
        out.append(acc)
        if hasattr(acc.narrow, "man_bits"):
            out.append(dataclasses.replace(acc, narrow_rounding="rz"))
            if acc.structure == "sequential":
                out.append(dataclasses.replace(acc, structure="tree"))
                out.append(dataclasses.replace(acc, narrow_rounding="ru",
                                               structure="chunked", chunk_size=7))
    fp16 = resolve_accelerator("fp16-fp32acc", "fp8_e5m2", None)     # tiny accumulator
    out.append(fp16)
    out.append(dataclasses.replace(fp16, narrow_rounding="rd"))
    return out


ACCS = _accelerators()


def _check(acc, A, B, b):
    dp = acc.datapath("narrow")
    res = matmul(A, B, dp, bias=None if b is None else b[None, :])
    bnd = an.error_bound(A, B, b, dp, flags=res.events.flags)
    obs, viol = an.check_bound(res.values, A, B, b, bnd)
    return int(viol.sum()), obs, bnd


@pytest.mark.parametrize("acc", ACCS, ids=lambda a: f"{a.name}-{a.narrow_rounding}-{a.structure}")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 400),
       cancel=st.sampled_from(["none", "bias", "pairs"]), scale=st.integers(-6, 6))
def test_bound_holds_on_ill_conditioned_layers(acc, seed, K, cancel, scale):
    rng = np.random.default_rng(seed)
    m, n = 6, 5
    if not hasattr(acc.narrow, "man_bits"):
        A = rng.integers(-127, 128, (m, K)).astype(float)
        B = rng.integers(-127, 128, (K, n)).astype(float)
        if cancel == "pairs" and K > 1:
            h = K // 2
            A[:, h: 2 * h] = A[:, :h]
            B[h: 2 * h] = -B[:h]
        b = rng.integers(-2000, 2000, n).astype(float)
    else:
        A = np.asarray(quantize(rng.standard_normal((m, K)) * 2.0 ** scale, acc.input, "rne"),
                       dtype=float)
        B = np.asarray(quantize(rng.standard_normal((K, n)), acc.weight, "rne"), dtype=float)
        if cancel == "pairs" and K > 1:
            h = K // 2
            A[:, h: 2 * h] = A[:, :h]
            B[h: 2 * h] = -B[:h]                     # every row sums to exactly 0 (+ odd term)
        b = rng.standard_normal(n) * 2.0 ** scale
        if cancel == "bias":
            b = -(A @ B)[0] + rng.standard_normal(n) * 1e-6 * 2.0 ** scale
    nv, _, _ = _check(acc, A, B, b)
    assert nv == 0


@pytest.mark.parametrize("acc", ACCS[:6], ids=lambda a: f"{a.name}-{a.narrow_rounding}-{a.structure}")
def test_bound_underflow_and_no_bias(acc):
    rng = np.random.default_rng(1)
    tiny = acc.input.min_positive if hasattr(acc.input, "min_positive") else 1.0
    A = np.asarray(quantize(rng.standard_normal((4, 50)) * tiny * 64, acc.input, "rne"), float)
    B = np.asarray(quantize(rng.standard_normal((50, 3)) * 2.0 ** -10, acc.weight, "rne"),
                   float)
    nv, _, _ = _check(acc, A, B, None)
    assert nv == 0


def test_overflow_gets_infinite_bound():
    acc = load_accelerator("int8-int16acc-sat")
    A = np.full((2, 64), 127.0)
    B = np.full((64, 2), 127.0)
    nv, _, bnd = _check(acc, A, B, None)
    assert nv == 0 and np.all(np.isinf(bnd))


def test_bound_is_not_vacuous():
    """fp16 accumulation of positive terms: observed error within 1000x of the bound."""
    acc = load_accelerator("fp16-fp16acc")
    rng = np.random.default_rng(2)
    A = np.asarray(quantize(rng.random((20, 200)), acc.input, "rne"), float)
    B = np.asarray(quantize(rng.random((200, 10)), acc.weight, "rne"), float)
    nv, obs, bnd = _check(acc, A, B, None)
    assert nv == 0
    assert np.max(obs / bnd) > 1e-3
    p = an.probabilistic_bound(A, B, None, acc.datapath("narrow"))
    assert np.all(p < bnd)


def test_spearman():
    assert an.spearman([1, 2, 3], [10, 20, 35]) == pytest.approx(1.0)
    assert an.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert an.spearman([1], [1]) is None


# ---------------------------------------------------------------------------------------
# bundled traces: zero violations
# ---------------------------------------------------------------------------------------
TRACE_ACCS = [("fp16-fp16acc", None, None), ("fp8-hopper", None, None),
              ("tensorcore-4term", None, None), ("int8-int16acc-wrap", None, None),
              ("fp16-fp32acc", "bf16", "rz"), ("fp16-fp32acc", "fp8_e5m2", None)]


@pytest.mark.parametrize("trace", BUNDLED)
@pytest.mark.parametrize("accspec", TRACE_ACCS, ids=lambda s: "-".join(str(x) for x in s))
def test_zero_bound_violations_on_bundled_traces(trace, accspec):
    name, narrow, rnd = accspec
    acc = resolve_accelerator(name, narrow, None)
    if rnd:
        acc = dataclasses.replace(acc, narrow_rounding=rnd)
    r = simulate(trace, acc, limit=200)
    for lr in r.layers:
        assert lr.bound_violations == 0, (lr.name, lr.bound_violations)
        d = lr.to_dict()
        assert d["bound_violations"] == 0 and "bound_spearman" in d
    assert r.bound_violations == 0


def test_zero_bound_violations_with_reissue():
    """Re-issued components are checked against the wide accumulator's bound."""
    acc = resolve_accelerator("fp16-fp32acc", "fp8_e5m2", None)
    r = simulate("digits-mlp-relu", acc, limit=200, policy="random", fraction=0.5, seed=3)
    assert r.bound_violations == 0
    assert 0.4 < r.recomputed_fraction < 0.6
