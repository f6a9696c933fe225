"""ONNX GRU and LSTM unrolled into per-time-step graph nodes at import.

A recurrent node over a sequence of static length ``T`` becomes, for each step, two
matrix products (``Gemm`` of the step's input with ``W``, of the previous hidden state with
``R``; the products the accelerator runs) and the gate arithmetic in float64 (Split,
Add, Mul, Sigmoid, Tanh), then ``Concat``/``Unsqueeze`` into the ONNX outputs ``Y``,
``Y_h`` (and ``Y_c``). Node names are ``<ONNX node>/t<step>/<part>``, so per-node
results can be found in the user's model.

Supported: ``direction`` forward or reverse, the default activations, GRU's
``linear_before_reset`` 0 or 1, optional ``B`` and initial states. Refused (one line
naming the node): bidirectional, ``layout=1`` (batch first; onnxruntime refuses it too),
``clip``, other activations, ``sequence_lens``, LSTM peepholes ``P`` and
``input_forget``.
"""

from __future__ import annotations

import numpy as np

#: op -> (gates per hidden unit, default activations)
RECURRENT = {"GRU": (3, ["Sigmoid", "Tanh"]), "LSTM": (4, ["Sigmoid", "Tanh", "Tanh"])}


class _Builder:
    """Collects the unrolled nodes (onnx NodeProtos) and their constants."""

    def __init__(self, n, consts):
        self.base = n.name or f"{n.op_type}_{n.output[0]}"
        self.consts = consts
        self.nodes = []

    def const(self, part, value):
        name = f"{self.base}/{part}"
        self.consts[name] = np.asarray(value)
        return name

    def add(self, op, ins, part, **attrs):
        from onnx import helper
        out = f"{self.base}/{part}"
        self.nodes.append(helper.make_node(op, list(ins), [out], name=out, **attrs))
        return out


def _settings(src, n, attrs, x_shape, consts):
    """(T, H, reverse, W, R, B) of a recurrent node, or a ValueError."""
    def err(msg):
        return ValueError(f"{src}: node {n.name} ({n.op_type}): {msg}")
    gates, acts = RECURRENT[n.op_type]
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse"):
        raise err(f"direction={direction!r} is not supported (forward or reverse)")
    for key in ("clip", "activation_alpha", "activation_beta"):
        if key in attrs:
            raise err(f"attribute {key} is not supported")
    if attrs.get("activations", acts) != acts:
        raise err(f"activations={attrs['activations']} are not supported (default only)")
    if int(attrs.get("layout", 0)):
        raise err("layout=1 (batch first) is not supported")
    if int(attrs.get("input_forget", 0)):
        raise err("input_forget=1 is not supported")
    ins = list(n.input) + [""] * 8
    if ins[4]:
        raise err("the sequence_lens input is not supported (every sequence is full)")
    if n.op_type == "LSTM" and ins[7]:
        raise err("peepholes (input P) are not supported")
    for i in (1, 2) + ((3,) if ins[3] else ()):
        if ins[i] not in consts:
            raise err(f"input {i} ({ins[i]!r}) must be constant")
    W, R = (np.asarray(consts[ins[i]], dtype=np.float64)[0] for i in (1, 2))
    H = int(attrs.get("hidden_size", R.shape[-1]))
    B = (np.asarray(consts[ins[3]], dtype=np.float64)[0] if ins[3]
         else np.zeros(2 * gates * H))
    return x_shape[0], H, direction == "reverse", W, R, B


def _initial(b, n, k, batch, H):
    """The (batch, H) initial state from input ``k`` (initial_h / initial_c), zeros when
    omitted."""
    ins = list(n.input) + [""] * 8
    if not ins[k]:
        return b.const(f"init{k}", np.zeros((batch, H)))
    return b.add("Gather", [ins[k], b.const("dir0", np.array(0, np.int64))], f"init{k}",
                 axis=0)


def unroll(src, n, attrs, x_shape, consts):
    """The nodes replacing recurrent node ``n`` (an onnx NodeProto) whose input ``X`` has
    the model shape ``x_shape``; new constants are added to ``consts``."""
    T, H, reverse, W, R, B = _settings(src, n, attrs, x_shape, consts)
    b = _Builder(n, consts)
    batch = x_shape[1]
    h = _initial(b, n, 5, batch, H)
    c = _initial(b, n, 6, batch, H) if n.op_type == "LSTM" else None
    step = _gru_step if n.op_type == "GRU" else _lstm_step
    ys = {}
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        xt = b.add("Gather", [n.input[0], b.const(f"t{t}/index", np.array(t, np.int64))],
                   f"t{t}/x", axis=0)
        h, c = step(b, f"t{t}", xt, h, c, W, R, B, H, int(attrs.get("linear_before_reset",
                                                                       0)))
        ys[t] = b.add("Unsqueeze", [h], f"t{t}/y", axes=[0])
    outs = list(n.output) + ["", "", ""]
    seq = b.add("Concat", [ys[t] for t in range(T)], "y_seq", axis=0)
    _output(b, outs[0], seq, 1)
    _output(b, outs[1], h, 0)
    if c is not None:
        _output(b, outs[2], c, 0)
    return b.nodes


def _output(b, name, t, axis):
    """Write output ``name`` (when used) as ``t`` with a unit num_directions axis."""
    if not name:
        return
    from onnx import helper
    b.nodes.append(helper.make_node("Unsqueeze", [t], [name], name=f"{b.base}/{name}",
                                    axes=[axis]))


def _gemm(b, part, x, key, W, bias):
    """``x @ W.T + bias`` as a Gemm node; ``key`` names its arrays (shared by all
    steps)."""
    return b.add("Gemm", [x, b.const(f"{key}.W", W), b.const(f"{key}.b", bias)], part,
                 transB=1)


def _gru_step(b, p, xt, h, c, W, R, B, H, lbr):
    """One GRU step (ONNX gate order z, r, h); returns (new h, None)."""
    wb, rb = B[:3 * H], B[3 * H:]
    gx = _gemm(b, f"{p}/gemm_x", xt, "x", W, wb)
    xz, xr, xh = _split(b, f"{p}/gx", gx, [H, H, H])
    if lbr:
        hz, hr, hh = _split(b, f"{p}/gh", _gemm(b, f"{p}/gemm_h", h, "h", R, rb), [H, H, H])
    else:
        hz, hr = _split(b, f"{p}/gh", _gemm(b, f"{p}/gemm_h", h, "h", R[:2 * H],
                                               rb[:2 * H]),
                        [H, H])
    z = b.add("Sigmoid", [b.add("Add", [xz, hz], f"{p}/z_in")], f"{p}/z")
    r = b.add("Sigmoid", [b.add("Add", [xr, hr], f"{p}/r_in")], f"{p}/r")
    if lbr:
        cand = b.add("Add", [xh, b.add("Mul", [r, hh], f"{p}/r_hh")], f"{p}/n_in")
    else:
        rh = b.add("Mul", [r, h], f"{p}/r_h")
        cand = b.add("Add", [xh, _gemm(b, f"{p}/gemm_rh", rh, "rh", R[2 * H:],
                                          rb[2 * H:])],
                     f"{p}/n_in")
    nt = b.add("Tanh", [cand], f"{p}/n")
    one_minus = b.add("Sub", [b.const("one", np.array(1.0)), z], f"{p}/1-z")
    new = b.add("Add", [b.add("Mul", [one_minus, nt], f"{p}/(1-z)n"),
                        b.add("Mul", [z, h], f"{p}/zh")], f"{p}/h")
    return new, None


def _lstm_step(b, p, xt, h, c, W, R, B, H, lbr):
    """One LSTM step (ONNX gate order i, o, f, c); returns (new h, new c)."""
    g = b.add("Add", [_gemm(b, f"{p}/gemm_x", xt, "x", W, B[:4 * H]),
                      _gemm(b, f"{p}/gemm_h", h, "h", R, B[4 * H:])], f"{p}/gates")
    i, o, f, cc = _split(b, f"{p}/g", g, [H, H, H, H])
    i, o, f = (b.add("Sigmoid", [v], f"{p}/{k}") for v, k in ((i, "i"), (o, "o"), (f, "f")))
    cc = b.add("Tanh", [cc], f"{p}/c_cand")
    c_new = b.add("Add", [b.add("Mul", [f, c], f"{p}/fc"), b.add("Mul", [i, cc], f"{p}/ic")],
                  f"{p}/c")
    h_new = b.add("Mul", [o, b.add("Tanh", [c_new], f"{p}/tanh_c")], f"{p}/h")
    return h_new, c_new


def _split(b, part, t, sizes):
    from onnx import helper
    outs = [f"{b.base}/{part}{k}" for k in range(len(sizes))]
    b.nodes.append(helper.make_node("Split", [t], outs, name=f"{b.base}/{part}", axis=1,
                                    split=list(sizes)))
    return outs
