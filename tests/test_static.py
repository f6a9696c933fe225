"""The ``static`` scheduler policy: per-neuron formats calibrated offline.

Oracles: uniform runs on the evaluation samples alone (bit-for-bit limits and whole
columns), and the per-neuron rule (quantile of ``u κ_i κ_φ`` over the calibration rows)
computed here in float64 from the engine's narrow outputs.
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from accsim.cli import main
from accsim.hardware.cost import price_simulation
from accsim.numerics.engine import matmul
from accsim.network.simulation import resolve_accelerator, resolve_trace, simulate
from accsim.network.trace import sequential

TRACE = "mnist-mlp-tanh"
LIMIT, CAL = 100, 40
TECH = "horowitz-45nm"


@pytest.fixture(scope="module")
def acc():
    return dataclasses.replace(resolve_accelerator("fp16-fp32acc", "bf16", None),
                               narrow_rounding="rz")


def _split(trace, n, cal):
    t = resolve_trace(trace)
    X = np.asarray(t.inputs)[:n]
    y = None if t.labels is None else np.asarray(t.labels)[:n]
    return dataclasses.replace(t, inputs=X[cal:], labels=None if y is None else y[cal:])


@pytest.fixture(scope="module")
def uniform(acc):
    ev = _split(TRACE, LIMIT, CAL)
    return {pol: simulate(ev, acc, policy=pol, analyze=False)
            for pol in ("uniform-narrow", "uniform-wide")}


def test_limits_bit_for_bit(acc, uniform):
    r0 = simulate(TRACE, acc, limit=LIMIT, policy="static", tau=0.0, calibration=CAL,
                  analyze=False)
    assert r0.n_samples == LIMIT - CAL and r0.calibration == CAL
    assert r0.recomputed_fraction == 1.0
    assert np.array_equal(r0.outputs, uniform["uniform-wide"].outputs)
    ri = simulate(TRACE, acc, limit=LIMIT, policy="static", tau=math.inf, calibration=CAL,
                  analyze=False)
    assert ri.recomputed_fraction == 0.0
    assert np.array_equal(ri.outputs, uniform["uniform-narrow"].outputs)
    assert ri.agreement != r0.agreement or ri.accuracy != r0.accuracy or \
        not np.array_equal(ri.outputs, r0.outputs)


def test_calibration_samples_not_counted(acc):
    r = simulate(TRACE, acc, limit=LIMIT, policy="static", tau=0.05, calibration=CAL)
    assert r.n_samples == LIMIT - CAL
    assert r.layers[0].rows == LIMIT - CAL          # linear: one row per sample
    assert all(lr.outputs == (LIMIT - CAL) * lr.cols for lr in r.layers)
    assert r.outputs.shape[0] == LIMIT - CAL
    assert r.bound_violations == 0
    d = r.to_dict()
    assert d["calibration"] == CAL and d["quantile"] == 0.99
    # whole neurons: recomputed = rows x (neurons above rung 0)
    for lr in r.layers:
        nl = np.asarray(lr.neuron_levels)
        assert len(nl) == lr.cols
        assert lr.recomputed == lr.rows * int((nl > 0).sum())
    # no estimator is charged; outputs above rung 0 skip the narrow pass
    p = price_simulation(acc, TECH, r)
    assert p["estimator"] == "none" and p["breakdown"]["estimator_pj"] == 0
    assert p["breakdown"]["refetch_pj"] == 0
    assert p["energy_pj"] <= p["baseline_energy_pj"]


def _layer():
    rng = np.random.default_rng(11)
    m, K, n = 60, 40, 12
    X = rng.standard_normal((m, K)).astype(np.float16).astype(np.float64)
    W = rng.standard_normal((n, K))
    W[:3] *= 0.02                         # a few neurons with small outputs (tanh ~ linear)
    W = W.astype(np.float16).astype(np.float64)
    b = (rng.standard_normal(n) * 0.5).astype(np.float16).astype(np.float64)
    return X, W, b


@pytest.mark.parametrize("ladder", [None, ["bf16:rz", "fp16", "fp32"]])
def test_neuron_rule_and_whole_columns(acc, ladder):
    """Per-neuron rung from float64 math on the calibration rows; every column of the
    evaluation output is entirely the narrow or entirely that rung's engine result."""
    X, W, b = _layer()
    cal, q, tau = 20, 0.9, 0.05
    t = sequential("one-layer", X, None, [("linear", W, b), ("tanh",)])
    r = simulate(t, acc, policy="static", tau=tau, calibration=cal, quantile=q,
                 ladder=ladder, analyze=False)
    B = W.T
    zc = matmul(X[:cal], B, "bf16", rounding="rz", bias=b[None, :]).values
    S = np.abs(X[:cal]) @ np.abs(B) + np.abs(b)
    with np.errstate(over="ignore"):
        kphi = np.where(zc == 0, 1.0, 2 * np.abs(zc) / np.abs(np.sinh(2 * zc)))
    score = np.sort(2.0 ** -7 * S / np.abs(zc) * kphi, axis=0)
    qs = score[math.ceil(q * (cal - 1))]             # numpy's "higher" quantile
    if ladder is None:
        want = np.where(qs <= tau, 0, 1)
        fmts = ["bf16", "fp64"]
        rnd = ["rz", "rne"]
    else:
        want = np.where(qs <= tau, 0, np.where(qs * 2.0 ** -4 <= tau, 1, 2))
        fmts, rnd = ["bf16", "fp16", "fp32"], ["rz", "rne", "rne"]
    assert 0 < (want > 0).sum() < len(want)          # both kinds of neurons: can fail
    assert r.layers[0].neuron_levels == [int(v) for v in want]
    Xe = X[cal:]
    z = [matmul(Xe, B, f, rounding=rr, bias=b[None, :]).values for f, rr in zip(fmts, rnd)]
    expect = np.tanh(np.stack([z[k][:, j] for j, k in enumerate(want)], axis=1))
    assert np.array_equal(r.outputs, expect)


def test_fraction_picks_top_neurons(acc):
    r = simulate(TRACE, acc, limit=60, policy="static", fraction=0.25, calibration=20,
                 analyze=False)
    for lr in r.layers:
        assert sum(1 for v in lr.neuron_levels if v > 0) == round(0.25 * lr.cols)


def test_errors(acc):
    with pytest.raises(ValueError, match="^calibration: 50 .* none of the 50"):
        simulate(TRACE, acc, limit=50, policy="static", tau=0.1, calibration=50)
    with pytest.raises(ValueError, match="^calibration: expected a positive integer"):
        simulate(TRACE, acc, limit=50, policy="static", tau=0.1, calibration=0)
    with pytest.raises(ValueError, match="^calibration: only"):
        simulate(TRACE, acc, limit=50, policy="condition", tau=0.1, calibration=10)
    with pytest.raises(ValueError, match="^fraction"):
        simulate(TRACE, acc, limit=50, policy="static", fraction=0.1, calibration=10,
                 ladder=["bf16", "fp16", "fp64"])
    with pytest.raises(ValueError, match="^quantile"):
        simulate(TRACE, acc, limit=50, policy="static", tau=0.1, calibration=10,
                 quantile=1.5)
    with pytest.raises(ValueError, match="^tau"):
        simulate(TRACE, acc, limit=50, policy="static")


def test_cli_static(capsys):
    rc = main(["simulate", "digits-mlp-relu", "--narrow", "bf16", "--policy", "static",
               "--tau", "0.05", "--calibration", "20", "--limit", "50", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_samples"] == 30 and d["calibration"] == 20
    assert d["estimator"] == "none" and d["wide_run"]["n_samples"] == 30
    assert sum(lv["fraction"] for lv in d["levels"]) == pytest.approx(1.0)
    for lay in d["layers"]:
        assert len(lay["neuron_levels"]) == lay["n"]
    rc = main(["simulate", "digits-mlp-relu", "--policy", "static", "--tau", "0.05",
               "--calibration", "50", "--limit", "50", "--narrow-only"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--calibration" in err
    rc = main(["simulate", "digits-mlp-relu", "--policy", "static", "--tau", "0.05",
               "--calibration", "x", "--narrow-only"])
    err = capsys.readouterr().err
    assert rc == 2 and "--calibration" in err
