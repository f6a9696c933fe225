"""The ``multi-level`` scheduler policy: a ladder of accumulator formats.

Oracles: the uniform policies and ``condition`` (bit-for-bit limits), the engine re-run by
hand on every rung, and the rung rule ``u_r · κ_i · κ_φ ≤ τ`` computed here in float64
from the narrow outputs (not by the scheduler).
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from accsim import FloatFormat
from accsim.cli import main
from accsim.hardware.cost import (
    add_cost,
    load_technology,
    mac_cost,
    mul_cost,
    price_run,
    price_simulation,
    register_cost,
)
from accsim.numerics.engine import matmul
from accsim.network import reissue
from accsim.network.simulation import resolve_accelerator, simulate
from accsim.precision.scheduler import default_ladder, resolve_ladder
from accsim.network.trace import sequential

TRACE = "mnist-mlp-tanh"
LIMIT = 120
TECH = "horowitz-45nm"
LADDER = ["bf16", "fp16", "fp32", "fp64"]


@pytest.fixture(scope="module")
def acc():
    """bf16 round-toward-zero narrow accumulator (it costs agreement), fp64 wide."""
    return dataclasses.replace(resolve_accelerator("fp16-fp32acc", "bf16", None),
                               narrow_rounding="rz")


@pytest.fixture(scope="module")
def uniform(acc):
    return {pol: simulate(TRACE, acc, limit=LIMIT, policy=pol, analyze=False)
            for pol in ("uniform-narrow", "uniform-wide")}


def _fractions(res):
    return [lv["fraction"] for lv in res.levels]


def test_tau_zero_is_uniform_wide(acc, uniform):
    r = simulate(TRACE, acc, limit=LIMIT, policy="multi-level", tau=0.0, ladder=LADDER,
                 analyze=False)
    assert _fractions(r) == [0.0, 0.0, 0.0, 1.0]
    assert r.recomputed_fraction == 1.0
    assert np.array_equal(r.outputs, uniform["uniform-wide"].outputs)


def test_tau_inf_is_uniform_narrow(acc, uniform):
    r = simulate(TRACE, acc, limit=LIMIT, policy="multi-level", tau=math.inf, ladder=LADDER,
                 analyze=False)
    assert _fractions(r) == [1.0, 0.0, 0.0, 0.0]
    assert r.recomputed_fraction == 0.0
    assert np.array_equal(r.outputs, uniform["uniform-narrow"].outputs)


def test_two_rungs_is_condition(acc):
    for tau in (0.05, 0.3):
        c = simulate(TRACE, acc, limit=LIMIT, policy="condition", tau=tau, analyze=False)
        m = simulate(TRACE, acc, limit=LIMIT, policy="multi-level", tau=tau,
                     ladder=["bf16", "fp64"], analyze=False)
        assert 0 < c.recomputed_fraction < 1
        assert [lr.recomputed for lr in m.layers] == [lr.recomputed for lr in c.layers]
        assert np.array_equal(m.outputs, c.outputs)


def test_fractions_sum_to_one_and_bounds_hold(acc):
    r = simulate(TRACE, acc, limit=60, policy="multi-level", tau=0.02, ladder=LADDER)
    assert r.bound_violations == 0
    assert sum(_fractions(r)) == pytest.approx(1.0)
    assert r.recomputed_fraction == pytest.approx(1 - r.levels[0]["fraction"])
    assert sum(1 for f in _fractions(r) if f > 0) >= 3      # the ladder is really used
    for lr in r.layers:
        d = lr.to_dict()
        assert sum(lv["fraction"] for lv in d["levels"]) == pytest.approx(1.0)
        assert sum(lv["count"] for lv in d["levels"]) == lr.outputs
        assert lr.recomputed == lr.outputs - lr.level_counts[0]
    d = r.to_dict()
    assert [lv["format"] for lv in d["levels"]] == ["bf16:rz", "fp16:rne", "fp32:rne",
                                                     "fp64:rne"]
    assert d["narrow"] == "bf16" and d["wide"] == "fp64"


def _layer_data():
    """One linear layer + tanh; fp16 operands; a few rows with heavy cancellation."""
    rng = np.random.default_rng(3)
    m, K, n = 40, 48, 8
    X = rng.standard_normal((m, K)).astype(np.float16).astype(np.float64)
    W = rng.standard_normal((n, K)).astype(np.float16).astype(np.float64)
    b = (rng.standard_normal(n) * 0.1).astype(np.float16).astype(np.float64)
    X[:4, K // 2:] = -X[:4, :K // 2] * W[0, :K // 2] / np.where(W[0, K // 2:] == 0, 1,
                                                                  W[0, K // 2:])
    X = X.astype(np.float16).astype(np.float64)
    return X, W, b


def test_rung_rule_against_float64(acc):
    """Rung of every component and its value, recomputed here from the engine's narrow
    output and float64 κ_i κ_φ; the values of each rung from the engine by hand."""
    X, W, b = _layer_data()
    t = sequential("one-layer", X, None, [("linear", W, b), ("tanh",)])
    ladder = ["bf16:rz", "fp16", "fp32"]
    tau = 2.0 ** -8
    r = simulate(t, acc, policy="multi-level", tau=tau, ladder=ladder, analyze=False)
    B = W.T
    zhat = matmul(X, B, "bf16", rounding="rz", bias=b[None, :]).values
    S = np.abs(X) @ np.abs(B) + np.abs(b)
    kap = S / np.abs(zhat)
    with np.errstate(over="ignore"):
        kphi = np.where(zhat == 0, 1.0, 2 * np.abs(zhat) / np.abs(np.sinh(2 * zhat)))
    s = kap * kphi
    u = [2.0 ** -7, 2.0 ** -11, 2.0 ** -24]      # bf16 rz (directed), fp16 rne, fp32 rne
    want = np.where(u[0] * s <= tau, 0, np.where(u[1] * s <= tau, 1, 2))
    counts = [int((want == k).sum()) for k in range(3)]
    assert min(counts) > 0, counts                # every rung used: the check can fail
    assert r.layers[0].level_counts == counts
    z = [zhat, matmul(X, B, "fp16", bias=b[None, :]).values,
         matmul(X, B, "fp32", bias=b[None, :]).values]
    expect = np.tanh(np.choose(want, z))
    assert np.array_equal(r.outputs, expect)


def test_default_ladder_and_validation():
    f = default_ladder(FloatFormat(8, 7), FloatFormat(8, 23))
    assert [(x.exp_bits, x.man_bits) for x in f] == [(8, 7), (8, 15), (8, 23)]
    rungs = resolve_ladder("bf16:rz,e6m12,fp32", "rne", "rne")
    assert [(x.man_bits, rnd) for x, rnd in rungs] == [(7, "rz"), (12, "rne"), (23, "rne")]
    for bad, msg in (("bf16", "at least 2"), ("bf16,nope,fp32", "nope"),
                     ("fp32,fp16,bf16", "strictly increasing"), ("fp16,fp16", "strictly"),
                     ("bf16,int32", "mixes"), ("bf16:xx,fp32", "rounding")):
        with pytest.raises(ValueError, match=f"^ladder: .*{msg}"):
            resolve_ladder(bad)
    with pytest.raises(ValueError, match="^ladder: only"):
        simulate("digits-mlp-relu", limit=5, policy="condition", tau=1, ladder=LADDER)
    with pytest.raises(ValueError, match="^fraction"):
        simulate("digits-mlp-relu", limit=5, policy="multi-level", fraction=0.1)
    with pytest.raises(ValueError, match="^tau"):
        simulate("digits-mlp-relu", limit=5, policy="multi-level")


def test_default_ladder_run(acc):
    r = simulate("digits-mlp-relu", acc, limit=30, policy="multi-level", tau=0.05)
    assert [lv["format"] for lv in r.levels] == ["bf16:rz", "e8m29:rne", "fp64:rne"]
    assert r.bound_violations == 0


def test_integer_ladder():
    """Integer registers: the cheapest one whose overflow bound fits; no overflow, so the
    values equal the all-wide run's (integer adds are exact)."""
    acc = resolve_accelerator("int8-int16acc-wrap", None, None)
    ladder = ["int16", "int18", "int20", "int24", "int32"]
    rw = simulate("mnist-mlp-relu", acc, limit=40, policy="uniform-wide", analyze=False)
    r0 = simulate("mnist-mlp-relu", acc, limit=40, policy="multi-level", tau=0.0,
                  ladder=ladder, analyze=False)
    assert np.array_equal(r0.outputs, rw.outputs)
    assert r0.levels[-1]["fraction"] == 1.0
    r = simulate("mnist-mlp-relu", acc, limit=40, policy="multi-level", tau=1.0,
                 ladder=ladder)
    assert r.bound_violations == 0      # (the rung-0 pass itself overflows: events)
    assert np.array_equal(r.outputs, rw.outputs)
    assert sum(1 for lv in r.levels if lv["fraction"] > 0) >= 2
    assert [lv["format"] for lv in r.levels] == ladder


def test_energy_per_rung_and_monotone(acc):
    r = simulate(TRACE, acc, limit=60, policy="multi-level", tau=0.02, ladder=LADDER,
                 analyze=False)
    r0 = simulate(TRACE, acc, limit=60, policy="multi-level", tau=0.0, ladder=LADDER,
                  analyze=False)
    uw = simulate(TRACE, acc, limit=60, policy="uniform-wide", analyze=False)
    pr = price_simulation(acc, TECH, r)
    p0 = price_simulation(acc, TECH, r0)
    pw = price_simulation(acc, TECH, uw)
    assert pr["estimator"] == "exact"
    assert 0 < r.recomputed_fraction < 1
    # cheaper rungs for some outputs: below the same scheme with everything on the top
    assert pr["energy_pj"] < p0["energy_pj"]
    # uniform-wide is the all-wide baseline itself
    assert pw["energy_pj"] == pytest.approx(pw["baseline_energy_pj"])
    assert pr["baseline_energy_pj"] == pytest.approx(pw["baseline_energy_pj"])
    # by hand: every output on the narrow datapath, rung r's outputs again at rung r's MAC
    tech = load_technology(TECH)
    wide = {f: (mul_cost(tech, acc.input, acc.weight) + add_cost(tech, FloatFormat(*eb))
                + register_cost(tech, 1 + eb[0] + eb[1])).energy_pj
            for f, eb in (("fp16", (5, 10)), ("fp32", (8, 23)), ("fp64", (11, 52)))}
    assert wide["fp64"] == pytest.approx(mac_cost(acc, TECH, "wide").energy_pj)
    narrow = mac_cost(acc, TECH, "narrow").energy_pj
    macs = sum(lr.outputs * lr.K for lr in r.layers)
    rung = sum(lr.level_counts[q] * lr.K * wide[f] for lr in r.layers
               for q, f in ((1, "fp16"), (2, "fp32"), (3, "fp64")))
    assert pr["breakdown"]["narrow_macs_pj"] == pytest.approx(macs * narrow)
    assert pr["breakdown"]["wide_macs_pj"] == pytest.approx(rung)
    # a ladder's intermediate rungs are cheaper than the top
    assert wide["fp16"] < wide["fp32"] < wide["fp64"]


def test_price_run_levels_checked(acc):
    lay = [{"name": "l", "m": 2, "n": 3, "k": 4, "levels": [3, 2, 1]}]
    p = price_run(acc, TECH, lay, ladder=["bf16", "fp32", "fp64"])
    assert p["layers"][0]["levels"] == [3, 2, 1]
    assert p["recomputed_fraction"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="levels"):
        price_run(acc, TECH, [{"name": "l", "m": 2, "n": 3, "k": 4, "levels": [3, 2]}],
                  ladder=["bf16", "fp32", "fp64"])
    with pytest.raises(ValueError, match="levels"):
        price_run(acc, TECH, [{"name": "l", "m": 2, "n": 3, "k": 4, "levels": [3, 2, 2]}],
                  ladder=["bf16", "fp32", "fp64"])


def test_cli_multilevel_json(capsys):
    rc = main(["simulate", "digits-mlp-relu", "--narrow", "bf16", "--policy", "multi-level",
               "--ladder", "bf16,fp16,fp32", "--tau", "0.05", "--limit", "40",
               "--narrow-only", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert [lv["format"] for lv in d["levels"]] == ["bf16:rne", "fp16:rne", "fp32:rne"]
    assert sum(lv["fraction"] for lv in d["levels"]) == pytest.approx(1.0)
    assert d["recomputed_fraction"] == pytest.approx(1 - d["levels"][0]["fraction"])
    assert d["estimator"] == "exact" and d["wide"] == "fp32"
    assert len(d["rung_macs_pj"]) == 3
    for lay in d["layers"]:
        assert len(lay["levels"]) == 3 and lay["bound_violations"] == 0


@pytest.mark.parametrize("ladder,msg", [("bf16,nope,fp32", "nope"), ("bf16", "at least 2"),
                                        ("fp32,fp16,bf16", "strictly increasing")])
def test_cli_bad_ladder(capsys, ladder, msg):
    rc = main(["simulate", "digits-mlp-relu", "--policy", "multi-level", "--tau", "0.1",
               "--ladder", ladder, "--limit", "5", "--narrow-only"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "--ladder" in err and msg in err


def test_reissue_block_path_equals_selected_path(acc, monkeypatch):
    """Re-issue on a dense block (rows x cols around the selection) or through the
    engine's selected-output path: the same values, bit for bit."""
    out = {}
    for cost in (0.0, 1e9):
        monkeypatch.setattr(reissue, "SELECT_COST", cost)
        out[cost] = simulate("mnist-cnn", acc, limit=6, policy="multi-level", tau=0.05,
                             ladder=["bf16", "fp16", "fp32"])
        assert out[cost].bound_violations == 0
    assert 0 < out[0.0].recomputed_fraction < 1
    assert np.array_equal(out[0.0].outputs, out[1e9].outputs)
    assert [lr.level_counts for lr in out[0.0].layers] == \
        [lr.level_counts for lr in out[1e9].layers]
