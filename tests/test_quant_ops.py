"""Quantized operators (accsim.network.quant_ops) against onnxruntime, bit for bit.

Single-node models on random and adversarial int8/uint8 data, the bad inputs onnxruntime
refuses, and the committed fixture models (tests/fixtures/onnx_quant) with every quantized
intermediate tensor compared."""

import os
import sys
from fractions import Fraction

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from accsim.network import graph_ops, quant_ops
from accsim.network.graph import Graph, Node
from accsim.network.graph_ops import OpError

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "onnx_quant")
sys.path.insert(0, FIX)
from make_quant_fixtures import fused, register_float_glue, to_graph  # noqa: E402

register_float_glue()
MS = "com.microsoft"
CONTRIB = {"QLinearAdd", "QGemm", "QLinearSigmoid", "QLinearAveragePool",
           "QLinearGlobalAveragePool"}


# --- onnxruntime single-node runs -----------------------------------------------------------

def ort_session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def node_model(op, feeds, n_out=1, attrs=None):
    """A one-node model whose inputs are ``feeds`` (name -> array or None)."""
    names = [k if v is not None else "" for k, v in feeds.items()]
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                         v.shape) for k, v in feeds.items() if v is not None]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, name="n0", domain=MS if op in CONTRIB else "",
                            **(attrs or {}))
    g = helper.make_graph([node], "g", ins,
                          [helper.make_empty_tensor_value_info(o) for o in outs])
    opsets = [helper.make_opsetid("", 19), helper.make_opsetid(MS, 1)]
    return helper.make_model(g, opset_imports=opsets)


def run_ort(op, feeds, n_out=1, attrs=None):
    m = node_model(op, feeds, n_out, attrs)
    sess = ort_session(m)
    return sess.run(None, {k: v for k, v in feeds.items() if v is not None})


def run_ref(op, feeds, n_out=1, attrs=None):
    node = Node("n0", op, [k if v is not None else "" for k, v in feeds.items()],
                [f"y{i}" for i in range(n_out)], attrs or {})
    ins = [None if v is None else np.asarray(v)[None] for v in feeds.values()]
    return [o[0] for o in graph_ops.run_node(node, ins)]


def assert_same(op, feeds, n_out=1, attrs=None):
    want = run_ort(op, feeds, n_out, attrs)
    got = run_ref(op, feeds, n_out, attrs)
    for w, g in zip(want, got):
        assert g.dtype == w.dtype, (op, g.dtype, w.dtype)
        assert g.shape == w.shape, (op, g.shape, w.shape)
        bad = np.count_nonzero(g.view(np.uint8) != w.view(np.uint8)) if g.dtype.itemsize == 1 \
            else np.count_nonzero(g != w)
        assert bad == 0, f"{op}: {bad} of {w.size} differ"
    return want


RNG = np.random.default_rng(2126)


def q(shape, dt):
    lo, hi = quant_ops.QTYPES[np.dtype(dt)]
    return RNG.integers(lo, hi + 1, size=shape).astype(dt)


def f32(*v):
    return np.array(v, dtype=np.float32)


def zp(v, dt):
    return np.array(v, dtype=dt)


def sc(v):
    """A scalar float32 scale (the contrib ops need rank 0)."""
    return np.array(v, dtype=np.float32)


# --- QuantizeLinear / DequantizeLinear ---------------------------------------------------------

@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_quantize_linear_ties_and_saturation(dt):
    s = f32(0.5)
    # ties at .5 of x/s (0.25/0.5 = 0.5, 0.75/0.5=1.5 ...), both ends saturating, -0, inf
    x = np.concatenate([np.arange(-80, 80, dtype=np.float32) * 0.25,
                        f32(1e9, -1e9, np.inf, -np.inf, -0.0, 63.75, -64.25)])
    z = zp(3 if dt == np.uint8 else -2, dt)
    assert_same("QuantizeLinear", {"x": x, "s": s, "z": z})
    xr = (RNG.standard_normal(4000) * 40).astype(np.float32)
    assert_same("QuantizeLinear", {"x": xr, "s": f32(0.37), "z": z})


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_quantize_dequantize_per_axis(dt):
    x = (RNG.standard_normal((2, 4, 3, 5)) * 30).astype(np.float32)
    s = f32(0.1, 0.25, 0.7, 1.3)
    z = q((4,), dt)
    assert_same("QuantizeLinear", {"x": x, "s": s, "z": z}, attrs={"axis": 1})
    s3 = f32(0.2, 0.5, 0.9)
    assert_same("QuantizeLinear", {"x": x, "s": s3, "z": q((3,), dt)}, attrs={"axis": -2})
    xi = q((2, 4, 3, 5), dt)
    assert_same("DequantizeLinear", {"x": xi, "s": s, "z": z}, attrs={"axis": 1})
    assert_same("DequantizeLinear", {"x": xi, "s": f32(0.013), "z": zp(7, dt)})


def test_quantize_linear_default_uint8_and_int32_dequantize():
    x = (RNG.standard_normal(50) * 9).astype(np.float32)
    assert_same("QuantizeLinear", {"x": x, "s": f32(0.1)})
    b = RNG.integers(-2 ** 30, 2 ** 30, size=64).astype(np.int32)
    assert_same("DequantizeLinear", {"x": b, "s": f32(3.1e-5)})


def test_dynamic_quantize_linear():
    for x in [(RNG.standard_normal((3, 40)) * 5).astype(np.float32),
              np.abs(RNG.standard_normal((7,))).astype(np.float32),
              -np.abs(RNG.standard_normal((2, 9))).astype(np.float32),
              np.zeros((4,), np.float32)]:
        assert_same("DynamicQuantizeLinear", {"x": x}, n_out=3)


def test_dynamic_quantize_linear_per_sample():
    xs = (RNG.standard_normal((5, 1, 30)) * 3).astype(np.float32)
    node = Node("d", "DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    y, s, z = graph_ops.run_node(node, [xs])
    for i in range(5):
        w = run_ort("DynamicQuantizeLinear", {"x": xs[i]}, 3)
        assert np.array_equal(y[i], w[0]) and s[i] == w[1] and z[i] == w[2]
    batch = Node("d", "DynamicQuantizeLinear", ["x"], ["y", "s", "z"],
                 {quant_ops.RANGE_ATTR: "batch"})
    y, s, z = graph_ops.run_node(batch, [xs])
    w = run_ort("DynamicQuantizeLinear", {"x": xs.reshape(5, 30)}, 3)
    assert s.shape == (1,) and s[0] == w[1] and z[0] == w[2]
    assert np.array_equal(y.reshape(5, 30), w[0])
    with pytest.raises(OpError, match="accsim_range must be"):
        graph_ops.run_node(Node("d", "DynamicQuantizeLinear", ["x"], ["y", "s", "z"],
                                {quant_ops.RANGE_ATTR: "global"}), [xs])


# --- integer products --------------------------------------------------------------------------

@pytest.mark.parametrize("ta,tb", [(np.uint8, np.uint8), (np.uint8, np.int8),
                                   (np.int8, np.int8), (np.int8, np.uint8)])
def test_matmul_integer(ta, tb):
    a, b = q((3, 17), ta), q((17, 6), tb)
    assert_same("MatMulInteger", {"a": a, "b": b, "za": zp(5, ta), "zb": zp(-3 if tb ==
                                                                         np.int8 else 9, tb)})
    assert_same("MatMulInteger", {"a": a, "b": b, "za": zp(1, ta), "zb": q((6,), tb)})
    assert_same("MatMulInteger", {"a": a, "b": b})


@pytest.mark.parametrize("tw", [np.uint8, np.int8])
def test_conv_integer(tw):
    x, w = q((2, 4, 7, 6), np.uint8), q((6, 2, 3, 3), tw)
    assert_same("ConvInteger", {"x": x, "w": w, "zx": zp(100, np.uint8), "zw": zp(3, tw)},
                attrs={"group": 2, "pads": [1, 0, 2, 1], "strides": [2, 1]})
    assert_same("ConvInteger", {"x": x, "w": q((4, 4, 2, 2), tw)},
                attrs={"dilations": [2, 1]})


def qlinear_conv_feeds(tx, tw, m, per_channel, bias=True, group=1):
    x = q((2, 4, 6, 5), tx)
    w = q((m, 4 // group, 3, 3), tw)
    ws = (np.abs(RNG.standard_normal(m)) * 0.02 + 0.001).astype(np.float32) if per_channel \
        else f32(0.013)
    return {"x": x, "xs": f32(0.021), "xz": zp(7 if tx == np.uint8 else -5, tx), "w": w,
            "ws": ws, "wz": np.zeros(ws.shape, tw), "ys": f32(0.05),
            "yz": zp(128 if tx == np.uint8 else 3, tx),
            "b": RNG.integers(-3000, 3000, m).astype(np.int32) if bias else None}


@pytest.mark.parametrize("tx,tw,pc", [(np.uint8, np.int8, False), (np.uint8, np.int8, True),
                                      (np.uint8, np.uint8, False), (np.int8, np.int8, True)])
def test_qlinear_conv(tx, tw, pc):
    for group, bias in ((1, True), (2, False), (4, True)):
        feeds = qlinear_conv_feeds(tx, tw, 8, pc, bias, group)
        assert_same("QLinearConv", feeds, attrs={"group": group, "pads": [1, 1, 1, 1]})


def test_qlinear_conv_per_channel_weight_zero_points():
    feeds = qlinear_conv_feeds(np.uint8, np.int8, 8, True)
    feeds["wz"] = np.arange(-4, 4).astype(np.int8)
    assert_same("QLinearConv", feeds, attrs={"pads": [1, 1, 1, 1]})


def test_qlinear_conv_saturates_both_ends():
    feeds = qlinear_conv_feeds(np.uint8, np.int8, 8, True)
    feeds["ys"] = f32(0.0005)  # tiny output scale: most outputs saturate at 0 or 255
    out = assert_same("QLinearConv", feeds, attrs={"pads": [1, 1, 1, 1]})[0]
    assert (out == 0).any() and (out == 255).any()


@pytest.mark.parametrize("tx,tw", [(np.uint8, np.int8), (np.uint8, np.uint8),
                                   (np.int8, np.int8)])
def test_qlinear_matmul(tx, tw):
    a, b = q((2, 5, 33), tx), q((33, 7), tw)
    for bs, bz in ((f32(0.004), zp(0, tw)),
                   ((np.abs(RNG.standard_normal(7)) * 0.01 + 1e-3).astype(np.float32),
                    q((7,), tw))):
        assert_same("QLinearMatMul", {"a": a, "as": f32(0.03), "az": q((), tx), "b": b,
                                      "bs": bs, "bz": bz, "ys": f32(0.11), "yz": q((), tx)})


def test_requantize_ties_and_wide_accumulators():
    """Output scale exactly 0.5 (every odd accumulator is a tie), and accumulators beyond
    2**24, where float32(acc) itself rounds."""
    a = RNG.integers(0, 4, (3, 8)).astype(np.uint8)
    b = RNG.integers(-3, 4, (8, 50)).astype(np.int8)
    feeds = {"a": a, "as": f32(1.0), "az": zp(0, np.uint8), "b": b, "bs": f32(0.5),
             "bz": zp(0, np.int8), "ys": f32(1.0), "yz": zp(100, np.uint8)}
    assert_same("QLinearMatMul", feeds)
    k = 700
    a = np.full((2, k), 255, np.uint8)
    a[1, ::3] = RNG.integers(0, 255, len(a[1, ::3]))
    b = np.full((k, 9), -128, np.int8)
    b[::7] = RNG.integers(-128, 127, (len(b[::7]), 9))
    feeds = {"a": a, "as": f32(1.0), "az": zp(0, np.uint8), "b": b, "bs": f32(1e-6),
             "bz": zp(0, np.int8), "ys": f32(1.0), "yz": zp(128, np.uint8)}
    acc = a.astype(np.int64) @ b.astype(np.int64)
    assert np.abs(acc).max() > 2 ** 24
    assert_same("QLinearMatMul", feeds)


@pytest.mark.parametrize("tx,tw", [(np.uint8, np.int8), (np.int8, np.int8)])
def test_qgemm(tx, tw):
    a, b = q((4, 12), tx), q((9, 12), tw)
    c = RNG.integers(-5000, 5000, 9).astype(np.int32)
    for bs, bz in ((f32(0.02), np.zeros((1,), tw)),
                   ((np.abs(RNG.standard_normal(9)) * 0.02 + 1e-3).astype(np.float32),
                    np.zeros(9, tw))):
        feeds = {"a": a, "as": f32(0.05), "az": q((), tx), "b": b, "bs": bs, "bz": bz,
                 "c": c, "ys": f32(0.3), "yz": q((), tx)}
        assert_same("QGemm", feeds, attrs={"transB": 1, "alpha": 0.75})


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_qlinear_add(dt):
    a, b = q((2, 3, 37), dt), q((2, 3, 37), dt)
    feeds = {"a": a, "as": sc(0.031), "az": q((), dt), "b": b, "bs": sc(0.017),
             "bz": q((), dt), "cs": sc(0.04), "cz": q((), dt)}
    assert_same("QLinearAdd", feeds)
    feeds["b"] = q((37,), dt)  # broadcast
    assert_same("QLinearAdd", feeds)
    mid = zp(128 if dt == np.uint8 else 0, dt)
    feeds.update(cs=sc(0.002), az=mid, bz=mid, cz=mid)  # saturation at both ends
    out = assert_same("QLinearAdd", feeds)[0]
    lo, hi = quant_ops.QTYPES[np.dtype(dt)]
    assert (out == lo).any() and (out == hi).any()


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_qlinear_sigmoid_all_codes(dt):
    lo, hi = quant_ops.QTYPES[np.dtype(dt)]
    x = np.arange(lo, hi + 1).astype(dt).reshape(1, 256)
    for xs, ys in ((0.05, 1 / 256), (0.13, 0.0041), (0.002, 0.003)):
        assert_same("QLinearSigmoid", {"x": x, "xs": sc(xs), "xz": zp(3, dt),
                                       "ys": sc(ys), "yz": zp(lo, dt)})


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_qlinear_pools(dt):
    x = q((2, 3, 7, 6), dt)
    p = {"x": x, "xs": sc(0.07), "xz": q((), dt), "ys": sc(0.031), "yz": q((), dt)}
    assert_same("QLinearGlobalAveragePool", p)
    for attrs in ({"kernel_shape": [2, 2], "strides": [2, 2]},
                  {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
                  {"kernel_shape": [3, 2], "pads": [1, 0, 1, 1], "count_include_pad": 1}):
        assert_same("QLinearAveragePool", p, attrs=attrs)


# --- bad input ----------------------------------------------------------------------------------

def ort_refuses(op, feeds, attrs=None):
    try:
        run_ort(op, feeds, attrs=attrs)
    except Exception:  # noqa: BLE001 - onnxruntime raises several exception types
        return True
    return False


def ref_error(op, feeds, attrs=None):
    with pytest.raises(OpError) as e:
        run_ref(op, feeds, attrs=attrs)
    msg = str(e.value)
    assert msg.startswith(f"node n0 ({op}):") and "\n" not in msg
    return msg


@pytest.mark.parametrize("bad", [0.0, -0.5, np.nan, np.inf])
def test_bad_scales_refused(bad):
    x = np.ones(4, np.float32)
    assert "y_scale" in ref_error("QuantizeLinear", {"x": x, "s": f32(bad), "z": zp(0, np.uint8)})
    feeds = qlinear_conv_feeds(np.uint8, np.int8, 8, False)
    feeds["ys"] = f32(bad)
    assert "y_scale" in ref_error("QLinearConv", feeds, {"pads": [1, 1, 1, 1]})


@pytest.mark.parametrize("op,feeds", [
    ("QLinearConv", dict(qlinear_conv_feeds(np.int8, np.int8, 8, False),
                         w=q((8, 4, 3, 3), np.uint8), wz=zp(0, np.uint8))),
    ("QLinearMatMul", {"a": q((2, 3), np.int8), "as": f32(0.1), "az": zp(0, np.int8),
                       "b": q((3, 4), np.uint8), "bs": f32(0.1), "bz": zp(0, np.uint8),
                       "ys": f32(0.1), "yz": zp(0, np.int8)}),
    ("QLinearAdd", {"a": q((5,), np.int8), "as": f32(0.1), "az": zp(0, np.int8),
                    "b": q((5,), np.uint8), "bs": f32(0.1), "bz": zp(0, np.uint8),
                    "cs": f32(0.1), "cz": zp(0, np.int8)}),
    ("QuantizeLinear", {"x": np.ones(3, np.float32), "s": f32(0.1), "z": zp(0, np.int32)}),
])
def test_mixed_types_refused_like_onnxruntime(op, feeds):
    attrs = {"pads": [1, 1, 1, 1]} if op == "QLinearConv" else None
    assert ort_refuses(op, feeds, attrs)
    ref_error(op, feeds, attrs)


def test_zero_point_type_and_range():
    x = np.ones(3, np.float32)
    msg = ref_error("QuantizeLinear", {"x": x, "s": f32(0.1), "z": np.array(300, np.int32)})
    assert "must be int8 or uint8, got int32" in msg
    feeds = qlinear_conv_feeds(np.uint8, np.int8, 8, True)
    feeds["xz"] = np.array(300, np.int32)
    assert ort_refuses("QLinearConv", feeds, {"pads": [1, 1, 1, 1]})
    assert "x_zero_point 300 is out of range for uint8" in ref_error(
        "QLinearConv", feeds, {"pads": [1, 1, 1, 1]})


def test_unsupported_attribute_refused():
    feeds = qlinear_conv_feeds(np.uint8, np.int8, 8, False)
    assert "auto_pad" in ref_error("QLinearConv", feeds, {"auto_pad": "SAME_UPPER"})


# --- whole fixture models ---------------------------------------------------------------------

@pytest.mark.parametrize("name", [f for f in sorted(os.listdir(FIX)) if "-qdq" in f])
def test_fuse_qdq_as_onnxruntime(name, tmp_path):
    """fuse_qdq yields the operators onnxruntime's own QDQ fusion yields, in order."""
    path = os.path.join(FIX, name)
    graph, arrays = to_graph(onnx.load(path))
    mine = quant_ops.fuse_qdq(graph, arrays)
    theirs, _ = to_graph(fused(path, str(tmp_path)))
    assert [n.op for n in mine.nodes] == [n.op for n in theirs.nodes]
    assert quant_ops.fuse_qdq(mine, arrays) is mine  # nothing left to fuse


def test_fuse_qdq_keeps_groups_it_cannot_fuse():
    """A DQ -> MaxPool -> Q pair with different parameters is kept (and runs in float)."""
    arrays = {"s1": np.float32(0.1), "s2": np.float32(0.2), "z": np.uint8(3)}
    nodes = [Node("q", "QuantizeLinear", ["x", "s1", "z"], ["xq"]),
             Node("dq", "DequantizeLinear", ["xq", "s1", "z"], ["xf"]),
             Node("mp", "MaxPool", ["xf"], ["pf"], {"kernel_shape": [2, 2]}),
             Node("q2", "QuantizeLinear", ["pf", "s2", "z"], ["pq"]),
             Node("dq2", "DequantizeLinear", ["pq", "s2", "z"], ["y"])]
    g = Graph(nodes, "x", (1, 1, 4, 4), "y")
    assert quant_ops.fuse_qdq(g, arrays) is g
    arrays["s2"] = np.float32(0.1)
    fused_g = quant_ops.fuse_qdq(g, arrays)
    assert [n.op for n in fused_g.nodes] == ["QuantizeLinear", "MaxPool", "DequantizeLinear"]
    x = RNG.standard_normal((3, 1, 1, 4, 4)).astype(np.float32)
    assert np.array_equal(quant_ops.forward_float32(fused_g, arrays, x),
                          quant_ops.forward_float32(g, arrays, x))


def quantized_tensors(model, env):
    """Names of the node outputs of ``model`` that are integer tensors in ``env`` (the
    reference run; onnxruntime's dtype is compared separately)."""
    outs = [o for n in model.graph.node for o in n.output]
    return [o for o in outs if o in env and env[o].dtype.kind in "iu"]


def ort_all(model, names, xs):
    """onnxruntime's values of tensors ``names`` (added as graph outputs) and the final
    output, sample by sample (each a batch-1 run)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend([helper.make_empty_tensor_value_info(n) for n in names
                           if n not in have])
    sess = ort_session(m)
    outs = [o.name for o in sess.get_outputs()]
    per = [sess.run(None, {sess.get_inputs()[0].name: x}) for x in xs]
    return {n: np.stack([p[i] for p in per]) for i, n in enumerate(outs)}


#: models whose float glue contains float ops that onnxruntime computes with
#: approximations (MLAS's logistic polynomial, vectorised pool sums): the first float
#: tensor that differs; every quantized tensor must still be exact
FLOAT_GLUE_INEXACT = {"rescnn-dynamic.onnx": "dw_sigmoid"}

FIXTURES = sorted(f for f in os.listdir(FIX) if f.endswith(".onnx") and "float" not in f)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_model_bit_exact(name, tmp_path):
    path = os.path.join(FIX, name)
    original = onnx.load(path)
    model = original
    xs = np.load(os.path.join(FIX, "inputs.npz"))[name.split("-")[0]]
    graph, arrays = to_graph(model)
    graph = quant_ops.fuse_qdq(graph, arrays)
    ref = quant_ops.forward_float32(graph, arrays, xs, keep_all=True)
    names = quantized_tensors(model, ref)
    want = ort_all(model, names, xs)
    report = {}
    for n in names:
        assert ref[n].dtype == want[n].dtype and ref[n].shape == want[n].shape, n
        report[n] = int(np.count_nonzero(ref[n] != want[n]))
    out = original.graph.output[0].name
    final = ort_all(original, [], xs)[out]  # the untouched model, default session
    report["final output"] = int(np.count_nonzero(ref[graph.output] != final))
    print(f"{name}: mismatches per tensor {report}")
    assert len(names) >= 3
    if name in FLOAT_GLUE_INEXACT:
        assert sum(report[n] for n in names) == 0, report
        floats = [o for n in model.graph.node for o in n.output
                  if o in ref and ref[o].dtype.kind == "f"]
        got = ort_all(model, floats, xs)
        first = next(o for o in floats if np.any(got[o] != ref[o]))
        assert first == FLOAT_GLUE_INEXACT[name]
        np.testing.assert_allclose(ref[graph.output], final, rtol=1e-5, atol=1e-6)
    else:
        assert sum(report.values()) == 0, report


# --- the FMA forms are the ones onnxruntime runs (adversarial cases) --------------------------

def logistic_unfused(x):
    """MLAS's logistic with separate float32 multiply and add (the form not matched)."""
    f = np.float32
    v = np.clip(np.asarray(x, f), f(-18), f(18))
    v2 = (v * v).astype(f)
    al = [f(c) for c in quant_ops.LOGISTIC["alpha"]]
    be = [f(c) for c in quant_ops.LOGISTIC["beta"]]
    p = (v2 * al[0] + al[1]).astype(f)
    for c in al[2:]:
        p = (p * v2 + c).astype(f)
    p = (p * v).astype(f)
    qq = (v2 * be[0] + be[1]).astype(f)
    for c in be[2:]:
        qq = (qq * v2 + c).astype(f)
    return np.clip((p / qq).astype(f) + f(0.5), 0, 1).astype(f)


def test_qlinear_sigmoid_fma_form():
    """Output scales chosen so that the fused and unfused logistic quantize differently."""
    codes = np.arange(256)
    x = codes.astype(np.uint8).reshape(1, 256)
    checked = 0
    for xs in (0.05, 0.011, 0.07):
        deq = quant_ops.dequantize(codes, np.float32(xs), 128)
        fused_v, plain = quant_ops.mlas_logistic(deq), logistic_unfused(deq)
        i = np.nonzero(fused_v != plain)[0][0]
        ys = np.float32((float(fused_v[i]) + float(plain[i])) / 2 / 100.5)
        feeds = {"x": x, "xs": sc(xs), "xz": zp(128, np.uint8), "ys": sc(ys),
                 "yz": zp(0, np.uint8)}
        want = assert_same("QLinearSigmoid", feeds)[0][0]
        alt = quant_ops.quantize_linear(plain, ys, np.int64(0), np.dtype(np.uint8))
        assert alt[i] != want[i]
        checked += 1
    assert checked == 3


def f32_nearest(e):
    """The float32 nearest to the Fraction ``e``, ties to even (the oracle of fma_vec)."""
    f = np.float32(float(e))
    cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    return min(cands, key=lambda v: (abs(Fraction(float(v)) - e),
                                     int(np.asarray(v).view(np.int32)) & 1))


def test_fma_vec_against_exact_rationals():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(3000).astype(np.float32)
    b = (rng.standard_normal(3000) * 2.0 ** rng.integers(-30, 30, 3000)).astype(np.float32)
    c = (rng.standard_normal(3000) * 2.0 ** rng.integers(-40, 40, 3000)).astype(np.float32)
    # midpoint cases: (1 + 2**-12)**2 = 1 + 2**-11 + 2**-24 is a float32 midpoint; a
    # tiny c moves the exact sum off it, which float64 rounding alone loses
    m, t = np.float32(1 + 2.0 ** -12), np.float32(2.0 ** -80)
    a = np.concatenate([a, [m, m, -m, -m, m]]).astype(np.float32)
    b = np.concatenate([b, [m, m, m, m, m]]).astype(np.float32)
    c = np.concatenate([c, [t, -t, t, -t, 0]]).astype(np.float32)
    got = quant_ops.fma_vec(a, b, c)
    want = [f32_nearest(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
            for x, y, z in zip(a, b, c)]
    assert np.array_equal(got, np.array(want, np.float32))
    assert got[-5] != got[-4] and got[-3] != got[-2]  # the midpoint cases round apart


def test_qlinear_add_all_code_pairs():
    """Every (a, b) pair of codes under several random scales and zero points."""
    rng = np.random.default_rng(7)
    for dt in (np.uint8, np.int8):
        lo = quant_ops.QTYPES[np.dtype(dt)][0]
        a = (np.arange(65536) // 256 + lo).astype(dt).reshape(256, 256)
        b = (np.arange(65536) % 256 + lo).astype(dt).reshape(256, 256)
        for _ in range(6):
            sa, sb, scc = (np.float32(v) for v in rng.uniform(0.005, 0.1, 3))
            za, zb, zc = (zp(v, dt) for v in rng.integers(lo, lo + 256, 3))
            assert_same("QLinearAdd", {"a": a, "as": sc(sa), "az": za, "b": b,
                                       "bs": sc(sb), "bz": zb, "cs": sc(scc), "cz": zc})


# --- the three steps, as the simulator will call them ------------------------------------------

def naive_conv_acc(x, w, zx, zw, bias, pads):
    """Python-int convolution of one image (C, H, W) with filters (M, C, kh, kw), group 1,
    stride 1, zero padding that holds the zero point: the oracle of accumulate()."""
    c, h, wd = x.shape
    m, _, kh, kw = w.shape
    t, l, b, r = pads
    out = {}
    for o in range(m):
        for i in range(h + t + b - kh + 1):
            for j in range(wd + l + r - kw + 1):
                s = int(bias[o])
                for cc in range(c):
                    for u in range(kh):
                        for v in range(kw):
                            hh, ww = i + u - t, j + v - l
                            xv = int(x[cc, hh, ww]) if 0 <= hh < h and 0 <= ww < wd else zx
                            s += (xv - zx) * (int(w[o, cc, u, v]) - int(zw[o]))
                out[o, i, j] = s
    return out


def test_integer_product_steps():
    feeds = qlinear_conv_feeds(np.uint8, np.int8, 8, True)
    feeds["wz"] = np.arange(-4, 4).astype(np.int8)
    node = Node("n0", "QLinearConv", list(feeds), ["y"], {"pads": [1, 1, 1, 1]})
    ins = [np.asarray(v)[None] for v in feeds.values()]
    p = quant_ops.integer_product(node, ins)
    assert p.k == 4 * 3 * 3 and p.x_max == 255 - 7
    acc = p.accumulate()
    oracle = naive_conv_acc(feeds["x"][1], feeds["w"], 7, feeds["wz"], feeds["b"],
                            (1, 1, 1, 1))
    assert all(acc[0, 1][k] == v for k, v in oracle.items())
    assert np.array_equal(p.finish(acc), graph_ops.run_node(node, ins)[0])
    w = feeds["w"].astype(np.int64) - feeds["wz"][:, None, None, None]
    bound = max(248 * int(np.abs(w[o]).sum()) + abs(int(feeds["b"][o])) for o in range(8))
    assert p.worst_case_bound() == bound >= np.abs(acc).max()
    # a narrow register's (here wrapped to int16) accumulator goes through the same step 3
    wrapped = ((acc + 2 ** 15) % 2 ** 16) - 2 ** 15
    assert np.array_equal(p.finish(wrapped),
                          quant_ops.requantize(wrapped, p.scale, p.zero_point, p.dtype))


def test_integer_product_matmul_bound_and_int32_wrap():
    a, b = q((3, 40), np.uint8), q((40, 5), np.int8)
    node = Node("n0", "MatMulInteger", ["a", "b", "za", "zb"], ["y"])
    ins = [a[None], b[None], zp(9, np.uint8)[None], zp(-2, np.int8)[None]]
    p = quant_ops.integer_product(node, ins)
    assert p.k == 40 and p.x_max == 246
    assert p.worst_case_bound() == 246 * int(np.abs(b.astype(np.int64) + 2).sum(axis=0).max())
    big = np.array([2 ** 31, -2 ** 31 - 1], np.int64)
    assert p.finish(big).tolist() == [-2 ** 31, 2 ** 31 - 1]


@pytest.mark.parametrize("name", ["mlp-qop.onnx", "mlp-qdq-pc.onnx", "rescnn-qop.onnx",
                                  "rescnn-qdq-pc.onnx"])
def test_graph_ops_forward_runs_integer_only_models(name):
    """Models with no float glue and no MaxPool run through graph_ops.forward as they are,
    to the same outputs as forward_float32."""
    graph, arrays = to_graph(onnx.load(os.path.join(FIX, name)))
    graph = quant_ops.fuse_qdq(graph, arrays)
    xs = np.load(os.path.join(FIX, "inputs.npz"))[name.split("-")[0]][:4]
    assert np.array_equal(graph_ops.forward(graph, arrays, xs),
                          quant_ops.forward_float32(graph, arrays, xs))


def test_float_maxpool_output_refused_by_integer_op():
    """graph_ops' float64 MaxPool turns uint8 codes into floats; the next integer op says
    so, naming itself (forward_float32 keeps the integer type)."""
    graph, arrays = to_graph(onnx.load(os.path.join(FIX, "cnn-qop.onnx")))
    xs = np.load(os.path.join(FIX, "inputs.npz"))["cnn"][:2]
    with pytest.raises(OpError, match=r"^node .* \(QLinearConv\): x must be int8 or uint8, "
                                      r"got float64$"):
        graph_ops.forward(graph, arrays, xs)
