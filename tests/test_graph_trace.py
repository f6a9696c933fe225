"""Graph traces (version 2): building, saving and loading, the samples -> model input rule,
simulation of graphs against onnxruntime (fp32 operands and an fp32 register), overflow
that never aborts a run, and the saved outputs."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from accsim import Accelerator, FloatFormat, IntFormat
from accsim.cli import main
from accsim.network import load_trace, save_trace, simulate
from accsim.network.graph import Graph, Node
from accsim.network.products import forward64
from accsim.network.simulation import save_outputs
from accsim.network.trace import Trace

FP16 = FloatFormat(5, 10)
FP32 = FloatFormat(8, 23)
RNG = np.random.default_rng(11)


def f32(a):
    """float32-representable float64 values (what onnxruntime computes on exactly)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def fp32_acc():
    return Accelerator(FP32, FP32, FP32, FP32, name="fp32")


def onnx_model(graph, arrays, out_shape):
    """The same graph as an ONNX model (float32) for onnxruntime."""
    nodes = [helper.make_node(n.op, list(n.inputs), list(n.outputs), name=n.name, **n.attrs)
             for n in graph.nodes]
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
             for k, v in arrays.items()]
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info(graph.input, TensorProto.FLOAT,
                                                   list(graph.input_shape))],
        [helper.make_tensor_value_info(graph.output, TensorProto.FLOAT, list(out_shape))],
        inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def run_ort(model, X):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: x.astype(np.float32)})[0] for x in X])


def attention_trace(n=24, T=5, d=8, dh=6, classes=4):
    """Single-head self-attention over a (T, d) input (no model batch axis): Q, K, V
    projections, QK^T (Gemm, transB, alpha), softmax, A.V (MatMul, K = T), mean over the
    tokens, classifier (Gemm)."""
    arrays = {k: f32(RNG.standard_normal(s) * 0.5) for k, s in (
        ("Wq", (d, dh)), ("Wk", (d, dh)), ("Wv", (d, dh)), ("bq", (dh,)), ("Wo", (dh, classes)),
        ("bo", (classes,)))}
    nodes = [Node("q", "MatMul", ["x", "Wq"], ["q0"]),
             Node("qb", "Add", ["q0", "bq"], ["Q"]),
             Node("k", "MatMul", ["x", "Wk"], ["K"]),
             Node("v", "MatMul", ["x", "Wv"], ["V"]),
             Node("scores", "Gemm", ["Q", "K"], ["S"], {"transB": 1, "alpha": 0.5}),
             Node("softmax", "Softmax", ["S"], ["P"], {"axis": -1}),
             Node("av", "MatMul", ["P", "V"], ["O"]),
             Node("pool", "ReduceMean", ["O"], ["m"], {"axes": [0], "keepdims": 1}),
             Node("head", "Gemm", ["m", "Wo", "bo"], ["y"])]
    g = Graph(nodes, "x", (T, d), "y")
    X = f32(RNG.standard_normal((n, T, d)))
    return Trace.from_graph("attn", g, arrays, X, RNG.integers(0, classes, n)), (1, classes)


def batched_trace(n=16):
    """Rank-4 activations (1, H, T, d): a batched constant MatMul, a softmax and an
    activation x activation batched MatMul (K = T), flattened into a classifier."""
    H, T, d = 2, 3, 4
    arrays = {"Wt": f32(RNG.standard_normal((H, d, T))), "Wc": f32(RNG.standard_normal((d, d))),
              "Wo": f32(RNG.standard_normal((H * T * d, 3)) * 0.3)}
    nodes = [Node("logits", "MatMul", ["x", "Wt"], ["L"]),
             Node("sm", "Softmax", ["L"], ["P"], {"axis": -1}),
             Node("val", "MatMul", ["x", "Wc"], ["V"]),
             Node("relu", "Relu", ["V"], ["Vr"]),
             Node("mix", "MatMul", ["P", "Vr"], ["O"]),
             Node("flat", "Flatten", ["O"], ["f"], {"axis": 1}),
             Node("out", "Gemm", ["f", "Wo"], ["y"])]
    g = Graph(nodes, "x", (1, H, T, d), "y")
    return Trace.from_graph("batched", g, arrays, f32(RNG.standard_normal((n, H, T, d)))), (1, 3)


def conv_trace(n=10):
    """Grouped, dilated and depthwise convolutions, a residual Add and global pooling."""
    arrays = {"W1": f32(RNG.standard_normal((6, 2, 3, 3)) * 0.4), "b1": f32(RNG.standard_normal(6)),
              "W2": f32(RNG.standard_normal((6, 1, 3, 3)) * 0.4),
              "W3": f32(RNG.standard_normal((5, 6))), "b3": f32(RNG.standard_normal(5))}
    nodes = [Node("conv_g", "Conv", ["x", "W1", "b1"], ["c1"],
                  {"group": 2, "dilations": [2, 2], "pads": [2, 1, 2, 1], "strides": [1, 1]}),
             Node("relu", "Relu", ["c1"], ["r1"]),
             Node("dw", "Conv", ["r1", "W2"], ["c2"], {"group": 6, "pads": [1, 1, 1, 1]}),
             Node("res", "Add", ["c2", "r1"], ["s"]),
             Node("gap", "GlobalAveragePool", ["s"], ["p"]),
             Node("flat", "Flatten", ["p"], ["f"], {"axis": 1}),
             Node("fc", "Gemm", ["f", "W3", "b3"], ["y"], {"transB": 1})]
    g = Graph(nodes, "x", (1, 4, 7, 7), "y")
    X = f32(RNG.standard_normal((n, 1, 4, 7, 7)))
    return Trace.from_graph("convs", g, arrays, X[:, 0], RNG.integers(0, 5, n)), (1, 5)


def conv_transpose_trace(n=6):
    """A grouped, strided, dilated ConvTranspose with output padding."""
    arrays = {"W": f32(RNG.standard_normal((4, 3, 3, 2)) * 0.5), "b": f32(RNG.standard_normal(6)),
              "Wf": f32(RNG.standard_normal((3, 6)))}
    nodes = [Node("up", "ConvTranspose", ["x", "W", "b"], ["u"],
                  {"group": 2, "strides": [2, 3], "pads": [1, 0, 1, 2],
                   "output_padding": [1, 2], "dilations": [1, 2]}),
             Node("relu", "Relu", ["u"], ["r"]),
             Node("gap", "GlobalAveragePool", ["r"], ["p"]),
             Node("flat", "Flatten", ["p"], ["f"], {"axis": 1}),
             Node("fc", "Gemm", ["f", "Wf"], ["y"], {"transB": 1})]
    g = Graph(nodes, "x", (1, 4, 4, 5), "y")
    X = f32(RNG.standard_normal((n, 4, 4, 5)))
    return Trace.from_graph("convT", g, arrays, X), (1, 3)


MAKERS = {"attention": attention_trace, "batched": batched_trace, "conv": conv_trace,
          "conv-transpose": conv_transpose_trace}


@pytest.mark.parametrize("which", sorted(MAKERS))
def test_fp32_register_matches_onnxruntime(which):
    t, out_shape = MAKERS[which]()
    ref = run_ort(onnx_model(t.graph, t.arrays, out_shape), t.model_inputs(t.inputs))
    ref = ref.reshape(len(t.inputs), -1)
    np.testing.assert_allclose(forward64(t).reshape(len(t.inputs), -1), ref, rtol=2e-5,
                               atol=2e-5)
    r = simulate(t, fp32_acc())
    np.testing.assert_allclose(r.outputs, ref, rtol=1e-4, atol=1e-4)
    assert np.array_equal(r.outputs.argmax(axis=1), ref.argmax(axis=1))
    assert r.agreement == 1.0
    assert [lr.name for lr in r.layers] == t.matmul_layers()


def test_product_results_per_node():
    t, _ = attention_trace(n=7, T=5, d=8, dh=6)
    r = simulate(t, "fp16-fp16acc")
    d = {lr["name"]: lr for lr in r.to_dict()["layers"]}
    # K: the contracted length; QK^T: head dim, A.V: sequence length
    assert {k: v["K"] for k, v in d.items()} == {"q": 8, "k": 8, "v": 8, "scores": 6,
                                                 "av": 5, "head": 6}
    assert d["scores"]["outputs"] == 7 * 5 * 5 and d["av"]["outputs"] == 7 * 5 * 6
    assert d["q"]["kind"] == "MatMul" and d["scores"]["kind"] == "Gemm"
    assert all(v["nonfinite"] == {"nan": 0, "inf": 0, "operand_nan": 0, "operand_inf": 0}
               for v in d.values())


def test_uniform_wide_reissues_every_product():
    t, _ = conv_trace(n=6)
    r = simulate(t, "fp16-fp16acc", policy="uniform-wide")
    assert all(lr.recomputed_fraction == 1.0 for lr in r.layers)
    r = simulate(t, "fp16-fp16acc", policy="condition", tau=1e-3)
    assert 0.0 <= r.recomputed_fraction <= 1.0 and len(r.layers) == 3


def test_version2_round_trip(tmp_path):
    t, _ = attention_trace(n=6)
    save_trace(t, tmp_path / "a")
    doc = yaml.safe_load((tmp_path / "a" / "trace.yaml").read_text())
    assert doc["version"] == 2 and doc["input"] == {"name": "x", "shape": [5, 8]}
    assert doc["nodes"][4] == {"name": "scores", "op": "Gemm", "inputs": ["Q", "K"],
                               "outputs": ["S"], "attrs": {"alpha": 0.5, "transB": 1}}
    u = load_trace(tmp_path / "a")
    assert u.graph == t.graph and u.reference_accuracy == t.reference_accuracy
    assert np.array_equal(forward64(u), forward64(t))


def test_integer_arrays_stay_integers(tmp_path):
    t, _ = attention_trace(n=4)
    u = Trace(t.name, t.graph, {**t.arrays, "idx": np.array([3, 1])}, t.inputs)
    save_trace(u, tmp_path / "i")
    v = load_trace(tmp_path / "i")
    assert v.arrays["idx"].dtype == np.int64 and list(v.arrays["idx"]) == [3, 1]


def test_model_input_rule():
    t, _ = conv_trace(n=3)                       # input (1, 4, 7, 7), samples (4, 7, 7)
    assert t.model_inputs(np.zeros((2, 4, 7, 7))).shape == (2, 1, 4, 7, 7)
    assert t.model_inputs(np.zeros((2, 1, 4, 7, 7))).shape == (2, 1, 4, 7, 7)
    with pytest.raises(ValueError, match=r"samples of shape \(4, 7\) fit neither the model "
                                         r"input x of shape \(1, 4, 7, 7\)"):
        t.model_inputs(np.zeros((2, 4, 7)))


def test_version2_errors_name_node_and_file(tmp_path):
    t, _ = attention_trace(n=4)
    save_trace(t, tmp_path / "a")
    y = tmp_path / "a" / "trace.yaml"
    good = y.read_text()

    def edit(fn):
        d = yaml.safe_load(good)
        fn(d)
        y.write_text(yaml.safe_dump(d, sort_keys=False))
        with pytest.raises(ValueError) as ei:
            load_trace(tmp_path / "a")
        msg = str(ei.value)
        assert "\n" not in msg and "trace.yaml" in msg
        return msg
    assert "node softmax (Swish): unsupported op" in edit(
        lambda d: d["nodes"][5].update(op="Swish"))
    assert "node av (MatMul) reads 'nope'" in edit(
        lambda d: d["nodes"][6].update(inputs=["P", "nope"]))
    assert "nodes[2]" in edit(lambda d: d["nodes"][2].update(outputs="K"))
    assert "key 'version': expected 1 or 2" in edit(lambda d: d.update(version=3))
    assert "fit neither the model input x of shape (5, 7)" in edit(
        lambda d: d["input"].update(shape=[5, 7]))
    assert "node head (Gemm): " in edit(lambda d: d["nodes"][8].update(inputs=["m", "Wq"]))
    assert "key 'input.shape'" in edit(lambda d: d["input"].update(shape=[5, 0]))


# ---------------------------------------------------------------------------------------
# overflow never aborts a run

def overflow_trace(n=6, K=64):
    """Two products of the same inputs with opposite weights overflow an fp16 register to
    +inf and -inf in column 0; their sum is NaN, which the next product's int8 operands
    must take."""
    W = np.ones((K, 4))
    arrays = {"W": W, "Wn": -W, "W2": RNG.standard_normal((4, 3))}
    nodes = [Node("pos", "MatMul", ["x", "W"], ["a"]), Node("neg", "MatMul", ["x", "Wn"], ["b"]),
             Node("sum", "Add", ["a", "b"], ["s"]), Node("out", "MatMul", ["s", "W2"], ["y"])]
    X = np.full((n, 1, K), 100.0)
    return Trace.from_graph("ovf", Graph(nodes, "x", (1, K), "y"), arrays, X, np.zeros(n, int))


def int8_fp16_acc():
    i8 = IntFormat(8)
    return Accelerator(i8, i8, FP16, FP32, name="int8-fp16acc")


def test_overflow_counted_and_run_finishes():
    t = overflow_trace()
    r = simulate(t, int8_fp16_acc())
    d = {lr.name: lr for lr in r.layers}
    # 127 * 127 * 64 > 65504: every output of both products overflows
    assert d["pos"].inf == d["pos"].outputs == 6 * 4 and d["pos"].events["overflows"] > 0
    assert d["neg"].inf == 6 * 4
    # inf + -inf = NaN on every component; int8 operands map NaN to 0 (counted)
    assert d["out"].operand_nan == 6 * 4 and d["out"].nan == 0
    np.testing.assert_array_equal(r.outputs, 0.0)
    assert r.to_dict()["layers"][0]["nonfinite"]["inf"] == 24


def test_overflow_cli_lines(tmp_path, capsys):
    save_trace(overflow_trace(), tmp_path / "ovf")
    acc = tmp_path / "acc.yaml"
    acc.write_text(yaml.safe_dump({
        "kind": "accelerator", "version": 1, "name": "int8-fp16acc",
        "operands": {"input": "int8", "weight": "int8"},
        "narrow": {"format": "fp16"}, "wide": {"format": "fp32"},
        "array": {"rows": 16, "cols": 16, "dataflow": "ws", "clock_ghz": 1.0}}))
    assert main(["simulate", str(tmp_path / "ovf"), "-a", str(acc), "-q"]) == 0
    out = capsys.readouterr().out
    assert "node pos (narrow acc fp16): 0 NaN and 24 inf outputs of 24" in out
    assert "node out (narrow acc fp16): 0 NaN and 0 inf outputs of 18; operands: 24 NaN " \
           "mapped to 0, 0 inf saturated" in out


# ---------------------------------------------------------------------------------------
# outputs

def test_save_outputs_cli(tmp_path, capsys):
    t, _ = attention_trace(n=5)
    save_trace(t, tmp_path / "a")
    f = tmp_path / "o.npz"
    assert main(["simulate", str(tmp_path / "a"), "--save-outputs", str(f), "--json",
                 "--save-tensors"]) == 0
    js = json.loads(capsys.readouterr().out)
    with np.load(f) as z:
        keys = set(z.files)
        assert {"outputs", "wide_outputs", "reference_outputs"} <= keys
        assert z["outputs"].shape == (5, 4) and z["outputs"].dtype == np.float64
        np.testing.assert_array_equal(z["reference_outputs"],
                                      forward64(t).reshape(5, -1))
        every = forward64(t, return_all=True)
        for name, v in every.items():
            np.testing.assert_array_equal(z[f"reference_tensor/{name}"], v)
        # the folded bias: q's own output is not kept, the Add's is
        assert "tensor/Q" in keys and "tensor/q0" not in keys
        assert "wide_tensor/S" in keys and z["tensor/S"].shape == (5, 5, 5)
        acc = np.mean(z["outputs"].argmax(1) == t.labels)
    assert js["accuracy"] == acc
    assert not list(tmp_path.glob(".o.npz*"))


def test_save_outputs_python(tmp_path):
    t, _ = conv_trace(n=4)
    r = simulate(t, "fp16-fp16acc")
    save_outputs(tmp_path / "r.npz", r)
    with np.load(tmp_path / "r.npz") as z:
        assert sorted(z.files) == ["outputs", "reference_outputs"]
        np.testing.assert_array_equal(z["outputs"], r.outputs)
    with pytest.raises(ValueError, match="kept no tensors"):
        save_outputs(tmp_path / "s.npz", r, tensors=True)
    assert not (tmp_path / "s.npz").exists()


def test_save_tensors_needs_save_outputs(capsys):
    assert main(["simulate", "digits-mlp-relu", "--save-tensors", "--limit", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--save-tensors: needs --save-outputs" in err


def test_static_and_multilevel_policies_on_graph_products():
    t, _ = conv_trace(n=8)
    r = simulate(t, "fp16-fp32acc", narrow="bf16", policy="static", tau=1e-3, calibration=3)
    assert r.n_samples == 5
    for lr in r.layers:                         # one rung per output channel, groups joined
        assert len(lr.neuron_levels) == lr.cols
    a, _ = attention_trace(n=6)
    r = simulate(a, "fp16-fp32acc", narrow="bf16", policy="multi-level", tau=1e-3)
    assert sum(lr.outputs for lr in r.layers) == sum(sum(lr.level_counts) for lr in r.layers)


def test_overflow_with_float_operands_flows_on():
    """fp16 operands keep NaN and inf (no mapping); the next product's outputs are NaN."""
    t = overflow_trace(n=3)
    t = Trace.from_graph("ovf16", t.graph, t.arrays, np.full((3, 1, 64), 60000.0))
    r = simulate(t, "fp16-fp16acc")
    d = {lr.name: lr for lr in r.layers}
    assert d["pos"].inf == 12 and d["out"].operand_nan == 0
    assert d["out"].nan == d["out"].outputs == 9
    assert np.isnan(r.outputs).all() and r.agreement == 0.0


def test_engine_errors_name_the_node():
    """An engine refusal inside a product names the node (operands of 31 significant bits
    make products float64 cannot hold exactly)."""
    wide_ops = FloatFormat(8, 30)
    acc = Accelerator(wide_ops, wide_ops, FP32, FloatFormat(11, 52), name="odd")
    g = Graph([Node("mm", "MatMul", ["x", "W"], ["y"])], "x", (1, 4), "y")
    t = Trace.from_graph("e", g, {"W": RNG.standard_normal((4, 2))},
                         RNG.standard_normal((3, 4)))
    with pytest.raises(ValueError, match=r"^node mm \(MatMul\): a, b: exact products") as ei:
        simulate(t, acc)
    assert "\n" not in str(ei.value)
