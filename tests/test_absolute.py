"""The ``absolute`` policy, output-layer modes, integer overflow rule, stagnation note and
the policy-judging metrics (Wilson intervals, normwise and accumulation-only errors)."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from accsim.cli import main
from accsim.experiments.spec import load_spec
from accsim.network.graph import Graph, Node
from accsim.network.products import output_product
from accsim.network.reissue import bias_load_flags
from accsim.network.results import normwise_error, wilson_interval
from accsim.network.simulation import resolve_accelerator, simulate
from accsim.precision import absolute, scheduler

TRACE = "digits-mlp-relu"


def _score_by_hand(t, S, k, u, act):
    """``|φ'(t)| · u · (k/2 |t| + √k/2 S)`` with Python floats, one component."""
    if act == "relu":
        slope = 1.0 if t > 0 else 0.0
    elif act == "tanh":
        slope = 1.0 - math.tanh(t) ** 2
    else:
        slope = 1.0
    return slope * u * (k / 2 * abs(t) + math.sqrt(k) / 2 * S)


@pytest.mark.parametrize("act", ["identity", "relu", "tanh"])
def test_absolute_score_formula(act):
    rng = np.random.default_rng(1)
    t = rng.normal(size=(4, 5))
    S = np.abs(t) + rng.uniform(0, 3, size=(4, 5))
    k = np.array([[3.0], [10.0], [1.0], [64.0]])
    u = 2.0 ** -3
    got = absolute.absolute_score(t, S, k, u, act)
    for i in range(4):
        for j in range(5):
            want = _score_by_hand(t[i, j], S[i, j], k[i, 0], u, act)
            assert got[i, j] == pytest.approx(want, rel=1e-14, abs=1e-300)


def test_absolute_score_nonfinite_is_inf():
    t = np.array([[np.inf, np.nan, 1.0]])
    s = absolute.absolute_score(t, np.ones((1, 3)), np.array([[4.0]]), 0.125, "relu")
    assert s[0, 0] == np.inf and s[0, 1] == np.inf and s[0, 2] == pytest.approx(0.125 * 3)


def test_effective_terms_counts_nonzero_and_caps_chunks():
    A = np.array([[0.0, 1.0, 2.0, 0.0, 3.0, 4.0], [0.0] * 6])
    seq = SimpleNamespace(structure="sequential", chunk_size=None, terms=None)
    chk = SimpleNamespace(structure="chunked", chunk_size=2, terms=None)
    assert absolute.effective_terms(A, seq)[:, 0].tolist() == [4.0, 0.0]
    assert absolute.effective_terms(A, chk)[:, 0].tolist() == [2.0, 0.0]


def test_row_scores_margin():
    t = np.array([[1.0, 5.0, 4.0], [2.0, 2.0, 0.0], [3.0, -1.0, 0.5]])
    E = np.array([[9.0, 1.0, 0.5], [1.0, 1.0, 1.0], [0.25, 7.0, 0.25]])
    got = absolute.row_scores(t, E)
    assert got[0] == pytest.approx((1.0 + 0.5) / 1.0)
    assert got[1] == np.inf                   # zero margin
    assert got[2] == pytest.approx(0.5 / 2.5)


def test_normalized_score_zero_row():
    s = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    t = np.array([[-1.0, -2.0], [-1.0, -2.0], [1.0, 3.0]])
    got = absolute.normalized_score(s, t, "relu")
    assert got[0].tolist() == [0.0, 0.0]
    assert got[1, 0] == np.inf
    assert got[2].tolist() == [1.0, 1.0]      # mean relu(t) = 2


def test_output_product():
    """The output layer is the last product whose output reaches the graph output, not
    merely the last product (a residual tail) -- None when no product does."""
    def g(nodes, out):
        return Graph([Node(n, op, ins, [n]) for n, op, ins in nodes], "x", (1, 4), out)
    assert output_product(g([("fc1", "Gemm", ["x", "w"]), ("r", "Relu", ["fc1"]),
                             ("fc2", "Gemm", ["r", "w"]), ("sm", "Softmax", ["fc2"])],
                            "sm")) == 2
    assert output_product(g([("fc1", "Gemm", ["x", "w"]), ("fc2", "Gemm", ["fc1", "w"]),
                             ("fc3", "Gemm", ["fc1", "w"]), ("add", "Add", ["fc1", "fc2"])],
                            "add")) == 1
    assert output_product(g([("r", "Relu", ["x"])], "r")) is None


@pytest.fixture(scope="module")
def e5m2():
    return resolve_accelerator("fp16-fp16acc", "fp8_e5m2", "fp32")


def test_absolute_budget_and_output_wide(e5m2):
    r = simulate(TRACE, e5m2, limit=60, policy="absolute", fraction=0.2, analyze=False)
    *hidden, out = r.layers
    assert out.recomputed_fraction == 1.0
    for lr in hidden:
        assert lr.recomputed == round(0.2 * lr.outputs)
    assert r.output_layer == "wide"
    rc = simulate(TRACE, e5m2, limit=60, policy="absolute", fraction=0.2,
                  output_layer="components", analyze=False)
    assert rc.layers[-1].recomputed == round(0.2 * rc.layers[-1].outputs)


def test_absolute_ranks_by_score(e5m2):
    """Budget mode re-issues exactly the top-f by the independently computed score."""
    from accsim.numerics.engine import matmul
    rng = np.random.default_rng(3)
    A = rng.normal(size=(6, 40)).astype(np.float16).astype(np.float64)
    B = rng.normal(size=(40, 7)).astype(np.float16).astype(np.float64)
    dp = e5m2.datapath("narrow")
    z = matmul(A, B, dp).values
    mask = scheduler.select("absolute", zhat=z, A=A, B=B, b=None, datapath=dp,
                            act="relu", fraction=0.25)
    u = 2.0 ** -3
    S = np.abs(A) @ np.abs(B)
    score = np.array([[_score_by_hand(z[i, j], S[i, j], np.count_nonzero(A[i]), u, "relu")
                       for j in range(7)] for i in range(6)])
    k = round(0.25 * 42)
    assert mask.sum() == k
    assert score[mask].min() >= score[~mask].max()


def test_absolute_threshold(e5m2):
    r0 = simulate(TRACE, e5m2, limit=40, policy="absolute", tau=0, analyze=False)
    rinf = simulate(TRACE, e5m2, limit=40, policy="absolute", tau=math.inf,
                    output_layer="components", analyze=False)
    rmid = simulate(TRACE, e5m2, limit=40, policy="absolute", tau=0.5,
                    output_layer="components", analyze=False)
    assert r0.recomputed_fraction == 1.0
    assert rinf.recomputed_fraction == 0.0
    assert 0 < rmid.recomputed_fraction < 1


def test_rows_are_whole(e5m2):
    for pol in ("absolute", "random"):
        r = simulate(TRACE, e5m2, limit=50, policy=pol, fraction=0.3, output_layer="rows",
                     analyze=False)
        out = r.layers[-1]
        assert out.recomputed == round(0.3 * 50) * out.cols


def test_schedule_option_errors():
    with pytest.raises(ValueError, match="tau: the 'absolute' policy needs"):
        simulate(TRACE, limit=5, policy="absolute")
    with pytest.raises(ValueError, match="output_layer"):
        simulate(TRACE, limit=5, policy="uniform-narrow", output_layer="wide")
    with pytest.raises(ValueError, match="output_layer: 'rows'"):
        simulate(TRACE, limit=5, policy="condition", tau=1, output_layer="rows")
    with pytest.raises(ValueError, match="output_layer: expected"):
        simulate(TRACE, limit=5, policy="absolute", tau=1, output_layer="x")
    with pytest.raises(ValueError, match="overflow_rule: applies to integer"):
        simulate(TRACE, limit=5, policy="overflow", overflow_rule="flag")
    with pytest.raises(ValueError, match="overflow_rule: the 'static'"):
        simulate(TRACE, "int8-int16acc-sat", limit=5, policy="static", tau=1,
                 overflow_rule="flag")


def test_cli_errors(capsys):
    assert main(["simulate", TRACE, "--policy", "condition", "--tau", "1",
                 "--output-layer", "rows"]) == 2
    err = capsys.readouterr().err
    assert "--output-layer" in err and len(err.strip().splitlines()) == 1
    assert main(["simulate", TRACE, "--policy", "overflow", "--overflow-rule", "bound",
                 "--limit", "5"]) == 2
    assert "--overflow-rule: applies to integer" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# integer narrow registers
# ---------------------------------------------------------------------------------------
def test_bias_load_flags():
    from accsim.numerics.config import load_format
    dp = resolve_accelerator("int8-int16acc-sat", "int8", None).datapath("narrow")
    b = np.array([-129.0, -128.0, 0.0, 127.0, 127.4, 128.0, 300.0])
    fl = bias_load_flags(b, dp)[0]
    fmt = load_format("int8")
    lo, hi = fmt.min_int, fmt.max_int
    want = [not lo <= round(v) <= hi for v in b]
    assert [bool(f) for f in fl] == want
    assert bias_load_flags(None, dp) == 0


@pytest.mark.filterwarnings("ignore::accsim.network.simulation.AccumulatorWidthWarning")
@pytest.mark.parametrize("acc, narrow", [("int8-int16acc-sat", "int8"),
                                         ("int8-int16acc-wrap", "int10")])
def test_no_false_bound_violations_integer(acc, narrow):
    r = simulate(TRACE, acc, narrow=narrow, limit=100)
    assert r.bound_violations == 0


def test_overflow_rule_flag_vs_bound():
    acc = "int8-int16acc-sat"
    rf = simulate(TRACE, acc, limit=60, policy="overflow")
    rb = simulate(TRACE, acc, limit=60, policy="overflow", overflow_rule="bound")
    rw = simulate(TRACE, acc, limit=60, policy="uniform-wide", analyze=False)
    assert rf.overflow_rule is None and rb.overflow_rule == "bound"
    assert rf.recomputed_fraction <= rb.recomputed_fraction
    # integer adds are exact: what never overflowed is exact, so the result is the wide one
    assert np.array_equal(rf.outputs, rw.outputs)
    assert rf.bound_violations == 0


# ---------------------------------------------------------------------------------------
# stagnation note and metrics
# ---------------------------------------------------------------------------------------
def test_stagnation_json_and_text(capsys):
    assert main(["simulate", TRACE, "--narrow", "fp8_e5m2", "--limit", "20", "--json",
                 "--narrow-only"]) == 0
    d = json.loads(capsys.readouterr().out)
    ku = {lay["name"]: lay["stagnation_ku"] for lay in d["layers"]}
    K = {lay["name"]: lay["K"] for lay in d["layers"]}
    for name in ku:
        assert ku[name] == pytest.approx((K[name] + 1) * 2.0 ** -3)
    assert d["stagnation"]["layers"] == list(ku)
    assert "bound not applicable" in d["stagnation"]["note"]
    assert main(["simulate", TRACE, "--narrow", "fp8_e5m2", "--limit", "20", "-q",
                 "--narrow-only"]) == 0
    out = capsys.readouterr().out
    assert "stagnation: k*u" in out and "chunks <= 1/u = 8" in out
    assert main(["simulate", TRACE, "--narrow", "fp32", "--limit", "20", "--json",
                 "--narrow-only"]) == 0
    assert json.loads(capsys.readouterr().out)["stagnation"] is None


def test_wilson_interval_textbook():
    # 0/10 and 5/10 at 95 %: [0, 0.2775] and [0.2366, 0.7634] (Wilson 1927; Newcombe 1998)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=5e-5)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=5e-5) and hi == pytest.approx(0.7634, abs=5e-5)
    assert wilson_interval(0, 0) is None


def test_normwise_error():
    y = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    r = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0]])
    assert normwise_error(y[1:], r[1:]) == pytest.approx((0 + 1 / math.sqrt(5)) / 2)
    assert normwise_error(y, r) == math.inf


def test_metrics_in_json(capsys):
    assert main(["simulate", TRACE, "--narrow", "bf16", "--limit", "40", "--json",
                 "--narrow-only"]) == 0
    d = json.loads(capsys.readouterr().out)
    lo, hi = d["agreement_ci95"]
    assert lo <= d["agreement"] <= hi
    assert d["normwise_error"] > 0
    for lay in d["layers"]:
        assert lay["accumulation_error"] > 0 and lay["accumulation_error_max"] > 0


def test_accumulation_error_zero_for_exact_integer_adds():
    r = simulate(TRACE, "int8-int16acc-sat", narrow="int32", wide="int32", limit=20)
    for lr in r.layers:
        assert lr.accumulation_error == 0.0 and lr.accumulation_error_max == 0.0


def test_spec_accepts_absolute(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("kind: sweep\nversion: 1\ngrid:\n  traces: [digits-mlp-relu]\n"
                 "  accelerators: [fp16-fp16acc]\n  narrow: [fp8_e5m2]\n"
                 "  policies:\n    - {name: absolute, fractions: [0.1, 0.3], taus: [],"
                 " options: {output_layer: rows}}\n")
    pts = load_spec(p).points
    assert [pt.params["policy"] for pt in pts] == ["absolute", "absolute"]
    assert pts[0].params["options"] == {"output_layer": "rows"}


def test_absolute_priced_with_its_estimator(e5m2):
    from accsim.hardware.cost import price_simulation
    r = simulate(TRACE, e5m2, limit=20, policy="absolute", fraction=0.1, analyze=False)
    default = price_simulation(e5m2, "horowitz-45nm", r)
    assert default["energy_pj"] == price_simulation(e5m2, "horowitz-45nm", r,
                                                    "exact")["energy_pj"]
    assert default["energy_pj"] > price_simulation(e5m2, "horowitz-45nm", r,
                                                   "none")["energy_pj"]
