"""Every graph operator against onnxruntime (the oracle): one-node ONNX models built with
onnx.helper, random float32 inputs, several samples through the sample axis (onnxruntime
runs each sample alone), broadcasting, negative axes, parameter inputs given as
initializers to onnxruntime and as attributes (graph.PARAM_INPUTS) to run_node."""

import numpy as np
import pytest

import onnx  # noqa: E402  (test extra: a missing package must fail, not skip)
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper

from accsim.network.graph import PARAM_INPUTS, Node
from accsim.network.graph_ops import OpError, run_node, supported_ops

RNG = np.random.default_rng(20261205)
S = 3  # samples

NP2ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
           np.dtype(np.bool_): TensorProto.BOOL}


def act(*shape, lo=-2.0, hi=2.0):
    """A per-sample input: S samples of model shape ``shape``."""
    return ("act", RNG.uniform(lo, hi, (S, *shape)).astype(np.float32))


def const(a):
    """A constant input (an initializer / array)."""
    return ("const", np.asarray(a))


def build(op, ins, attrs, params, n_out, opset):
    """(onnx model, our Node, names) for one node; ``params`` maps a parameter input's
    attribute name to its value."""
    pos = dict((name, i) for i, name in PARAM_INPUTS.get(op, ()))
    names, inits, graph_in = [], [], []
    for i, (kind, a) in enumerate(ins):
        name = f"i{i}" if a is not None else ""
        names.append(name)
        if a is None:
            continue
        if kind == "act":
            graph_in.append(helper.make_tensor_value_info(name, NP2ONNX[a.dtype],
                                                          a.shape[1:]))
        else:
            inits.append(numpy_helper.from_array(a, name))
    onnx_names = list(names)
    for pname, value in (params or {}).items():
        if value is None:
            continue
        i = pos[pname]
        while len(onnx_names) <= i:
            onnx_names.append("")
        onnx_names[i] = f"p_{pname}"
        inits.append(numpy_helper.from_array(np.asarray(value), f"p_{pname}"))
    while onnx_names and not onnx_names[-1]:
        onnx_names.pop()  # onnxruntime crashes on a trailing omitted input
    outs = [f"o{j}" for j in range(n_out)]
    node = helper.make_node(op, onnx_names, outs, name="n", **(attrs or {}))
    g = helper.make_graph([node], "g", graph_in,
                          [helper.make_value_info(o, onnx.TypeProto()) for o in outs],
                          initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    plain = {k: numpy_helper.to_array(v).reshape(-1)[0].item()
             if isinstance(v, onnx.TensorProto) else v for k, v in (attrs or {}).items()}
    ours = Node("n", op, names, outs, {**plain,
                                       **{k: v for k, v in (params or {}).items()
                                          if v is not None}})
    return model, ours, names


def check(op, ins, attrs=None, params=None, n_out=1, opset=18, rtol=1e-5):
    model, node, names = build(op, ins, attrs, params, n_out, opset)
    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    feeds = [(n, a) for n, (k, a) in zip(names, ins) if k == "act" and a is not None]
    refs = [sess.run(None, {n: np.asarray(a[s]) for n, a in feeds}) for s in range(S)]
    args = [None if a is None else
            (a.astype(np.float64) if a.dtype == np.float32 else a) if k == "act" else
            (a.astype(np.float64) if a.dtype == np.float32 else a)[None]
            for k, a in ins]
    got = run_node(node, args)
    for j in range(n_out):
        ref = np.stack([r[j] for r in refs])
        y = np.broadcast_to(got[j], (S,) + got[j].shape[1:]) if got[j].shape[0] == 1 \
            else got[j]
        assert y.shape == ref.shape, (op, j, y.shape, ref.shape)
        if ref.dtype.kind == "f":
            scale = max(float(np.nanmax(np.abs(ref))), 1.0) if ref.size else 1.0
            np.testing.assert_allclose(y, ref.astype(np.float64), rtol=rtol,
                                       atol=rtol * scale, equal_nan=True)
        else:
            np.testing.assert_array_equal(y, ref)
    return got


UNARY = ["Relu", "Tanh", "Sigmoid", "Neg", "Abs", "Exp", "Erf", "Floor", "Ceil", "Round",
         "Sign", "Softplus", "Softsign", "HardSwish", "Identity"]


@pytest.mark.parametrize("name", UNARY)
def test_unary(name):
    check(name, [act(2, 3, 4)])


def test_unary_positive_domain():
    for name in ("Sqrt", "Log", "Reciprocal"):
        check(name, [act(5, 7, lo=0.1, hi=3.0)])


@pytest.mark.parametrize("attrs", [{}, {"alpha": 0.3, "beta": 0.4}])
def test_hard_sigmoid(attrs):
    check("HardSigmoid", [act(4, 6, lo=-5, hi=5)], attrs)


@pytest.mark.parametrize("op,attrs", [("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.2}),
                                      ("Elu", {"alpha": 0.7}), ("Selu", {}),
                                      ("Selu", {"alpha": 1.5, "gamma": 0.9}), ("Celu", {}),
                                      ("Celu", {"alpha": 0.6}), ("Mish", {}), ("Sin", {}),
                                      ("Cos", {})])
def test_parametric_activations(op, attrs):
    check(op, [act(3, 8)], attrs)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    check("Gelu", [act(4, 9, lo=-4, hi=4)], {"approximate": approximate}, opset=20)


@pytest.mark.parametrize("lo,hi", [(-0.5, 1.0), (None, 0.3), (0.0, None)])
def test_clip(lo, hi):
    lo_ = None if lo is None else np.float32(lo)
    hi_ = None if hi is None else np.float32(hi)
    check("Clip", [act(2, 10)], params={"min": lo_, "max": hi_})


BINARY = ["Add", "Sub", "Mul", "Div", "Equal", "Less", "Greater", "LessOrEqual",
          "GreaterOrEqual"]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)),
                                    ((3, 1), (2, 1, 5)), ((4,), ())])
def test_binary_broadcasting(name, shapes):
    a, b = shapes
    check(name, [act(*a), act(*b)])
    check(name, [act(*a), const(RNG.uniform(-2, 2, b).astype(np.float32))])
    check(name, [const(RNG.uniform(-2, 2, a).astype(np.float32)), act(*b)])


def test_pow_prelu_mod():
    check("Pow", [act(3, 4, lo=0.5, hi=2), const(np.float32(2.0))])
    check("Pow", [act(3, 4, lo=0.5, hi=2), act(4, lo=-1, hi=2)])
    check("PRelu", [act(2, 3, 4, 4), const(RNG.uniform(0, 1, (3, 1, 1)).astype(np.float32))])
    check("Mod", [act(3, 4), const(np.float32(0.7))], {"fmod": 1})
    check("Mod", [const(np.arange(-5, 7, dtype=np.int64)), const(np.int64(4))])


def test_where_not_and_variadic():
    c = ("act", RNG.uniform(0, 1, (S, 3, 4)) > 0.5)
    check("Where", [c, act(4), act(3, 1)])
    check("Not", [c])
    for name in ("And", "Or", "Xor"):
        check(name, [c, ("act", RNG.uniform(0, 1, (S, 4)) > 0.5)])
    for name in ("Max", "Min", "Sum", "Mean"):
        check(name, [act(2, 3), act(3), const(RNG.uniform(-1, 1, (2, 1)).astype(np.float32))])


@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE,
                                TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL])
def test_cast(to):
    check("Cast", [act(3, 5, lo=-3, hi=3)], {"to": to})


def test_cast_unsupported_type():
    with pytest.raises(OpError, match=r"node n \(Cast\).*data type 8"):
        run_node(Node("n", "Cast", ["x"], ["y"], {"to": 8}), [np.zeros((1, 2))])


@pytest.mark.parametrize("axis", [0, 1, -1, -2, 2])
def test_softmax_logsoftmax_any_axis(axis):
    check("Softmax", [act(2, 3, 5, lo=-5, hi=5)], {"axis": axis})
    check("LogSoftmax", [act(2, 3, 5, lo=-5, hi=5)], {"axis": axis})


def test_softmax_default_axis():
    check("Softmax", [act(4, 6)])


@pytest.mark.parametrize("axis,bias", [(-1, True), (1, True), (-2, False)])
def test_layer_normalization(axis, bias):
    shape = (2, 4, 6)
    norm = shape[axis:] if axis < 0 else shape[axis:]
    ins = [act(*shape), const(RNG.uniform(0.5, 1.5, norm).astype(np.float32))]
    ins.append(const(RNG.uniform(-1, 1, norm).astype(np.float32)) if bias else
               ("const", None))
    check("LayerNormalization", ins, {"axis": axis, "epsilon": 1e-3}, n_out=3)


def test_batch_and_instance_normalization():
    c = 5
    ch = [const(RNG.uniform(0.5, 1.5, c).astype(np.float32)) for _ in range(2)]
    mean = const(RNG.uniform(-1, 1, c).astype(np.float32))
    var = const(RNG.uniform(0.2, 2.0, c).astype(np.float32))
    check("BatchNormalization", [act(1, c, 4, 3), ch[0], ch[1], mean, var],
          {"epsilon": 1e-3})
    check("BatchNormalization", [act(2, c), ch[0], ch[1], mean, var])
    check("InstanceNormalization", [act(2, c, 4, 3), ch[0], ch[1]])


def test_batch_norm_training_refused():
    node = Node("bn", "BatchNormalization", ["x", "s", "b", "m", "v"], ["y"],
                {"training_mode": 1})
    with pytest.raises(OpError, match=r"node bn \(BatchNormalization\): training_mode"):
        run_node(node, [np.zeros((1, 1, 2, 2, 2))] + [np.ones((1, 2))] * 4)


REDUCE = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
          "ReduceSumSquare"]


@pytest.mark.parametrize("name", REDUCE)
@pytest.mark.parametrize("axes,keepdims", [([2, 3], 1), ([-1], 0), (None, 1), ([0, -2], 0)])
def test_reduce(name, axes, keepdims):
    ax = None if axes is None else np.array(axes, dtype=np.int64)
    check(name, [act(1, 3, 4, 5, lo=0.5, hi=1.5)], {"keepdims": keepdims},
          params={"axes": ax})


def test_reduce_old_opset_attribute_axes():
    node = Node("r", "ReduceSum", ["x"], ["y"], {"axes": [1], "keepdims": 0})
    model_y = run_node(node, [np.arange(12.0).reshape(1, 3, 4)])[0]
    np.testing.assert_array_equal(model_y, np.arange(12.0).reshape(3, 4).sum(axis=1)[None])
    check("ReduceMax", [act(3, 4)], {"axes": [1], "keepdims": 0}, opset=13)


def test_reduce_noop_with_empty_axes():
    check("ReduceSum", [act(3, 4)], {"noop_with_empty_axes": 1})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_argmax(op):
    check(op, [act(3, 7)], {"axis": -1, "keepdims": 0})
    check(op, [act(3, 7)], {"axis": 0, "keepdims": 1, "select_last_index": 1})


@pytest.mark.parametrize("perm", [None, [0, 2, 1, 3], [3, 1, 0, 2]])
def test_transpose(perm):
    check("Transpose", [act(2, 3, 4, 5)], {} if perm is None else {"perm": perm})


@pytest.mark.parametrize("shape", [[1, -1], [0, 6, -1], [-1], [2, 0, 2, 2], [4, 3, 2]])
def test_reshape(shape):
    check("Reshape", [act(2, 3, 4)], params={"shape": np.array(shape, dtype=np.int64)})


@pytest.mark.parametrize("axis", [0, 1, 2, -1, 3])
def test_flatten(axis):
    check("Flatten", [act(2, 3, 4)], {"axis": axis})


def test_squeeze_unsqueeze():
    check("Squeeze", [act(1, 3, 1, 4)], params={"axes": np.array([0, -2], np.int64)})
    check("Squeeze", [act(1, 3, 1, 4)])
    check("Unsqueeze", [act(3, 4)], params={"axes": np.array([0, -1], np.int64)})
    check("Unsqueeze", [act(3, 4)], params={"axes": np.array([3, 1], np.int64)})
    check("Unsqueeze", [act(3, 4)], {"axes": [1]}, opset=11)


def test_concat_split():
    check("Concat", [act(2, 3), const(np.ones((2, 1), np.float32)), act(2, 2)], {"axis": -1})
    check("Concat", [act(2, 3), act(1, 3)], {"axis": 0})
    check("Split", [act(4, 6)], {"axis": 1}, params={"split": np.array([1, 2, 3], np.int64)},
          n_out=3)
    check("Split", [act(4, 6)], {"axis": -1}, n_out=2, opset=13)
    check("Split", [act(5, 2)], {"axis": 0, "num_outputs": 3}, n_out=3)
    check("Split", [act(4, 6)], {"axis": 1, "split": [4, 2]}, n_out=2, opset=11)


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [3], [0], None), ([0, -3], [2, 100], [1, -1], None),
    ([-1], [-100], [2], [-1]), ([5, 0], [-9223372036854775807, 2], [2, 0], [-2, 1]),
    ([0], [9223372036854775807], None, [2])])
def test_slice(starts, ends, axes, steps):
    p = {"starts": np.array(starts, np.int64), "ends": np.array(ends, np.int64),
         "axes": None if axes is None else np.array(axes, np.int64),
         "steps": None if steps is None else np.array(steps, np.int64)}
    check("Slice", [act(4, 5, 7)], params=p)


def test_gather():
    check("Gather", [act(5, 4), const(np.array([0, -1, 2], np.int64))], {"axis": 0})
    check("Gather", [act(3, 5, 4), const(np.array(2, np.int64))], {"axis": -2})
    table = const(RNG.uniform(-1, 1, (10, 4)).astype(np.float32))
    check("Gather", [table, ("act", RNG.integers(0, 10, (S, 2, 3)).astype(np.int64))])
    check("Gather", [act(3, 10), ("act", RNG.integers(0, 10, (S, 4)).astype(np.int64))],
          {"axis": 1})


def test_expand_tile():
    check("Expand", [act(3, 1)], params={"shape": np.array([2, 1, 4], np.int64)})
    check("Expand", [act(1, 4)], params={"shape": np.array([3, 1], np.int64)})
    check("Tile", [act(2, 3)], params={"repeats": np.array([2, 3], np.int64)})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(mode):
    check("Pad", [act(1, 2, 4, 5)], {"mode": mode},
          params={"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)})


def test_pad_value_axes_and_crop():
    check("Pad", [act(3, 4, 5)], params={"pads": np.array([1, -1, 2, -2], np.int64),
                                         "constant_value": np.float32(0.5),
                                         "axes": np.array([-1, 0], np.int64)})


def test_shape_ops():
    check("Shape", [act(2, 3, 4)])
    check("Shape", [act(2, 3, 4)], {"start": 1, "end": -1})
    check("Size", [act(2, 3, 4)])
    check("ConstantOfShape", [const(np.array([2, 3], np.int64))],
          {"value": numpy_helper.from_array(np.array([1.5], np.float32))})
    check("Range", [const(np.int64(1)), const(np.int64(9)), const(np.int64(3))])


POOL_CASES = [
    ({"kernel_shape": [3, 3]}),
    ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ({"kernel_shape": [2, 3], "strides": [2, 1], "pads": [0, 1, 1, 0], "ceil_mode": 1}),
    ({"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ({"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ({"kernel_shape": [3, 2], "auto_pad": "SAME_LOWER"}),
]


@pytest.mark.parametrize("attrs", POOL_CASES)
def test_maxpool(attrs):
    check("MaxPool", [act(1, 3, 7, 8)], attrs)


def test_maxpool_dilations_1d():
    check("MaxPool", [act(1, 3, 7, 8)], {"kernel_shape": [2, 2], "dilations": [2, 1]})
    check("MaxPool", [act(2, 3, 9)], {"kernel_shape": [3], "strides": [2]})


@pytest.mark.parametrize("attrs", POOL_CASES)
@pytest.mark.parametrize("cip", [0, 1])
def test_avgpool(attrs, cip):
    check("AveragePool", [act(1, 3, 7, 8)], {**attrs, "count_include_pad": cip})


def test_global_pools():
    check("GlobalAveragePool", [act(2, 3, 5, 4)])
    check("GlobalMaxPool", [act(2, 3, 5, 4)])


@pytest.mark.parametrize("ta,tb,c_shape", [(0, 0, (5,)), (1, 0, (3, 5)), (0, 1, (1, 5)),
                                           (1, 1, ())])
def test_gemm(ta, tb, c_shape):
    a = act(*((4, 3) if ta else (3, 4)))
    b = const(RNG.standard_normal((5, 4) if tb else (4, 5)).astype(np.float32))
    c = const(RNG.standard_normal(c_shape).astype(np.float32))
    check("Gemm", [a, b, c], {"transA": ta, "transB": tb, "alpha": 0.5, "beta": 2.0})
    check("Gemm", [a, b], {"transA": ta, "transB": tb})


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
                                   ((4,), (4,)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)),
                                   ((2, 1, 3, 4), (3, 4, 2)), ((2, 3, 4), (2, 4, 5))])
def test_matmul_any_rank(sa, sb):
    check("MatMul", [act(*sa), act(*sb)])
    check("MatMul", [act(*sa), const(RNG.standard_normal(sb).astype(np.float32))])


@pytest.mark.parametrize("attrs,cin,cout,k", [
    ({}, 3, 4, (3, 3)),
    ({"strides": [2, 1], "pads": [1, 0, 1, 2]}, 3, 4, (3, 2)),
    ({"group": 3}, 3, 6, (3, 3)),
    ({"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}, 6, 6, (3, 3)),
    ({"group": 2, "dilations": [2, 2], "pads": [2, 2, 2, 2]}, 4, 6, (3, 3)),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 3, 2, (4, 4)),
    ({"auto_pad": "SAME_LOWER"}, 3, 2, (2, 3)),
    ({"strides": [2]}, 3, 4, (3,)),
])
def test_conv(attrs, cin, cout, k):
    x = act(1, cin, 9, 8) if len(k) == 2 else act(2, cin, 11)
    w = const(RNG.standard_normal((cout, cin // attrs.get("group", 1), *k)).astype(np.float32))
    b = const(RNG.standard_normal(cout).astype(np.float32))
    check("Conv", [x, w, b], attrs)
    check("Conv", [x, w], attrs)


def test_dropout_inference():
    check("Dropout", [act(3, 4)], n_out=1)
    node = Node("d", "Dropout", ["x", "", "t"], ["y"])
    with pytest.raises(OpError, match=r"node d \(Dropout\): training_mode"):
        run_node(node, [np.zeros((1, 2)), None, np.ones((1,), bool)[None]])


def test_unsupported_attribute_values_name_the_node():
    with pytest.raises(OpError, match=r"node g \(Gelu\): attribute approximate='x'"):
        run_node(Node("g", "Gelu", ["x"], ["y"], {"approximate": "x"}), [np.zeros((1, 2))])
    with pytest.raises(OpError, match=r"node p \(MaxPool\): the Indices output"):
        run_node(Node("p", "MaxPool", ["x"], ["y", "i"], {"kernel_shape": [2, 2]}),
                 [np.zeros((1, 1, 1, 4, 4))])
    with pytest.raises(OpError, match=r"node p \(Pad\): attribute mode='circular'"):
        run_node(Node("p", "Pad", ["x"], ["y"], {"pads": [0, 0], "mode": "circular"}),
                 [np.zeros((1, 4))])
    with pytest.raises(OpError, match=r"node q \(Nope\): unsupported op"):
        run_node(Node("q", "Nope", ["x"], ["y"]), [np.zeros((1, 4))])
    with pytest.raises(OpError, match=r"node s \(Softmax\): axis 3 out of range"):
        run_node(Node("s", "Softmax", ["x"], ["y"], {"axis": 3}), [np.zeros((1, 4, 2))])


def test_shape_errors_name_the_node():
    with pytest.raises(OpError, match=r"node m \(MatMul\): cannot run on model shapes "
                                      r"\(3, 4\), \(5, 2\)"):
        run_node(Node("m", "MatMul", ["a", "b"], ["y"]), [np.zeros((1, 3, 4)),
                                                          np.zeros((1, 5, 2))])


def test_every_registered_op_is_tested():
    """Every op in the registry (quant_ops registers the quantized ones, tested in
    test_quant_ops.py) is named by a test against onnxruntime."""
    import pathlib
    import accsim.network.quant_ops  # noqa: F401  (registers its ops)
    here = pathlib.Path(__file__).parent
    text = (here / "test_graph_ops.py").read_text() + (here / "test_quant_ops.py").read_text()
    untested = [o for o in supported_ops() if f'"{o}"' not in text]
    assert untested == []
