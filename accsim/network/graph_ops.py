"""Float64 operators of a graph (:mod:`.graph`), with ONNX's semantics, in numpy.

Every operator is registered with :func:`op` and called as ``fn(node, inputs) ->
list of outputs``; ``inputs`` are float64 (or integer/boolean index) arrays that all carry
the leading sample axis described in :mod:`.graph` (arrays with a size-1 sample axis),
``None`` for an omitted optional input. Outputs carry the sample axis too.

Semantics are those of the ONNX operator of the same name at opset 13-20 with the
parameter inputs of :data:`.graph.PARAM_INPUTS` given as attributes; an attribute value
an implementation does not reproduce is refused with :class:`OpError` naming the node.
Binary operators broadcast like ONNX (numpy rules on the *model* shapes: a lower-rank
operand gets its missing axes after the sample axis). Values are float64 throughout
(``Cast`` to float16 rounds to float16 and back; ``Cast`` to float32/float64 is the
identity), so the reference is the float64 network of the model's float32 weights.

:func:`forward` runs a whole graph in float64; the simulator runs the product nodes
(:data:`.graph.PRODUCT_OPS`) on the accelerator instead and every other node here.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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
    try:
        return fn(node, inputs)
    except OpError:
        raise
    except (ValueError, IndexError, TypeError) as exc:
        shapes = ", ".join("-" if x is None else str(tuple(x.shape[1:])) for x in inputs)
        raise OpError.of(node, f"cannot run on model shapes {shapes} "
                               f"({str(exc).splitlines()[0]})") from None


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
            if t:
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


def _axes(node, x, axes):
    """Array axes (sorted, unique) of the model axes ``axes``."""
    return tuple(sorted({model_axis(node, int(a), x) for a in axes}))


def _align(*xs):
    """The operands with equal ranks: missing model axes inserted after the sample axis,
    so numpy broadcasting is ONNX broadcasting of the model shapes."""
    r = max(x.ndim for x in xs)
    return [x.reshape(x.shape[:1] + (1,) * (r - x.ndim) + x.shape[1:]) for x in xs]


def _samples(xs):
    """The operands broadcast to a common sample count (arrays have 1 sample)."""
    s = max(x.shape[0] for x in xs)
    return [np.broadcast_to(x, (s,) + x.shape[1:]) for x in xs]


def _float(x):
    return x if x.dtype == np.float64 else x.astype(np.float64)


# --- elementwise, one operand ----------------------------------------------------------

def _sigmoid(z):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def _hard_sigmoid(z, alpha, beta):
    return np.clip(alpha * z + beta, 0.0, 1.0)


#: ONNX's defaults of Selu's attributes
SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875

_UNARY = {
    "Relu": lambda n, z: np.maximum(z, 0.0),
    "Tanh": lambda n, z: np.tanh(z),
    "Sigmoid": lambda n, z: _sigmoid(z),
    "Neg": lambda n, z: -z,
    "Abs": lambda n, z: np.abs(z),
    "Sqrt": lambda n, z: np.sqrt(z),
    "Exp": lambda n, z: np.exp(z),
    "Log": lambda n, z: np.log(z),
    "Reciprocal": lambda n, z: 1.0 / z,
    "Floor": lambda n, z: np.floor(z),
    "Ceil": lambda n, z: np.ceil(z),
    "Round": lambda n, z: np.round(z),
    "Sign": lambda n, z: np.sign(z),
    "Erf": lambda n, z: layer_ops.erf(z),
    "Softplus": lambda n, z: np.logaddexp(0.0, z),
    "Softsign": lambda n, z: z / (1.0 + np.abs(z)),
    "HardSigmoid": lambda n, z: _hard_sigmoid(z, float(_attr(n, "alpha", 0.2)),
                                              float(_attr(n, "beta", 0.5))),
    "HardSwish": lambda n, z: z * _hard_sigmoid(z, 1.0 / 6.0, 0.5),
    "LeakyRelu": lambda n, z: np.where(z >= 0, z, float(_attr(n, "alpha", 0.01)) * z),
    "Elu": lambda n, z: np.where(z > 0, z, float(_attr(n, "alpha", 1.0)) * np.expm1(z)),
    "Selu": lambda n, z: float(_attr(n, "gamma", SELU_GAMMA)) * np.where(
        z > 0, z, float(_attr(n, "alpha", SELU_ALPHA)) * np.expm1(z)),
    "Celu": lambda n, z: np.maximum(z, 0.0) + np.minimum(
        0.0, float(_attr(n, "alpha", 1.0)) * np.expm1(z / float(_attr(n, "alpha", 1.0)))),
    "Mish": lambda n, z: z * np.tanh(np.logaddexp(0.0, z)),
    "Sin": lambda n, z: np.sin(z),
    "Cos": lambda n, z: np.cos(z),
}


@op(*_UNARY)
def _unary(node, ins):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return [_UNARY[node.op](node, _float(ins[0]))]


@op("Identity")
def _identity(node, ins):
    return [ins[0]]


@op("Dropout")
def _dropout(node, ins):
    """Inference: the identity (``training_mode`` must be false); the mask is all true."""
    if len(ins) > 2 and ins[2] is not None and bool(np.any(ins[2])):
        raise OpError.of(node, "training_mode=true is not supported (inference only)")
    return [ins[0], np.ones(ins[0].shape, dtype=bool)]


@op("Gelu")
def _gelu(node, ins):
    z = _float(ins[0])
    ap = _attr(node, "approximate", "none")
    if ap == "none":
        return [0.5 * z * (1.0 + layer_ops.erf(z / math.sqrt(2.0)))]
    if ap == "tanh":
        return [0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))]
    raise OpError.of(node, f"attribute approximate={ap!r} is not supported")


@op("Clip")
def _clip(node, ins):
    x = ins[0]
    lo, hi = _attr(node, "min"), _attr(node, "max")
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return [x]


#: ONNX TensorProto data types: float types (kept as float64, float16 rounded) and the
#: integer/boolean ones (index arithmetic)
CAST_FLOAT = {1: None, 11: None, 10: np.float16}
CAST_INT = {2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
            9: np.bool_, 12: np.uint32, 13: np.uint64}


@op("Cast")
def _cast(node, ins):
    to = int(_attr(node, "to"))
    x = ins[0]
    if to in CAST_FLOAT:
        rnd = CAST_FLOAT[to]
        y = _float(x)
        return [y if rnd is None else y.astype(rnd).astype(np.float64)]
    if to in CAST_INT:
        t = CAST_INT[to]
        return [(x != 0) if t is np.bool_ else np.trunc(x).astype(t) if x.dtype.kind == "f"
                else x.astype(t)]
    raise OpError.of(node, f"cast to ONNX data type {to} is not supported")


# --- elementwise, several operands (broadcasting) --------------------------------------

def _div(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b).astype(np.result_type(a, b))
    return a / b


def _mod(node, a, b):
    if int(_attr(node, "fmod", 0)) or a.dtype.kind == "f" or b.dtype.kind == "f":
        if not int(_attr(node, "fmod", 0)):
            raise OpError.of(node, "fmod=0 on floating-point operands is not valid ONNX")
        return np.fmod(a, b)
    return np.mod(a, b)


_BINARY = {
    "Add": lambda n, a, b: a + b,
    "Sub": lambda n, a, b: a - b,
    "Mul": lambda n, a, b: a * b,
    "Div": lambda n, a, b: _div(a, b),
    "Pow": lambda n, a, b: np.power(_float(a), b),
    "Mod": _mod,
    "Equal": lambda n, a, b: a == b,
    "Less": lambda n, a, b: a < b,
    "LessOrEqual": lambda n, a, b: a <= b,
    "Greater": lambda n, a, b: a > b,
    "GreaterOrEqual": lambda n, a, b: a >= b,
    "And": lambda n, a, b: np.logical_and(a, b),
    "Or": lambda n, a, b: np.logical_or(a, b),
    "Xor": lambda n, a, b: np.logical_xor(a, b),
    "PRelu": lambda n, a, b: np.where(a >= 0, a, a * b),
}


@op(*_BINARY)
def _binary(node, ins):
    a, b = _align(ins[0], ins[1])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return [_BINARY[node.op](node, a, b)]


@op("Not")
def _not(node, ins):
    return [np.logical_not(ins[0])]


@op("Where")
def _where(node, ins):
    c, a, b = _align(*ins[:3])
    return [np.where(c.astype(bool), a, b)]


@op("Max", "Min", "Sum", "Mean")
def _variadic(node, ins):
    xs = _align(*ins)
    f = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[node.op]
    y = xs[0]
    for x in xs[1:]:
        y = f(y, x)
    return [y / len(xs) if node.op == "Mean" else y]


# --- normalisation and softmax ---------------------------------------------------------

def _softmax_axis(node, x):
    return model_axis(node, int(_attr(node, "axis", -1)), x)


@op("Softmax")
def _softmax(node, ins):
    x = _float(ins[0])
    ax = _softmax_axis(node, x)
    e = np.exp(x - np.max(x, axis=ax, keepdims=True))
    return [e / np.sum(e, axis=ax, keepdims=True)]


@op("LogSoftmax")
def _log_softmax(node, ins):
    x = _float(ins[0])
    ax = _softmax_axis(node, x)
    z = x - np.max(x, axis=ax, keepdims=True)
    return [z - np.log(np.sum(np.exp(z), axis=ax, keepdims=True))]


@op("LayerNormalization")
def _layer_norm(node, ins):
    """``(x - mean) / sqrt(var + epsilon) * scale + bias`` over the model axes from
    ``axis`` (default -1) to the last; outputs Y, Mean, InvStdDev."""
    x = _float(ins[0])
    first = model_axis(node, int(_attr(node, "axis", -1)), x)
    ax = tuple(range(first, x.ndim))
    mean = x.mean(axis=ax, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=ax, keepdims=True)
                        + float(_attr(node, "epsilon", 1e-5)))
    y = (x - mean) * inv
    y, scale = _align(y, ins[1])
    y = y * scale
    if len(ins) > 2 and ins[2] is not None:
        y, bias = _align(y, ins[2])
        y = y + bias
    return [y, mean, inv]


def _per_channel(v, x):
    """A per-channel vector ``v`` (1, C) shaped to broadcast over ``x`` (S, N, C, ...)."""
    return v.reshape((1, 1, -1) + (1,) * (x.ndim - 3))


@op("BatchNormalization")
def _batch_norm(node, ins):
    """Inference form: ``(x - mean) / sqrt(var + epsilon) * scale + B`` per channel."""
    if int(_attr(node, "training_mode", 0)):
        raise OpError.of(node, "training_mode=1 is not supported (inference only)")
    _only(node, {"spatial": 1})
    x = _float(ins[0])
    if x.ndim < 3:
        raise OpError.of(node, f"expected (N, C, ...) input, got rank {x.ndim - 1}")
    scale, b, mean, var = (_per_channel(_float(v), x) for v in ins[1:5])
    eps = float(_attr(node, "epsilon", 1e-5))
    return [(x - mean) / np.sqrt(var + eps) * scale + b]


@op("InstanceNormalization")
def _instance_norm(node, ins):
    x = _float(ins[0])
    ax = tuple(range(3, x.ndim))
    mean = x.mean(axis=ax, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=ax, keepdims=True)
    y = (x - mean) / np.sqrt(var + float(_attr(node, "epsilon", 1e-5)))
    return [y * _per_channel(_float(ins[1]), x) + _per_channel(_float(ins[2]), x)]


# --- reductions ------------------------------------------------------------------------

_REDUCE = {
    "ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min,
    "ReduceProd": np.prod,
    "ReduceL2": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis,
                                                         keepdims=keepdims)),
    "ReduceSumSquare": lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims),
}


@op(*_REDUCE)
def _reduce(node, ins):
    x = ins[0]
    axes = _attr(node, "axes")
    if axes is None or len(axes) == 0:
        if int(_attr(node, "noop_with_empty_axes", 0)):
            return [x]
        ax = tuple(range(1, x.ndim))
    else:
        ax = _axes(node, x, axes)
    return [_REDUCE[node.op](x, axis=ax, keepdims=bool(_attr(node, "keepdims", 1)))]


@op("ArgMax", "ArgMin")
def _argmax(node, ins):
    x = ins[0]
    ax = model_axis(node, int(_attr(node, "axis", 0)), x)
    f = np.argmax if node.op == "ArgMax" else np.argmin
    if int(_attr(node, "select_last_index", 0)):
        n = x.shape[ax]
        y = n - 1 - f(np.flip(x, axis=ax), axis=ax)
    else:
        y = f(x, axis=ax)
    y = y.astype(np.int64)
    return [np.expand_dims(y, ax) if int(_attr(node, "keepdims", 1)) else y]


# --- shapes ----------------------------------------------------------------------------

@op("Flatten")
def _flatten(node, ins):
    x = ins[0]
    shape = x.shape[1:]
    a = int(_attr(node, "axis", 1))
    if not -len(shape) <= a <= len(shape):
        raise OpError.of(node, f"axis {a} out of range for a rank-{len(shape)} tensor")
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


@op("Transpose")
def _transpose(node, ins):
    x = ins[0]
    perm = _attr(node, "perm")
    perm = range(x.ndim - 2, -1, -1) if perm is None else [int(p) for p in perm]
    return [np.transpose(x, (0, *[model_axis(node, p, x) for p in perm]))]


@op("Squeeze")
def _squeeze(node, ins):
    x = ins[0]
    axes = _attr(node, "axes")
    if axes is None or len(axes) == 0:
        ax = tuple(i for i in range(1, x.ndim) if x.shape[i] == 1)
    else:
        ax = _axes(node, x, axes)
    return [np.squeeze(x, axis=ax)]


@op("Unsqueeze")
def _unsqueeze(node, ins):
    x = ins[0]
    axes = [int(a) for a in _attr(node, "axes")]
    r = x.ndim - 1 + len(axes)
    if any(not -r <= a < r for a in axes):
        raise OpError.of(node, f"axes {axes} out of range for a rank-{r} output")
    out = sorted(a + r if a < 0 else a for a in axes)
    for a in out:
        x = np.expand_dims(x, a + 1)
    return [x]


@op("Concat")
def _concat(node, ins):
    xs = _samples([x for x in ins if x is not None])
    return [np.concatenate(xs, axis=model_axis(node, int(_attr(node, "axis")), xs[0]))]


@op("Split")
def _split(node, ins):
    x = ins[0]
    ax = model_axis(node, int(_attr(node, "axis", 0)), x)
    sizes = _attr(node, "split")
    n = x.shape[ax]
    if sizes is None or len(sizes) == 0:
        k = int(_attr(node, "num_outputs", len(node.outputs)))
        step = -(-n // k)
        sizes = [min(step, n - i * step) for i in range(k)]
    cuts = np.cumsum([int(s) for s in sizes])[:-1]
    if sum(int(s) for s in sizes) != n:
        raise OpError.of(node, f"split {list(sizes)} does not add up to {n}")
    return np.split(x, cuts, axis=ax)


@op("Slice")
def _slice(node, ins):
    x = ins[0]
    starts = [int(v) for v in _attr(node, "starts")]
    ends = [int(v) for v in _attr(node, "ends")]
    axes = _attr(node, "axes")
    axes = range(len(starts)) if axes is None else [int(a) for a in axes]
    steps = _attr(node, "steps")
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    idx = [slice(None)] * x.ndim
    for a, b, e, s in zip(axes, starts, ends, steps):
        if s == 0:
            raise OpError.of(node, "a step of 0 is not valid")
        idx[model_axis(node, a, x)] = slice(b, e, s)
    return [x[tuple(idx)]]


@op("Gather")
def _gather(node, ins):
    data, idx = ins[0], ins[1]
    ax = model_axis(node, int(_attr(node, "axis", 0)), data)
    idx = idx.astype(np.int64)
    if idx.shape[0] == 1:
        return [np.take(data, idx[0], axis=ax)]
    if data.shape[0] == 1:  # per-sample indices into an array: the sample axis comes first
        y = np.take(data[0], idx, axis=ax - 1)
        return [np.moveaxis(y, ax - 1, 0)]
    return [np.stack([np.take(d, i, axis=ax - 1) for d, i in zip(data, idx)])]


@op("Expand")
def _expand(node, ins):
    x = ins[0]
    shape = tuple(int(s) for s in _attr(node, "shape"))
    target = np.broadcast_shapes(x.shape[1:], shape)
    x = x.reshape(x.shape[:1] + (1,) * (len(target) + 1 - x.ndim) + x.shape[1:])
    return [np.broadcast_to(x, (x.shape[0],) + target).copy()]


@op("Tile")
def _tile(node, ins):
    return [np.tile(ins[0], (1, *[int(r) for r in _attr(node, "repeats")]))]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@op("Pad")
def _pad(node, ins):
    x = ins[0]
    r = x.ndim - 1
    pads = [int(p) for p in _attr(node, "pads")]
    axes = _attr(node, "axes")
    axes = list(range(r)) if axes is None else [int(a) for a in axes]
    if len(pads) != 2 * len(axes):
        raise OpError.of(node, f"pads {pads} do not match {len(axes)} axes")
    mode = _attr(node, "mode", "constant")
    if mode not in _PAD_MODES:
        raise OpError.of(node, f"attribute mode={mode!r} is not supported")
    width = [[0, 0] for _ in range(x.ndim)]
    for i, a in enumerate(axes):
        width[model_axis(node, a, x)] = [pads[i], pads[i + len(axes)]]
    crop = tuple(slice(-lo if lo < 0 else None, hi if hi < 0 else None) for lo, hi in width)
    x = x[crop]
    width = [[max(lo, 0), max(hi, 0)] for lo, hi in width]
    if mode == "constant":
        cv = _attr(node, "constant_value", 0)
        return [np.pad(x, width, constant_values=0 if cv is None else cv)]
    return [np.pad(x, width, mode=_PAD_MODES[mode])]


@op("Shape")
def _shape(node, ins):
    dims = ins[0].shape[1:]
    start, end = _attr(node, "start", 0), _attr(node, "end")
    return [np.array(dims[start:end], dtype=np.int64)[None]]


@op("Size")
def _size(node, ins):
    return [np.array(int(np.prod(ins[0].shape[1:])), dtype=np.int64)[None]]


@op("ConstantOfShape")
def _constant_of_shape(node, ins):
    shape = tuple(int(s) for s in ins[0][0])
    value = _attr(node, "value", 0.0)
    return [np.full(shape, value)[None]]


@op("Range")
def _range(node, ins):
    start, limit, delta = (x.reshape(-1)[0] for x in ins[:3])
    return [np.arange(start, limit, delta)[None]]


# --- windows (pooling, convolution) -----------------------------------------------------

def _spatial_pads(node, x_sp, k, s, d):
    """(begin, end) pads per spatial axis from ``pads`` or ``auto_pad``."""
    n = len(k)
    auto = _attr(node, "auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = [int(v) for v in _attr(node, "pads", [0] * 2 * n)]
        if len(p) != 2 * n:
            raise OpError.of(node, f"pads {p} do not match a {n}-D window")
        return p[:n], p[n:]
    if auto == "VALID":
        return [0] * n, [0] * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise OpError.of(node, f"attribute auto_pad={auto!r} is not supported")
    lo, hi = [], []
    for size, kk, ss, dd in zip(x_sp, k, s, d):
        total = max((-(-size // ss) - 1) * ss + dd * (kk - 1) + 1 - size, 0)
        small = total // 2
        lo.append(small if auto == "SAME_UPPER" else total - small)
        hi.append(total - lo[-1])
    return lo, hi


def _window_args(node, x, kernel):
    """kernel, strides, dilations, pads (begin, end) of a window op on ``x`` (S, N, C,
    *spatial); refuses what is not 1-3-D."""
    n = len(kernel)
    if n < 1 or x.ndim != n + 3:
        raise OpError.of(node, f"a {n}-D window on a rank-{x.ndim - 1} input is not "
                               f"supported (expected (N, C, *spatial))")
    s = [int(v) for v in _attr(node, "strides", [1] * n)]
    d = [int(v) for v in _attr(node, "dilations", [1] * n)]
    lo, hi = _spatial_pads(node, x.shape[3:], kernel, s, d)
    return list(kernel), s, d, lo, hi


def _windows(x, k, s, d, lo, hi, fill):
    """(S*N, C, *out, *k) view of the windows of ``x`` (S, N, C, *spatial) padded by
    ``lo``/``hi`` with ``fill`` (strides ``s``, dilations ``d``)."""
    b = x.reshape(-1, *x.shape[2:])
    n = len(k)
    width = [(0, 0), (0, 0)] + list(zip(lo, hi))
    if any(lo) or any(hi):
        b = np.pad(b, width, constant_values=fill)
    span = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    w = sliding_window_view(b, span, axis=tuple(range(2, 2 + n)))
    idx = (slice(None), slice(None)) + tuple(slice(None, None, ss) for ss in s) + \
        tuple(slice(None, None, dd) for dd in d)
    return w[idx]


def _pool_pads(node, x, k, s, d, lo, hi):
    """End pads grown for ``ceil_mode`` (the last window starts inside input or left
    pad)."""
    if not int(_attr(node, "ceil_mode", 0)):
        return hi
    out = []
    for size, kk, ss, dd, a, b in zip(x.shape[3:], k, s, d, lo, hi):
        span = dd * (kk - 1) + 1
        n = -(-(size + a + b - span) // ss) + 1
        if (n - 1) * ss >= size + a:
            n -= 1
        out.append(max(b, (n - 1) * ss + span - size - a))
    return out


def _unbatch(y, x):
    return y.reshape(x.shape[:2] + y.shape[1:])


@op("MaxPool")
def _maxpool(node, ins):
    if len([o for o in node.outputs if o]) > 1:
        raise OpError.of(node, "the Indices output is not supported")
    _only(node, {"storage_order": 0})
    x = _float(ins[0])
    k, s, d, lo, hi = _window_args(node, x, [int(v) for v in _attr(node, "kernel_shape")])
    hi = _pool_pads(node, x, k, s, d, lo, hi)
    w = _windows(x, k, s, d, lo, hi, -np.inf)
    return [_unbatch(w.max(axis=tuple(range(-len(k), 0))), x)]


@op("AveragePool")
def _avgpool(node, ins):
    """Mean of each window; ``count_include_pad=0`` divides by the real elements,
    ``1`` by the elements inside the explicit pads (never the ceil_mode extension)."""
    x = _float(ins[0])
    k, s, d, lo, hi = _window_args(node, x, [int(v) for v in _attr(node, "kernel_shape")])
    hi2 = _pool_pads(node, x, k, s, d, lo, hi)
    red = tuple(range(-len(k), 0))
    total = _windows(x, k, s, d, lo, hi2, 0.0).sum(axis=red)
    one = np.ones((1, 1, 1) + x.shape[3:])
    if int(_attr(node, "count_include_pad", 0)):
        one = np.pad(one, [(0, 0)] * 3 + list(zip(lo, hi)), constant_values=1.0)
        cnt = _windows(one, k, s, d, [0] * len(k), [b2 - b for b, b2 in zip(hi, hi2)], 0.0)
    else:
        cnt = _windows(one, k, s, d, lo, hi2, 0.0)
    return [_unbatch(total / cnt.sum(axis=red), x)]


@op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node, ins):
    x = _float(ins[0])
    ax = tuple(range(3, x.ndim))
    f = np.mean if node.op == "GlobalAveragePool" else np.max
    return [f(x, axis=ax, keepdims=True)]


# --- products (float64 reference; the simulator runs them on the datapath) -------------

@op("Gemm")
def _gemm(node, ins):
    a, b = _float(ins[0]), _float(ins[1])
    if a.ndim != 3 or b.ndim != 3:
        raise OpError.of(node, "A and B must be 2-D")
    if int(_attr(node, "transA", 0)):
        a = np.swapaxes(a, -1, -2)
    if int(_attr(node, "transB", 0)):
        b = np.swapaxes(b, -1, -2)
    y = float(_attr(node, "alpha", 1.0)) * np.matmul(a, b)
    if len(ins) > 2 and ins[2] is not None:
        y, c = _align(y, _float(ins[2]))
        y = y + float(_attr(node, "beta", 1.0)) * c
    return [y]


@op("MatMul")
def _matmul(node, ins):
    """numpy/ONNX matmul of the model operands: a 1-D operand gets (and loses) a unit
    axis, batch axes broadcast."""
    a, b = _float(ins[0]), _float(ins[1])
    va, vb = a.ndim == 2, b.ndim == 2
    if va:
        a = a[:, None, :]
    if vb:
        b = b[..., None]
    a, b = _align(a, b)
    y = np.matmul(a, b)
    if vb:
        y = y[..., 0]
    if va:
        y = y[..., 0, :] if not vb else y[..., 0]
    return [y]


@op("Conv")
def _conv(node, ins):
    """Cross-correlation with ``group`` groups, strides, dilations and pads (1-3-D)."""
    x, w = _float(ins[0]), _float(ins[1][0])
    g = int(_attr(node, "group", 1))
    ks = _attr(node, "kernel_shape")
    if ks is not None and tuple(int(v) for v in ks) != w.shape[2:]:
        raise OpError.of(node, f"kernel_shape {list(ks)} does not match weight {w.shape}")
    k, s, d, lo, hi = _window_args(node, x, list(w.shape[2:]))
    cout, cg = w.shape[:2]
    if x.shape[2] != cg * g or cout % g:
        raise OpError.of(node, f"weight {w.shape} with group={g} does not fit "
                               f"{x.shape[2]} input channels")
    win = _windows(x, k, s, d, lo, hi, 0.0)
    n = len(k)
    win = win.reshape(win.shape[0], g, cg, *win.shape[2:])
    wg = w.reshape(g, cout // g, cg, *k)
    if cg == 1:
        y = _depthwise(win[:, :, 0], wg[:, :, 0], k)
    elif g == 1:
        y = _dense(win[:, 0], w)[:, None]
    else:
        sp, kk = "hwv"[:n], "ijk"[:n]
        y = np.einsum(f"bgc{sp}{kk},goc{kk}->bgo{sp}", win, wg, optimize=True)
    y = y.reshape(y.shape[0], cout, *y.shape[3:])
    if len(ins) > 2 and ins[2] is not None:
        y = y + _float(ins[2][0]).reshape((-1,) + (1,) * n)
    return [_unbatch(y, x)]


def _dense(win, w):
    """One group: ``win`` (B, C, *out, *k), ``w`` (Cout, C, *k) -> (B, Cout, *out) as one
    BLAS product of the patches (im2col), columns ordered (c, *k) like ``w``."""
    n = w.ndim - 2
    b, out = win.shape[0], win.shape[2:2 + n]
    perm = (0, *range(2, 2 + n), 1, *range(2 + n, 2 + 2 * n))
    patches = np.ascontiguousarray(win.transpose(perm)).reshape(-1, w[0].size)
    y = patches @ w.reshape(w.shape[0], -1).T
    return np.moveaxis(y.reshape(b, *out, w.shape[0]), -1, 1)


def _depthwise(win, w, k):
    """One input channel per group: ``win`` (B, g, *out, *k), ``w`` (g, m, *k) ->
    (B, g, m, *out), summed tap by tap (numpy's einsum has no fast path for it)."""
    n = len(k)
    y = np.zeros(win.shape[:2] + w.shape[1:2] + win.shape[2:2 + n])
    for tap in np.ndindex(*k):
        wt = w[(slice(None), slice(None)) + tap].reshape(w.shape[:2] + (1,) * n)
        y += win[(Ellipsis,) + tap][:, :, None] * wt
    return y
