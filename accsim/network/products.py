"""Product nodes (Gemm, MatMul, Conv) lowered to 2-D problems ``A (m, K) @ B (K, n)``,
the float64 forward pass of a trace, and what the scheduler needs from the graph.

Lowering (:func:`lower`; every tensor carries the sample axis of :mod:`.graph`)
    Gemm: ``A`` (transposed when ``transA``) with the samples and any leading axes folded
    into rows, ``B`` (transposed when ``transB``); ``beta * C`` is the register's initial
    value when ``alpha == 1`` and ``C`` is a vector along the output columns (or a
    scalar); otherwise ``alpha`` and ``beta * C`` are applied after the accumulator in
    float64.
    MatMul with a constant 2-D right operand (a linear layer): one problem, every leading
    axis folded into rows, ``K`` the last axis. MatMul with an activation right operand
    (attention's ``Q K^T`` and ``A V``) or a batched constant: one problem per index of
    the broadcast leading axes (samples x heads ...), ``K`` the contracted axis (the
    head dimension for ``Q K^T``, the sequence length for ``A V``). A constant left
    operand ``W @ x`` runs as ``(x^T W^T)^T`` (the same sums in the same order).
    1-D operands follow numpy's rules.
    Conv (2-D, any ``group``, ``strides``, ``pads`` / ``auto_pad``, ``dilations``): one
    problem per group, im2col as accelerators do it: ``A`` = patches (S*N*Ho*Wo,
    C/group*kh*kw), ``B`` = the group's ``W.reshape(Cout/group, -1).T``, so ``K =
    C/group*kh*kw``; the bias is the register's initial value.
    ConvTranspose (2-D, ``pads``, ``strides``, ``dilations``, ``output_padding``,
    ``group``): the equivalent stride-1 convolution of the zero-inserted input by the
    flipped kernel (:func:`_lower_conv_transpose`).
    The float64 reference (:func:`reference`) computes ``A @ B + bias`` on the same
    problems (numpy / BLAS, float64).

The consuming activation (:func:`consumer_activation`): the first node reading a product's
output, followed through a constant ``Add``/``Sub``/``Mul``/``Div``, ``BatchNormalization``,
``Reshape``/``Flatten``/``Transpose``/``Squeeze``/``Unsqueeze``/``Identity``, to the first
activation op (``Relu``, ``Tanh``, ``Sigmoid``, ``Gelu``, ``Softmax`` over the product's
columns); anything else is ``identity`` (:data:`accsim.precision.analysis.ACTIVATION_KINDS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import graph_ops, ops, quant_ops
from .graph_ops import OpError

_ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Gelu": "gelu",
                "Softmax": "softmax"}
_ELEMENTWISE_CONST = ("Add", "Sub", "Mul", "Div")
_THROUGH = ("BatchNormalization", "Identity")
_RESHAPING = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


@dataclass
class Problem:
    """One 2-D problem: activation rows ``A`` (m, K), right operand ``B`` (K, n), the
    register's initial value ``bias`` (n,) or None; ``key``: identifies a constant ``B``
    across batches (None when ``B`` is an activation)."""

    A: np.ndarray
    B: np.ndarray
    bias: np.ndarray | None
    key: tuple | None


@dataclass
class Lowering:
    """A product node as 2-D problems (module doc). ``assemble(zs)`` turns the problems'
    outputs (same order) into the node's output; ``alpha`` and ``post_add`` are applied
    after it in float64. ``a_input`` / ``b_input``: the node inputs feeding ``A`` / an
    activation ``B`` (None for a constant ``B``). ``columns``: output columns of the node
    (Cout, N); ``groups``: problems that are column blocks (a grouped Conv), else 1."""

    problems: list
    assemble: Callable
    a_input: int
    b_input: int | None
    columns: int
    groups: int = 1
    alpha: float = 1.0
    post_add: np.ndarray | None = None

    @property
    def K(self) -> int:
        """The accumulation length of every problem."""
        return int(self.problems[0].A.shape[1]) if self.problems else 0

    def finish(self, zs):
        """The node's output from the problems' outputs ``zs``."""
        y = self.assemble(zs)
        if self.alpha != 1.0:
            y = self.alpha * y
        if self.post_add is not None:
            y = y + self.post_add
        return y


def lower(node, ins, const, bias=None):
    """The :class:`Lowering` of product ``node`` on its inputs ``ins`` (sample axis
    first); ``const[i]``: input ``i`` is a constant array; ``bias``: a folded bias vector
    (n,) (a MatMul's following Add), or None."""
    if node.op in ("Conv", "ConvTranspose"):
        if not const[1]:
            raise OpError.of(node, "the weights must be a constant array")
        return (_lower_conv if node.op == "Conv" else _lower_conv_transpose)(node, ins, bias)
    if node.op == "Gemm":
        return _lower_gemm(node, ins, const)
    if node.op == "MatMul":
        return _lower_matmul(node, ins[0], ins[1], const[0], const[1], bias)
    raise OpError.of(node, "not a product op")


def operand_inputs(node, arrays):
    """(input feeding A, input feeding an activation B or None) of product ``node``: a
    constant left operand of a MatMul / Gemm runs transposed, its right operand feeding A
    (module doc)."""
    ins = node.inputs
    if node.op in ("Conv", "ConvTranspose"):
        return 0, None
    if ins[0] in arrays:
        return 1, None
    return 0, (None if ins[1] in arrays else 1)


def _column_vector(c, n):
    """``c`` (model value, sample axis dropped) as a vector (n,) when it broadcasts along
    the output columns only (or is a scalar); None otherwise."""
    c = np.asarray(c)
    if c.size == 1:
        return np.full(n, float(c.reshape(-1)[0]))
    if c.shape[-1] == n and c.size == n:
        return c.reshape(n)
    return None


def _lower_gemm(node, ins, const):
    a, b = ins[0], ins[1]
    if a.ndim != 3 or b.ndim != 3:
        raise OpError.of(node, "Gemm operands must be 2-D")
    if int(node.attrs.get("transA", 0)):
        a = np.swapaxes(a, -1, -2)
    if int(node.attrs.get("transB", 0)):
        b = np.swapaxes(b, -1, -2)
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    c = ins[2] if len(ins) > 2 else None
    vec = None
    if c is not None and alpha == 1.0 and (len(const) > 2 and const[2]):
        vec = _column_vector(c[0], b.shape[-1])
        if vec is not None and beta != 1.0:
            vec = beta * vec
    low = _lower_matmul(node, a, b, const[0], const[1], vec)
    low.alpha = alpha
    if c is not None and vec is None:
        low.post_add = c if beta == 1.0 else beta * c
    return low


def _pad_batch(x, nb):
    """``x`` (S, *batch, r, c) with its model batch axes padded to ``nb`` (leading 1s)."""
    extra = nb - (x.ndim - 3)
    return x.reshape(x.shape[0], *(1,) * extra, *x.shape[1:]) if extra else x


def _lower_matmul(node, a, b, a_const, b_const, bias):
    if a_const and b_const:
        raise OpError.of(node, "both operands are constant (fold it at import)")
    if a.ndim < 2 or b.ndim < 2:
        raise OpError.of(node, "an operand has no model axes")
    va, vb = a.ndim == 2, b.ndim == 2          # 1-D model operands
    if va:
        a = a[:, None, :]
    if vb:
        b = b[..., None]
    if a.shape[-1] != b.shape[-2]:
        raise OpError.of(node, f"contracted lengths differ: {a.shape[-1]} and {b.shape[-2]}")
    if a_const:
        low = _lower_transposed(node, a, b)
    elif b_const and all(d == 1 for d in b.shape[:-2]):
        low = _lower_linear(a, b, bias)
    else:
        low = _lower_batched(a, b, b_const, bias)
    if va or vb:
        inner = low.assemble
        low.assemble = lambda zs: _squeeze(inner(zs), va, vb)
    return low


def _squeeze(y, va, vb):
    if vb:
        y = y[..., 0]
    if va:
        y = y[..., 0, :] if not vb else y[..., 0]
    return y


def _lower_linear(a, b, bias):
    """Constant 2-D ``B``: every leading axis of ``a`` folded into rows (one problem)."""
    K = a.shape[-1]
    B = b.reshape(b.shape[-2:])
    lead = a.shape[:-1]
    A = a.reshape(-1, K)
    n = B.shape[1]
    return Lowering([Problem(A, B, bias, (0,))],
                    lambda zs: zs[0].reshape(*lead, n), 0, None, n)


def _lower_transposed(node, a, b):
    """Constant left operand: ``(b^T a^T)^T`` per batch index, ``b`` the activation."""
    if any(d != 1 for d in a.shape[:-2]):
        raise OpError.of(node, "a batched constant left operand is not supported")
    W = a.reshape(a.shape[-2:])                    # (M, K)
    bt = np.swapaxes(b, -1, -2)                    # (S, ..., N, K)
    lead = bt.shape[:-1]
    A = bt.reshape(-1, W.shape[1])
    M = W.shape[0]

    def assemble(zs):
        return np.swapaxes(zs[0].reshape(*lead, M), -1, -2)
    return Lowering([Problem(A, W.T, None, (0,))], assemble, 1, None, b.shape[-1])


def _lower_batched(a, b, b_const, bias):
    """One problem per index of the broadcast leading axes (samples first)."""
    nb = max(a.ndim, b.ndim) - 3
    a, b = _pad_batch(a, nb), _pad_batch(b, nb)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    bshape = b.shape[:-2]
    problems = []
    for idx in np.ndindex(*batch):
        ia = tuple(i if d > 1 else 0 for i, d in zip(idx, a.shape[:-2]))
        ib = tuple(i if d > 1 else 0 for i, d in zip(idx, bshape))
        problems.append(Problem(a[ia], b[ib], bias, ib if b_const else None))
    M, N = a.shape[-2], b.shape[-1]

    def assemble(zs):
        return np.stack(zs).reshape(*batch, M, N)
    return Lowering(problems, assemble, 0, None if b_const else 1, N)


def _conv_pads(node, x, kernel, strides, dil):
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", b"NOTSET"):
        return tuple(int(p) for p in node.attrs.get("pads", [0, 0, 0, 0]))
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise OpError.of(node, f"auto_pad {auto!r} is not supported")
    lo, hi = [], []
    for size, k, s, d in zip(x.shape[-2:], kernel, strides, dil):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        lo.append(small if auto == "SAME_UPPER" else total - small)
        hi.append(total - lo[-1])
    return (lo[0], lo[1], hi[0], hi[1])


def _lower_conv(node, ins, bias=None):
    x, w = ins[0], ins[1][0]
    if x.ndim != 5 or w.ndim != 4:
        raise OpError.of(node, "only 2-D convolutions over (N, C, H, W) are supported")
    b = bias if bias is not None else (ins[2][0] if len(ins) > 2 and ins[2] is not None
                                       else None)
    g = int(node.attrs.get("group", 1))
    if x.shape[2] != w.shape[1] * g or w.shape[0] % g:
        raise OpError.of(node, f"{x.shape[2]} input channels do not fit weights {w.shape} "
                               f"in {g} group(s)")
    strides = tuple(int(v) for v in node.attrs.get("strides", [1, 1]))
    dil = tuple(int(v) for v in node.attrs.get("dilations", [1, 1]))
    pads = _conv_pads(node, x, w.shape[2:], strides, dil)
    return _conv_lowering(x, w, b, g, strides, pads, dil)


def conv_problems(x, w, b, g, strides, pads, dil):
    """The :class:`Lowering` of the convolution of ``x`` (S, N, C, H, W) by ``w`` (Cout,
    C/g, kh, kw) with bias ``b`` (Cout,) or None: one im2col problem per group."""
    return _conv_lowering(x, w, b, g, strides, pads, dil)


def _conv_lowering(x, w, b, g, strides, pads, dil):
    """One im2col problem per group of the convolution of ``x`` (S, N, C, H, W) by ``w``
    (Cout, C/g, kh, kw) (module doc)."""
    S, N = x.shape[:2]
    cout, cg, kh, kw = w.shape
    x4 = x.reshape(S * N, *x.shape[2:])
    og = cout // g
    problems, shape = [], None
    for gi in range(g):
        xg = x4 if g == 1 else x4[:, gi * cg:(gi + 1) * cg]
        A, ho, wo = ops.im2col(xg, kh, kw, strides, pads, dil)
        shape = (ho, wo)
        B = (w if g == 1 else w[gi * og:(gi + 1) * og]).reshape(og, -1).T
        bg = None if b is None else (b if g == 1 else b[gi * og:(gi + 1) * og])
        problems.append(Problem(A, B, bg, (gi,)))

    def assemble(zs):
        z = zs[0] if len(zs) == 1 else np.concatenate(zs, axis=1)
        y = ops.col2out(z, S * N, *shape)
        return y.reshape(S, N, *y.shape[1:])
    return Lowering(problems, assemble, 0, None, cout, groups=g)


def _lower_conv_transpose(node, ins, bias=None):
    """ConvTranspose as the convolution accelerators run for it: the input with
    ``stride - 1`` zeros inserted between pixels, padded by ``d (k - 1) - pad`` (cropped
    where negative, ``output_padding`` added at the end), by the kernel flipped in space
    with its channel axes swapped; stride 1. K = C/group*kh*kw counts the inserted
    zeros' terms too (they add exact zeros)."""
    x, w = ins[0], ins[1][0]
    if x.ndim != 5 or w.ndim != 4:
        raise OpError.of(node, "only 2-D transposed convolutions over (N, C, H, W) are "
                               "supported")
    if node.attrs.get("auto_pad", "NOTSET") != "NOTSET" or "output_shape" in node.attrs:
        raise OpError.of(node, "auto_pad and output_shape are not supported (give pads)")
    b = bias if bias is not None else (ins[2][0] if len(ins) > 2 and ins[2] is not None
                                       else None)
    g = int(node.attrs.get("group", 1))
    C, cg = x.shape[2], w.shape[0] // max(g, 1)
    if w.shape[0] != C or C % g:
        raise OpError.of(node, f"{C} input channels do not fit weights {w.shape} in "
                               f"{g} group(s)")
    kh, kw = w.shape[2:]
    s = [int(v) for v in node.attrs.get("strides", [1, 1])]
    d = [int(v) for v in node.attrs.get("dilations", [1, 1])]
    p = [int(v) for v in node.attrs.get("pads", [0, 0, 0, 0])]
    op_ = [int(v) for v in node.attrs.get("output_padding", [0, 0])]
    H, W = x.shape[3:]
    xz = np.zeros((*x.shape[:3], (H - 1) * s[0] + 1, (W - 1) * s[1] + 1))
    xz[..., ::s[0], ::s[1]] = x
    lo = [d[0] * (kh - 1) - p[0], d[1] * (kw - 1) - p[1]]
    hi = [d[0] * (kh - 1) - p[2] + op_[0], d[1] * (kw - 1) - p[3] + op_[1]]
    xz = xz[..., max(0, -lo[0]):xz.shape[3] - max(0, -hi[0]),
            max(0, -lo[1]):xz.shape[4] - max(0, -hi[1])]
    pads = (max(lo[0], 0), max(lo[1], 0), max(hi[0], 0), max(hi[1], 0))
    wf = w[:, :, ::-1, ::-1]                          # (C, Cout/g, kh, kw), flipped
    wt = np.concatenate([np.swapaxes(wf[gi * cg:(gi + 1) * cg], 0, 1) for gi in range(g)])
    return _conv_lowering(xz, np.ascontiguousarray(wt), b, g, (1, 1), pads, tuple(d))


def _add_bias(z, bias):
    """``z + bias``; into ``z`` (a product just made) where that gives the same array."""
    if z.dtype == np.result_type(z, bias) and np.ndim(bias) <= 1:
        z += bias
        return z
    return z + bias


def reference(node, ins, const):
    """Float64 output of product ``node`` on ``ins``: ``A @ B + bias`` on every problem of
    its lowering (numpy / BLAS), assembled."""
    low = lower(node, ins, const)
    zs = []
    for p in low.problems:
        z = p.A @ p.B
        if p.bias is not None:
            z = _add_bias(z, p.bias)
        zs.append(z)
    return low.finish(zs)


# ---------------------------------------------------------------------------------------
# the float64 forward pass

def last_uses(graph, keep=()):
    """Tensor name -> index of the last node reading it (tensors in ``keep`` and the
    output are never released)."""
    last = {}
    for i, n in enumerate(graph.nodes):
        for t in n.inputs:
            if t:
                last[t] = i
    for t in (*keep, graph.output):
        last.pop(t, None)
    return last


def run_graph(graph, arrays, x, keep=None):
    """Float64 pass of ``graph`` over the model inputs ``x`` (S, *input shape).

    Returns every tensor by name (the input included) when ``keep`` is None, else only
    the tensors named in ``keep`` and the output (the others are released after their
    last use)."""
    typed = quant_ops.is_quantized(graph)
    env = {graph.input: np.asarray(x, dtype=np.float32 if typed else np.float64)}
    consts = {}
    release = {} if keep is None else last_uses(graph, keep)
    for i, node in enumerate(graph.nodes):
        ins = [graph_ops.tensor(t, env, arrays, consts) for t in node.inputs]
        outs = run_reference_node(node, ins, arrays, typed)
        for t, v in zip(node.outputs, outs):
            env[t] = v
        for t in node.inputs:
            if release.get(t) == i:
                env.pop(t, None)
    return env


def run_reference_node(node, ins, arrays, typed=False):
    """The float64 outputs of ``node`` on ``ins`` (a list); errors name the node.
    ``typed``: a quantized graph's node, run with onnxruntime's tensor types
    (:func:`.quant_ops.typed_outputs`: integers stay integers, floats become float32)."""
    try:
        if node.is_product:
            outs = [reference(node, ins, [t in arrays for t in node.inputs])]
        else:
            outs = graph_ops.run_node(node, ins)
        return quant_ops.typed_outputs(node, ins, outs) if typed else outs
    except OpError:
        raise
    except (ValueError, IndexError, TypeError) as exc:
        raise OpError.of(node, str(exc).splitlines()[0] if str(exc) else
                         exc.__class__.__name__) from None


def forward64(trace, x=None, return_all=False):
    """Float64 forward pass of ``trace`` on its samples ``x`` (default its inputs;
    mapped by :meth:`~accsim.network.trace.Trace.model_inputs`).

    Returns the output tensor ``(N, *model output shape)``, or with ``return_all`` every
    tensor by name (the graph input included). No operand quantisation is applied."""
    X = trace.model_inputs(trace.inputs if x is None else x)
    g = trace.graph
    env = run_graph(g, trace.arrays, X, keep=None if return_all else ())
    return env if return_all else env[g.output]


# ---------------------------------------------------------------------------------------
# what the scheduler needs from the graph

def _is_const_operand(node, t, arrays):
    others = [u for u in node.inputs if u and u != t]
    return len(others) == 1 and others[0] in arrays


def output_product(graph):
    """Index (in ``graph.nodes``) of the network's output layer: the last product node
    whose output reaches ``graph.output`` through any chain of nodes; None when no product
    does."""
    producers = {t: j for j, n in enumerate(graph.nodes) for t in n.outputs}
    found, seen = [], set()
    stack = [producers[graph.output]] if graph.output in producers else []
    while stack:
        j = stack.pop()
        if j in seen:
            continue
        seen.add(j)
        if graph.nodes[j].is_product:
            found.append(j)
            continue
        stack.extend(producers[t] for t in graph.nodes[j].inputs if t in producers)
    return max(found) if found else None


def consumer_activation(graph, tensor, arrays):
    """Kind (:data:`~accsim.precision.analysis.ACTIVATION_KINDS`) of the activation that
    consumes ``tensor`` (module doc)."""
    consumers = graph.consumers()
    reshaped = False
    while True:
        nodes = consumers.get(tensor)
        if not nodes:
            return "identity"
        c = nodes[0]
        if c.op in _ACTIVATIONS and [u for u in c.inputs if u] == [tensor]:
            if c.op == "Softmax" and (reshaped or int(c.attrs.get("axis", -1)) != -1):
                return "identity"
            return _ACTIVATIONS[c.op]
        if c.op in _RESHAPING:
            reshaped = True
        elif not (c.op in _THROUGH or (c.op in _ELEMENTWISE_CONST
                                       and _is_const_operand(c, tensor, arrays))):
            return "identity"
        tensor = c.outputs[0]


def foldable_bias(graph, node, arrays, shapes):
    """The ``Add`` node whose constant vector along the last axis is folded into the
    register of MatMul ``node`` (read only by it, same output shape), with that vector;
    (None, None) when there is none."""
    if node.op != "MatMul" or node.inputs[0] in arrays:
        return None, None
    out = node.outputs[0]
    readers = graph.consumers().get(out, [])
    if len(readers) != 1 or readers[0].op != "Add":
        return None, None
    add = readers[0]
    other = [u for u in add.inputs if u != out]
    if len(other) != 1 or other[0] not in arrays or len(add.inputs) != 2:
        return None, None
    c = np.asarray(arrays[other[0]], dtype=np.float64)
    oshape = shapes.get(out)
    if oshape is None or shapes.get(add.outputs[0]) != oshape or not oshape:
        return None, None
    if c.ndim > len(oshape) or any(d != 1 for d in c.shape[:-1]) or \
            (c.ndim and c.shape[-1] != oshape[-1]):
        return None, None
    n = oshape[-1]
    return add, (np.full(n, float(c.reshape(-1)[0])) if c.size == 1 else c.reshape(n))
