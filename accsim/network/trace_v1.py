"""Version-1 traces: a list of layers, converted on read to a graph (:mod:`.graph`).

A version-1 ``trace.yaml`` lists ``layers`` instead of ``nodes``::

    layers:
      - {name: fc1, kind: linear, weight: fc1.weight, bias: fc1.bias}
      - {name: act1, kind: relu}
      - {name: conv1, kind: conv2d, weight: conv1.weight, bias: null,
         stride: [1, 1], padding: [1, 1, 1, 1], inputs: [input]}

Layer kinds and their attributes (``padding`` is (top, left, bottom, right)):

=============  ===========================================================
linear         weight (out, in) array name, bias (out,) array name or null
conv2d         weight (Cout, Cin, kh, kw), bias, stride (sh, sw), padding
flatten        -
reshape        shape (excluding the batch axis)
maxpool        kernel (kh, kw), stride (default kernel), padding
avgpool        kernel, stride, padding, count_include_pad (default false)
globalavgpool  -
add            two inputs
relu, tanh, sigmoid, gelu, softmax, identity
=============  ===========================================================

``inputs`` names the tensors a layer reads: ``"input"`` (the trace input) or an earlier
layer's name; empty means the previous layer's output.

Conversion (:func:`to_graph`): the samples' shape ``s`` becomes the model input shape
``(1, *s)`` (a model batch of one); every layer becomes one node of the same name whose
output tensor is named like the layer: linear -> ``Gemm`` (``transB=1``), conv2d ->
``Conv``, flatten -> ``Flatten``, reshape -> ``Reshape`` to ``(1, *shape)``, maxpool /
avgpool -> ``MaxPool`` / ``AveragePool``, globalavgpool -> ``GlobalAveragePool`` (it keeps
``(C, 1, 1)`` as version 1 did), add -> ``Add``, activations -> ``Relu``, ``Tanh``,
``Sigmoid``, ``Gelu``, ``Softmax`` (last axis), ``Identity``. The graph's output is the last
layer's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..numerics.config import ConfigError, Doc
from ..precision.analysis import ACTIVATION_KINDS
from .graph import Graph, Node
from .ops import out_size

KINDS = ("linear", "conv2d", "flatten", "reshape", "maxpool", "avgpool", "globalavgpool",
         "add") + ACTIVATION_KINDS
MATMUL_KINDS = ("linear", "conv2d")
"""Layer kinds computed as one matrix product on the accelerator."""
ATTRS = {
    "linear": ("weight", "bias"),
    "conv2d": ("weight", "bias", "stride", "padding"),
    "reshape": ("shape",),
    "maxpool": ("kernel", "stride", "padding"),
    "avgpool": ("kernel", "stride", "padding", "count_include_pad"),
}


@dataclass(frozen=True)
class Layer:
    """One layer: ``attrs`` holds array names (weight, bias) and plain parameters."""

    name: str
    kind: str
    inputs: tuple = ()
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "attrs", normalize(self.kind, dict(self.attrs)))


def normalize(kind, a):
    """Fill defaults and expand scalars: stride/kernel → (h, w), padding → (t, l, b, r)."""
    def conv(v, n):
        try:
            if np.ndim(v) == 0:
                return (int(v),) * n
            t = tuple(int(x) for x in v)
            return t + t if n == 4 and len(t) == 2 else t
        except (TypeError, ValueError):
            return v  # left for validate() to report
    if kind == "conv2d":
        a.setdefault("bias", None)
        a["stride"] = conv(a.get("stride", 1), 2)
        a["padding"] = conv(a.get("padding", 0), 4)
    elif kind == "linear":
        a.setdefault("bias", None)
    elif kind in ("maxpool", "avgpool") and "kernel" in a:
        a["kernel"] = conv(a["kernel"], 2)
        st = a.get("stride")
        a["stride"] = a["kernel"] if st is None else conv(st, 2)
        a["padding"] = conv(a.get("padding", 0), 4)
        if kind == "avgpool":
            a["count_include_pad"] = bool(a.get("count_include_pad", False))
    return a


def _tup(v, n, what, err):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v),) * n
    try:
        t = tuple(int(x) for x in v)
        if any(int(x) != x for x in v):
            raise TypeError
    except (TypeError, ValueError):
        raise err(f"{what}: expected {n} integers, got {v!r}") from None
    if n == 4 and len(t) == 2:
        t = (t[0], t[1], t[0], t[1])
    if len(t) != n:
        raise err(f"{what}: expected {n} integers, got {v!r}")
    return t


def infer_shapes(layers, arrays, sample_shape, src):
    """Check that the layers chain (one-line ValueError naming ``src``, the layer and the
    problem); per-sample shape of every tensor."""
    if not layers:
        raise ValueError(f"{src}: layers: expected at least one layer")
    shapes = {"input": tuple(sample_shape)}
    prev = "input"
    seen = set()
    for la in layers:
        def err(msg, la=la):
            return ValueError(f"{src}: layer '{la.name}' ({la.kind}): {msg}")
        names = _check_layer(la, src, seen, shapes, prev, err)
        shapes[la.name] = _layer_shape(la, [shapes[n] for n in names], arrays, err)
        prev = la.name
    return shapes


def _check_layer(la, src, seen, shapes, prev, err):
    """Kind, name, attributes and inputs of one layer; the names of its inputs."""
    if not isinstance(la, Layer):
        raise ValueError(  # noqa: TRY004 (one error type for every bad trace)
            f"{src}: layers: expected Layer values, got {type(la).__name__}")
    if la.kind not in KINDS:
        raise err(f"unknown layer kind (expected one of: {', '.join(KINDS)})")
    if la.name in seen or la.name == "input":
        raise err("duplicate layer name")
    seen.add(la.name)
    allowed = ATTRS.get(la.kind, ())
    for k in la.attrs:
        if k not in allowed:
            raise err(f"unknown attribute '{k}'"
                      + (f" (expected: {', '.join(allowed)})" if allowed else ""))
    names = la.inputs or (prev,)
    for n in names:
        if n not in shapes:
            raise err(f"input '{n}' is not the trace input or an earlier layer")
    want = 2 if la.kind == "add" else 1
    if len(names) != want:
        raise err(f"expected {want} input(s), got {len(names)}")
    return names


def _layer_shape(la, ins, arrays, err):
    """Per-sample output shape of layer ``la`` given its inputs' shapes ``ins``."""
    s = ins[0]
    a = la.attrs
    if la.kind in MATMUL_KINDS:
        return _matmul_shape(la, s, arrays, err)
    if la.kind == "flatten":
        return (int(np.prod(s)),)
    if la.kind == "reshape":
        if "shape" not in a:
            raise err("missing attribute 'shape'")
        try:
            tgt = tuple(int(v) for v in a["shape"])
        except (TypeError, ValueError):
            raise err(f"shape: expected a list of integers, got {a['shape']!r}") from None
        if any(v < 1 for v in tgt) or int(np.prod(tgt)) != int(np.prod(s)):
            raise err(f"cannot reshape {s} to {tgt} (batch axis excluded)")
        return tgt
    if la.kind in ("maxpool", "avgpool"):
        return _pool_shape(a, s, err)
    if la.kind == "globalavgpool":
        if len(s) != 3:
            raise err(f"input shape {s} is not (C, H, W)")
        return (s[0], 1, 1)
    if la.kind == "add" and ins[0] != ins[1]:
        raise err(f"inputs have different shapes {ins[0]} and {ins[1]}")
    return s


def _matmul_shape(la, s, arrays, err):
    """Output shape of a linear / conv2d layer; checks its weight and bias arrays."""
    a = la.attrs
    wname = a.get("weight")
    if wname is None:
        raise err("missing attribute 'weight'")
    if wname not in arrays:
        raise err(f"array '{wname}' missing")
    w = arrays[wname]
    b = None
    if a.get("bias") is not None:
        if a["bias"] not in arrays:
            raise err(f"array '{a['bias']}' missing")
        b = arrays[a["bias"]]
    if la.kind == "linear":
        if w.ndim != 2:
            raise err(f"weight '{wname}' must be 2-D (out, in), got shape {w.shape}")
        if len(s) != 1:
            raise err(f"input shape {s} is not (features,); add a flatten layer")
        if s[0] != w.shape[1]:
            raise err(f"input has {s[0]} features but weight '{wname}' has shape "
                      f"{w.shape} (out, in)")
        out = (w.shape[0],)
    else:
        out = _conv_shape(a, s, w, wname, err)
    if b is not None and b.shape != (w.shape[0],):
        raise err(f"bias '{a['bias']}' has shape {b.shape}, expected ({w.shape[0]},)")
    return out


def _conv_shape(a, s, w, wname, err):
    if w.ndim != 4:
        raise err(f"weight '{wname}' must be 4-D (Cout, Cin, kh, kw), got shape {w.shape}")
    if len(s) != 3:
        raise err(f"input shape {s} is not (C, H, W)")
    if s[0] != w.shape[1]:
        raise err(f"input has {s[0]} channels but weight '{wname}' has shape "
                  f"{w.shape}; groups other than 1 are not supported")
    sh, sw = _tup(a.get("stride", (1, 1)), 2, "stride", err)
    t, l, bo, r = _tup(a.get("padding", (0, 0, 0, 0)), 4, "padding", err)
    if min(sh, sw) < 1 or min(t, l, bo, r) < 0:
        raise err("stride must be >= 1 and padding >= 0")
    ho = out_size(s[1], w.shape[2], sh, t, bo)
    wo = out_size(s[2], w.shape[3], sw, l, r)
    if ho < 1 or wo < 1:
        raise err(f"kernel {w.shape[2:]} larger than the padded input {s[1:]}")
    return (w.shape[0], ho, wo)


def _pool_shape(a, s, err):
    if "kernel" not in a:
        raise err("missing attribute 'kernel'")
    if len(s) != 3:
        raise err(f"input shape {s} is not (C, H, W)")
    kh, kw = _tup(a["kernel"], 2, "kernel", err)
    sh, sw = _tup(a["stride"] if a.get("stride") is not None else (kh, kw), 2,
                  "stride", err)
    t, l, bo, r = _tup(a.get("padding", (0, 0, 0, 0)), 4, "padding", err)
    if min(kh, kw, sh, sw) < 1 or min(t, l, bo, r) < 0:
        raise err("kernel and stride must be >= 1 and padding >= 0")
    if max(t, bo) >= kh or max(l, r) >= kw:
        raise err("padding must be smaller than the kernel")
    ho = out_size(s[1], kh, sh, t, bo)
    wo = out_size(s[2], kw, sw, l, r)
    if ho < 1 or wo < 1:
        raise err(f"kernel {(kh, kw)} larger than the padded input {s[1:]}")
    return (s[0], ho, wo)


# ---------------------------------------------------------------------------------------
# reading and conversion

def read_layer(ld, i, yml):
    """Layer ``i`` of a version-1 trace.yaml (its mapping ``ld``)."""
    if not isinstance(ld, dict):
        raise ConfigError(f"{yml}: key 'layers[{i}]': expected a mapping, got {ld!r}")
    d = Doc(ld, str(yml), f"layers[{i}]")
    lname = d.get("name", str)
    kind = d.get("kind", str)
    if kind not in KINDS:
        raise ConfigError(f"{yml}: layer '{lname}': unknown layer kind {kind!r} "
                          f"(expected one of: {', '.join(KINDS)})")
    inputs = d.get("inputs", list, default=[])
    attrs = {}
    for k in ATTRS.get(kind, ()):
        if d.has(k):
            attrs[k] = d.get(k, (str, int, float, bool, list, type(None)))
    for k in ld:
        if k not in ("name", "kind", "inputs") + ATTRS.get(kind, ()):
            raise ConfigError(f"{yml}: layer '{lname}' ({kind}): unknown key '{k}'")
    for k in ("stride", "padding", "kernel", "shape"):
        if isinstance(attrs.get(k), list):
            attrs[k] = tuple(attrs[k])
    return Layer(lname, kind, tuple(str(s) for s in inputs), attrs)


_ACT_OPS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "Gelu",
            "softmax": "Softmax", "identity": "Identity"}


def _node(la, ins):
    """The node of one (validated) layer reading the tensors ``ins``."""
    a, k = la.attrs, la.kind
    if k in MATMUL_KINDS:
        ins = ins + [a["weight"]] + ([a["bias"]] if a.get("bias") is not None else [])
    if k == "linear":
        return Node(la.name, "Gemm", ins, [la.name], {"transB": 1})
    if k == "conv2d":
        return Node(la.name, "Conv", ins, [la.name],
                    {"strides": list(a["stride"]), "pads": list(a["padding"])})
    if k in ("maxpool", "avgpool"):
        attrs = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"]),
                 "pads": list(a["padding"])}
        if k == "avgpool":
            attrs["count_include_pad"] = int(a["count_include_pad"])
        return Node(la.name, "MaxPool" if k == "maxpool" else "AveragePool", ins,
                    [la.name], attrs)
    if k == "reshape":
        return Node(la.name, "Reshape", ins, [la.name],
                    {"shape": [1] + [int(s) for s in a["shape"]]})
    if k == "softmax":
        return Node(la.name, "Softmax", ins, [la.name], {"axis": -1})
    op = {"flatten": "Flatten", "globalavgpool": "GlobalAveragePool", "add": "Add"}.get(k)
    return Node(la.name, op or _ACT_OPS[k], ins, [la.name],
                {"axis": 1} if k == "flatten" else {})


def to_graph(layers, sample_shape):
    """The graph of validated version-1 ``layers`` (module doc) on samples of shape
    ``sample_shape``."""
    nodes = []
    prev = "input"
    for la in layers:
        nodes.append(_node(la, list(la.inputs or (prev,))))
        prev = la.name
    return Graph(nodes, "input", (1, *sample_shape), prev)


def layer_specs(name, specs):
    """Layers and arrays of :func:`accsim.network.trace.sequential`'s ``specs``."""
    out_layers, arrays = [], {}
    for i, spec in enumerate(specs):
        if isinstance(spec, Layer):
            out_layers.append(spec)
            continue
        if isinstance(spec, str):
            spec = (spec,)
        kind, rest = spec[0], list(spec[1:])
        attrs = dict(rest.pop()) if rest and isinstance(rest[-1], dict) else {}
        lname = attrs.pop("name", f"{kind}{i}")
        if kind in MATMUL_KINDS:
            if not rest:
                raise ValueError(f"trace '{name}': layer {i} ({kind}): expected a weight array")
            arrays[f"{lname}.weight"] = np.asarray(rest[0], dtype=np.float64)
            attrs["weight"] = f"{lname}.weight"
            b = rest[1] if len(rest) > 1 else None
            attrs["bias"] = None
            if b is not None:
                arrays[f"{lname}.bias"] = np.asarray(b, dtype=np.float64)
                attrs["bias"] = f"{lname}.bias"
        elif rest:
            raise ValueError(f"trace '{name}': layer {i} ({kind}): takes no arrays")
        out_layers.append(Layer(lname, kind, tuple(attrs.pop("inputs", ())), attrs))
    return out_layers, arrays
