"""ONNX import, checked against onnxruntime (float32) as the independent float reference."""

import math

import numpy as np
import pytest

import onnx  # noqa: E402  (test extra: a missing package must fail, not skip)
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper

from accsim.cli import main
from accsim.network.onnx_import import import_onnx
from accsim.network.products import forward64
from accsim.network.trace import load_trace

RNG = np.random.default_rng(1234)


def init(name, a):
    return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)


def save_model(tmp_path, nodes, inits, in_shape, out_shape, name="m", opset=17):
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def run_ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.astype(np.float32)})[0].astype(np.float64)


V1_OPS = {"linear": "Gemm", "conv2d": "Conv", "relu": "Relu", "tanh": "Tanh",
          "sigmoid": "Sigmoid", "gelu": "Gelu", "softmax": "Softmax", "identity": "Identity",
          "flatten": "Flatten", "reshape": "Reshape", "maxpool": "MaxPool",
          "avgpool": "AveragePool", "globalavgpool": "GlobalAveragePool", "add": "Add"}


def check_against_ort(path, x, kinds=None):
    x = x.astype(np.float32).astype(np.float64)  # the same inputs for both
    t = import_onnx(path, x)
    ref = run_ort(path, x)
    ours = forward64(t).reshape(ref.shape)      # the graph adds a model batch axis of one
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    assert rel < 1e-5, rel
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    if kinds is not None:
        assert [n.op for n in t.graph.nodes] == [V1_OPS.get(k, k) for k in kinds]
    return t


def w(*shape, scale=None):
    fan = np.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return RNG.standard_normal(shape) * (scale or 1 / math.sqrt(fan))


def test_mlp_gemm(tmp_path):
    W1, b1, W2, b2 = w(32, 20), w(32), w(10, 32), w(10)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1, name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu1"),
             helper.make_node("Gemm", ["r", "W2t", "b2"], ["z"], alpha=0.5, beta=2.0,
                              name="fc2"),
             helper.make_node("Softmax", ["z"], ["y"], name="sm")]
    path = save_model(tmp_path, nodes, [init("W1", W1), init("b1", b1), init("W2t", W2.T),
                                        init("b2", b2)], [None, 20], [None, 10])
    t = check_against_ort(path, RNG.standard_normal((16, 20)),
                          ["linear", "relu", "linear", "softmax"])
    assert t.matmul_layers() == ["fc1", "fc2"]
    np.testing.assert_array_equal(t.arrays["fc2.weight"], 0.5 * W2.astype(np.float32))


def test_matmul_add_folds_bias(tmp_path):
    W1, b1, W2, b2 = w(20, 16), w(16), w(16, 5), w(5)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Tanh", ["a1"], ["t1"]),
             helper.make_node("MatMul", ["t1", "W2"], ["m2"]),
             helper.make_node("Add", ["b2", "m2"], ["a2"]),
             helper.make_node("Sigmoid", ["a2"], ["y"])]
    path = save_model(tmp_path, nodes, [init("W1", W1), init("b1", b1), init("W2", W2),
                                        init("b2", b2)], [None, 20], [None, 5])
    t = check_against_ort(path, RNG.standard_normal((8, 20)),
                          ["linear", "tanh", "linear", "sigmoid"])
    assert all(len(t.node(n).inputs) == 3 for n in t.matmul_layers())     # a bias each


def conv_net(tmp_path, opset=17):
    c1, cb1 = w(4, 1, 3, 3), w(4)
    c2 = w(6, 4, 3, 3)
    cb2 = w(6)
    fw, fb = w(10, 6 * 3 * 3), w(10)
    nodes = [
        helper.make_node("Conv", ["x", "c1", "cb1"], ["h1"], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], name="conv1"),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2"], ["h2"], pads=[0, 1, 1, 0], strides=[2, 1],
                         name="conv2"),
        helper.make_node("Add", ["h2", "cb2"], ["h2b"]),
        helper.make_node("Relu", ["h2b"], ["r2"]),
        helper.make_node("AveragePool", ["r2"], ["p2"], kernel_shape=[3, 3], strides=[1, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["p2"], ["p3"], kernel_shape=[2, 2], strides=[1, 1],
                         pads=[0, 0, 1, 1], count_include_pad=1),
        helper.make_node("Flatten", ["p3"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    inits = [init("c1", c1), init("cb1", cb1), init("c2", c2),
             init("cb2", cb2.reshape(6, 1, 1)), init("fw", fw), init("fb", fb)]
    return save_model(tmp_path, nodes, inits, [None, 1, 12, 12], [None, 10], opset=opset)


def test_conv_net_with_pooling(tmp_path):
    path = conv_net(tmp_path)
    t = check_against_ort(path, RNG.random((5, 1, 12, 12)),
                          ["conv2d", "relu", "maxpool", "conv2d", "relu", "avgpool",
                           "avgpool", "flatten", "linear"])
    assert t.node("conv2").attrs["pads"] == [0, 1, 1, 0]
    assert len(t.node("conv2").inputs) == 3
    assert t.shapes()["conv2"] == (1, 6, 3, 5)


def test_global_pool_reshape_identity(tmp_path):
    c1 = w(3, 2, 3, 3)
    nodes = [helper.make_node("Conv", ["x", "c1"], ["h"], auto_pad="SAME_UPPER",
                              strides=[2, 2]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Identity", ["r"], ["i"]),
             helper.make_node("GlobalAveragePool", ["i"], ["g"]),
             helper.make_node("Reshape", ["g", "shape"], ["y"])]
    shape = numpy_helper.from_array(np.array([-1, 3], np.int64), "shape")
    path = save_model(tmp_path, nodes, [init("c1", c1), shape], [None, 2, 7, 7], [None, 3])
    check_against_ort(path, RNG.standard_normal((4, 2, 7, 7)),
                      ["conv2d", "relu", "identity", "globalavgpool", "flatten"])


def test_gelu_op(tmp_path):
    W = w(6, 8)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]),
             helper.make_node("Gelu", ["m"], ["y"])]
    path = save_model(tmp_path, nodes, [init("W", W)], [None, 6], [None, 8], opset=20)
    check_against_ort(path, RNG.standard_normal((8, 6)) * 2, ["linear", "gelu"])


@pytest.mark.parametrize("form", ["div_then_x_first", "mul_half_first", "half_last"])
def test_gelu_erf_pattern(tmp_path, form):
    W = w(6, 8)
    c = [init("W", W), init("one", 1.0), init("half", 0.5)]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"])]
    if form == "div_then_x_first":
        c.append(init("s2", math.sqrt(2)))
        nodes += [helper.make_node("Div", ["m", "s2"], ["d"])]
    else:
        c.append(init("is2", 1 / math.sqrt(2)))
        nodes += [helper.make_node("Mul", ["is2", "m"], ["d"])]
    nodes += [helper.make_node("Erf", ["d"], ["e"]),
              helper.make_node("Add", ["e", "one"], ["e1"])]
    if form == "div_then_x_first":
        nodes += [helper.make_node("Mul", ["m", "e1"], ["p"]),
                  helper.make_node("Mul", ["p", "half"], ["g"])]
    elif form == "mul_half_first":
        nodes += [helper.make_node("Mul", ["m", "half"], ["h"]),
                  helper.make_node("Mul", ["h", "e1"], ["g"])]
    else:
        nodes += [helper.make_node("Mul", ["e1", "half"], ["h"]),
                  helper.make_node("Mul", ["m", "h"], ["g"])]
    nodes += [helper.make_node("Softmax", ["g"], ["y"])]
    path = save_model(tmp_path, nodes, c, [None, 6], [None, 8])
    check_against_ort(path, RNG.standard_normal((8, 6)) * 2, ["linear", "gelu", "softmax"])


def test_residual_add(tmp_path):
    W1, b1, W2, b2, W3 = w(16, 16), w(16), w(16, 16), w(16), w(4, 16)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["h2"], transB=1),
             helper.make_node("Add", ["h2", "r"], ["s"]),
             helper.make_node("Relu", ["s"], ["r2"]),
             helper.make_node("Add", ["x", "r2"], ["s2"]),
             helper.make_node("Gemm", ["s2", "W3"], ["y"], transB=1)]
    path = save_model(tmp_path, nodes, [init("W1", W1), init("b1", b1), init("W2", W2),
                                        init("b2", b2), init("W3", W3)], [None, 16], [None, 4])
    t = check_against_ort(path, RNG.standard_normal((8, 16)),
                          ["linear", "relu", "linear", "add", "relu", "add", "linear"])
    adds = [n for n in t.graph.nodes if n.op == "Add"]
    assert len(adds[0].inputs) == 2 and "input" in adds[1].inputs


def test_constant_nodes_dropout_and_old_softmax(tmp_path):
    W = w(6, 5)
    nodes = [helper.make_node("Constant", [], ["W"], value=init("Wc", W)),
             helper.make_node("Constant", [], ["shape"],
                              value=numpy_helper.from_array(np.array([0, 6], np.int64))),
             helper.make_node("Reshape", ["x", "shape"], ["xr"]),
             helper.make_node("Dropout", ["xr"], ["d"]),
             helper.make_node("MatMul", ["d", "W"], ["m"]),
             helper.make_node("Softmax", ["m"], ["y"], axis=1)]
    path = save_model(tmp_path, nodes, [], [None, 2, 3], [None, 5], opset=11)
    check_against_ort(path, RNG.standard_normal((4, 2, 3)),
                      ["flatten", "identity", "linear", "softmax"])


def test_unsupported_patterns(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Add", ["r", "c"], ["y"], name="shift")]
    path = save_model(tmp_path, nodes, [init("c", np.ones(4))], [None, 4], [None, 4])
    with pytest.raises(ValueError, match=r"node shift \(Add\): unsupported: adding a constant"):
        import_onnx(path, np.ones((2, 4)))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm3d")]
    path = save_model(tmp_path, nodes, [init("W", w(4, 3))], [None, 2, 4], [None, 2, 3],
                      name="m3")
    with pytest.raises(ValueError, match=r"node mm3d \(MatMul\): unsupported: left operand"):
        import_onnx(path, np.ones((2, 2, 4)))
    nodes = [helper.make_node("MatMul", ["x", "x"], ["y"], name="xx")]
    path = save_model(tmp_path, nodes, [], [None, 4], [None, 4], name="m4")
    with pytest.raises(ValueError, match=r"node xx \(MatMul\): unsupported non-constant"):
        import_onnx(path, np.ones((4, 4)))
    nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=1, name="sm")]
    path = save_model(tmp_path, nodes, [], [None, 3, 4], [None, 3, 4], name="m5")
    with pytest.raises(ValueError, match=r"node sm \(Softmax\): unsupported attribute axis"):
        import_onnx(path, np.ones((2, 3, 4)))


def test_unsupported_op_names_node(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("LeakyRelu", ["r"], ["y"], name="lrelu7")]
    path = save_model(tmp_path, nodes, [], [None, 4], [None, 4])
    with pytest.raises(ValueError) as ei:
        import_onnx(path, np.ones((2, 4)))
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(path) in msg and "node lrelu7 (LeakyRelu): unsupported op" in msg


def test_unsupported_attribute(tmp_path):
    c1 = w(4, 2, 3, 3)
    nodes = [helper.make_node("Conv", ["x", "c1"], ["y"], dilations=[2, 2], name="dil")]
    path = save_model(tmp_path, nodes, [init("c1", c1)], [None, 2, 9, 9], [None, 4, 5, 5])
    with pytest.raises(ValueError, match=r"node dil \(Conv\): unsupported attribute dilations"):
        import_onnx(path, np.ones((1, 2, 9, 9)))
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], ceil_mode=1,
                              name="mp")]
    path = save_model(tmp_path, nodes, [], [None, 2, 9, 9], [None, 2, 5, 5], name="m2")
    with pytest.raises(ValueError, match=r"node mp \(MaxPool\): unsupported attribute ceil_mode"):
        import_onnx(path, np.ones((1, 2, 9, 9)))


def test_weight_shape_mismatch(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    path = save_model(tmp_path, nodes, [init("W", w(5, 3))], [None, 4], [None, 3])
    with pytest.raises(ValueError) as ei:
        import_onnx(path, np.ones((2, 4)))
    assert "node mm (MatMul): shapes do not match" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_input_shape_mismatch(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    path = save_model(tmp_path, nodes, [], [None, 4], [None, 4])
    with pytest.raises(ValueError, match="expects shape"):
        import_onnx(path, np.ones((2, 5)))


def test_cli_import_onnx(tmp_path, capsys):
    path = conv_net(tmp_path)
    x = RNG.random((6, 1, 12, 12))
    y = RNG.integers(0, 10, 6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "trace"
    rc = main(["import-onnx", str(path), "--inputs", str(tmp_path / "x.npy"),
               "--labels", str(tmp_path / "y.npy"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    t = load_trace(out)
    assert t.inputs.shape == (6, 1, 12, 12) and t.quant is None
    assert t.reference_accuracy == t.accuracy()
    ref = run_ort(path, x)
    np.testing.assert_allclose(forward64(t).reshape(ref.shape), ref, rtol=1e-4, atol=1e-5)


def test_cli_quant_options(tmp_path, capsys):
    path = conv_net(tmp_path)
    np.save(tmp_path / "x.npy", RNG.random((2, 1, 12, 12)))
    rc = main(["import-onnx", str(path), "--inputs", str(tmp_path / "x.npy"), "--out",
               str(tmp_path / "q"), "--input-format", "fp8_e4m3fn", "--weight-format", "int8"])
    assert rc == 0, capsys.readouterr().err
    assert load_trace(tmp_path / "q").quant == {
        "input": {"format": "fp8_e4m3fn", "scale": "none"},
        "weight": {"format": "int8", "scale": "per-channel"}}


def test_cli_bad_input(tmp_path, capsys):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Hardmax", ["r"], ["y"], name="hm")]
    path = save_model(tmp_path, nodes, [], [None, 4], [None, 4])
    np.save(tmp_path / "x.npy", np.ones((2, 4)))
    out = tmp_path / "t"
    rc = main(["import-onnx", str(path), "--inputs", str(tmp_path / "x.npy"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "hm (Hardmax)" in err
    assert not out.exists()
    rc = main(["import-onnx", str(path), "--inputs", str(tmp_path / "missing.npy"),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing.npy" in err
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    rc = main(["import-onnx", str(tmp_path / "bad.onnx"), "--inputs", str(tmp_path / "x.npy"),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "bad.onnx" in err
    x = np.ones((2, 4))
    x[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    rc = main(["import-onnx", str(path), "--inputs", str(tmp_path / "nan.npy"),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "NaN" in err and not out.exists()
