"""Product lowering (accsim.network.products) against independent oracles: direct loops in
Python integers or exact float64 arithmetic, and numpy's matmul."""

import numpy as np
import pytest

from accsim import Accelerator, FloatFormat, IntFormat
from accsim.network import simulate
from accsim.network.graph import Graph, Node
from accsim.network.products import (consumer_activation, foldable_bias, forward64, lower,
                                     reference)
from accsim.network.trace import Trace

RNG = np.random.default_rng(5)
FP32 = FloatFormat(8, 23)
FP64 = FloatFormat(11, 52)


def exact_acc():
    """fp32 operands, a float64-like register: with small dyadic data every sum is exact."""
    return Accelerator(FP32, FP32, FP64, FP64, name="exact")


def int_acc():
    i8 = IntFormat(8)
    return Accelerator(i8, i8, IntFormat(32), IntFormat(64), name="int8-int32")


def dyadic(shape, scale=4):
    return RNG.integers(-2 * scale, 2 * scale + 1, size=shape) / scale


def loop_conv(x, w, b, stride, pads, dil, group):
    """Direct convolution of one image x (C, H, W) by loops (exact for the data used)."""
    C, H, W = x.shape
    cout, cg, kh, kw = w.shape
    t, l, bo, r = pads
    xp = np.zeros((C, H + t + bo, W + l + r), dtype=object)
    xp[:, t:t + H, l:l + W] = x.astype(object)
    ho = (H + t + bo - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (W + l + r - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((cout, ho, wo), dtype=object)
    og = cout // group
    for o in range(cout):
        g = o // og
        for i in range(ho):
            for j in range(wo):
                s = b[o] if b is not None else 0
                for c in range(cg):
                    for p in range(kh):
                        for q in range(kw):
                            s += w[o, c, p, q] * xp[g * cg + c, i * stride[0] + p * dil[0],
                                                    j * stride[1] + q * dil[1]]
                out[o, i, j] = s
    return out


CONVS = [  # (C, cout, group, kernel, stride, pads, dilations)
    (4, 6, 2, (3, 3), (1, 2), (2, 1, 2, 1), (2, 2)),
    (3, 3, 3, (3, 2), (1, 1), (1, 1, 1, 0), (1, 1)),        # depthwise
    (2, 4, 1, (2, 3), (2, 1), (0, 1, 1, 1), (1, 2)),
]


def conv_graph(C, cout, group, k, stride, pads, dil, bias=True):
    node = Node("conv", "Conv", ["x", "W"] + (["b"] if bias else []), ["y"],
                {"group": group, "strides": list(stride), "pads": list(pads),
                 "dilations": list(dil), "kernel_shape": list(k)})
    return Graph([node], "x", (1, C, 7, 6), "y")


@pytest.mark.parametrize("spec", CONVS)
def test_grouped_conv_exact_register_equals_loops(spec):
    C, cout, group, k, stride, pads, dil = spec
    W = dyadic((cout, C // group, *k))
    b = dyadic((cout,))
    X = dyadic((3, C, 7, 6))
    t = Trace.from_graph("c", conv_graph(*spec), {"W": W, "b": b}, X)
    r = simulate(t, exact_acc())
    want = np.stack([loop_conv(x, W, b, stride, pads, dil, group) for x in X])
    assert r.outputs.shape == (3, want[0].size)
    np.testing.assert_array_equal(r.outputs, want.reshape(3, -1).astype(np.float64))
    lr = r.layers[0]
    assert lr.K == C // group * k[0] * k[1] and lr.cols == cout
    assert lr.outputs == want.size and lr.rows * lr.cols == want.size
    assert lr.error["max"] == 0.0


@pytest.mark.parametrize("spec", CONVS[:2])
def test_grouped_conv_int8_int32_equals_python_ints(spec):
    """Integer operands whose scales are exactly 1 (largest magnitude 127 in the input and
    in every output channel), an int32 register: sums of Python ints."""
    C, cout, group, k, stride, pads, dil = spec
    W = RNG.integers(-127, 128, size=(cout, C // group, *k))
    W.reshape(cout, -1)[:, 0] = 127
    X = RNG.integers(-127, 128, size=(4, C, 7, 6))
    X[0, 0, 0, 0] = -127
    t = Trace.from_graph("ci", conv_graph(*spec, bias=False), {"W": W.astype(float)},
                         X.astype(float))
    r = simulate(t, int_acc())
    assert (r.input_format, r.weight_format) == ("int8", "int8")
    want = np.stack([loop_conv(x.astype(object), W.astype(object), None, stride, pads, dil,
                               group) for x in X])
    np.testing.assert_array_equal(r.outputs, want.reshape(4, -1).astype(np.float64))
    assert r.layers[0].events["overflows"] == 0


def test_activation_times_activation_int32_equals_python_ints():
    """Gemm(x, x, transB=1): both operands activations (QK^T of a head), K = head dim."""
    X = RNG.integers(-127, 128, size=(5, 6, 4))
    X[1, 2, 3] = 127
    g = Graph([Node("qk", "Gemm", ["x", "x"], ["s"], {"transB": 1})], "x", (6, 4), "s")
    t = Trace.from_graph("qk", g, {}, X.astype(float))
    r = simulate(t, int_acc())
    want = [[[sum(int(a) * int(b) for a, b in zip(row, col)) for col in x] for row in x]
            for x in X]
    np.testing.assert_array_equal(r.outputs, np.array(want, dtype=float).reshape(5, -1))
    assert r.layers[0].K == 4 and r.layers[0].rows == 5 * 6 and r.layers[0].cols == 6


def test_folded_bias_is_the_register_start():
    """MatMul + Add(vector) as exporters write a Linear: one product node, exact."""
    W, b = dyadic((5, 3)), dyadic((3,))
    nodes = [Node("mm", "MatMul", ["x", "W"], ["z"]), Node("bias", "Add", ["b", "z"], ["y"]),
             Node("act", "Relu", ["y"], ["a"])]
    t = Trace.from_graph("f", Graph(nodes, "x", (2, 5), "a"), {"W": W, "b": b},
                         dyadic((4, 2, 5)))
    add, vec = foldable_bias(t.graph, t.graph.nodes[0], t.arrays, t.shapes())
    assert add.name == "bias" and np.array_equal(vec, b)
    r = simulate(t, exact_acc())
    np.testing.assert_array_equal(r.outputs, np.maximum(t.inputs @ W + b, 0).reshape(4, -1))
    assert [lr.name for lr in r.layers] == ["mm"] and r.layers[0].error["max"] == 0.0
    # a matrix (T, N) constant is not a bias along the columns
    u = Trace.from_graph("g", t.graph, {"W": W, "b": dyadic((2, 3))}, t.inputs)
    assert foldable_bias(u.graph, u.graph.nodes[0], u.arrays, u.shapes()) == (None, None)


# ---------------------------------------------------------------------------------------
# lowering against numpy's matmul

def _ins(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


@pytest.mark.parametrize("ashape,bshape,bconst", [
    ((3, 4), (4, 5), True),                # a model vector x a matrix
    ((3, 2, 4), (4,), True),               # matrix x vector
    ((3, 2, 6, 4), (4, 5), True),          # linear over tokens
    ((3, 2, 6, 4), (2, 4, 5), True),       # batched constant (heads)
    ((3, 2, 6, 4), (3, 2, 4, 6), False),   # activation x activation (QK^T)
    ((3, 1, 6, 4), (3, 2, 4, 6), False),   # broadcast over heads
])
def test_matmul_lowering_matches_numpy(ashape, bshape, bconst):
    a = RNG.standard_normal(ashape)
    b = RNG.standard_normal(bshape)
    bb = b[None] if bconst else b
    node = Node("m", "MatMul", ["a", "b"], ["y"])
    got = reference(node, _ins(a, bb), [False, bconst])
    want = np.stack([np.matmul(a[s], b if bconst else b[s]) for s in range(a.shape[0])])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    K = a.shape[-1]
    assert lower(node, _ins(a, bb), [False, bconst]).K == K


def test_constant_left_operand_runs_transposed():
    W = RNG.standard_normal((3, 4))
    x = RNG.standard_normal((2, 5, 4, 6))
    node = Node("m", "MatMul", ["W", "x"], ["y"])
    low = lower(node, _ins(W[None], x), [True, False])
    assert low.a_input == 1 and low.K == 4
    np.testing.assert_allclose(reference(node, _ins(W[None], x), [True, False]),
                               np.matmul(W, x), rtol=1e-12)


def test_gemm_alpha_beta_and_matrix_c():
    a, b, c = (RNG.standard_normal(s) for s in ((3, 4, 2), (1, 5, 4), (1, 2, 5)))
    node = Node("g", "Gemm", ["a", "b", "c"], ["y"],
                {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0})
    low = lower(node, _ins(a, b, c), [False, True, True])
    assert low.post_add is not None and low.problems[0].bias is None
    want = 0.5 * np.swapaxes(a, 1, 2) @ np.swapaxes(b, 1, 2) + 2.0 * c
    np.testing.assert_allclose(reference(node, _ins(a, b, c), [False, True, True]), want,
                               rtol=1e-12)


def test_conv_rejects_non_constant_weights_and_bad_groups():
    x = np.zeros((1, 1, 4, 5, 5))
    node = Node("c", "Conv", ["x", "w"], ["y"], {"group": 3})
    with pytest.raises(ValueError, match="node c \\(Conv\\): the weights must be a constant"):
        lower(node, _ins(x, np.zeros((1, 3, 2, 2, 2))), [False, False])
    with pytest.raises(ValueError, match="4 input channels do not fit"):
        lower(node, _ins(x, np.zeros((1, 3, 2, 2, 2))), [False, True])


# ---------------------------------------------------------------------------------------
# the consuming activation

def test_consumer_activation_follows_the_chain():
    arrays = {"W": np.ones((4, 4)), "s": np.ones(4), "c": np.ones(4)}
    nodes = [Node("mm", "MatMul", ["x", "W"], ["z"]), Node("mul", "Mul", ["z", "s"], ["z1"]),
             Node("add", "Add", ["c", "z1"], ["z2"]),
             Node("bn", "BatchNormalization", ["z2", "c", "c", "c", "c"], ["z3"]),
             Node("rs", "Reshape", ["z3"], ["z4"], {"shape": [1, 4]}),
             Node("act", "Tanh", ["z4"], ["a"]),
             Node("sm", "Softmax", ["a"], ["p"], {"axis": -1}),
             Node("res", "Add", ["p", "a"], ["o"])]
    g = Graph(nodes, "x", (1, 4), "o")
    assert consumer_activation(g, "z", arrays) == "tanh"
    assert consumer_activation(g, "a", arrays) == "softmax"     # first reader
    assert consumer_activation(g, "p", arrays) == "identity"    # a residual Add
    assert consumer_activation(g, "z4", arrays) == "tanh"
    # a softmax reached through a reshape does not act on the product's columns
    g2 = Graph([Node("rs", "Reshape", ["z"], ["r"], {"shape": [4, 1]}),
                Node("sm", "Softmax", ["r"], ["p"], {"axis": -1})], "z", (1, 4), "p")
    assert consumer_activation(g2, "z", arrays) == "identity"


def test_forward64_keeps_all_or_releases():
    X = dyadic((3, 5))
    t = Trace.from_graph("k", Graph([Node("mm", "MatMul", ["x", "W"], ["z"]),
                                     Node("act", "Relu", ["z"], ["a"])], "x", (1, 5), "a"),
                         {"W": dyadic((5, 2))}, X)
    every = forward64(t, return_all=True)
    assert set(every) == {"x", "z", "a"} and every["x"].shape == (3, 1, 5)
    np.testing.assert_array_equal(forward64(t)[:, 0], np.maximum(X @ t.arrays["W"], 0))


def loop_conv_transpose(x, w, b, stride, pads, dil, outpad, group):
    """ONNX ConvTranspose of one image by its definition (scatter), exact for the data."""
    C, H, W = x.shape
    _, og, kh, kw = w.shape
    Ho = stride[0] * (H - 1) + outpad[0] + (kh - 1) * dil[0] + 1 - pads[0] - pads[2]
    Wo = stride[1] * (W - 1) + outpad[1] + (kw - 1) * dil[1] + 1 - pads[1] - pads[3]
    out = np.zeros((og * group, Ho, Wo), dtype=object)
    out[:] = 0
    cg = C // group
    for c in range(C):
        g = c // cg
        for o in range(og):
            for i in range(H):
                for j in range(W):
                    for p in range(kh):
                        for q in range(kw):
                            y = i * stride[0] + p * dil[0] - pads[0]
                            z = j * stride[1] + q * dil[1] - pads[1]
                            if 0 <= y < Ho and 0 <= z < Wo:
                                out[g * og + o, y, z] += x[c, i, j] * w[c, o, p, q]
    return out + np.asarray(b, dtype=object)[:, None, None]


@pytest.mark.parametrize("group,stride,pads,dil,outpad", [
    (1, (2, 2), (1, 1, 1, 1), (1, 1), (1, 1)),
    (2, (2, 3), (0, 2, 1, 0), (2, 1), (1, 0)),
    (2, (1, 1), (3, 0, 0, 2), (1, 1), (0, 0)),        # pads beyond d (k - 1): cropped
])
def test_conv_transpose_exact_register_equals_loops(group, stride, pads, dil, outpad):
    W = dyadic((4, 3, 3, 2))
    b = dyadic((3 * group,))
    X = dyadic((2, 4, 3, 4))
    node = Node("up", "ConvTranspose", ["x", "W", "b"], ["y"],
                {"group": group, "strides": list(stride), "pads": list(pads),
                 "dilations": list(dil), "output_padding": list(outpad)})
    t = Trace.from_graph("ct", Graph([node], "x", (1, 4, 3, 4), "y"), {"W": W, "b": b}, X)
    r = simulate(t, exact_acc())
    want = np.stack([loop_conv_transpose(x, W, b, stride, pads, dil, outpad, group)
                     for x in X])
    np.testing.assert_array_equal(r.outputs, want.reshape(2, -1).astype(np.float64))
    assert r.layers[0].K == 4 // group * 3 * 2 and r.layers[0].cols == 3 * group
