"""Float64 operators of a graph (:mod:`.graph`), with ONNX's semantics, in numpy.

Every operator is registered with :func:`op` and called as ``fn(node, inputs) ->
list of outputs``; ``inputs`` are float64 (or integer index) arrays that all carry the
leading sample axis described in :mod:`.graph` (arrays with a size-1 sample axis),
``None`` for an omitted optional input. Outputs carry the sample axis too.

:func:`forward` runs a whole graph in float64; the simulator runs the product nodes
(:data:`.graph.PRODUCT_OPS`) on the accelerator instead and every other node here.
"""

from __future__ import annotations

import numpy as np

from . import ops as layer_ops
from .graph import Graph, Node

OPS: dict = {}
"""Operator type -> implementation ``fn(node, inputs) -> list of arrays``."""


def op(*names):
    """Register the decorated function as the implementation of the ops ``names``."""
    def deco(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return deco


class OpError(ValueError):
    """An operator cannot run as asked (one line naming the node)."""

    @classmethod
    def of(cls, node, msg):
        return cls(f"node {node.name} ({node.op}): {msg}")


def supported_ops() -> list:
    """The operator types :func:`run_node` implements, sorted."""
    return sorted(OPS)


def run_node(node: Node, inputs: list) -> list:
    """The outputs of ``node`` on ``inputs`` (sample axis first, float64)."""
    fn = OPS.get(node.op)
    if fn is None:
        raise OpError.of(node, "unsupported op")
    return fn(node, inputs)


def forward(graph: Graph, arrays: dict, x, keep_all=False):
    """Float64 forward pass of ``graph`` on ``x`` of shape ``(S, *graph.input_shape)``.

    Returns the output tensor ``(S, *model shape)``; with ``keep_all`` a dict of every
    tensor by name (the input included) instead."""
    env = {graph.input: np.asarray(x, dtype=np.float64)}
    consts = {}
    for node in graph.nodes:
        ins = [tensor(t, env, arrays, consts) for t in node.inputs]
        outs = run_node(node, ins)
        for t, v in zip(node.outputs, outs):
            env[t] = v
    return env if keep_all else env[graph.output]


def tensor(name, env, arrays, consts):
    """The value of tensor ``name``: an activation from ``env``, or array ``name`` with a
    size-1 sample axis (cached in ``consts``); ``None`` for ``""``."""
    if not name:
        return None
    v = env.get(name)
    if v is not None:
        return v
    c = consts.get(name)
    if c is None:
        a = np.asarray(arrays[name])
        c = consts[name] = (a if a.dtype.kind in "iub" else a.astype(np.float64))[None]
    return c


def model_axis(node, a, x):
    """Array axis of the model axis ``a`` (negative counts from the end) of ``x``."""
    r = x.ndim - 1
    if not -r <= a < r:
        raise OpError.of(node, f"axis {a} out of range for a rank-{r} tensor")
    return a + 1 if a >= 0 else a + x.ndim


def _attr(node, name, default=None):
    return node.attrs.get(name, default)


def _only(node, allowed):
    """Refuse attribute values this implementation does not reproduce."""
    for k, v in node.attrs.items():
        if k in allowed and allowed[k] is not None and v != allowed[k]:
            raise OpError.of(node, f"attribute {k}={v!r} is not supported")


# --- elementwise -----------------------------------------------------------------------

@op("Relu", "Tanh", "Sigmoid", "Identity")
def _activation(node, ins):
    kind = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid",
            "Identity": "identity"}[node.op]
    return [layer_ops.activation(kind, ins[0])]


@op("Add")
def _add(node, ins):
    return [ins[0] + ins[1]]


@op("Softmax")
def _softmax(node, ins):
    x = ins[0]
    ax = model_axis(node, int(_attr(node, "axis", -1)), x)
    z = x - np.max(x, axis=ax, keepdims=True)
    e = np.exp(z)
    return [e / np.sum(e, axis=ax, keepdims=True)]


# --- shapes ----------------------------------------------------------------------------

@op("Flatten")
def _flatten(node, ins):
    x = ins[0]
    a = int(_attr(node, "axis", 1))
    shape = x.shape[1:]
    if a < 0:
        a += len(shape)
    lead = int(np.prod(shape[:a], dtype=np.int64))
    return [x.reshape(x.shape[0], lead, -1)]


@op("Reshape")
def _reshape(node, ins):
    x = ins[0]
    shape = [int(s) for s in _attr(node, "shape")]
    if not int(_attr(node, "allowzero", 0)):
        shape = [x.shape[i + 1] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape((x.shape[0], *shape))]


# --- pooling ---------------------------------------------------------------------------

def _per_image(x, fn):
    """Apply ``fn`` to ``x`` (S, N, C, H, W) as (S*N, C, H, W); back to (S, N, ...)."""
    s, n = x.shape[:2]
    y = fn(x.reshape(s * n, *x.shape[2:]))
    return y.reshape(s, n, *y.shape[1:])


def _pool_args(node, x):
    if x.ndim != 5:
        raise OpError.of(node, "only 2-D pooling over (N, C, H, W) is supported")
    _only(node, {"ceil_mode": 0, "auto_pad": "NOTSET", "dilations": [1, 1],
                 "storage_order": 0})
    kernel = tuple(_attr(node, "kernel_shape"))
    return kernel, tuple(_attr(node, "strides", [1, 1])), tuple(_attr(node, "pads",
                                                                       [0, 0, 0, 0]))


@op("MaxPool")
def _maxpool(node, ins):
    if len(node.outputs) > 1:
        raise OpError.of(node, "the Indices output is not supported")
    k, s, p = _pool_args(node, ins[0])
    return [_per_image(ins[0], lambda v: layer_ops.maxpool(v, k, s, p))]


@op("AveragePool")
def _avgpool(node, ins):
    k, s, p = _pool_args(node, ins[0])
    cip = bool(_attr(node, "count_include_pad", 0))
    return [_per_image(ins[0], lambda v: layer_ops.avgpool(v, k, s, p, cip))]


@op("GlobalAveragePool")
def _gap(node, ins):
    x = ins[0]
    return [x.mean(axis=tuple(range(3, x.ndim)), keepdims=True)]


@op("ReduceMean")
def _reduce_mean(node, ins):
    x = ins[0]
    axes = _attr(node, "axes")
    keep = bool(_attr(node, "keepdims", 1))
    if axes is None or len(axes) == 0:
        if int(_attr(node, "noop_with_empty_axes", 0)):
            return [x]
        ax = tuple(range(1, x.ndim))
    else:
        ax = tuple(model_axis(node, int(a), x) for a in axes)
    return [x.mean(axis=ax, keepdims=keep)]


# --- products (float64 reference; the simulator runs them on the datapath) -------------

@op("Gemm")
def _gemm(node, ins):
    a, b = ins[0], ins[1]
    if int(_attr(node, "transA", 0)):
        a = np.swapaxes(a, -1, -2)
    if int(_attr(node, "transB", 0)):
        b = np.swapaxes(b, -1, -2)
    y = float(_attr(node, "alpha", 1.0)) * np.matmul(a, b)
    if len(ins) > 2 and ins[2] is not None:
        y = y + float(_attr(node, "beta", 1.0)) * ins[2]
    return [y]


@op("MatMul")
def _matmul(node, ins):
    a, b = ins
    if a.ndim < 3 or b.ndim < 3:
        raise OpError.of(node, "a 1-D operand is not supported")
    return [np.matmul(a, b)]


@op("Conv")
def _conv(node, ins):
    x, w = ins[0], ins[1][0]
    b = None if len(ins) < 3 or ins[2] is None else ins[2][0]
    if x.ndim != 5:
        raise OpError.of(node, "only 2-D convolutions over (N, C, H, W) are supported")
    _only(node, {"group": 1, "auto_pad": "NOTSET", "dilations": [1, 1]})
    s = tuple(_attr(node, "strides", [1, 1]))
    p = tuple(_attr(node, "pads", [0, 0, 0, 0]))
    return [_per_image(x, lambda v: layer_ops.conv2d(v, w, b, s, p))]
