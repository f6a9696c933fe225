"""Traces: a network graph, its arrays and its data, as a folder accsim can simulate.

A trace folder holds ``trace.yaml`` and ``arrays.npz``::

    kind: trace
    version: 2
    name: my-model
    description: ...
    reference_accuracy: 0.953        # float64 accuracy of the stored network (optional)
    num_samples: 1000
    quant:                           # operand quantisation (optional)
      input:  {format: fp16, scale: none}
      weight: {format: fp16, scale: none}
    input: {name: x, shape: [1, 784]} # the graph input and its model shape
    output: logits                    # the tensor whose rows are the network output
    arrays: arrays.npz
    nodes:                            # ONNX operators in topological order (:mod:`.graph`)
      - {name: fc1, op: Gemm, inputs: [x, fc1.weight, fc1.bias], outputs: [h1],
         attrs: {transB: 1}}
      - {name: act1, op: Relu, inputs: [h1], outputs: [a1], attrs: {}}
      ...

``arrays.npz`` holds every named array plus ``__inputs__`` (N, *sample shape) and
``__labels__`` (N,). Float arrays are stored in the narrowest of float16/float32/float64
that holds them exactly and come back as float64; integer arrays (indices) as int64,
except int8, uint8 and int32 arrays (quantized models), which keep their type.
Version-1 traces (a list of ``layers``, :mod:`.trace_v1`) still load, converted to a graph.

**Samples and the model input.** The trace's samples ``X`` have shape ``(N, *s)``; the
model input has shape ``graph.input_shape``. :meth:`Trace.model_inputs` maps them: when
the input shape is ``(1, *s)`` a size-1 model batch axis is inserted (each sample is one
batch of one, the usual export); when it equals ``s`` the samples are taken as they are;
anything else is an error naming both shapes.

Operand quantisation (``quant``): a float format means operands are rounded to it with
``rne``; an integer format means symmetric scaling ``s = max|x| / max_int`` per tensor
(``per-tensor``) or per output channel (``per-channel``, weights only), integer sums in the
accumulator, rescaled after it (:mod:`.operands`).

Build a trace from numpy in a few lines::

    from accsim.network.trace import sequential, save_trace
    t = sequential("my-mlp", X, y, [("linear", W1, b1), ("relu",), ("linear", W2, b2)])
    save_trace(t, "my-mlp")

or from a graph (:class:`~accsim.network.graph.Graph`) with :meth:`Trace.from_graph`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..numerics.config import ConfigError, Doc, load_format, package_data_dir, read_yaml
from . import graph_ops, trace_v1
from .graph import PRODUCT_OPS, Graph, Node
from .operands import INPUT_SCALES, WEIGHT_SCALES
from .products import forward64
from .trace_v1 import Layer

__all__ = ["Layer", "Trace", "list_traces", "load_trace", "resolve_trace", "save_trace",
           "sequential", "traces_dir", "write_npz"]

_INPUTS_KEY = "__inputs__"
_LABELS_KEY = "__labels__"
VERSION = 2
"""The trace.yaml version :func:`save_trace` writes."""


#: integer dtypes of quantized models' arrays, kept as they are (codes, zero points,
#: int32 biases: their type is part of the operator's meaning)
QUANT_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32))


def _as_array(v):
    """float64, or int64 for integer / boolean arrays (indices, masks); int8, uint8 and
    int32 arrays (:data:`QUANT_DTYPES`) keep their type."""
    a = np.asarray(v)
    if a.dtype in QUANT_DTYPES:
        return a
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    return a.astype(np.float64)


@dataclass(frozen=True, eq=False)
class Trace:
    """A network graph and its arrays, the test inputs (N, *sample shape) and labels,
    and operand quantisation. ``graph`` may also be given as a sequence of version-1
    :class:`~accsim.network.trace_v1.Layer` values (validated, then converted)."""

    name: str
    graph: Graph
    arrays: dict
    inputs: np.ndarray
    labels: np.ndarray | None = None
    quant: dict | None = None
    reference_accuracy: float | None = None
    description: str = ""
    source: str | None = None  # where it was loaded from, for error messages

    def __post_init__(self):
        object.__setattr__(self, "arrays", {str(k): _as_array(v)
                                            for k, v in self.arrays.items()})
        object.__setattr__(self, "inputs", np.asarray(self.inputs, dtype=np.float64))
        if self.labels is not None:
            object.__setattr__(self, "labels", np.asarray(self.labels).astype(np.int64))
        if not isinstance(self.graph, Graph):
            layers = tuple(self.graph)
            self._check_data()
            trace_v1.infer_shapes(layers, self.arrays, self.inputs.shape[1:], self.where())
            object.__setattr__(self, "graph", trace_v1.to_graph(layers,
                                                                self.inputs.shape[1:]))

    @classmethod
    def from_graph(cls, name, graph, arrays, inputs, labels=None, *, quant=None,
                   description=""):
        """A validated trace of ``graph`` over ``arrays`` with samples ``inputs`` (N, ...)
        (mapped to the model input by :meth:`model_inputs`); ``reference_accuracy`` is the
        float64 accuracy on ``labels`` when they are given."""
        t = cls(name, graph, arrays, inputs, labels, quant, None, description).validate()
        if labels is not None:
            t = dataclasses.replace(t, reference_accuracy=t.accuracy())
        return t

    # -- queries ----------------------------------------------------------------------
    def where(self):
        return self.source or f"trace '{self.name}'"

    def matmul_layers(self):
        """Names of the product nodes (:data:`~accsim.network.graph.PRODUCT_OPS`), in
        order."""
        return [n.name for n in self.graph.product_nodes()]

    def node(self, name):
        """The node called ``name``."""
        for n in self.graph.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def model_inputs(self, X):
        """The samples ``X`` (N, *s) as the graph input (N, *input shape) (module doc)."""
        X = np.asarray(X, dtype=np.float64)
        shape = self.graph.input_shape
        if X.shape[1:] == shape:
            return X
        if shape == (1, *X.shape[1:]):
            return X[:, None]
        raise ValueError(f"{self.where()}: inputs: samples of shape {X.shape[1:]} fit "
                         f"neither the model input {self.graph.input} of shape "
                         f"{shape} nor (1, *sample shape)")

    def shapes(self):
        """Model shape (the sample axis left out) of every tensor, by name (a float64
        pass over the first sample)."""
        env = forward64(self, self.inputs[:1], return_all=True)
        return {k: tuple(v.shape[1:]) for k, v in env.items()}

    def with_inputs(self, inputs, labels=None):
        """A copy with other inputs (and labels)."""
        return dataclasses.replace(self, inputs=inputs, labels=labels)

    # -- checks -----------------------------------------------------------------------
    def _check_data(self):
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
            if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                raise ValueError(f"{src}: array '{k}': contains NaN or inf")
        _check_quant(self.quant, src)
        if self.reference_accuracy is not None and not (0.0 <= self.reference_accuracy <= 1.0):
            raise ValueError(f"{src}: reference_accuracy: expected a number in [0, 1], "
                             f"got {self.reference_accuracy!r}")

    def validate(self):
        """Raise a one-line ValueError naming the file, node and problem; return self.

        Checks the data, the graph's wiring, that every op is supported, the input rule
        and that a float64 pass over the first sample runs."""
        self._check_data()
        src = self.where()
        if not isinstance(self.graph, Graph) or not self.graph.nodes:
            raise ValueError(f"{src}: nodes: expected at least one node")
        self.graph.check(self.arrays, src)
        for n in self.graph.nodes:
            if n.op not in PRODUCT_OPS and n.op not in graph_ops.OPS:
                raise ValueError(f"{src}: node {n.name} ({n.op}): unsupported op")
        self.model_inputs(self.inputs[:1])
        try:
            forward64(self, self.inputs[:1])
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{src}: {str(exc).splitlines()[0]}") from None
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


# ---------------------------------------------------------------------------------------
# builder

def sequential(name, inputs, labels=None, layers=(), *, quant=None, description="",
               reference_accuracy=None):
    """Build a trace (its graph) from numpy arrays and version-1 layer specs.

    ``layers`` is a list of tuples ``(kind, *arrays, {attrs})`` or ``Layer`` values::

        ("linear", W, b)                      # W (out, in); b may be None or left out
        ("conv2d", W, b, {"stride": 1, "padding": 1})
        ("maxpool", {"kernel": 2})            # also avgpool, reshape {"shape": [...]}
        ("flatten",), ("relu",), ("softmax",), ...

    Arrays are named ``<layer>.weight`` / ``<layer>.bias``, layers (nodes, and their
    output tensors) ``<kind><index>``; the layers are converted to a graph as version-1
    traces are (:mod:`.trace_v1`). ``reference_accuracy`` defaults to the float64
    accuracy on ``labels`` (if given). The trace is validated.
    """
    out_layers, arrays = trace_v1.layer_specs(name, layers)
    t = Trace(name, tuple(out_layers), arrays, inputs, labels, quant, reference_accuracy,
              description).validate()
    if reference_accuracy is None and labels is not None:
        t = dataclasses.replace(t, reference_accuracy=t.accuracy())
    return t


# ---------------------------------------------------------------------------------------
# save

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
    """The narrowest dtype holding ``a`` exactly (lossless storage): float16/32/64 for
    floats, int16/int64 for integers."""
    a = np.asarray(a)
    if a.dtype in QUANT_DTYPES:
        return a
    if a.dtype.kind in "iub":
        small = a.size == 0 or (np.abs(a.astype(np.int64)).max() < 2**15)
        return a.astype(np.int16 if small else np.int64)
    a = a.astype(np.float64)
    for dt in (np.float16, np.float32):
        with np.errstate(over="ignore", invalid="ignore"):
            b = a.astype(dt)
        if np.array_equal(b.astype(np.float64), a):
            return b
    return a


def _node_doc(n):
    return {"name": n.name, "op": n.op, "inputs": list(n.inputs), "outputs": list(n.outputs),
            "attrs": {k: _plain(n.attrs[k]) for k in sorted(n.attrs)}}


def _trace_doc(trace):
    doc = {"kind": "trace", "version": VERSION, "name": trace.name}
    if trace.description:
        doc["description"] = trace.description
    if trace.reference_accuracy is not None:
        doc["reference_accuracy"] = float(trace.reference_accuracy)
    doc["num_samples"] = int(trace.inputs.shape[0])
    if trace.quant is not None:
        doc["quant"] = {k: dict(v) for k, v in trace.quant.items()}
    g = trace.graph
    doc["input"] = {"name": g.input, "shape": [int(s) for s in g.input_shape]}
    doc["output"] = g.output
    doc["arrays"] = "arrays.npz"
    doc["nodes"] = [_node_doc(n) for n in g.nodes]
    return doc


def save_trace(trace, path):
    """Write ``trace`` as a version-2 folder ``path`` (trace.yaml + arrays.npz), atomically.

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
    doc = _trace_doc(trace)
    npz = {k: _narrow(v) for k, v in trace.arrays.items()}
    npz[_INPUTS_KEY] = _narrow(trace.inputs)
    if trace.labels is not None:
        npz[_LABELS_KEY] = _narrow(trace.labels)

    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a trace folder is shared
        write_npz(tmp / "arrays.npz", npz)
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


def write_npz(path, arrays):
    """Like np.savez_compressed, with fixed timestamps: the same arrays give the same
    bytes. Not atomic by itself (callers write to a temporary name and rename)."""
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


# ---------------------------------------------------------------------------------------
# load

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


def _header(doc):
    """The trace.yaml version (1 or 2), after checking ``kind``."""
    k = doc.get("kind", str, expected="'trace'")
    if k != "trace":
        raise doc.error("kind", f"expected 'trace', got {k!r}")
    v = doc.get("version", int, expected="1 or 2")
    if v not in (1, VERSION):
        raise doc.error("version", f"expected 1 or 2, got {v!r}")
    return v


def load_trace(path):
    """Read a trace folder (or its trace.yaml), version 1 or 2; one-line ValueError on
    any problem."""
    yml, folder = _trace_files(Path(path))
    doc = Doc(read_yaml(yml), str(yml))
    version = _header(doc)
    name = doc.get("name", str, default=folder.name)
    description = doc.get("description", str, default="") or ""
    ref = doc.get("reference_accuracy", (int, float), default=None)
    n = doc.get("num_samples", int, default=None)
    quant = _read_quant(doc.sub("quant")) if doc.has("quant") else None
    npz_path = folder / doc.get("arrays", str, default="arrays.npz")
    if version == 1:
        ishape = doc.get("input_shape", list, default=None)
        raw_layers = doc.get("layers", list)
        doc.finish()
        graph = tuple(trace_v1.read_layer(ld, i, yml) for i, ld in enumerate(raw_layers))
    else:
        graph = _read_graph(doc, yml)
        ishape = None
        doc.finish()
    arrays, inputs, labels = _read_arrays(npz_path, n, ishape, float_only=version == 1)
    # errors about arrays name the npz file, the rest name trace.yaml
    try:
        return Trace(name, graph, arrays, inputs, labels, quant,
                     None if ref is None else float(ref), description,
                     source=str(yml)).validate()
    except ValueError as exc:
        msg = str(exc)
        if "non-finite" in msg or "NaN or inf" in msg:
            msg = msg.replace(str(yml), str(npz_path), 1)
        raise ValueError(msg) from None


def _read_graph(doc, yml):
    """The graph of a version-2 trace.yaml."""
    inp = doc.sub("input")
    iname = inp.get("name", str)
    ishape = inp.get("shape", list, check=lambda s: all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in s),
        expected="a list of positive integers")
    inp.finish()
    output = doc.get("output", str)
    raw = doc.get("nodes", list)
    nodes = [_read_node(nd, i, yml) for i, nd in enumerate(raw)]
    return Graph(nodes, iname, ishape, output)


def _str_list(d, key):
    return d.get(key, list, check=lambda v: all(isinstance(s, str) for s in v),
                 expected="a list of tensor names")


def _read_node(nd, i, yml):
    if not isinstance(nd, dict):
        raise ConfigError(f"{yml}: key 'nodes[{i}]': expected a mapping, got {nd!r}")
    d = Doc(nd, str(yml), f"nodes[{i}]")
    node = Node(d.get("name", str), d.get("op", str), _str_list(d, "inputs"),
                _str_list(d, "outputs"), d.get("attrs", dict, default={}))
    d.finish()
    return node


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


def _read_arrays(npz_path, n, ishape, float_only):
    """(named arrays, inputs, labels or None) of arrays.npz, checked against trace.yaml's
    ``num_samples`` ``n`` and version-1 ``input_shape`` ``ishape`` (None: not given);
    ``float_only``: every array as float64 (version 1)."""
    raw = _read_npz(npz_path)
    if _INPUTS_KEY not in raw:
        raise ValueError(f"{npz_path}: array '{_INPUTS_KEY}' (the trace inputs) missing")
    arrays = {}
    for k, v in raw.items():
        if k in (_INPUTS_KEY, _LABELS_KEY):
            continue
        if v.dtype.kind not in ("fiu" if float_only else "fiub"):
            raise ValueError(f"{npz_path}: array '{k}': expected numbers, got dtype {v.dtype}")
        arrays[k] = v.astype(np.float64) if float_only else _as_array(v)
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
    """A Trace from a folder path or a bundled trace name (``list_traces()``); a
    :class:`Trace` is returned as it is."""
    if isinstance(name_or_path, Trace):
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
