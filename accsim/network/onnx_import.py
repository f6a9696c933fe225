"""ONNX model → graph (:mod:`.graph`) → Trace.

:func:`import_graph` reads a model as exported (torch's TorchScript and dynamo exporters,
skl2onnx, opsets 7-21) and returns the network as a :class:`~.graph.Graph` of ONNX
operators run by :mod:`.graph_ops`, its arrays, and notes on what was changed:

1. ``onnx.checker`` validates the model; local functions (dynamo exports) are inlined
   (``onnx.inliner``).
2. **Batch.** The single graph input gets a batch of 1 at its first axis (the samples run
   along the sample axis of :mod:`.graph`); its other dynamic axes take the sizes of
   ``inputs``. ``inputs`` is ``(N, *shape without the batch axis)`` — or ``(N, *shape)``,
   one more axis than the model input, for a model without a batch axis or whose batch is
   not its first axis (a sequence-first RNN: ``(N, T, 1, features)``).
3. **Clean-up by onnxruntime** (when installed): with every shape now static, a session at
   ``ORT_ENABLE_BASIC`` writes its optimised model (``optimized_model_filepath``):
   constant folding (Shape/Gather/Concat/ConstantOfShape/Range ... chains become
   initializers), Identity/Dropout/redundant node removal, and its semantics-preserving
   level-1 fusions (Conv+BatchNormalization/Mul/Add into the convolution's weights,
   MatMul+Add into Gemm). Chosen over hand-written folding because it is maintained with the
   operator set; level 1 writes only standard ONNX operators — the importer checks that and
   falls back to the unoptimised model (with a note) if a non-standard one appears.
4. **Outputs.** One graph output, ``output=NAME``, or — when exactly one output is a float
   tensor (skl2onnx: probabilities beside integer labels) — that one, noted. A ZipMap at
   the chosen output is looked through. Nodes not needed for the output (ArgMax, Cast,
   ArrayFeatureExtractor of a label output ...) are dropped with a note.
5. **Normalisation.** Parameter inputs (:data:`.graph.PARAM_INPUTS`) become attributes;
   what onnxruntime left constant is folded by running :mod:`.graph_ops` on it, Shape/Size
   of activations from their static shapes; old-opset forms are rewritten (Pad's ``value``,
   Softmax before opset 13 when it is over the last axis).
6. **Errors.** Every unsupported operator is listed in one ``ValueError`` (type, count,
   first node names, hints); anything else that cannot run names its node.

:func:`import_onnx` builds a Trace from it (:meth:`.trace.Trace.from_graph`).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from . import graph_ops, quant_ops
from .graph import PARAM_INPUTS, Graph, Node
from .onnx_rnn import RECURRENT, unroll

#: domains whose operators graph_ops implements
STANDARD_DOMAINS = ("", "ai.onnx")

#: the contrib domain of onnxruntime's quantized operators (:data:`.quant_ops.CONTRIB_OPS`)
CONTRIB_DOMAIN = "com.microsoft"

#: ops never folded into constants at import: fuse_qdq must find a weight's
#: DequantizeLinear (onnxruntime's constant folding skips them too)
NO_FOLD = ("DequantizeLinear",)

#: ops a chosen output is looked through (their input is the network's output)
LOOK_THROUGH = ("ZipMap",)

#: ops whose outputs depend on the shape of their input only (folded at import)
SHAPE_ONLY = ("Shape", "Size")

#: hints for operators graph_ops does not implement
HINTS = {
    "RNN": "the plain RNN is not supported (GRU and LSTM are, unrolled)",
    "ConvTranspose": "transposed convolutions are not supported",
    "Resize": "resizing/upsampling is not supported",
    "Upsample": "resizing/upsampling is not supported",
    "Einsum": "write the contraction as MatMul/Transpose before exporting",
    "If": "control flow: export with static shapes (fixed batch, no data-dependent "
          "branches)",
    "Loop": "control flow: export with static shapes",
    "Scan": "control flow: export with static shapes",
}


def _load(model_path):
    import onnx
    p = Path(model_path)
    if not p.is_file():
        raise ValueError(f"{p}: file not found")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001 (any failure means unreadable)
        raise ValueError(f"{p}: not a readable ONNX model ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 (onnx raises several kinds)
        raise ValueError(f"{p}: not a valid ONNX model ({str(exc).strip().splitlines()[0]})"
                         ) from None
    if model.functions:
        from onnx import inliner
        model = inliner.inline_local_functions(model)
    return model


def _opset(model):
    for o in model.opset_import:
        if o.domain in STANDARD_DOMAINS:
            return int(o.version)
    return 1


# --- 2. the input and its batch ----------------------------------------------------------

def _graph_input(src, model):
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    if len(real) != 1:
        raise ValueError(f"{src}: expected one graph input, got {len(real)} "
                         f"({', '.join(i.name for i in real) or 'none'})")
    return real[0]


def _model_shape(src, gin, inputs):
    """The input's model shape for one sample (batch 1), checked against ``inputs``."""
    tt = gin.type.tensor_type
    if not tt.HasField("shape"):
        return (1,) + inputs.shape[1:]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    rank = len(dims)
    if inputs.ndim == rank + 1:          # the model has no batch axis
        want, shape = dims, list(inputs.shape[1:])
    elif inputs.ndim == rank:            # the first axis is the batch: samples run there
        if dims[0] not in (None, 1):
            raise ValueError(f"{src}: input {gin.name} has a fixed batch of {dims[0]}; "
                             f"export it with a batch of 1 or a dynamic batch")
        want, shape = dims[1:], list(inputs.shape[1:])
    else:
        raise ValueError(f"{src}: input {gin.name} has shape {_dims_text(dims)}: expected "
                         f"inputs (N, {_dims_text(dims[1:])[1:-1]}), got shape "
                         f"{inputs.shape}")
    for d, s in zip(want, shape):
        if d is not None and d != s:
            raise ValueError(f"{src}: input {gin.name} has shape {_dims_text(dims)} but the "
                             f"inputs have shape {inputs.shape} (N first)")
    return tuple(shape) if inputs.ndim == rank + 1 else (1, *shape)


def _dims_text(dims):
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _fix_input(model, gin, shape):
    """A copy of ``model`` with the graph input's shape set to ``shape`` and stale inferred
    shapes removed."""
    m = type(model)()
    m.CopyFrom(model)
    for i in m.graph.input:
        if i.name == gin.name:
            dims = i.type.tensor_type.shape.dim
            del dims[:]
            for s in shape:
                dims.add().dim_value = int(s)
    del m.graph.value_info[:]
    return m


# --- 3. clean-up by onnxruntime ---------------------------------------------------------

def _ort_basic(model, notes):
    """The model after onnxruntime's ORT_ENABLE_BASIC optimisation, or ``model`` itself
    (with a note) when onnxruntime is missing, fails, or writes a non-standard op."""
    try:
        import onnxruntime as ort
    except ImportError:
        notes.append("onnxruntime is not installed: constant subgraphs folded by accsim "
                     "only")
        return model
    import onnx
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "basic.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = path
        so.log_severity_level = 3
        try:
            ort.InferenceSession(model.SerializeToString(), so,
                                 providers=["CPUExecutionProvider"])
            opt = onnx.load(path)
        except Exception as exc:  # noqa: BLE001 (onnxruntime raises its own kinds)
            notes.append(f"onnxruntime could not optimise the model "
                         f"({str(exc).strip().splitlines()[0][:200]}); constant subgraphs "
                         f"folded by accsim only")
            return model
    before = _domains(model)
    new = {d for d in _domains(opt) if d not in before and d not in STANDARD_DOMAINS}
    if new:
        notes.append(f"onnxruntime's basic optimisation wrote operators of domain "
                     f"{', '.join(sorted(new))}; imported the unoptimised model")
        return model
    _note_changes(model, opt, notes)
    return opt


def _domains(model):
    return {n.domain for n in model.graph.node}


def _note_changes(model, opt, notes):
    a = Counter(n.op_type for n in model.graph.node)
    b = Counter(n.op_type for n in opt.graph.node)
    gone = {k: a[k] - b.get(k, 0) for k in a if a[k] > b.get(k, 0)}
    new = {k: b[k] - a.get(k, 0) for k in b if b[k] > a.get(k, 0)}
    if gone or new:
        text = "onnxruntime's basic optimisation (constant folding, fusions): " \
               f"{sum(a.values())} -> {sum(b.values())} nodes"
        if gone:
            text += "; removed " + _counts(gone)
        if new:
            text += "; added " + _counts(new)
        notes.append(text)


def _counts(c):
    return ", ".join(f"{k} x{v}" for k, v in sorted(c.items()))


# --- 4. the output ----------------------------------------------------------------------

def _is_label(vi):
    """Whether graph output ``vi`` is not a float tensor (labels, strings, maps)."""
    from onnx import TensorProto
    t = vi.type
    if t.HasField("tensor_type"):
        return t.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE,
                                               TensorProto.FLOAT16, TensorProto.BFLOAT16)
    return False


def _pick_output(src, model, output, notes):
    outs = list(model.graph.output)
    names = [o.name for o in outs]
    if output is not None:
        if output not in names:
            raise ValueError(f"{src}: --output {output}: not a graph output (outputs: "
                             f"{', '.join(names)})")
        return output
    if len(outs) == 1:
        return names[0]
    floats = [o.name for o in outs if not _is_label(o)]
    if len(floats) == 1:
        notes.append(f"output {floats[0]!r} chosen (the other outputs, "
                     f"{', '.join(n for n in names if n != floats[0])}, are not float "
                     f"tensors; --output NAME picks another)")
        return floats[0]
    raise ValueError(f"{src}: the model has {len(outs)} outputs ({', '.join(names)}); "
                     f"pick one with --output NAME")


def _look_through(src, nodes, out, notes):
    """The tensor behind ``out`` when it is written by a look-through op (ZipMap)."""
    prod = {t: n for n in nodes for t in n.output}
    n = prod.get(out)
    while n is not None and n.op_type in LOOK_THROUGH:
        notes.append(f"output {out!r} is written by {n.op_type} {n.name}: imported its "
                     f"input {n.input[0]!r}")
        out = n.input[0]
        n = prod.get(out)
    return out


def _needed(nodes, out, notes):
    """The nodes ``out`` depends on, in order; a note on the others (dropped)."""
    prod = {t: i for i, n in enumerate(nodes) for t in n.output}
    keep, todo = set(), [out]
    while todo:
        i = prod.get(todo.pop())
        if i is None or i in keep:
            continue
        keep.add(i)
        todo.extend(t for t in nodes[i].input if t)
    dropped = Counter(n.op_type for i, n in enumerate(nodes) if i not in keep)
    if dropped:
        notes.append(f"dropped {sum(dropped.values())} nodes not needed for output {out!r}:"
                     f" {_counts(dropped)}")
    return [n for i, n in enumerate(nodes) if i in keep]


# --- 5. nodes: attributes, parameters, folding ------------------------------------------

def _plain(v):
    """An ONNX attribute value as plain Python (str for bytes, numbers or lists for
    tensors: a one-element tensor becomes its number)."""
    from onnx import TensorProto, numpy_helper
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, TensorProto):
        a = numpy_helper.to_array(v)
        return a.reshape(-1)[0].item() if a.size == 1 else a.tolist()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _attrs(n):
    from onnx import helper
    return {a.name: _plain(helper.get_attribute_value(a)) for a in n.attribute}


def _constant(src, n):
    """The value of a Constant node."""
    from onnx import numpy_helper
    for a in n.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_floats"):
            return np.array(a.f if a.name == "value_float" else list(a.floats), np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.array(a.i if a.name == "value_int" else list(a.ints), np.int64)
    raise ValueError(f"{src}: node {n.name} (Constant): unsupported attribute "
                     f"{', '.join(a.name for a in n.attribute) or '(none)'}")


def _unsupported(src, nodes):
    """Raise one ValueError listing every operator graph_ops cannot run."""
    bad = {}
    for n in nodes:
        key = n.op_type if n.domain in STANDARD_DOMAINS else f"{n.domain}:{n.op_type}"
        if n.op_type not in ("Constant", *RECURRENT) and not _supported(n):
            bad.setdefault(key, []).append(n.name or n.output[0])
    if not bad:
        return
    parts = []
    for key, names in bad.items():
        first = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        part = f"{key} x{len(names)} ({first})"
        hint = HINTS.get(key) or _domain_hint(key)
        parts.append(part + (f": {hint}" if hint else ""))
    raise ValueError(f"{src}: {len(bad)} unsupported operator type"
                     f"{'s' if len(bad) > 1 else ''}: " + "; ".join(parts)
                     + " (accsim import-onnx --list-ops lists the supported ones)")


def _supported(n):
    """Whether graph_ops / quant_ops run ONNX node ``n`` (its domain included)."""
    if n.domain == CONTRIB_DOMAIN:
        return n.op_type in quant_ops.CONTRIB_OPS
    return n.domain in STANDARD_DOMAINS and n.op_type in graph_ops.OPS


def _domain_hint(key):
    if key.startswith(CONTRIB_DOMAIN + ":"):
        return ("an onnxruntime contrib operator accsim does not run (of that domain it "
                f"runs {', '.join(sorted(quant_ops.CONTRIB_OPS))}); export the model "
                "without onnxruntime's extended optimisations")
    if key.startswith("org.pytorch.aten:"):
        return ("an ATen fallback of the TorchScript exporter: exported with the dynamo "
                "exporter (torch.onnx.export(..., dynamo=True)) it may be standard ONNX")
    if key.startswith("ai.onnx.ml:"):
        return "a scikit-learn/ai.onnx.ml operator in the path of the chosen output"
    return None


def _param(v):
    a = np.asarray(v)
    if a.ndim == 0:
        return a.item()
    return a.reshape(-1).tolist()


class _Walk:
    """Normalises and folds the nodes in order, running the rest on one sample."""

    def __init__(self, src, opset, consts, x1):
        self.src, self.opset, self.consts = src, opset, consts
        self.vals = {}
        self.nodes, self.names = [], set()
        self.x1 = x1

    def err(self, name, op, msg):
        return ValueError(f"{self.src}: node {name} ({op}): {msg}")

    def value(self, t):
        if t in self.vals:
            return self.vals[t]
        a = np.asarray(self.consts[t])
        return (a if a.dtype.kind in "iub" else a.astype(np.float64))[None]

    def run(self, nodes, input_name):
        self.vals[input_name] = self.x1
        self.walk(nodes)

    def walk(self, nodes):
        for i, n in enumerate(nodes):
            if n.op_type == "Constant":
                self.consts[n.output[0]] = _constant(self.src, n)
                continue
            if n.op_type in RECURRENT and n.domain in STANDARD_DOMAINS:
                self.walk(unroll(self.src, n, _attrs(n), self.value(n.input[0]).shape[1:],
                                 self.consts))
                continue
            node = self.node(n, i)
            ins = [t for t in node.inputs if t]
            fold = (all(t in self.consts for t in ins) and node.op not in NO_FOLD) \
                or node.op in SHAPE_ONLY
            vals = [self.value(t) if t else None for t in node.inputs]
            try:
                outs = graph_ops.run_node(node, vals)
            except graph_ops.OpError as exc:
                raise ValueError(f"{self.src}: {exc}") from None
            if node.op in quant_ops.MOVE_OPS or node.op in quant_ops.QUANT_OPS:
                outs = quant_ops.typed_outputs(node, vals, outs)
            for t, v in zip(node.outputs, outs):
                if t and fold:
                    self.consts[t] = np.asarray(v)[0]
                elif t:
                    self.vals[t] = v
            if not fold:
                self.nodes.append(node)

    def node(self, n, i):
        """The graph Node of ONNX node ``n``: a unique name, plain attributes, parameter
        inputs as attributes, old-opset forms rewritten."""
        name = n.name or f"{n.op_type}_{i}"
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        attrs = _attrs(n)
        inputs = list(n.input)
        params = PARAM_INPUTS.get(n.op_type, ())
        for pos, key in params:
            t = inputs[pos] if pos < len(inputs) else ""
            if not t:
                continue
            if t not in self.consts:
                raise self.err(name, n.op_type, f"input {pos} ({key}) {t!r} is computed at "
                                                f"run time; only a constant {key} is "
                                                f"supported")
            attrs[key] = _param(self.consts[t])
        if params:
            inputs = inputs[:min(p for p, _ in params)]
        if n.op_type == "Pad" and "value" in attrs:
            attrs["constant_value"] = attrs.pop("value")
        if n.op_type in ("Softmax", "LogSoftmax") and self.opset < 13:
            attrs["axis"] = self.old_softmax_axis(name, n.op_type, attrs, inputs[0])
        return Node(name, n.op_type, inputs, list(n.output), attrs)

    def old_softmax_axis(self, name, op, attrs, t):
        """The opset < 13 softmax (over the input flattened from ``axis``) as a softmax
        over one axis, when every other flattened axis has size 1."""
        shape = self.value(t).shape[1:]
        a = int(attrs.get("axis", 1))
        a = a + len(shape) if a < 0 else a
        big = [j for j in range(a, len(shape)) if shape[j] != 1]
        if len(big) > 1:
            raise self.err(name, op, f"softmax of opset {self.opset} over the flattened "
                                     f"axes {a}..{len(shape) - 1} of {tuple(shape)} is not "
                                     f"supported (re-export at opset 13 or later)")
        return big[0] if big else len(shape) - 1


# --- 6. putting it together -------------------------------------------------------------

def _check_inputs(src, inputs):
    inputs = np.asarray(inputs)
    if inputs.dtype.kind not in "fiub" or inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ValueError(f"{src}: inputs: expected a numeric array (N, ...), got "
                         f"dtype {inputs.dtype} shape {inputs.shape}")
    inputs = inputs.astype(np.float64)
    if not np.all(np.isfinite(inputs)):
        raise ValueError(f"{src}: inputs contain NaN or inf")
    return inputs


def _arrays(src, nodes, consts):
    """The constants the kept nodes read, floats as float64."""
    out = {}
    for n in nodes:
        for t in n.inputs:
            if t in consts and t not in out:
                a = np.asarray(consts[t])
                if a.dtype.kind == "f":
                    a = a.astype(np.float64)
                    if np.isnan(a).any():
                        raise ValueError(f"{src}: array {t}: contains NaN")
                elif a.dtype.kind not in "iub":
                    raise ValueError(f"{src}: array {t}: unsupported dtype {a.dtype}")
                out[t] = a
    return out


def import_graph(model_path, inputs, *, output=None):
    """Read the ONNX model at ``model_path`` as a graph for ``inputs``.

    ``inputs``: ``(N, *model input shape without its batch axis)`` (see the module
    docstring). Returns ``(graph, arrays, notes)``: the :class:`~.graph.Graph` (input shape
    with a batch of 1: run it on ``inputs.reshape(N, *graph.input_shape)``), its arrays by
    name, and a list of one-line notes on what the import changed. Raises a one-line
    ``ValueError`` naming the model (and node) for anything it cannot import.
    """
    src = str(model_path)
    model = _load(model_path)
    inputs = _check_inputs(src, inputs)
    notes = []
    gin = _graph_input(src, model)
    shape = _model_shape(src, gin, inputs)
    model = _fix_input(model, gin, shape)
    out = _pick_output(src, model, output, notes)
    model = _ort_basic(model, notes)
    nodes = list(model.graph.node)
    out = _look_through(src, nodes, out, notes)
    nodes = _needed(nodes, out, notes)
    _unsupported(src, nodes)
    from onnx import numpy_helper
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    walk = _Walk(src, _opset(model), consts, inputs[:1].reshape(1, *shape))
    walk.run(nodes, gin.name)
    if out not in walk.vals or out == gin.name:
        raise ValueError(f"{src}: output {out!r} does not depend on the input "
                         f"{gin.name!r}")
    arrays = _arrays(src, walk.nodes, consts)
    graph = Graph(tuple(walk.nodes), gin.name, shape, out)
    graph.check(arrays, where=src)
    graph, arrays = _fuse_qdq(graph, arrays, notes)
    return graph, arrays, notes


def _fuse_qdq(graph, arrays, notes):
    """The graph with onnxruntime's QDQ fusion applied (:func:`.quant_ops.fuse_qdq`, the
    graph a default session runs), the arrays it no longer reads dropped, and a note."""
    fused = quant_ops.fuse_qdq(graph, arrays)
    if fused is graph:
        return graph, arrays
    before = Counter(n.op for n in graph.nodes)
    after = Counter(n.op for n in fused.nodes)
    notes.append(f"QDQ groups fused as onnxruntime's default session runs them: "
                 f"{len(graph.nodes)} -> {len(fused.nodes)} nodes; now "
                 f"{_counts({k: v for k, v in after.items() if v > before.get(k, 0)})}")
    read = {t for n in fused.nodes for t in n.inputs}
    return fused, {k: v for k, v in arrays.items() if k in read}


def check_labels(src, labels, n):
    """``labels`` as an integer array of ``n`` entries (or ``None``)."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (n,):
        raise ValueError(f"{src}: labels: expected {n} integers, got dtype {labels.dtype} "
                         f"shape {labels.shape}")
    return labels


def trace_of_graph(model_path, graph, arrays, inputs, labels=None, *, quant=None):
    """The Trace of an imported graph (named after the model file)."""
    from .trace import Trace
    name = Path(model_path).name.removesuffix(".onnx") or "onnx-model"
    inputs = _check_inputs(str(model_path), inputs)
    labels = check_labels(str(model_path), labels, inputs.shape[0])
    return Trace.from_graph(name, graph, arrays, inputs, labels, quant=quant,
                            description=f"imported from {Path(model_path).name}")


def import_onnx(model_path, inputs, labels=None, *, quant=None, output=None):
    """Read an ONNX model into a Trace holding ``inputs`` (N, ...) and optional
    ``labels`` (:func:`import_graph`, then :meth:`.trace.Trace.from_graph`).

    Raises a one-line ValueError naming the model (and node) for anything unsupported.
    """
    labels = check_labels(str(model_path), labels, np.shape(inputs)[0] if np.ndim(inputs)
                          else 0)
    graph, arrays, _ = import_graph(model_path, inputs, output=output)
    return trace_of_graph(model_path, graph, arrays, inputs, labels, quant=quant)
