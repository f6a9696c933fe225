"""Quantized ONNX models imported and simulated: bit-exact against onnxruntime with an
int32 accumulator at every quantized tensor, narrow registers, register statistics."""

import json
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from accsim.network import quant_ops
from accsim.network.integer_layers import partial_sum_range, signed_bits
from accsim.network.onnx_import import import_graph, import_onnx
from accsim.network.simulation import simulate
from accsim.network.trace import load_trace, save_trace

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "onnx_quant")
INPUTS = np.load(os.path.join(FIX, "inputs.npz"))
FIXTURES = sorted(f for f in os.listdir(FIX) if f.endswith(".onnx") and "float" not in f)
#: float glue onnxruntime computes with approximations (docs/quantized.md): the final
#: float output may differ in the last bits, every quantized tensor must not
FLOAT_GLUE_INEXACT = {"rescnn-dynamic.onnx"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def samples(name):
    return INPUTS[name.split("-")[0]]


def ort_tensors(model, names, xs):
    """onnxruntime's values of tensors ``names`` (added as outputs), batch-1 runs."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend([helper.make_empty_tensor_value_info(n) for n in names
                           if n not in have])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    per = [sess.run(None, {sess.get_inputs()[0].name: x}) for x in xs]
    return {n: np.stack([p[i] for p in per]) for i, n in enumerate(outs)}


@pytest.mark.parametrize("name", FIXTURES)
def test_int32_accumulator_bit_exact_at_every_quantized_tensor(name):
    path = os.path.join(FIX, name)
    xs = samples(name)
    trace = import_onnx(path, xs)
    res = simulate(trace, "int8-int32acc", keep_tensors=True)
    model = onnx.load(path)
    outs = [o for n in model.graph.node for o in n.output]
    ints = [t for t in outs if t in res.tensors]
    want = ort_tensors(model, ints, xs)
    ints = [t for t in ints if want[t].dtype.kind in "iu"]
    report = {t: int(np.count_nonzero(res.tensors[t].reshape(want[t].shape) != want[t]))
              for t in ints}
    final = ort_tensors(model, [], xs)[model.graph.output[0].name]
    out_diff = int(np.count_nonzero(res.outputs != final.reshape(res.outputs.shape)))
    print(f"{name}: {len(ints)} quantized tensors, mismatches {report}, final {out_diff}")
    assert len(ints) >= 3 and len(res.layers) >= 3
    assert sum(report.values()) == 0, report
    assert all(lr.register["output_mismatches"] == 0 and lr.events["overflows"] == 0
               for lr in res.layers)
    if name in FLOAT_GLUE_INEXACT:
        np.testing.assert_allclose(res.outputs, final.reshape(res.outputs.shape),
                                   rtol=1e-5, atol=1e-6)
    else:
        assert out_diff == 0
    assert res.agreement == 1.0


def test_import_keeps_quantized_ops_and_fuses_qdq():
    g, arrays, notes = import_graph(os.path.join(FIX, "cnn-qdq.onnx"), samples("cnn"))
    assert [n.op for n in g.nodes] == ["QuantizeLinear", "QLinearConv", "MaxPool",
                                       "QLinearConv", "MaxPool", "Flatten", "QLinearMatMul",
                                       "QLinearAdd", "DequantizeLinear"]
    assert any("QDQ groups fused" in n for n in notes)
    assert {a.dtype for a in arrays.values()} >= {np.dtype(np.int8), np.dtype(np.int32)}
    g2, _, _ = import_graph(os.path.join(FIX, "rescnn-qop.onnx"), samples("rescnn"))
    assert {"QGemm", "QLinearSigmoid", "QLinearGlobalAveragePool"} <= {n.op for n in g2.nodes}


def test_trace_roundtrip_keeps_integer_types(tmp_path):
    trace = import_onnx(os.path.join(FIX, "mlp-qop.onnx"), samples("mlp"))
    save_trace(trace, tmp_path / "t")
    back = load_trace(tmp_path / "t")
    for k, v in trace.arrays.items():
        assert back.arrays[k].dtype == v.dtype, k     # (a scalar comes back as (1,))
        assert np.array_equal(back.arrays[k].reshape(-1), v.reshape(-1)), k
    a = simulate(trace, "int8-int32acc", narrow="int16")
    b = simulate(back, "int8-int32acc", narrow="int16")
    assert np.array_equal(a.outputs, b.outputs)


def test_signed_bits_against_brute_force():
    for lo in range(-70, 1):
        for hi in range(0, 70):
            want = next(b for b in range(1, 20) if -2 ** (b - 1) <= lo and hi < 2 ** (b - 1))
            assert signed_bits(lo, hi) == want, (lo, hi)


def test_partial_sum_range_against_python_ints():
    rng = np.random.default_rng(3)
    A = rng.integers(-255, 256, (7, 40)).astype(np.float64)
    B = rng.integers(-128, 128, (40, 5)).astype(np.float64)
    bias = rng.integers(-5000, 5000, 5).astype(np.float64)
    lo = hi = 0
    for i in range(7):
        for j in range(5):
            s = int(bias[j])
            lo, hi = min(lo, s), max(hi, s)
            for k in range(40):
                s += int(A[i, k]) * int(B[k, j])
                lo, hi = min(lo, s), max(hi, s)
    assert partial_sum_range(A, B, bias) == (lo, hi)
    assert partial_sum_range(A, B, None)[1] >= 0 >= partial_sum_range(A, B, None)[0]


@pytest.mark.parametrize("name", ["mlp-qop.onnx", "cnn-qdq.onnx"])
def test_observed_register_bits_are_the_narrowest_that_never_overflow(name):
    """On the first layer (whose inputs every run shares) a wrapping register of the
    observed width never overflows and one bit less does; the bound is no narrower."""
    trace = import_onnx(os.path.join(FIX, name), samples(name))
    first = simulate(trace, "int8-int32acc").layers[0]
    b = first.register["min_register_bits_observed"]
    assert first.register["min_register_bits_bound"] >= b
    assert first.register["worst_case_bound"] >= max(first.register["max_partial_sum"],
                                                     -first.register["min_partial_sum"])
    fits = simulate(trace, "int8-int32acc", narrow=f"int{b}").layers[0]
    assert fits.events["overflows"] == 0 and fits.register["accumulator_mismatches"] == 0
    short = simulate(trace, "int8-int32acc", narrow=f"int{b - 1}").layers[0]
    assert short.events["overflows"] > 0


def test_narrow_wrap_and_saturate_registers_differ_from_exact():
    trace = import_onnx(os.path.join(FIX, "mlp-qop.onnx"), samples("mlp"))
    exact = simulate(trace, "int8-int32acc", keep_tensors=True)
    for fmt, event in (("int16", "overflows"), ("int16-sat", "saturations")):
        r = simulate(trace, "int8-int32acc", narrow=fmt, keep_tensors=True)
        lr = r.layers[0]
        assert lr.events[event] > 0 and lr.register["output_mismatches"] > 0
        t = trace.graph.nodes[1].outputs[0]        # the first QLinearMatMul's output
        assert np.count_nonzero(r.tensors[t] != exact.tensors[t]) == \
            lr.register["output_mismatches"]
    sat = simulate(trace, "int8-int32acc", narrow="int16-sat").layers[0]
    assert sat.events["saturations"] == sat.events["overflows"]


def test_saturating_register_clamps_like_python_ints():
    """The saturated accumulator handed to requantization is the sequential sum clamped
    at every add (oracle: Python ints) for one output of the first layer."""
    trace = import_onnx(os.path.join(FIX, "mlp-qop.onnx"), samples("mlp")[:1])
    node = trace.graph.nodes[1]
    x = quant_ops.forward_float32(trace.graph, trace.arrays, trace.model_inputs(
        trace.inputs).astype(np.float32), keep_all=True)[node.inputs[0]]
    from accsim.network.graph_ops import tensor
    ins = [x if t == node.inputs[0] else tensor(t, {}, trace.arrays, {})
           for t in node.inputs]
    p = quant_ops.integer_product(node, ins)
    lo, hi = -2 ** 15, 2 ** 15 - 1
    xs, w = p.x.reshape(-1, p.k), p.w.reshape(p.k, -1)
    want = []
    for j in range(w.shape[1]):
        s = 0
        for k in range(p.k):
            s = min(hi, max(lo, s + int(xs[0, k]) * int(w[k, j])))
        want.append(s)
    r = simulate(trace, "int8-int32acc", narrow="int16-sat", keep_tensors=True)
    got = r.tensors[node.outputs[0]].reshape(-1)
    assert np.array_equal(got, p.finish(np.array(want).reshape(p.x.shape[:-1] + (-1,)))
                          .reshape(-1))


def test_dynamic_range_batch_option():
    trace = import_onnx(os.path.join(FIX, "mlp-dynamic.onnx"), samples("mlp"))
    per = simulate(trace, "int8-int32acc", batch_size=4)
    whole = simulate(trace, "int8-int32acc", dynamic_range="batch", batch_size=4)
    g = trace.graph
    nodes = [n if n.op != "DynamicQuantizeLinear" else
             type(n)(n.name, n.op, n.inputs, n.outputs, {**n.attrs, "accsim_range": "batch"})
             for n in g.nodes]
    gb = type(g)(nodes, g.input, g.input_shape, g.output)
    X = trace.model_inputs(trace.inputs).astype(np.float32)
    want = quant_ops.forward_float32(gb, trace.arrays, X)
    assert np.array_equal(whole.outputs, want.reshape(whole.outputs.shape))
    assert not np.array_equal(whole.outputs, per.outputs)
    with pytest.raises(ValueError, match="^dynamic_range: the quantized model mlp-qop has "
                                         "no DynamicQuantizeLinear node$"):
        simulate(import_onnx(os.path.join(FIX, "mlp-qop.onnx"), samples("mlp")),
                 "int8-int32acc", dynamic_range="batch")


def test_options_that_do_not_apply_are_errors():
    trace = import_onnx(os.path.join(FIX, "mlp-qop.onnx"), samples("mlp"))
    with pytest.raises(ValueError, match=r"^narrow: the quantized model mlp-qop accumulates "
                                         r"integers; fp16 \(accelerator fp16-fp16acc\)"):
        simulate(trace, "fp16-fp16acc")
    with pytest.raises(ValueError, match="^policy: the quantized model"):
        simulate(trace, "int8-int32acc", policy="condition", tau=0.1)
    with pytest.raises(ValueError, match="^dynamic_range: trace mnist-mlp-relu is not a "
                                         "quantized model$"):
        simulate("mnist-mlp-relu", "int8-int32acc", limit=2, dynamic_range="sample")


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "accsim", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def cnn_trace(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    np.save(d / "x.npy", samples("cnn")[:6])
    r = cli("import-onnx", os.path.join(FIX, "cnn-qop.onnx"), "--inputs", str(d / "x.npy"),
            "--out", str(d / "trace"), "-q")
    assert r.returncode == 0, r.stderr
    return d


def test_cli_json_table_and_saved_tensors(cnn_trace):
    d = cnn_trace
    r = cli("simulate", str(d / "trace"), "-a", "int8-int32acc", "--narrow", "int16",
            "--json", "--save-outputs", str(d / "o.npz"), "--save-tensors")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    keys = {"min_register_bits_observed", "min_register_bits_bound", "worst_case_bound",
            "max_partial_sum", "output_mismatches", "accumulator_mismatches"}
    assert all(keys <= set(lr) for lr in doc["layers"])
    assert [lr["kind"] for lr in doc["layers"]] == ["QLinearConv", "QLinearConv",
                                                    "QLinearMatMul"]
    saved = np.load(d / "o.npz")
    model = onnx.load(os.path.join(FIX, "cnn-qop.onnx"))
    want = ort_tensors(model, [], samples("cnn")[:6])
    out = model.graph.output[0].name
    assert np.array_equal(saved["wide_outputs"], want[out].reshape(6, -1))
    names = [k.split("/", 1)[1] for k in saved.files if k.startswith("wide_tensor/")]
    ints = [n for n in names if n in {o for nd in model.graph.node for o in nd.output}]
    theirs = ort_tensors(model, ints, samples("cnn")[:6])
    for n in ints:
        assert np.array_equal(saved[f"wide_tensor/{n}"].reshape(theirs[n].shape),
                              theirs[n]), n
    t = cli("simulate", str(d / "trace"), "-a", "int8-int32acc", "--narrow", "int16", "-q")
    assert t.returncode == 0
    assert "bits seen" in t.stdout and "exact int (onnxruntime)" in t.stdout


def test_cli_errors_one_line(cnn_trace):
    d = cnn_trace
    for args, msg in ((["--narrow", "fp16"], "accsim: error: --narrow: the quantized model"),
                      (["-a", "int8-int32acc", "--dynamic-range", "batch"],
                       "accsim: error: --dynamic-range: the quantized model")):
        r = cli("simulate", str(d / "trace"), "-q", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith(msg) and r.stderr.count("\n") == 1, r.stderr


def test_requantization_oracle_fraction():
    """finish() of a wrapped register: float32(acc) * scale rounded half to even
    (Fraction oracle) for an accumulator only a narrow register produces."""
    s = np.float32(0.0123)
    for acc in (-32768, 32767, 12345, -777):
        got = quant_ops.requantize(np.array([acc]), s, np.array([3]), np.dtype(np.uint8))
        v = Fraction(float(np.float32(acc) * s))
        r = round(v) + 3
        assert got[0] == min(255, max(0, r))


def test_cli_import_refuses_operand_formats_for_quantized_models(tmp_path):
    np.save(tmp_path / "x.npy", samples("mlp")[:2])
    r = cli("import-onnx", os.path.join(FIX, "mlp-qop.onnx"), "--inputs",
            str(tmp_path / "x.npy"), "--out", str(tmp_path / "t"), "-q",
            "--weight-format", "int8")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("accsim: error: --weight-format: ") and "quantized" in r.stderr
    assert not (tmp_path / "t").exists()


def test_partial_sum_range_refuses_inexact_lengths():
    K = 2 ** 38                        # K * 255^2 passes 2^53: float64 sums would round
    A = np.broadcast_to(np.zeros(1), (1, K))
    B = np.broadcast_to(np.zeros(1), (K, 1))
    with pytest.raises(ValueError, match="^accumulation length 274877906944 too long"):
        partial_sum_range(A, B, None)


def test_unsupported_quantized_contrib_op_named(tmp_path):
    """A com.microsoft quantized op outside quant_ops: one error naming it and its node."""
    f = helper.make_tensor_value_info
    sc = helper.make_tensor("s", onnx.TensorProto.FLOAT, [], [0.1])
    zp = helper.make_tensor("z", onnx.TensorProto.UINT8, [], [128])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant"),
             helper.make_node("QLinearLeakyRelu", ["q", "s", "z", "s", "z"], ["r"],
                              name="leaky", domain="com.microsoft", alpha=0.1),
             helper.make_node("DequantizeLinear", ["r", "s", "z"], ["y"], name="dq")]
    g = helper.make_graph(nodes, "g", [f("x", onnx.TensorProto.FLOAT, [1, 4])],
                          [f("y", onnx.TensorProto.FLOAT, [1, 4])], [sc, zp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.microsoft", 1)])
    onnx.save(m, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"1 unsupported operator type: "
                                         r"com\.microsoft:QLinearLeakyRelu x1 \(leaky\): an "
                                         r"onnxruntime contrib operator accsim does not run"):
        import_graph(tmp_path / "m.onnx", np.zeros((2, 4)))
