"""accsim.network.simulate and ``accsim simulate``.

Oracles: the float64 reference (exact when every sum is exact), the engine re-run by hand
on operands quantized here (bit-exact narrow datapath), a Python-int accumulator for the
integer pipeline, a naive loop im2col, and numpy's percentile for the error statistics.
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from accsim import Accelerator, FloatFormat, load_accelerator, quantize
from accsim.cli import main
from accsim.numerics.engine import matmul
from accsim.network import compare, list_traces, relative_error, resolve_trace, simulate
from accsim.network.results import ErrorStats
from accsim.network.products import forward64
from accsim.network.trace import save_trace, sequential

FP16 = FloatFormat(5, 10)
FP32 = FloatFormat(8, 23)
BUNDLED = ("digits-mlp-relu", "mnist-mlp-relu", "mnist-mlp-tanh", "mnist-cnn")


def _dyadic(rng, shape, scale=8):
    """Small multiples of 1/scale: every sum of a few of their products is exact."""
    return rng.integers(-2 * scale, 2 * scale + 1, size=shape) / scale


def _mlp(rng, n=60, d=12, h=40, c=5, dyadic=False, labels=True):
    draw = (lambda s: _dyadic(rng, s)) if dyadic else (lambda s: rng.standard_normal(s) * 0.5)
    X = draw((n, d))
    layers = [("linear", draw((h, d)), draw(h)), ("relu",), ("linear", draw((c, h)), draw(c))]
    y = rng.integers(0, c, n) if labels else None
    return sequential("tiny-mlp", X, y, layers)


def _cnn(rng, n=12, dyadic=False):
    draw = (lambda s: _dyadic(rng, s)) if dyadic else (lambda s: rng.standard_normal(s) * 0.5)
    X = draw((n, 2, 6, 6))
    layers = [("conv2d", draw((3, 2, 3, 3)), draw(3), {"stride": 1, "padding": 1}),
              ("relu",), ("maxpool", {"kernel": 2}),
              ("conv2d", draw((4, 3, 2, 2)), None, {"stride": 1, "padding": [0, 1, 2, 1]}),
              ("avgpool", {"kernel": 2}), ("flatten",), ("linear", draw((3, 16)), draw(3))]
    return sequential("tiny-cnn", X, rng.integers(0, 3, n), layers)


def _exact_acc():
    """fp32 operands (exact 48-bit products) into an fp64 accumulator: with small dyadic
    data every partial sum is exact, so the simulation equals the float64 reference."""
    return Accelerator(FP32, FP32, FloatFormat(11, 52), FloatFormat(11, 52), name="exact")


# ---- exact datapath: equals the float64 reference ---------------------------------------
@pytest.mark.parametrize("make", [_mlp, _cnn])
def test_exact_accumulator_matches_reference(make):
    t = make(np.random.default_rng(1), dyadic=True)
    r = simulate(t, _exact_acc())
    np.testing.assert_array_equal(r.outputs, forward64(t).reshape(len(t.inputs), -1))
    assert r.agreement == 1.0
    assert r.accuracy == r.reference_accuracy
    for lr in r.layers:
        assert lr.error["max"] == 0.0 and lr.error["p99"] == 0.0
        assert lr.events == {"overflows": 0, "saturations": 0, "inexact": 0}


def test_trace_quant_formats_and_fp64_accumulator():
    t = _mlp(np.random.default_rng(2))
    q = {"input": {"format": "fp32", "scale": "none"}, "weight": {"format": "fp32"}}
    t = dataclasses.replace(t, quant=q)
    # the trace asks for fp32 operands; an fp16-operand accelerator cannot hold them, so
    # its own operand format is used
    r = simulate(t, "fp16-fp16acc")
    assert (r.input_format, r.weight_format) == ("fp16", "fp16")
    acc = Accelerator(FP32, FP32, FloatFormat(11, 52), FloatFormat(11, 52))
    r = simulate(t, acc)
    assert (r.input_format, r.weight_format) == ("fp32", "fp32")
    np.testing.assert_allclose(r.outputs, forward64(t).reshape(len(t.inputs), -1),
                               rtol=1e-6, atol=1e-6)
    assert r.agreement == 1.0
    assert 0 < r.layers[0].error["p50"] < 1e-6


# ---- narrow datapath: bit-exact against the engine re-run by hand -----------------------
def _q(x, fmt=FP16):
    return np.asarray(quantize(np.asarray(x, dtype=float), fmt), dtype=float)


@pytest.mark.parametrize("accname", ["fp16-fp16acc", "tensorcore-4term", "fp8-hopper"])
@pytest.mark.parametrize("c", [5, 40])     # a narrow head (transposed in the simulator) and not
def test_narrow_mlp_bit_exact(accname, c):
    rng = np.random.default_rng(3)
    t = _mlp(rng, n=70, c=c)
    acc = load_accelerator(accname)
    kw = acc.matmul_kwargs("narrow")
    r = simulate(t, acc, batch_size=32)
    W1, b1 = t.arrays["linear0.weight"], t.arrays["linear0.bias"]
    W2, b2 = t.arrays["linear2.weight"], t.arrays["linear2.bias"]
    z1 = matmul(_q(t.inputs, acc.input), _q(W1.T, acc.weight), bias=b1[None, :], **kw).values
    a1 = np.maximum(z1, 0)
    z2 = matmul(_q(a1, acc.input), _q(W2.T, acc.weight), bias=b2[None, :], **kw)
    np.testing.assert_array_equal(r.outputs, z2.values)
    ev = matmul(_q(t.inputs, acc.input), _q(W1.T, acc.weight), bias=b1[None, :],
                **kw).events.total
    assert r.layers[0].events == ev
    assert r.layers[1].events == z2.events.total
    assert r.layers[0].K == 12 and r.layers[1].K == 40


def _naive_im2col(x, kh, kw, pad):
    t, l, b, rr = pad
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, rr)))
    N, C, H, W = xp.shape
    Ho, Wo = H - kh + 1, W - kw + 1
    rows = []
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                rows.append([xp[n, c, i + u, j + v] for c in range(C) for u in range(kh)
                             for v in range(kw)])
    return np.array(rows), Ho, Wo


def test_narrow_conv_bit_exact():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((5, 2, 5, 5))
    W = rng.standard_normal((6, 2, 3, 3)) * 0.4
    b = rng.standard_normal(6)
    t = sequential("conv", X, None, [("conv2d", W, b, {"stride": 1, "padding": 1})])
    acc = load_accelerator("fp16-fp16acc")
    r = simulate(t, acc)
    P, Ho, Wo = _naive_im2col(_q(X), 3, 3, (1, 1, 1, 1))
    z = matmul(P, _q(W.reshape(6, -1).T), "fp16", bias=b[None, :]).values
    expect = z.reshape(5, Ho, Wo, 6).transpose(0, 3, 1, 2).reshape(5, -1)
    np.testing.assert_array_equal(r.outputs, expect)
    assert r.layers[0].K == 18 and r.accuracy is None and r.reference_accuracy is None


# ---- integer pipeline vs Python ints ----------------------------------------------------
def _py_int_layer(x, W, b, bits, saturate):
    """Symmetric int8 scales (per-tensor x, per-channel W), Python-int accumulator."""
    sx = float(np.abs(x).max()) / 127
    sw = np.abs(W).max(axis=1) / 127
    qx = [[max(-127, min(127, round(v / sx))) for v in row] for row in x]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = np.empty((len(x), len(W)))
    sat = 0
    for j in range(len(W)):
        qw = [max(-127, min(127, round(v / sw[j]))) for v in W[j]]
        b0 = round(b[j] / (sx * sw[j]))
        for i in range(len(x)):
            s = max(lo, min(hi, b0)) if saturate else b0
            for u, v in zip(qx[i], qw):
                s += u * v
                if saturate:
                    if s > hi or s < lo:
                        sat += 1
                    s = max(lo, min(hi, s))
                else:
                    s = (s - lo) % (1 << bits) + lo
            out[i, j] = s * (sx * sw[j])
    return out, sat


@pytest.mark.parametrize("accname,bits,saturate", [("int8-int32acc", 32, False),
                                                    ("int8-int16acc-sat", 16, True)])
def test_integer_pipeline_matches_python_ints(accname, bits, saturate):
    rng = np.random.default_rng(5)
    x = np.abs(rng.standard_normal((7, 64)))
    W = np.abs(rng.standard_normal((3, 64))) + 0.5   # positive: int16 saturates
    b = rng.standard_normal(3)
    t = sequential("int", x, None, [("linear", W, b)])
    r = simulate(t, accname)
    expect, sat = _py_int_layer(x, W, b, bits, saturate)
    np.testing.assert_allclose(r.outputs, expect, rtol=1e-15, atol=0)
    assert r.layers[0].events["saturations"] == sat
    if saturate:
        assert sat > 0


def test_integer_trace_quant_per_tensor_weights():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 10))
    W = rng.standard_normal((3, 10))
    q = {"input": {"format": "int8", "scale": "per-tensor"},
         "weight": {"format": "int8", "scale": "per-tensor"}}
    t = sequential("intq", x, None, [("linear", W, None)], quant=q)
    r = simulate(t, "int8-int32acc")
    sx, sw = np.abs(x).max() / 127, np.abs(W).max() / 127
    qx, qw = np.rint(x / sx), np.rint(W / sw)
    np.testing.assert_allclose(r.outputs, (qx @ qw.T) * (sx * sw), rtol=1e-14)
    # int8 values fit an fp16 datapath too: the same integer sums, exact in fp32
    acc = Accelerator(FP16, FP16, FP32, FloatFormat(11, 52))
    r2 = simulate(t, acc)
    np.testing.assert_allclose(r2.outputs, r.outputs, rtol=1e-14)


# ---- definitions ------------------------------------------------------------------------
def test_accuracy_and_agreement_definitions():
    t = _mlp(np.random.default_rng(7), n=200)
    r = simulate(t, Accelerator(FP16, FP16, FloatFormat(3, 2, subnormals=True),
                                FloatFormat(5, 10)))
    pred, pref = r.outputs.argmax(1), r.reference_outputs.argmax(1)
    assert r.accuracy == np.mean(pred == t.labels)
    assert r.reference_accuracy == np.mean(pref == t.labels)
    assert r.agreement == np.mean(pred == pref)
    assert r.agreement < 1.0            # a 3-bit-significand accumulator changes decisions
    np.testing.assert_array_equal(r.reference_outputs,
                                  forward64(t).reshape(len(t.inputs), -1))


def test_relative_error_conventions():
    z = np.array([1.0, 0.0, 1.0, np.inf, np.nan, 3.0])
    ref = np.array([2.0, 0.0, 0.0, 1.0, 1.0, -3.0])
    np.testing.assert_array_equal(relative_error(z, ref), [0.5, 0.0, np.inf, np.inf, np.inf, 2.0])


def test_error_percentiles_close_to_numpy():
    rng = np.random.default_rng(8)
    rel = np.concatenate([np.zeros(50), 10.0 ** rng.uniform(-9, 1, 5000)])
    st = ErrorStats()
    st.add(rel[:1000])
    st.add(rel[1000:])
    s = st.summary()
    assert s["mean"] == pytest.approx(rel.mean(), rel=1e-12)
    assert s["max"] == rel.max()
    for p in (50, 90, 99):
        exact = np.percentile(rel, p, method="inverted_cdf")
        assert s[f"p{p}"] == pytest.approx(exact, rel=0.011)
    st.add(np.array([np.inf]))
    s = st.summary()
    assert math.isinf(s["mean"]) and s["n_infinite"] == 1


def _stats_state(st):
    return (st.n, st.n_zero, st.n_inf, st.total, st.max, st.hist.tobytes())


@pytest.mark.parametrize("case", ["finite", "exact-zeros", "nonfinite", "transposed", "empty",
                                  "sum-overflows"])
def test_add_error_matches_add_of_relative_error(case):
    """ErrorStats.add_error (the simulator's path: fewer passes when every error is
    finite) keeps exactly the statistics of add(relative_error(z, ref))."""
    rng = np.random.default_rng(21)
    ref = rng.standard_normal((37, 23)) * 10.0 ** rng.integers(-30, 30, (37, 23))
    z = ref * (1 + rng.standard_normal((37, 23)) * 1e-3)
    if case == "exact-zeros":
        z[::3] = ref[::3]                                # zero errors
    elif case == "nonfinite":
        z[0, :4] = [np.inf, np.nan, -np.inf, 0.0]
        ref[0, 3] = ref[1, 0] = 0.0                      # 0/0 -> 0, x/0 -> inf
        ref[2, 0], z[2, 1], ref[3, 0] = np.inf, 0.0, np.nan
        z[1, 1], ref[1, 1] = -0.0, 0.0
    elif case == "transposed":
        z = np.asfortranarray(z).T
        ref = np.ascontiguousarray(ref.T)
    elif case == "empty":
        z, ref = z[:0], ref[:0]
    elif case == "sum-overflows":                       # finite errors near 1e308
        z[:, :] = 1e300
        ref[:, :] = rng.uniform(1e-8, 1e-7, ref.shape)
    fast, slow = ErrorStats(), ErrorStats()
    with np.errstate(over="ignore"):                   # the total overflows to inf
        for _ in range(2):
            all_finite = fast.add_error(z, ref)
            slow.add(relative_error(z, ref))
    assert all_finite == (case not in ("nonfinite", "sum-overflows"))
    if all_finite:
        assert np.isfinite(z).all()
    assert _stats_state(fast) == _stats_state(slow)
    assert fast.n == 2 * z.size and int(fast.hist.sum()) == fast.n - fast.n_zero - fast.n_inf
    assert fast.summary() == slow.summary()


def test_limit_and_batches():
    t = _mlp(np.random.default_rng(9), n=50)
    acc = load_accelerator("fp16-fp16acc")
    full = simulate(t, acc, batch_size=7)
    part = simulate(t, acc, limit=13, batch_size=5)
    assert part.n_samples == 13 and part.outputs.shape == (13, 5)
    np.testing.assert_array_equal(part.outputs, full.outputs[:13])
    assert simulate(t, acc, limit=1000).n_samples == 50
    calls = []
    simulate(t, acc, limit=20, batch_size=8, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(8, 20), (16, 20), (20, 20)]


def test_overrides_and_compare():
    t = _mlp(np.random.default_rng(10))
    r = simulate(t, "fp16-fp16acc", narrow="bf16", wide="fp64")
    assert (r.narrow, r.wide) == ("bf16", "fp64")
    n, w = compare(t, "fp16-fp16acc", limit=30)
    assert (n.narrow, w.narrow) == ("fp16", "fp32")
    assert w.n_samples == 30
    d = n.to_dict()
    for k in ("accuracy", "reference_accuracy", "agreement", "layers", "n_samples",
              "accelerator", "narrow", "wide", "seconds"):
        assert k in d
    assert {"name", "rel_error_mean", "rel_error_max", "rel_error_p50", "rel_error_p90",
            "rel_error_p99", "events", "K"} <= set(d["layers"][0])
    json.dumps(d, allow_nan=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"limit": 0}, "limit"), ({"limit": -3}, "limit"), ({"limit": True}, "limit"),
    ({"limit": 2.5}, "limit"), ({"accelerator": "no-such-acc"}, "unknown accelerator"),
    ({"narrow": "e99m99"}, "narrow.*e99m99"), ({"narrow": "fp64"}, "wide"), ({"seed": -1}, "seed"),
    ({"batch_size": 0}, "batch_size")])
def test_bad_arguments(kwargs, match):
    t = _mlp(np.random.default_rng(11))
    args = {"accelerator": "fp16-fp16acc"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        simulate(t, args.pop("accelerator"), **args)


def test_resolve_trace_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a trace folder nor a bundled trace"):
        resolve_trace("no-such-trace")
    with pytest.raises(ValueError):
        resolve_trace(tmp_path)         # a folder without trace.yaml


# ---- CLI --------------------------------------------------------------------------------
def test_cli_json_and_table(tmp_path, capsys):
    t = _cnn(np.random.default_rng(12))
    path = tmp_path / "tiny"
    save_trace(t, path)
    assert main(["simulate", str(path), "--limit", "5", "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.strip().splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    for k in ("accuracy", "reference_accuracy", "agreement", "layers", "n_samples",
              "accelerator", "narrow", "wide", "seconds", "wide_run"):
        assert k in d
    assert d["n_samples"] == 5 and d["accelerator"] == "fp16-fp16acc"
    assert [la["name"] for la in d["layers"]] == ["conv2d0", "conv2d3", "linear6"]
    assert d["wide_run"]["narrow"] == "fp32"

    assert main(["simulate", str(path), "--accelerator", "int8-int16acc-sat",
                 "--narrow", "int24", "--wide", "int32"]) == 0
    text = capsys.readouterr().out
    assert "float64 reference" in text and "narrow acc int24" in text
    assert "wide acc int32" in text and "conv2d0" in text


@pytest.mark.parametrize("argv,match", [
    (["simulate", "no-such-trace"], "no-such-trace"),
    (["simulate", "TRACE", "--limit", "0"], "--limit"),
    (["simulate", "TRACE", "--limit", "ten"], "--limit"),
    (["simulate", "TRACE", "--accelerator", "nope"], "nope"),
    (["simulate", "TRACE", "--narrow", "e99"], "e99"),
])
def test_cli_errors(argv, match, tmp_path, capsys):
    path = tmp_path / "tiny"
    save_trace(_mlp(np.random.default_rng(13)), path)
    argv = [str(path) if a == "TRACE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and match in err


def test_bundled_traces_present():
    assert set(BUNDLED) <= set(list_traces())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_trace_runs(name, capsys):
    assert main(["simulate", name, "--limit", "50", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_samples"] == 50
    assert d["reference_accuracy"] is not None and d["agreement"] >= 0.9
    assert d["wide_run"]["agreement"] >= 0.98
