"""ONNX graph → Trace.

``import_onnx(model_path, inputs, labels=None)`` reads a model with one float input and one
output and maps its nodes onto trace layers:

==================  =====================================================================
Gemm                linear: W = alpha * (transB ? B : B^T), bias = beta * C (B, C constant;
                    transA = 0)
MatMul              linear with the constant right operand (in, out) transposed to (out, in)
Add                 constant + output of a linear/conv2d (used only there): folded into its
                    bias; two activations of the same shape: an ``add`` layer (residual)
Conv                conv2d (2-D, group = 1, dilations = 1; pads, strides, auto_pad)
MaxPool             maxpool (ceil_mode = 0, dilations = 1, one output)
AveragePool         avgpool (ceil_mode = 0; count_include_pad kept)
GlobalAveragePool   globalavgpool
Relu Tanh Sigmoid   activations; Gelu with approximate = "none", and the decomposed form
Gelu Identity       x * 0.5 * (1 + erf(x / sqrt 2)) (any order of the multiplications,
                    x / sqrt 2 or x * (1/sqrt 2)) are recognised as one gelu layer
Softmax             softmax over the last axis
Dropout             identity (inference)
Flatten Reshape     flatten (axis = 1) / reshape with a constant shape keeping the batch axis
Constant            constant tensors (weights, shapes)
==================  =====================================================================

Anything else is refused with a one-line ``ValueError``:
``MODEL: node NAME (OpType): unsupported ...``. The imported trace carries no operand
quantisation unless ``quant`` is given; ``reference_accuracy`` is the float64 accuracy on
``labels`` when they are given.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from . import ops
from .trace import Layer, Trace


class _Node:
    __slots__ = ("attrs", "domain", "inputs", "name", "op", "outputs")

    def __init__(self, op, name, inputs, outputs, attrs, domain=""):
        self.op, self.name, self.inputs, self.outputs = op, name, inputs, outputs
        self.attrs, self.domain = attrs, domain


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _close(v, target, tol=1e-3):
    v = np.asarray(v, dtype=np.float64)
    return v.size == 1 and abs(float(v.reshape(-1)[0]) - target) <= tol * abs(target)


class _Importer:
    def __init__(self, model_path, model):
        self.src = str(model_path)
        self.model = model
        self.opset = 1
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                self.opset = o.version

    def err(self, node, msg):
        name = node.name or (node.outputs[0] if node.outputs else "?")
        return ValueError(f"{self.src}: node {name} ({node.op}): {msg}")

    # ---------------------------------------------------------------------------
    def run(self, inputs, labels, quant):
        from onnx import numpy_helper
        g = self.model.graph
        self.const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        real_inputs = [i for i in g.input if i.name not in self.const]
        if len(real_inputs) != 1:
            raise ValueError(f"{self.src}: expected one graph input, got "
                             f"{len(real_inputs)} ({', '.join(i.name for i in real_inputs)})")
        if len(g.output) != 1:
            raise ValueError(f"{self.src}: expected one graph output, got {len(g.output)}")
        gin = real_inputs[0]
        self._check_input(gin, inputs)

        nodes = [_Node(n.op_type, n.name, list(n.input), list(n.output), _attrs(n), n.domain)
                 for n in g.node]
        self.consumers = {}
        for n in nodes:
            for t in n.inputs:
                self.consumers.setdefault(t, []).append(n)
        self.graph_outputs = {o.name for o in g.output}
        nodes = self._fuse_gelu(nodes)

        self.layers = []          # dicts: name, kind, inputs, attrs
        self.arrays = {}
        self.tensor = {gin.name: "input"}          # onnx tensor -> trace tensor name
        self.value = {gin.name: np.asarray(inputs[:1], dtype=np.float64)}  # first sample
        self.names = set()
        for n in nodes:
            if n.domain not in ("", "ai.onnx"):
                raise self.err(n, f"unsupported op domain {n.domain!r}")
            fn = getattr(self, f"_op_{n.op}", None)
            if fn is None:
                raise self.err(n, "unsupported op")
            fn(n)

        out = g.output[0].name
        if out in self.const:
            raise ValueError(f"{self.src}: graph output {out} is a constant")
        if out not in self.tensor:
            raise ValueError(f"{self.src}: graph output {out} is not computed by any node")
        last = self.tensor[out]
        if not self.layers or self.layers[-1]["name"] != last:
            self._emit("output", "identity", [last], {}, None)
        layers = []
        prev = "input"
        for d in self.layers:
            ins = tuple(d["inputs"])
            if ins == (prev,):
                ins = ()
            layers.append(Layer(d["name"], d["kind"], ins, d["attrs"]))
            prev = d["name"]
        name = re.sub(r"\.onnx$", "", Path(self.src).name) or "onnx-model"
        t = Trace(name, tuple(layers), self.arrays, inputs, labels, quant, None,
                  f"imported from {Path(self.src).name}")
        t.validate()
        if labels is not None:
            t = Trace(t.name, t.graph, t.arrays, t.inputs, t.labels, quant, t.accuracy(),
                      t.description)
        return t

    def _check_input(self, gin, inputs):
        tt = gin.type.tensor_type
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if len(dims) != inputs.ndim:
                raise ValueError(f"{self.src}: input {gin.name} has rank {len(dims)} "
                                 f"{dims} but the inputs have shape {inputs.shape}")
            for i, (d, s) in enumerate(zip(dims[1:], inputs.shape[1:]), 1):
                if d is not None and d != s:
                    raise ValueError(f"{self.src}: input {gin.name} expects shape {dims} but "
                                     f"the inputs have shape {inputs.shape}")

    # ---------------------------------------------------------------------------
    # helpers
    def _lname(self, node, default):
        base = re.sub(r"[^A-Za-z0-9_.\-]", "_", node.name or "") or default
        name, i = base, 1
        while name in self.names or name == "input":
            name = f"{base}_{i}"
            i += 1
        self.names.add(name)
        return name

    def _emit(self, node_or_name, kind, ins, attrs, out_tensor, value=None):
        if isinstance(node_or_name, _Node):
            name = self._lname(node_or_name, f"{kind}{len(self.layers)}")
        else:
            name = self._lname(_Node("", node_or_name, [], [], {}), node_or_name)
        d = {"name": name, "kind": kind, "inputs": list(ins), "attrs": attrs}
        self.layers.append(d)
        if out_tensor is not None:
            self.tensor[out_tensor] = name
            if value is None:
                layer = Layer(name, kind, (), dict(attrs))
                try:
                    value = ops.apply_layer(layer, [self.value[t] for t in self._src_of(ins)],
                                            self.arrays)
                except ValueError as exc:
                    where = (f"node {node_or_name.name or out_tensor} ({node_or_name.op})"
                             if isinstance(node_or_name, _Node) else f"layer {name}")
                    raise ValueError(f"{self.src}: {where}: shapes do not match "
                                     f"({str(exc).splitlines()[0]})") from None
            self.value[out_tensor] = value
        return d

    def _src_of(self, trace_names):
        inv = {v: k for k, v in self.tensor.items()}
        return [inv[n] for n in trace_names]

    def _act(self, node, i):
        """Trace tensor name of an activation input; refuses constants."""
        t = node.inputs[i] if i < len(node.inputs) else ""
        if t in self.const:
            raise self.err(node, f"unsupported constant operand {t!r} (input {i})")
        if t not in self.tensor:
            raise self.err(node, f"input {t!r} is not computed before this node")
        return self.tensor[t]

    def _cst(self, node, i, what):
        t = node.inputs[i] if i < len(node.inputs) else ""
        if t not in self.const:
            raise self.err(node, f"unsupported non-constant {what} ({t!r})")
        return np.asarray(self.const[t])

    def _no_attrs(self, node, allowed):
        for k, v in node.attrs.items():
            if k not in allowed:
                raise self.err(node, f"unsupported attribute {k}={v!r}")

    def _single(self, node):
        if len([o for o in node.outputs if o]) != 1:
            raise self.err(node, "unsupported: more than one output")

    def _add_array(self, name, a):
        a = np.asarray(a, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{self.src}: array {name}: contains NaN or inf")
        self.arrays[name] = a
        return name

    # ---------------------------------------------------------------------------
    # ops
    def _op_Constant(self, node):
        from onnx import numpy_helper
        a = node.attrs
        if "value" in a:
            v = numpy_helper.to_array(a["value"])
        elif "value_float" in a:
            v = np.array(a["value_float"], np.float32)
        elif "value_floats" in a:
            v = np.array(a["value_floats"], np.float32)
        elif "value_int" in a:
            v = np.array(a["value_int"], np.int64)
        elif "value_ints" in a:
            v = np.array(a["value_ints"], np.int64)
        else:
            raise self.err(node, f"unsupported attribute {', '.join(a) or '(none)'}")
        self.const[node.outputs[0]] = v

    def _linear(self, node, x, W, b):
        name = self._lname(node, f"linear{len(self.layers)}")
        self.names.discard(name)  # re-added by _emit
        attrs = {"weight": self._add_array(f"{name}.weight", W), "bias": None}
        if b is not None:
            attrs["bias"] = self._add_array(f"{name}.bias", b)
        d = self._emit(node, "linear", [x], attrs, node.outputs[0])
        return d

    def _op_Gemm(self, node):
        self._no_attrs(node, ("alpha", "beta", "transA", "transB"))
        self._single(node)
        a = node.attrs
        if a.get("transA", 0):
            raise self.err(node, "unsupported attribute transA=1")
        x = self._act(node, 0)
        if len(self.value[node.inputs[0]].shape) != 2:
            raise self.err(node, "unsupported: input is not 2-D (add a Flatten)")
        B = self._cst(node, 1, "B (weights must be an initializer)").astype(np.float64)
        if B.ndim != 2:
            raise self.err(node, f"unsupported B of shape {B.shape}")
        W = float(a.get("alpha", 1.0)) * (B if a.get("transB", 0) else B.T)
        b = None
        if len(node.inputs) > 2 and node.inputs[2]:
            C = self._cst(node, 2, "C (bias must be an initializer)").astype(np.float64)
            try:
                b = float(a.get("beta", 1.0)) * np.broadcast_to(C, (1, W.shape[0])).reshape(-1)
            except ValueError:
                raise self.err(node, f"unsupported C of shape {C.shape}") from None
        self._linear(node, x, W, b)

    def _op_MatMul(self, node):
        self._no_attrs(node, ())
        x = self._act(node, 0)
        if len(self.value[node.inputs[0]].shape) != 2:
            raise self.err(node, "unsupported: left operand is not 2-D (batch, features)")
        B = self._cst(node, 1, "right operand (weights must be an initializer)")
        if B.ndim != 2:
            raise self.err(node, f"unsupported right operand of shape {B.shape}")
        self._linear(node, x, B.astype(np.float64).T, None)

    def _op_Add(self, node):
        self._no_attrs(node, ())
        a, b = node.inputs[:2]
        if a in self.const and b in self.const:
            raise self.err(node, "unsupported: both operands constant")
        if a in self.const or b in self.const:
            act, c = (b, a) if a in self.const else (a, b)
            return self._fold_bias(node, act, np.asarray(self.const[c], dtype=np.float64))
        xa, xb = self._act(node, 0), self._act(node, 1)
        if self.value[a].shape != self.value[b].shape:
            raise self.err(node, f"unsupported broadcasting add of shapes "
                                 f"{self.value[a].shape[1:]} and {self.value[b].shape[1:]}")
        self._emit(node, "add", [xa, xb], {}, node.outputs[0])

    def _fold_bias(self, node, act, c):
        if act not in self.tensor:
            raise self.err(node, f"input {act!r} is not computed before this node")
        lname = self.tensor[act]
        d = self.layers[-1] if self.layers and self.layers[-1]["name"] == lname else None
        ok = (d is not None and d["kind"] in ("linear", "conv2d")
              and len(self.consumers.get(act, [])) == 1 and act not in self.graph_outputs)
        if not ok:
            raise self.err(node, "unsupported: adding a constant other than a bias right "
                                 "after MatMul/Gemm/Conv")
        v = self.value[act]
        cout = v.shape[1]
        try:
            if d["kind"] == "linear":
                bias = np.broadcast_to(c, (1, cout)).reshape(-1)
            else:
                if c.ndim >= 3 and (c.shape[-1] != 1 or c.shape[-2] != 1):
                    raise ValueError
                bias = np.broadcast_to(c.reshape(c.shape[:-2] if c.ndim >= 3 else c.shape),
                                       (1, cout)).reshape(-1)
                if c.ndim < 3 and c.size != 1:
                    raise ValueError  # would broadcast over W, not channels
        except ValueError:
            raise self.err(node, f"unsupported bias of shape {c.shape} for output "
                                 f"{v.shape[1:]}") from None
        attrs = d["attrs"]
        if attrs.get("bias") is not None:
            bias = self.arrays[attrs["bias"]] + bias
        attrs["bias"] = self._add_array(f"{d['name']}.bias", bias)
        self.tensor[node.outputs[0]] = lname
        self.value[node.outputs[0]] = v + (bias.reshape((1, cout) + (1,) * (v.ndim - 2)))

    def _pads(self, node, kh, kw, sh, sw, in_hw):
        a = node.attrs
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            p = list(a.get("pads", [0, 0, 0, 0]))
            if len(p) != 4:
                raise self.err(node, f"unsupported pads {p} (2-D only)")
            return tuple(int(v) for v in p)  # ONNX: [top, left, bottom, right]
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = []
            for size, k, s in zip(in_hw, (kh, kw), (sh, sw)):
                o = -(-size // s)
                tot = max((o - 1) * s + k - size, 0)
                lo = tot // 2 if auto == "SAME_UPPER" else tot - tot // 2
                out.append((lo, tot - lo))
            return (out[0][0], out[1][0], out[0][1], out[1][1])
        raise self.err(node, f"unsupported attribute auto_pad={auto}")

    def _spatial(self, node, x_tensor, kernel):
        v = self.value[x_tensor]
        if v.ndim != 4:
            raise self.err(node, f"unsupported input of rank {v.ndim} (2-D NCHW only)")
        a = node.attrs
        if len(kernel) != 2:
            raise self.err(node, f"unsupported kernel_shape {list(kernel)} (2-D only)")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.err(node, f"unsupported attribute dilations={list(a['dilations'])}")
        st = tuple(int(s) for s in a.get("strides", [1, 1]))
        if len(st) != 2:
            raise self.err(node, f"unsupported strides {list(st)}")
        kh, kw = (int(k) for k in kernel)
        pads = self._pads(node, kh, kw, st[0], st[1], v.shape[2:])
        return st, pads

    def _op_Conv(self, node):
        self._no_attrs(node, ("auto_pad", "dilations", "group", "kernel_shape", "pads",
                              "strides"))
        self._single(node)
        x = self._act(node, 0)
        W = self._cst(node, 1, "weight (must be an initializer)").astype(np.float64)
        if W.ndim != 4:
            raise self.err(node, f"unsupported weight of shape {W.shape} (2-D conv only)")
        if node.attrs.get("group", 1) != 1:
            raise self.err(node, f"unsupported attribute group={node.attrs['group']}")
        ks = node.attrs.get("kernel_shape", W.shape[2:])
        if tuple(ks) != W.shape[2:]:
            raise self.err(node, f"kernel_shape {list(ks)} does not match weight {W.shape}")
        st, pads = self._spatial(node, node.inputs[0], W.shape[2:])
        name = self._lname(node, f"conv{len(self.layers)}")
        self.names.discard(name)
        attrs = {"weight": self._add_array(f"{name}.weight", W), "bias": None,
                 "stride": st, "padding": pads}
        if len(node.inputs) > 2 and node.inputs[2]:
            b = self._cst(node, 2, "bias (must be an initializer)")
            attrs["bias"] = self._add_array(f"{name}.bias", b.reshape(-1))
        self._emit(node, "conv2d", [x], attrs, node.outputs[0])

    def _pool(self, node, kind):
        a = node.attrs
        allowed = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides",
                   "storage_order", "count_include_pad")
        self._no_attrs(node, allowed)
        if a.get("ceil_mode", 0):
            raise self.err(node, "unsupported attribute ceil_mode=1")
        if a.get("storage_order", 0):
            raise self.err(node, "unsupported attribute storage_order=1")
        self._single(node)
        x = self._act(node, 0)
        if "kernel_shape" not in a:
            raise self.err(node, "missing attribute kernel_shape")
        st, pads = self._spatial(node, node.inputs[0], a["kernel_shape"])
        attrs = {"kernel": tuple(int(k) for k in a["kernel_shape"]), "stride": st,
                 "padding": pads}
        if kind == "avgpool":
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        self._emit(node, kind, [x], attrs, node.outputs[0])

    def _op_MaxPool(self, node):
        self._pool(node, "maxpool")

    def _op_AveragePool(self, node):
        self._pool(node, "avgpool")

    def _op_GlobalAveragePool(self, node):
        self._no_attrs(node, ())
        x = self._act(node, 0)
        if self.value[node.inputs[0]].ndim != 4:
            raise self.err(node, "unsupported input rank (NCHW only)")
        self._emit(node, "globalavgpool", [x], {}, node.outputs[0])

    def _elementwise(self, node, kind):
        self._single(node)
        self._emit(node, kind, [self._act(node, 0)], {}, node.outputs[0])

    def _op_Relu(self, node):
        self._no_attrs(node, ())
        self._elementwise(node, "relu")

    def _op_Tanh(self, node):
        self._no_attrs(node, ())
        self._elementwise(node, "tanh")

    def _op_Sigmoid(self, node):
        self._no_attrs(node, ())
        self._elementwise(node, "sigmoid")

    def _op_Identity(self, node):
        self._no_attrs(node, ())
        self._elementwise(node, "identity")

    def _op_Dropout(self, node):
        """Inference-mode dropout is the identity (the mask output must be unused)."""
        self._no_attrs(node, ("seed",))
        if len(node.inputs) > 2 and node.inputs[2]:
            t = node.inputs[2]
            if t not in self.const or bool(np.asarray(self.const[t]).reshape(-1)[0]):
                raise self.err(node, "unsupported training_mode input")
        if len(node.outputs) > 1 and node.outputs[1] and self.consumers.get(node.outputs[1]):
            raise self.err(node, "unsupported: mask output is used")
        self._emit(node, "identity", [self._act(node, 0)], {}, node.outputs[0])

    def _op_Gelu(self, node):
        self._no_attrs(node, ("approximate",))
        ap = node.attrs.get("approximate", "none")
        ap = ap.decode() if isinstance(ap, bytes) else ap
        if ap != "none":
            raise self.err(node, f"unsupported attribute approximate={ap}")
        self._elementwise(node, "gelu")

    def _op_Softmax(self, node):
        self._no_attrs(node, ("axis",))
        rank = self.value[node.inputs[0]].ndim if node.inputs[0] in self.value else 2
        default = -1 if self.opset >= 13 else 1
        axis = int(node.attrs.get("axis", default))
        if axis < 0:
            axis += rank
        if axis != rank - 1:
            raise self.err(node, f"unsupported attribute axis={node.attrs.get('axis', default)}"
                                 f" (softmax over the last axis only)")
        self._elementwise(node, "softmax")

    def _op_Flatten(self, node):
        self._no_attrs(node, ("axis",))
        if int(node.attrs.get("axis", 1)) != 1:
            raise self.err(node, f"unsupported attribute axis={node.attrs['axis']}")
        self._elementwise(node, "flatten")

    def _op_Reshape(self, node):
        self._no_attrs(node, ("allowzero",))
        x = self._act(node, 0)
        shape = [int(s) for s in self._cst(node, 1, "shape (must be constant)").reshape(-1)]
        if node.attrs.get("allowzero", 0) and 0 in shape:
            raise self.err(node, "unsupported attribute allowzero=1 with a zero in shape")
        s = self.value[node.inputs[0]].shape[1:]
        total = int(np.prod(s))
        if not shape or shape[0] not in (0, -1, self.n):
            raise self.err(node, f"unsupported shape {shape}: the first axis must stay the "
                                 "batch axis")
        rest = [s[i] if v == 0 and i < len(s) else v for i, v in enumerate(shape[1:])]
        if shape[0] == -1 and -1 in rest:
            raise self.err(node, f"unsupported shape {shape}")
        if rest.count(-1) > 1:
            raise self.err(node, f"invalid shape {shape}: more than one -1")
        if -1 in rest:
            known = int(np.prod([v for v in rest if v != -1]))
            if known == 0 or total % known:
                raise self.err(node, f"cannot reshape {s} to {shape}")
            rest[rest.index(-1)] = total // known
        if int(np.prod(rest)) != total or any(v < 1 for v in rest):
            raise self.err(node, f"cannot reshape per-sample shape {s} to {shape}")
        if len(rest) == 1:
            self._emit(node, "flatten", [x], {}, node.outputs[0])
        else:
            self._emit(node, "reshape", [x], {"shape": tuple(rest)}, node.outputs[0])

    # ---------------------------------------------------------------------------
    def _fuse_gelu(self, nodes):
        """Replace x*0.5*(1+erf(x/sqrt2)) subgraphs by one Gelu node."""
        producer = {o: n for n in nodes for o in n.outputs}
        drop, insert = set(), {}

        def const(t):
            if t in self.const:
                return self.const[t]
            p = producer.get(t)
            if p is not None and p.op == "Constant" and "value" in p.attrs:
                from onnx import numpy_helper
                return numpy_helper.to_array(p.attrs["value"])
            return None

        def other(n, t):
            """The operand of binary node ``n`` that is not tensor ``t``."""
            if len(n.inputs) != 2 or t not in n.inputs:
                return None
            return n.inputs[1] if n.inputs[0] == t else n.inputs[0]

        def only(t):
            c = self.consumers.get(t, [])
            return c[0] if len(c) == 1 and t not in self.graph_outputs else None

        for e in nodes:
            if e.op != "Erf":
                continue
            p = producer.get(e.inputs[0])
            if p is None or only(e.inputs[0]) is not e or p.op not in ("Div", "Mul"):
                continue
            x = None
            for cand in p.inputs:
                c = const(other(p, cand)) if other(p, cand) is not None else None
                if c is None or cand in self.const:
                    continue
                if (p.op == "Div" and cand == p.inputs[0] and _close(c, math.sqrt(2))) or \
                        (p.op == "Mul" and _close(c, 1 / math.sqrt(2))):
                    x = cand
            if x is None:
                continue
            a = only(e.outputs[0])
            if a is None or a.op != "Add" or not _close(const(other(a, e.outputs[0])), 1.0):
                continue
            v = a.outputs[0]
            m = only(v)
            if m is None or m.op != "Mul":
                continue
            w = other(m, v)
            covered = [p, e, a, m]
            final = None
            cw = const(w)
            if cw is not None and _close(cw, 0.5):           # (v*0.5) * x
                m2 = only(m.outputs[0])
                if m2 is not None and m2.op == "Mul" and other(m2, m.outputs[0]) == x:
                    final = m2
            elif w == x:                                       # (x*v) * 0.5
                m2 = only(m.outputs[0])
                if m2 is not None and m2.op == "Mul" and \
                        _close(const(other(m2, m.outputs[0])), 0.5):
                    final = m2
            else:                                              # (x*0.5) * v
                h = producer.get(w)
                if h is not None and h.op == "Mul" and only(w) is m and x in h.inputs and \
                        _close(const(other(h, x)), 0.5):
                    covered.append(h)
                    final = m
            if final is None:
                continue
            if final is not m:
                covered.append(final)
            for n in covered:
                drop.add(id(n))
            insert[id(final)] = _Node("Gelu", final.name or f"gelu_{e.name}", [x],
                                      [final.outputs[0]], {}, "")
        out = []
        for n in nodes:
            if id(n) in insert:
                out.append(insert[id(n)])
            elif id(n) not in drop:
                out.append(n)
        return out


def import_onnx(model_path, inputs, labels=None, *, quant=None):
    """Read an ONNX model into a Trace holding ``inputs`` (N, ...) and optional ``labels``.

    Raises a one-line ValueError naming the model, node and op for anything unsupported.
    """
    try:
        import onnx
    except ImportError:  # pragma: no cover
        raise ValueError("import-onnx needs the onnx package: pip install onnx") from None
    model_path = Path(model_path)
    try:
        model = onnx.load(str(model_path))
    except FileNotFoundError:
        raise ValueError(f"{model_path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 (any failure means unreadable)
        raise ValueError(f"{model_path}: not a readable ONNX model "
                         f"({exc.__class__.__name__})") from None
    inputs = np.asarray(inputs)
    if inputs.dtype.kind not in "fiu" or inputs.ndim < 2 or inputs.shape[0] < 1:
        raise ValueError(f"{model_path}: inputs: expected a numeric array (N, ...), got "
                         f"dtype {inputs.dtype} shape {inputs.shape}")
    inputs = inputs.astype(np.float64)
    if not np.all(np.isfinite(inputs)):
        raise ValueError(f"{model_path}: inputs contain NaN or inf")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.shape != (inputs.shape[0],):
            raise ValueError(f"{model_path}: labels: expected {inputs.shape[0]} integers, got "
                             f"dtype {labels.dtype} shape {labels.shape}")
    imp = _Importer(model_path, model)
    imp.n = inputs.shape[0]
    return imp.run(inputs, labels, quant)
