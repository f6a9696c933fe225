"""Traces: a network, its weights and its data, as a folder accsim can simulate.

A trace folder holds ``trace.yaml`` and ``arrays.npz``::

    kind: trace
    version: 1
    name: mnist-mlp-relu
    description: ...
    reference_accuracy: 0.953        # float64 accuracy of the stored network (optional)
    quant:                            # operand quantisation (optional)
      input:  {format: fp16, scale: none}
      weight: {format: fp16, scale: none}
    layers:
      - {name: fc1, kind: linear, weight: fc1.weight, bias: fc1.bias}
      - {name: act1, kind: relu}
      - {name: conv1, kind: conv2d, weight: conv1.weight, bias: null,
         stride: [1, 1], padding: [1, 1, 1, 1], inputs: [input]}
      ...

``arrays.npz`` holds every named array plus ``__inputs__`` (N, ...) and ``__labels__`` (N,).
Arrays are stored in the narrowest of float16/float32/float64 that holds them exactly and
come back as float64.

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

Operand quantisation (``quant``): a float format means operands are rounded to it with
``rne``; an integer format means symmetric scaling ``s = max|x| / max_int`` per tensor
(``per-tensor``) or per output channel (``per-channel``, weights only), integer sums in the
accumulator, rescaled after it.

Build a trace from numpy in a few lines::

    from accsim.network.trace import sequential, save_trace
    t = sequential("my-mlp", X, y, [("linear", W1, b1), ("relu",), ("linear", W2, b2)])
    save_trace(t, "my-mlp")
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..numerics.config import ConfigError, Doc, header, load_format, package_data_dir, read_yaml
from ..precision.analysis import ACTIVATION_KINDS
from .ops import forward64, out_size

KINDS = ("linear", "conv2d", "flatten", "reshape", "maxpool", "avgpool", "globalavgpool",
         "add") + ACTIVATION_KINDS
MATMUL_KINDS = ("linear", "conv2d")
"""Layer kinds computed as one matrix product on the accelerator."""
_ARRAY_ATTRS = ("weight", "bias")
_ATTRS = {
    "linear": ("weight", "bias"),
    "conv2d": ("weight", "bias", "stride", "padding"),
    "reshape": ("shape",),
    "maxpool": ("kernel", "stride", "padding"),
    "avgpool": ("kernel", "stride", "padding", "count_include_pad"),
}
_INPUTS_KEY = "__inputs__"
_LABELS_KEY = "__labels__"
INPUT_SCALES = ("none", "per-tensor")
WEIGHT_SCALES = ("none", "per-tensor", "per-channel")


@dataclass(frozen=True)
class Layer:
    """One layer: ``attrs`` holds array names (weight, bias) and plain parameters."""

    name: str
    kind: str
    inputs: tuple = ()
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "attrs", _normalize(self.kind, dict(self.attrs)))


def _normalize(kind, a):
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


@dataclass(frozen=True, eq=False)
class Trace:
    """A network (layers + arrays), its test inputs and labels, and operand quantisation."""

    name: str
    layers: tuple
    arrays: dict
    inputs: np.ndarray
    labels: np.ndarray | None = None
    quant: dict | None = None
    reference_accuracy: float | None = None
    description: str = ""
    source: str | None = None  # where it was loaded from, for error messages

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "arrays", {str(k): np.asarray(v, dtype=np.float64)
                                            for k, v in self.arrays.items()})
        object.__setattr__(self, "inputs", np.asarray(self.inputs, dtype=np.float64))
        if self.labels is not None:
            object.__setattr__(self, "labels", np.asarray(self.labels).astype(np.int64))

    # -- queries ----------------------------------------------------------------------
    def where(self):
        return self.source or f"trace '{self.name}'"

    def matmul_layers(self):
        """Names of the layers computed as matrix products (linear, conv2d), in order."""
        return [la.name for la in self.layers if la.kind in MATMUL_KINDS]

    def layer(self, name):
        for la in self.layers:
            if la.name == name:
                return la
        raise KeyError(name)

    def shapes(self):
        """Per-sample output shape (without the batch axis) of every tensor, by name."""
        return _infer_shapes(self)

    def with_inputs(self, inputs, labels=None):
        """A copy with other inputs (and labels)."""
        return Trace(self.name, self.layers, self.arrays, inputs, labels, self.quant,
                     self.reference_accuracy, self.description, self.source)

    # -- checks -----------------------------------------------------------------------
    def validate(self):
        """Raise a one-line ValueError naming the file, layer and problem; return self."""
        src = self.where()
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{src}: name: expected a non-empty string")
        if self.inputs.ndim < 2 or self.inputs.shape[0] < 1:
            raise ValueError(f"{src}: inputs: expected an array (N, ...) with N >= 1, "
                             f"got shape {self.inputs.shape}")
        if not np.all(np.isfinite(self.inputs)):
            bad = np.argwhere(~np.isfinite(self.inputs))[0]
            raise ValueError(f"{src}: inputs: non-finite value {self.inputs[tuple(bad)]} at "
                             f"index {tuple(int(i) for i in bad)}")
        if self.labels is not None and self.labels.shape != (self.inputs.shape[0],):
            raise ValueError(f"{src}: labels: expected shape ({self.inputs.shape[0]},), "
                             f"got {self.labels.shape}")
        for k, v in self.arrays.items():
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{src}: array '{k}': contains NaN or inf")
        _check_quant(self.quant, src)
        if self.reference_accuracy is not None and not (0.0 <= self.reference_accuracy <= 1.0):
            raise ValueError(f"{src}: reference_accuracy: expected a number in [0, 1], "
                             f"got {self.reference_accuracy!r}")
        if not self.layers:
            raise ValueError(f"{src}: layers: expected at least one layer")
        _infer_shapes(self)
        return self

    def accuracy(self, outputs=None):
        """Argmax accuracy of ``outputs`` (default: the float64 forward pass) on the labels."""
        if self.labels is None:
            return None
        if outputs is None:
            outputs = forward64(self)
        pred = np.asarray(outputs).reshape(len(self.labels), -1).argmax(axis=1)
        return float(np.mean(pred == self.labels))


def _check_quant(q, src):
    if q is None:
        return
    if not isinstance(q, dict):
        raise ValueError(f"{src}: quant: expected a mapping with 'input' and 'weight'")  # noqa: TRY004
    for key in q:
        if key not in ("input", "weight"):
            raise ValueError(f"{src}: quant.{key}: unknown key (expected input, weight)")
    for key, scales in (("input", INPUT_SCALES), ("weight", WEIGHT_SCALES)):
        if key not in q:
            continue
        spec = q[key]
        if not isinstance(spec, dict) or "format" not in spec:
            raise ValueError(f"{src}: quant.{key}: expected a mapping with 'format' and 'scale'")
        for k in spec:
            if k not in ("format", "scale"):
                raise ValueError(f"{src}: quant.{key}.{k}: unknown key (expected format, scale)")
        try:
            load_format(spec["format"])
        except ValueError as exc:
            raise ValueError(f"{src}: quant.{key}.format: {exc}") from None
        sc = spec.get("scale", "none")
        if sc not in scales:
            raise ValueError(f"{src}: quant.{key}.scale: expected one of {', '.join(scales)}, "
                             f"got {sc!r}")


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


def _infer_shapes(trace):
    """Check that the layers chain; per-sample shape of every tensor."""
    src = trace.where()
    shapes = {"input": tuple(trace.inputs.shape[1:])}
    prev = "input"
    seen = set()
    for la in trace.layers:
        def err(msg, la=la):
            return ValueError(f"{src}: layer '{la.name}' ({la.kind}): {msg}")
        names = _check_layer(la, src, seen, shapes, prev, err)
        shapes[la.name] = _layer_shape(la, [shapes[n] for n in names], trace.arrays, err)
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
    allowed = _ATTRS.get(la.kind, ())
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
# builder

def sequential(name, inputs, labels=None, layers=(), *, quant=None, description="",
               reference_accuracy=None):
    """Build a trace from numpy arrays.

    ``layers`` is a list of tuples ``(kind, *arrays, {attrs})`` or ``Layer`` values::

        ("linear", W, b)                      # W (out, in); b may be None or left out
        ("conv2d", W, b, {"stride": 1, "padding": 1})
        ("maxpool", {"kernel": 2})            # also avgpool, reshape {"shape": [...]}
        ("flatten",), ("relu",), ("softmax",), ...

    Arrays are named ``<layer>.weight`` / ``<layer>.bias``, layers ``<kind><index>``.
    ``reference_accuracy`` defaults to the float64 accuracy on ``labels`` (if given).
    The trace is validated.
    """
    out_layers, arrays = [], {}
    for i, spec in enumerate(layers):
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
    t = Trace(name, tuple(out_layers), arrays, inputs, labels, quant, reference_accuracy,
              description)
    t.validate()
    if reference_accuracy is None and labels is not None:
        t = Trace(name, t.layers, t.arrays, t.inputs, t.labels, quant, t.accuracy(),
                  description)
    return t


# ---------------------------------------------------------------------------------------
# save / load

def _plain(v):
    """YAML-friendly copy of an attribute value."""
    if isinstance(v, (tuple, list, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _narrow(a):
    """The narrowest float dtype holding ``a`` exactly (lossless storage)."""
    a = np.asarray(a, dtype=np.float64)
    for dt in (np.float16, np.float32):
        with np.errstate(over="ignore", invalid="ignore"):
            b = a.astype(dt)
        if np.array_equal(b.astype(np.float64), a):
            return b
    return a


def save_trace(trace, path):
    """Write ``trace`` as a folder ``path`` (trace.yaml + arrays.npz), atomically.

    The folder is written under a temporary name next to ``path`` and renamed into place;
    an existing trace folder at ``path`` is replaced. Returns the path.
    """
    trace.validate()
    path = Path(path)
    if path.exists() and (not path.is_dir() or (any(path.iterdir())
                                                 and not (path / "trace.yaml").is_file())):
        raise ValueError(f"{path}: exists and is not a trace folder; refusing to overwrite")
    for k in trace.arrays:
        if k.startswith("__"):
            raise ValueError(f"{trace.where()}: array '{k}': names starting with '__' are "
                             "reserved")
    doc = {"kind": "trace", "version": 1, "name": trace.name}
    if trace.description:
        doc["description"] = trace.description
    if trace.reference_accuracy is not None:
        doc["reference_accuracy"] = float(trace.reference_accuracy)
    doc["num_samples"] = int(trace.inputs.shape[0])
    doc["input_shape"] = [int(s) for s in trace.inputs.shape[1:]]
    if trace.quant is not None:
        doc["quant"] = {k: dict(v) for k, v in trace.quant.items()}
    doc["arrays"] = "arrays.npz"
    layers = []
    for la in trace.layers:
        d = {"name": la.name, "kind": la.kind}
        if la.inputs:
            d["inputs"] = list(la.inputs)
        order = _ATTRS.get(la.kind, ())  # canonical key order: same trace, same bytes
        for k in sorted(la.attrs, key=lambda k: (order.index(k) if k in order else 99, k)):
            d[k] = _plain(la.attrs[k])
        layers.append(d)
    doc["layers"] = layers
    npz = {k: _narrow(v) for k, v in trace.arrays.items()}
    npz[_INPUTS_KEY] = _narrow(trace.inputs)
    if trace.labels is not None:
        npz[_LABELS_KEY] = trace.labels.astype(
            np.int16 if trace.labels.size == 0 or np.abs(trace.labels).max() < 2**15
            else np.int64)

    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a trace folder is shared
        _write_npz(tmp / "arrays.npz", npz)
        (tmp / "trace.yaml").write_text(
            yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100),
            encoding="utf-8")
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.rename(path, old / "t")
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_npz(path, arrays):
    """Like np.savez_compressed, with fixed timestamps: the same trace gives the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, a in arrays.items():
            info = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            z.writestr(info, buf.getvalue())


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


def _read_npz(p):
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{p}: array file missing") from None
    out = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            for k in z.files:
                out[k] = z[k]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError,
            zipfile.LargeZipFile) as exc:
        raise ValueError(f"{p}: corrupt or truncated .npz ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    except Exception as exc:  # noqa: BLE001 (zlib.error and friends)
        raise ValueError(f"{p}: corrupt or truncated .npz ({exc.__class__.__name__})") from None
    return out


def load_trace(path):
    """Read a trace folder (or its trace.yaml); one-line ValueError on any problem."""
    yml, folder = _trace_files(Path(path))
    doc = Doc(read_yaml(yml), str(yml))
    header(doc, "trace")
    name = doc.get("name", str, default=folder.name)
    description = doc.get("description", str, default="") or ""
    ref = doc.get("reference_accuracy", (int, float), default=None)
    n = doc.get("num_samples", int, default=None)
    ishape = doc.get("input_shape", list, default=None)
    quant = _read_quant(doc.sub("quant")) if doc.has("quant") else None
    arrays_name = doc.get("arrays", str, default="arrays.npz")
    raw_layers = doc.get("layers", list)
    doc.finish()
    layers = [_read_layer(ld, i, yml) for i, ld in enumerate(raw_layers)]
    npz_path = folder / arrays_name
    arrays, inputs, labels = _read_arrays(npz_path, n, ishape)
    t = Trace(name, tuple(layers), arrays, inputs, labels, quant,
              None if ref is None else float(ref), description, source=str(yml))
    # errors about arrays name the npz file, the rest name trace.yaml
    try:
        t.validate()
    except ValueError as exc:
        msg = str(exc)
        if "non-finite" in msg or "NaN or inf" in msg:
            msg = msg.replace(str(yml), str(npz_path), 1)
        raise ValueError(msg) from None
    return t


def _trace_files(path):
    """(trace.yaml, folder) of a trace folder or of its trace.yaml."""
    if path.is_file() and path.name.endswith((".yaml", ".yml")):
        return path, path.parent
    folder, yml = path, path / "trace.yaml"
    if not folder.exists():
        raise ValueError(f"{folder}: no such trace folder")
    if not folder.is_dir():
        raise ValueError(f"{folder}: expected a trace folder holding trace.yaml")
    if not yml.is_file():
        raise ValueError(f"{folder}: not a trace folder (trace.yaml missing)")
    return yml, folder


def _read_quant(q):
    quant = {}
    for key in ("input", "weight"):
        if q.has(key):
            s = q.sub(key)
            quant[key] = {"format": s.get("format", str),
                          "scale": s.get("scale", str, default="none")}
            s.finish()
    q.finish()
    return quant


def _read_layer(ld, i, yml):
    """Layer ``i`` of trace.yaml (its mapping ``ld``)."""
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
    for k in _ATTRS.get(kind, ()):
        if d.has(k):
            attrs[k] = d.get(k, (str, int, float, bool, list, type(None)))
    for k in ld:
        if k not in ("name", "kind", "inputs") + _ATTRS.get(kind, ()):
            raise ConfigError(f"{yml}: layer '{lname}' ({kind}): unknown key '{k}'")
    for k in ("stride", "padding", "kernel", "shape"):
        if isinstance(attrs.get(k), list):
            attrs[k] = tuple(attrs[k])
    return Layer(lname, kind, tuple(str(s) for s in inputs), attrs)


def _read_arrays(npz_path, n, ishape):
    """(named arrays, inputs, labels or None) of arrays.npz, checked against trace.yaml's
    ``num_samples`` ``n`` and ``input_shape`` ``ishape`` (None: not given)."""
    raw = _read_npz(npz_path)
    if _INPUTS_KEY not in raw:
        raise ValueError(f"{npz_path}: array '{_INPUTS_KEY}' (the trace inputs) missing")
    arrays = {}
    for k, v in raw.items():
        if k in (_INPUTS_KEY, _LABELS_KEY):
            continue
        if v.dtype.kind not in "fiu":
            raise ValueError(f"{npz_path}: array '{k}': expected numbers, got dtype {v.dtype}")
        arrays[k] = v.astype(np.float64)
    inputs = raw[_INPUTS_KEY].astype(np.float64)
    labels = raw.get(_LABELS_KEY)
    if labels is not None:
        if labels.dtype.kind not in "iu":
            raise ValueError(f"{npz_path}: labels: expected integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    if n is not None and inputs.shape[0] != n:
        raise ValueError(f"{npz_path}: inputs: {inputs.shape[0]} samples but trace.yaml says "
                         f"num_samples {n}")
    if ishape is not None and list(inputs.shape[1:]) != list(ishape):
        raise ValueError(f"{npz_path}: inputs: per-sample shape {inputs.shape[1:]} but "
                         f"trace.yaml says input_shape {ishape}")
    return arrays, inputs, labels


# ---------------------------------------------------------------------------------------
# bundled traces

def traces_dir() -> Path:
    """Folder of the bundled traces (traces/): inside the wheel, or the repository's."""
    return package_data_dir("traces")


def list_traces():
    """Names of the bundled traces, sorted."""
    d = traces_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "trace.yaml").is_file())


def resolve_trace(name_or_path):
    """A Trace from a folder path or a bundled trace name (``list_traces()``); a value
    with ``layers`` (a Trace) is returned as it is."""
    if hasattr(name_or_path, "layers"):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise ValueError(f"trace: expected a folder path or a bundled name, "  # noqa: TRY004
                         f"got {name_or_path!r}")
    p = Path(name_or_path)
    if p.exists():
        return load_trace(p)
    s = str(name_or_path)
    if "/" not in s and s and (traces_dir() / s).is_dir():
        return load_trace(traces_dir() / s)
    names = list_traces()
    hint = f" (bundled traces: {', '.join(names)})" if names else ""
    raise ValueError(f"trace: {s!r} is neither a trace folder nor a bundled trace{hint}")
