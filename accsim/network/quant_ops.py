"""Quantized ONNX operators, bit-exact against onnxruntime's CPU kernels (int8/uint8).

Registered into :data:`.graph_ops.OPS` with the sample-axis convention of :mod:`.graph`
(every input and output carries a leading samples axis; arrays a size-1 one). Integer
tensors stay integer (``int8``/``uint8``/``int32`` numpy arrays), floating tensors are
``float32`` values, as in onnxruntime. Op names are domain-free; the contrib ops of
onnxruntime's ``com.microsoft`` domain are marked so below.

Every product op is three documented steps, so that the simulator can run step 2 on a
narrow integer register and keep steps 1 and 3:

1. **integer operands**: the stored int8/uint8 values minus their zero points, exact
   (:func:`centered`);
2. **exact integer accumulation**: ``sum (x - zx)(w - zw) (+ int32 bias)`` in int64
   (:func:`matmul_acc`, :func:`conv_acc`), the value an int32 accumulator holds when it
   does not wrap;
3. **requantization** (:func:`requantize`): onnxruntime's ``MlasRequantizeOutput``:
   ``float32(acc) * scale`` with ``scale = float32(float32(sx*sw)/sy)``, clamped to
   ``[qmin - zy, qmax - zy]``, rounded half to even, plus ``zy``.

The reference for each rounding step is the onnxruntime source (MLAS); docs/quantized.md
lists which kernel each function follows and where fused and unfused paths differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .graph import Graph, Node
from .graph_ops import OpError, model_axis, op, run_node, tensor

__all__ = ["IntegerProduct", "INTEGER_PRODUCT_OPS", "integer_product", "fuse_qdq",
           "forward_float32", "requantize", "quantize_linear", "centered",
           "matmul_acc", "conv_acc", "dynamic_range", "output_scale", "QTYPES",
           "QUANT_OPS", "CONTRIB_OPS", "is_quantized", "typed_outputs"]

#: integer types of quantized tensors: dtype -> (lowest, highest)
QTYPES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}
F32 = np.float32


# --- parameters --------------------------------------------------------------------------

def qtype(node, x, what):
    """The quantized dtype of ``x`` (int8 or uint8), else an OpError naming ``what``."""
    dt = np.asarray(x).dtype
    if dt not in QTYPES:
        raise OpError.of(node, f"{what} must be int8 or uint8, got {dt}")
    return dt


def per_sample(p):
    """A per-tensor parameter ``(S or 1, *ones)`` as shape ``(S or 1,)``."""
    return p.reshape(p.shape[0])


def check_scale(node, s, what):
    """Scale ``s`` (sample axis first) as float32, refusing 0, negative, NaN or inf."""
    s = np.asarray(s)
    if s.dtype != np.float32:
        s = s.astype(F32)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        bad = s[~(np.isfinite(s) & (s > 0))].ravel()[0]
        raise OpError.of(node, f"{what} must be finite and > 0, got {bad}")
    return s


def check_zero_point(node, z, dt, what):
    """Zero point ``z`` of type ``dt``; int64 values. None means 0 of type ``dt``."""
    if z is None:
        return np.zeros((1,), np.int64)
    z = np.asarray(z)
    if z.dtype != dt:
        lo, hi = QTYPES.get(dt, (None, None))
        if z.dtype.kind in "iu" and lo is not None and z.size and \
                (z.min() < lo or z.max() > hi):
            raise OpError.of(node, f"{what} {z.ravel()[0]} is out of range for {dt}")
        raise OpError.of(node, f"{what} has type {z.dtype}, expected {dt} (the type of "
                               f"the tensor it belongs to)")
    return z.astype(np.int64)


def scalar_param(node, p, what):
    """A per-tensor parameter (model shape () or (1,)) as shape ``(S or 1,)``."""
    if int(np.prod(p.shape[1:], dtype=np.int64)) != 1:
        raise OpError.of(node, f"{what} must be a scalar (per-tensor), got model shape "
                               f"{tuple(p.shape[1:])}")
    return per_sample(p)


def channel_param(node, p, n, what):
    """A per-tensor or per-channel parameter as shape ``(S or 1, n)``."""
    m = int(np.prod(p.shape[1:], dtype=np.int64))
    if m == 1:
        return np.broadcast_to(p.reshape(p.shape[0], 1), (p.shape[0], n))
    if p.ndim != 2 or m != n:
        raise OpError.of(node, f"{what} must be a scalar or have {n} elements, got model "
                               f"shape {tuple(p.shape[1:])}")
    return p


def lead(v, ndim):
    """``v`` of shape ``(S or 1, *rest)`` reshaped to broadcast against an ``ndim`` array
    whose last axes are ``rest`` (ones inserted after the sample axis)."""
    return v.reshape(v.shape[:1] + (1,) * (ndim - v.ndim) + v.shape[1:])


# --- the rounding steps --------------------------------------------------------------------

def round_clamp(v, zp, dt):
    """``clamp(v, qmin - zp, qmax - zp)`` rounded half to even, plus ``zp``, as ``dt``.

    ``v`` float32; ``zp`` int64 broadcastable. The clamp happens in float before the
    conversion (MLAS ``MlasRequantizeOutput`` and ``MlasQuantizeLinear``), so values beyond
    the int32 range saturate to the right end."""
    lo, hi = QTYPES[dt]
    zf = zp.astype(F32)
    v = np.minimum(np.maximum(v, F32(lo) - zf), F32(hi) - zf)
    return (np.rint(v).astype(np.int64) + zp).astype(dt)


def output_scale(sx, sw, sy):
    """The requantization scale of QLinearConv/QLinearMatMul: ``(sx * sw) / sy`` with each
    operation rounded to float32, in this order (onnxruntime computes it so per channel)."""
    return (F32(1) * sx * sw / sy).astype(F32)


def requantize(acc, scale, zp, dt):
    """Requantize an int32 accumulator (onnxruntime ``MlasRequantizeOutput``).

    ``acc``: int64 exact accumulator values (bias already added), ``scale``: float32 per
    tensor or per output channel (broadcastable), ``zp``: int64 output zero point, ``dt``:
    output dtype. ``float32(acc)`` (round to nearest even for |acc| > 2**24), times
    ``scale`` in float32, then :func:`round_clamp`."""
    v = acc.astype(F32) * scale
    return round_clamp(v.astype(F32), zp, dt)


def quantize_linear(x, scale, zp, dt):
    """onnxruntime's ``MlasQuantizeLinear``: ``x / scale`` in float32 (a division, not a
    multiplication by the reciprocal), clamped, rounded half to even, plus ``zp``."""
    v = np.asarray(x, dtype=F32) / scale
    return round_clamp(v.astype(F32), zp, dt)


def dequantize(x, scale, zp):
    """``float32(x - zp) * scale`` (onnxruntime's DequantizeLinear), float32."""
    return ((x.astype(np.int64) - zp).astype(F32) * scale).astype(F32)


def centered(x, zp):
    """Step 1 of a product op: the integer operand ``x - zp`` (int64, exact)."""
    return x.astype(np.int64) - zp


# --- exact integer accumulation -------------------------------------------------------------

def matmul_acc(a, b):
    """Step 2: exact ``a @ b`` of int64 operands (batched, numpy broadcasting), int64.

    Computed in float64, which is exact while ``K * max|a| * max|b| < 2**53`` (checked)."""
    k = a.shape[-1]
    bound = k * (int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)))
    if bound >= 2 ** 53:
        return np.matmul(a, b)
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)


def conv_windows(x, kernel, strides, pads, dilations):
    """The input windows of a 2-D convolution of centred ``x`` (B, C, H, W), zero padded:
    shape (B, C, OH, OW, kh, kw)."""
    t, l, b, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    kh, kw = kernel
    dh, dw = dilations
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return win[:, :, ::strides[0], ::strides[1], ::dh, ::dw]


def conv_acc(x, w, strides, pads, dilations, group):
    """Step 2: exact grouped 2-D convolution of centred int64 ``x`` (B, C, H, W) and ``w``
    (M, C/group, kh, kw): int64 (B, M, OH, OW). Padding contributes 0 (onnxruntime pads
    with the zero point, which centring maps to 0)."""
    win = conv_windows(x, w.shape[2:], strides, pads, dilations)
    bsz, c = x.shape[:2]
    m = w.shape[0]
    cg, mg = c // group, m // group
    outs = []
    for g in range(group):
        wg = win[:, g * cg:(g + 1) * cg]
        wg = np.moveaxis(wg, 1, 3).reshape(bsz, wg.shape[2], wg.shape[3], -1)
        kg = w[g * mg:(g + 1) * mg].reshape(mg, -1).T
        outs.append(matmul_acc(wg, kg))
    return np.moveaxis(np.concatenate(outs, axis=-1), -1, 1)


def per_image(x, fn):
    """Apply ``fn`` to ``x`` (S, N, C, ...) as (S*N, C, ...); back to (S, N, ...)."""
    s, n = x.shape[:2]
    y = fn(x.reshape(s * n, *x.shape[2:]))
    return y.reshape(s, n, *y.shape[1:])


def conv_attrs(node, x, w):
    """(strides, pads, dilations, group) of a 2-D Conv-like node, checked."""
    if x.ndim != 5 or w.ndim != 5:
        raise OpError.of(node, "only 2-D convolutions over (N, C, H, W) are supported")
    a = node.attrs
    if a.get("auto_pad", "NOTSET") != "NOTSET":
        raise OpError.of(node, f"auto_pad={a['auto_pad']!r} is not supported")
    group = int(a.get("group", 1))
    c, m = x.shape[2], w.shape[1]
    if c % group or m % group or w.shape[2] * group != c:
        raise OpError.of(node, f"group={group} does not fit {c} input and {m} output "
                               f"channels with weight shape {tuple(w.shape[1:])}")
    return (tuple(a.get("strides", (1, 1))), tuple(a.get("pads", (0, 0, 0, 0))),
            tuple(a.get("dilations", (1, 1))), group)


# --- QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear --------------------------------

def axis_param(node, p, x, axis, what):
    """Parameter ``p`` shaped to broadcast against ``x``: per tensor, or along ``axis``."""
    m = int(np.prod(p.shape[1:], dtype=np.int64))
    if m == 1 and p.ndim <= 2:
        return lead(per_sample(p), x.ndim)
    ax = model_axis(node, axis, x)
    if p.ndim != 2 or m != x.shape[ax]:
        raise OpError.of(node, f"{what} must be a scalar or have {x.shape[ax]} elements "
                               f"(axis {axis}), got model shape {tuple(p.shape[1:])}")
    shape = [1] * x.ndim
    shape[0], shape[ax] = p.shape[0], m
    return p.reshape(shape)


def no_blocks(node):
    """Refuse blocked quantization (``block_size``), which is not reproduced."""
    if int(node.attrs.get("block_size", 0)):
        raise OpError.of(node, "blocked quantization (block_size) is not supported")


@op("QuantizeLinear")
def _quantize_linear(node, ins):
    no_blocks(node)
    x, s = ins[0], ins[1]
    z = ins[2] if len(ins) > 2 else None
    dt = np.dtype(np.uint8) if z is None else qtype(node, z, "y_zero_point")
    if not int(node.attrs.get("saturate", 1)):
        raise OpError.of(node, "saturate=0 applies to float8 outputs only")
    axis = int(node.attrs.get("axis", 1))
    s = axis_param(node, check_scale(node, s, "y_scale"), x, axis, "y_scale")
    zp = axis_param(node, check_zero_point(node, z, dt, "y_zero_point"), x, axis,
                    "y_zero_point")
    return [quantize_linear(x, s, zp, dt)]


@op("DequantizeLinear")
def _dequantize_linear(node, ins):
    no_blocks(node)
    x, s = ins[0], ins[1]
    z = ins[2] if len(ins) > 2 else None
    dt = np.asarray(x).dtype
    if dt not in QTYPES and dt != np.int32:
        raise OpError.of(node, f"x must be int8, uint8 or int32, got {dt}")
    axis = int(node.attrs.get("axis", 1))
    s = axis_param(node, check_scale(node, s, "x_scale"), x, axis, "x_scale")
    zp = axis_param(node, check_zero_point(node, z, dt, "x_zero_point"), x, axis,
                    "x_zero_point")
    if dt == np.int32 and np.any(zp != 0):
        raise OpError.of(node, "an int32 input needs a zero point of 0")
    return [dequantize(x, s, zp)]


def dynamic_range(x, per_sample_range=True):
    """Scale and zero point of DynamicQuantizeLinear (onnxruntime's
    ``GetQuantizationParameter``), float32 and uint8, shape (S,) per sample (each sample a
    batch-1 run) or (1,) over the whole batch.

    ``min``/``max`` of ``x`` widened to include 0; ``scale = (max - min) / 255`` (1 when
    max == min); ``zero point = round_half_even(clamp(0 - min / scale, 0, 255))``."""
    x = np.asarray(x, dtype=F32)
    flat = x.reshape(x.shape[0], -1) if per_sample_range else x.reshape(1, -1)
    lo = np.minimum(flat.min(axis=1), F32(0))
    hi = np.maximum(flat.max(axis=1), F32(0))
    scale = np.where(hi == lo, F32(1), ((hi - lo) / F32(255)).astype(F32)).astype(F32)
    z0 = (F32(0) - lo / scale).astype(F32)
    zp = np.rint(np.minimum(np.maximum(z0, F32(0)), F32(255))).astype(np.uint8)
    return scale, zp


#: non-ONNX attribute of DynamicQuantizeLinear choosing the range: "sample" (default:
#: each sample alone, a batch-1 deployment) or "batch" (one range over all samples)
RANGE_ATTR = "accsim_range"


@op("DynamicQuantizeLinear")
def _dynamic_quantize_linear(node, ins):
    """Per-sample ranges by default; ``accsim_range="batch"`` for one over the batch."""
    x = ins[0]
    mode = node.attrs.get(RANGE_ATTR, "sample")
    if mode not in ("sample", "batch"):
        raise OpError.of(node, f"{RANGE_ATTR} must be 'sample' or 'batch', got {mode!r}")
    scale, zp = dynamic_range(x, per_sample_range=mode == "sample")
    y = quantize_linear(x, lead(scale, x.ndim), lead(zp.astype(np.int64), x.ndim),
                        np.dtype(np.uint8))
    return [y, scale, zp]


# --- MatMulInteger / ConvInteger (int32 outputs) -------------------------------------------

#: (activation dtype, weight dtype) pairs onnxruntime's QLinearConv/QLinearMatMul/QGemm
#: kernels accept (MatMulInteger and ConvInteger accept all four)
QLINEAR_TYPES = {("uint8", "uint8"), ("uint8", "int8"), ("int8", "int8")}


def check_pair(node, a, b, names, allowed=QLINEAR_TYPES):
    """(dtype of ``a``, dtype of ``b``), refusing pairs outside ``allowed``."""
    pair = (str(qtype(node, a, names[0])), str(qtype(node, b, names[1])))
    if allowed is not None and pair not in allowed:
        raise OpError.of(node, f"{names[0]} {pair[0]} with {names[1]} {pair[1]} is not "
                               f"supported (onnxruntime: uint8/uint8, uint8/int8, int8/int8)")
    return np.dtype(pair[0]), np.dtype(pair[1])


def matmul_zero_points(node, za, zb, n):
    """Zero points of A (per tensor, (S,1,1)) and B (per tensor or per column, (S,1,N))."""
    za = lead(scalar_param(node, za, "a_zero_point"), 3)
    zb = channel_param(node, zb, n, "b_zero_point")
    return za, zb[:, None, :]


def check_matmul(node, a, b):
    """Refuse 1-D operands and mismatched inner dimensions of a matrix product."""
    if a.ndim < 3 or b.ndim < 3:
        raise OpError.of(node, "a 1-D operand is not supported")
    if a.shape[-1] != b.shape[-2]:
        raise OpError.of(node, f"inner dimensions differ: {a.shape[1:]} @ {b.shape[1:]}")


@dataclass(frozen=True)
class IntegerProduct:
    """A quantized product op split into its three steps (see the module docstring).

    ``x``: centred activations (int64, sample axis first); ``w``: centred weights (int64;
    a matrix product's right operand with its sample axis, a convolution's filters
    ``(M, C/group, kh, kw)`` without one); ``conv``: ``(strides, pads, dilations, group)``
    for a convolution, None for a matrix product; ``bias``: int64 added to the
    accumulator (broadcastable to it) or None; ``scale``/``zero_point``/``dtype``: the
    requantization (float32 scale and int64 zero point broadcastable to the output), or
    ``scale`` None for an int32 output (MatMulInteger, ConvInteger); ``x_max``: the
    largest ``|x - zx|`` any input of the activation's type can give."""

    x: np.ndarray
    w: np.ndarray
    conv: tuple | None
    bias: np.ndarray | None
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    dtype: np.dtype
    x_max: int

    @property
    def k(self) -> int:
        """Accumulation length: terms summed per output (C/group·kh·kw or K)."""
        return int(np.prod(self.w.shape[1:])) if self.conv else int(self.x.shape[-1])

    def accumulate(self) -> np.ndarray:
        """Step 2, exact: the products' sum plus the bias, int64 (what an int32
        accumulator holds when it does not wrap)."""
        if self.conv is None:
            acc = matmul_acc(self.x, self.w)
        else:
            acc = per_image(self.x, lambda v: conv_acc(v, self.w, *self.conv))
        return acc if self.bias is None else acc + self.bias

    def worst_case_bound(self) -> int:
        """The largest ``|accumulator|`` any input can produce: ``max over outputs of
        x_max * sum|w| + |bias|`` (the bound A2Q-style training guarantees); a register
        holding this magnitude cannot overflow on any data."""
        w = np.abs(self.w)
        if self.conv is None:
            col = w.sum(axis=-2).reshape(-1, w.shape[-1])  # per output column
        else:
            col = w.reshape(w.shape[0], -1).sum(axis=1)[None]  # per output channel
        n = col.shape[-1]
        bias = 0 if self.bias is None else np.abs(self.bias).reshape(-1, n)
        return int(np.max(col * self.x_max + bias))

    def finish(self, acc) -> np.ndarray:
        """Step 3: the op's output from accumulator values ``acc`` (int64): requantized,
        or the int32 output (wrapping modulo 2**32 as an int32 register does)."""
        if self.scale is None:
            return np.asarray(acc, dtype=np.int64).astype(np.int32)
        return requantize(np.asarray(acc, dtype=np.int64), self.scale, self.zero_point,
                          self.dtype)


def integer_product(node, ins) -> IntegerProduct:
    """The :class:`IntegerProduct` of a node of :data:`INTEGER_PRODUCT_OPS` on ``ins``
    (sample axis first), its parameters checked (OpError naming the node)."""
    return PRODUCT_BUILDERS[node.op](node, ins)


def run_product(node, ins):
    """A product op's output computed exactly: ``finish(accumulate())``."""
    p = integer_product(node, ins)
    return [p.finish(p.accumulate())]


def x_range(zx, dt):
    """The largest ``|x - zx|`` over the codes of ``dt`` and zero points ``zx``."""
    lo, hi = QTYPES[np.dtype(dt)]
    return int(max(hi - np.min(zx), np.max(zx) - lo))


def matmul_integer_parts(node, ins):
    """MatMulInteger: per-tensor ``a_zero_point``, per-tensor or per-column
    ``b_zero_point``; int32 output."""
    a, b = ins[0], ins[1]
    check_matmul(node, a, b)
    ta, tb = check_pair(node, a, b, ("A", "B"), None)
    za = check_zero_point(node, ins[2] if len(ins) > 2 else None, ta, "a_zero_point")
    zb = check_zero_point(node, ins[3] if len(ins) > 3 else None, tb, "b_zero_point")
    za, zb = matmul_zero_points(node, za.reshape(za.shape[0], -1),
                                zb.reshape(zb.shape[0], -1), b.shape[-1])
    return IntegerProduct(centered(a, lead(za, a.ndim)), centered(b, lead(zb, b.ndim)),
                          None, None, None, None, np.dtype(np.int32), x_range(za, ta))


def conv_integer_parts(node, ins):
    """ConvInteger: per-tensor zero points (as onnxruntime); int32 output."""
    x, w = ins[0], ins[1]
    attrs = conv_attrs(node, x, w)
    tx, tw = check_pair(node, x, w, ("x", "w"), None)
    zx = check_zero_point(node, ins[2] if len(ins) > 2 else None, tx, "x_zero_point")
    zw = check_zero_point(node, ins[3] if len(ins) > 3 else None, tw, "w_zero_point")
    zx = lead(scalar_param(node, zx.reshape(zx.shape[0], -1), "x_zero_point"), x.ndim)
    zw = scalar_param(node, zw.reshape(zw.shape[0], -1), "w_zero_point")
    if zw.shape[0] != 1:
        raise OpError.of(node, "a per-sample weight zero point is not supported")
    return IntegerProduct(centered(x, zx), centered(w[0], zw[0]), attrs, None, None, None,
                          np.dtype(np.int32), x_range(zx, tx))


# --- QLinearMatMul / QLinearConv / QGemm (com.microsoft) ----------------------------------------

def qlinear_params(node, ins, idx, types, n):
    """Scales and zero points of a QLinear product: (x scale (S,), w scales (S, n),
    y scale (S,), zx (S,), zw (S, n), zy (S,)). ``idx`` positions of
    (sx, zx, sw, zw, sy, zy); ``types`` (x dtype, w dtype)."""
    sx, zx, sw, zw, sy, zy = (ins[i] if i is not None and i < len(ins) else None
                              for i in idx)
    tx, tw = types
    sx = scalar_param(node, check_scale(node, sx, "x_scale"), "x_scale")
    sy = scalar_param(node, check_scale(node, sy, "y_scale"), "y_scale")
    sw = channel_param(node, check_scale(node, sw, "w_scale"), n, "w_scale")
    zx = scalar_param(node, check_zero_point(node, zx, tx, "x_zero_point"), "x_zero_point")
    zy = scalar_param(node, check_zero_point(node, zy, tx, "y_zero_point"), "y_zero_point")
    zw = channel_param(node, check_zero_point(node, zw, tw, "w_zero_point"), n,
                       "w_zero_point")
    return sx, sw, sy, zx, zw, zy


def check_bias(node, b, n, what="bias"):
    """An int32 bias of ``n`` elements as int64 ``(S or 1, n)``; None stays None."""
    if b is None:
        return None
    if b.dtype != np.int32:
        raise OpError.of(node, f"{what} must be int32, got {b.dtype}")
    if b.size != n * b.shape[0]:
        raise OpError.of(node, f"{what} must have {n} elements, got {b.size // b.shape[0]}")
    return b.reshape(b.shape[0], n).astype(np.int64)


def qlinear_matmul_parts(node, ins, alpha=None, bias=None, idx=(1, 2, 4, 5, 6, 7)):
    """QLinearMatMul (and QGemm, with ``alpha``, int32 ``bias`` and its input positions)."""
    a, b = ins[0], ins[3]
    check_matmul(node, a, b)
    types = check_pair(node, a, b, ("a", "b"))
    n = b.shape[-1]
    sx, sw, sy, zx, zw, zy = qlinear_params(node, ins, idx, types, n)
    if alpha is None:
        scale = output_scale(lead(sx, 2), sw, lead(sy, 2))
    else:
        scale = ((alpha * lead(sx, 2) * sw).astype(F32) / lead(sy, 2)).astype(F32)
    nd = max(a.ndim, b.ndim)
    return IntegerProduct(centered(a, lead(zx, a.ndim)),
                          centered(b, lead(zw[:, None, :], b.ndim)), None,
                          None if bias is None else lead(bias, nd), lead(scale, nd),
                          lead(zy, nd), types[0], x_range(zx, types[0]))


def qlinear_conv_parts(node, ins):
    """QLinearConv: per-tensor activations, per-tensor or per-channel weights, int32
    bias per output channel."""
    x, w = ins[0], ins[3]
    attrs = conv_attrs(node, x, w)
    if int(node.attrs.get("channels_last", 0)):
        raise OpError.of(node, "channels_last=1 is not supported")
    types = check_pair(node, x, w, ("x", "w"))
    m = w.shape[1]
    sx, sw, sy, zx, zw, zy = qlinear_params(node, ins, (1, 2, 4, 5, 6, 7), types, m)
    if sw.shape[0] != 1 or zw.shape[0] != 1:
        raise OpError.of(node, "per-sample weight parameters are not supported")
    bias = check_bias(node, ins[8] if len(ins) > 8 else None, m)
    scale = output_scale(lead(sx, 2), sw, lead(sy, 2))
    return IntegerProduct(centered(x, lead(zx, x.ndim)),
                          centered(w[0], zw[0][:, None, None, None]), attrs,
                          None if bias is None else bias.reshape(bias.shape[0], 1, m, 1, 1),
                          scale.reshape(scale.shape[0], 1, m, 1, 1), lead(zy, x.ndim),
                          types[0], x_range(zx, types[0]))


def qgemm_parts(node, ins):
    """com.microsoft QGemm: ``transA``/``transB``, ``alpha`` in the scale, int32 ``C``
    added to the accumulator; a float output (no y_scale) is refused."""
    ins = list(ins)
    if int(node.attrs.get("transA", 0)):
        ins[0] = np.swapaxes(ins[0], -1, -2)
    if int(node.attrs.get("transB", 0)):
        ins[3] = np.swapaxes(ins[3], -1, -2)
    if len(ins) < 8 or ins[7] is None:
        raise OpError.of(node, "a float output (no y_scale) is not supported")
    if ins[4].shape[1:] != ins[5].shape[1:]:
        raise OpError.of(node, "b_scale and b_zero_point must have the same shape "
                               "(onnxruntime refuses others)")
    bias = check_bias(node, ins[6], ins[3].shape[-1], "C") if ins[6] is not None else None
    return qlinear_matmul_parts(node, ins, F32(node.attrs.get("alpha", 1.0)), bias,
                                (1, 2, 4, 5, 7, 8))


#: product op -> builder of its IntegerProduct (QGemm is com.microsoft)
PRODUCT_BUILDERS = {"MatMulInteger": matmul_integer_parts, "ConvInteger": conv_integer_parts,
                    "QLinearMatMul": qlinear_matmul_parts, "QLinearConv": qlinear_conv_parts,
                    "QGemm": qgemm_parts}
#: the quantized ops whose accumulation runs on the accelerator's integer datapath
INTEGER_PRODUCT_OPS = tuple(PRODUCT_BUILDERS)
op(*INTEGER_PRODUCT_OPS)(run_product)


# --- elementwise and pooling (com.microsoft) -------------------------------------------------

def unary_params(node, ins, dt):
    """(sx, zx, sy, zy) of a QLinear unary op, each (S or 1,)."""
    sx = scalar_param(node, check_scale(node, ins[1], "X_scale"), "X_scale")
    zx = scalar_param(node, check_zero_point(node, ins[2] if len(ins) > 2 else None, dt,
                                             "X_zero_point"), "X_zero_point")
    sy = scalar_param(node, check_scale(node, ins[3], "Y_scale"), "Y_scale")
    zy = scalar_param(node, check_zero_point(node, ins[4] if len(ins) > 4 else None, dt,
                                             "Y_zero_point"), "Y_zero_point")
    return sx, zx, sy, zy


#: MLAS logistic constants (Eigen's rational approximation), float32
LOGISTIC = dict(lo=-18.0, hi=18.0,
                alpha=(4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05,
                       8.51377133304701e-03, 2.48287947061529e-01),
                beta=(6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06,
                      1.70198817374094e-03, 1.16817656904453e-01, 9.93151921023180e-01))


def mlas_logistic(x):
    """onnxruntime's float32 ``MlasComputeLogistic`` on x86-64 with FMA: clamp to
    [-18, 18], odd/even polynomials in x² evaluated by Horner with fused multiply-adds,
    ``p / q + 0.5`` clamped to [0, 1]."""
    v = np.minimum(np.maximum(np.asarray(x, F32), F32(LOGISTIC["lo"])), F32(LOGISTIC["hi"]))
    v2 = (v * v).astype(F32)
    al, be = [F32(c) for c in LOGISTIC["alpha"]], [F32(c) for c in LOGISTIC["beta"]]
    p = fma_vec(v2, al[0], al[1])
    for c in al[2:]:
        p = fma_vec(p, v2, c)
    p = (p * v).astype(F32)
    q = fma_vec(v2, be[0], be[1])
    for c in be[2:]:
        q = fma_vec(q, v2, c)
    return np.clip((p / q).astype(F32) + F32(0.5), F32(0), F32(1)).astype(F32)


@op("QLinearSigmoid")  # com.microsoft
def _qlinear_sigmoid(node, ins):
    x = ins[0]
    dt = qtype(node, x, "X")
    sx, zx, sy, zy = unary_params(node, ins, dt)
    if len(sx) != 1 or len(sy) != 1:
        raise OpError.of(node, "per-sample scales are not supported")
    lo, hi = QTYPES[dt]
    codes = np.arange(lo, hi + 1, dtype=np.int64)
    table = quantize_linear(mlas_logistic(dequantize(codes, sx[0], zx[0])), sy[0],
                            zy[0], dt)
    return [table[x.astype(np.int64) - lo]]


def broadcast_model(a, b):
    """``a`` and ``b`` (sample axis first) with ONNX broadcasting of their model shapes."""
    n = max(a.ndim, b.ndim)
    return lead(a, n), lead(b, n)


@op("QLinearAdd")  # com.microsoft
def _qlinear_add(node, ins):
    """onnxruntime's AVX2 kernel: ``ra = sa/sc``, ``rb = sb/sc`` (float32), ``fixed = zc -
    (ra*za + rb*zb)``; ``c = fma(a, ra, fma(b, rb, fixed))`` rounded half to even and
    saturated."""
    a, b = ins[0], ins[3]
    dt = qtype(node, a, "A")
    if qtype(node, b, "B") != dt:
        raise OpError.of(node, f"A is {dt} and B is {b.dtype}; they must have one type")
    sa = scalar_param(node, check_scale(node, ins[1], "A_scale"), "A_scale")
    za = scalar_param(node, check_zero_point(node, ins[2], dt, "A_zero_point"),
                      "A_zero_point")
    sb = scalar_param(node, check_scale(node, ins[4], "B_scale"), "B_scale")
    zb = scalar_param(node, check_zero_point(node, ins[5], dt, "B_zero_point"),
                      "B_zero_point")
    sc = scalar_param(node, check_scale(node, ins[6], "C_scale"), "C_scale")
    zc = scalar_param(node, check_zero_point(node, ins[7] if len(ins) > 7 else None, dt,
                                             "C_zero_point"), "C_zero_point")
    ra, rb = (sa / sc).astype(F32), (sb / sc).astype(F32)
    fixed = (zc.astype(F32) - ((ra * za.astype(F32)).astype(F32)
                               + (rb * zb.astype(F32)).astype(F32)).astype(F32)).astype(F32)
    a, b = broadcast_model(a, b)
    n = max(a.ndim, b.ndim)
    af, bf = a.astype(F32), b.astype(F32)
    shape = np.broadcast_shapes(a.shape, b.shape)
    ra_, rb_, fx = lead(ra, n), lead(rb, n), lead(fixed, n)
    v = fma_vec(bf, rb_, fx, shape)
    v = fma_vec(af, ra_, v, shape)
    lo_, hi_ = QTYPES[dt]
    r = np.rint(v).astype(np.int64)  # cvtps2dq; then saturating packs
    return [np.clip(r, lo_, hi_).astype(dt)]


def fma_vec(a, b, c, shape=None):
    """float32 fused multiply-add ``a*b + c`` rounded once, arrays broadcast to ``shape``.

    ``a*b`` is exact in float64 (24+24 bits); ``s = fl64(a*b + c)`` can only round the
    wrong way to float32 when ``s`` lands exactly on a float32 midpoint while the float64
    sum was inexact: there the sign of the float64 rounding error (TwoSum) decides."""
    shape = np.broadcast_shapes(np.shape(a), np.shape(b), np.shape(c)) if shape is None \
        else shape
    a, b, c = (np.broadcast_to(np.asarray(v, F32), shape).astype(np.float64)
               for v in (a, b, c))
    p = a * b
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)
    r = s.astype(F32)
    other = np.nextafter(r, np.where(s > r, F32(np.inf), F32(-np.inf)).astype(F32))
    mid = (r.astype(np.float64) + other.astype(np.float64)) / 2
    fix = (err != 0) & (s == mid) & (s != r)
    toward_other = np.sign(err) == np.sign(other.astype(np.float64) - s)
    return np.where(fix & toward_other, other, r).astype(F32)


def pool_windows_f32(x, kernel, strides, pads):
    """Average-pool windows of float32 ``x`` (B, C, H, W): sums in onnxruntime's order
    (rows, then columns, left to right, in float32) and real-element counts.

    Vectorised over the windows: the window offsets are added in that order to every
    window at once, padding as +0.0, which leaves a float32 sum unchanged."""
    t, l, b, r = pads
    kh, kw = kernel
    sh, sw = strides
    h, w = x.shape[2:]
    oh = (h + t + b - kh) // sh + 1
    ow = (w + l + r - kw) // sw + 1
    xp = np.pad(np.asarray(x, F32), ((0, 0), (0, 0), (t, b), (l, r)))
    real = np.pad(np.ones((h, w), np.int64), ((t, b), (l, r)))
    out = np.zeros(x.shape[:2] + (oh, ow), F32)
    cnt = np.zeros((oh, ow), np.int64)
    for dh in range(kh):
        for dw in range(kw):
            rows = slice(dh, dh + (oh - 1) * sh + 1, sh)
            cols = slice(dw, dw + (ow - 1) * sw + 1, sw)
            out = (out + xp[:, :, rows, cols]).astype(F32)
            cnt += real[rows, cols]
    return out, cnt


@op("QLinearAveragePool")  # com.microsoft
def _qlinear_average_pool(node, ins):
    """onnxruntime's qlinear_pool.cc: dequantize to float32, sum each window in float32,
    divide by the count, then ``nearbyint(y / y_scale + y_zero_point)`` saturated."""
    x = ins[0]
    dt = qtype(node, x, "X")
    a = node.attrs
    if x.ndim != 5:
        raise OpError.of(node, "only 2-D pooling over (N, C, H, W) is supported")
    for k, v in (("ceil_mode", 0), ("channels_last", 0), ("auto_pad", "NOTSET")):
        if a.get(k, v) != v:
            raise OpError.of(node, f"attribute {k}={a[k]!r} is not supported")
    sx, zx, sy, zy = unary_params(node, ins, dt)
    kernel = tuple(a["kernel_shape"])
    strides = tuple(a.get("strides", (1, 1)))
    pads = tuple(a.get("pads", (0, 0, 0, 0)))
    xf = dequantize(x, lead(sx, x.ndim), lead(zx, x.ndim))
    s, cnt = pool_windows_f32(xf.reshape(-1, *xf.shape[2:]), kernel, strides, pads)
    s = s.reshape(*xf.shape[:2], *s.shape[1:])
    n = kernel[0] * kernel[1] if int(a.get("count_include_pad", 0)) else cnt
    y = (s / np.asarray(n, F32)).astype(F32)
    v = ((y / lead(sy, y.ndim)).astype(F32) + lead(zy, y.ndim).astype(F32)).astype(F32)
    lo, hi = QTYPES[dt]
    return [np.clip(np.rint(v).astype(np.int64), lo, hi).astype(dt)]


@op("QLinearGlobalAveragePool")  # com.microsoft
def _qlinear_global_average_pool(node, ins):
    """onnxruntime's ``MlasQLinearGlobalAveragePoolNchw``: the exact integer sum per
    channel, bias ``-zx * n``, requantized with ``scale = sx / (sy * float(n))``."""
    x = ins[0]
    dt = qtype(node, x, "X")
    if int(node.attrs.get("channels_last", 0)):
        raise OpError.of(node, "channels_last=1 is not supported")
    if x.ndim < 4:
        raise OpError.of(node, "needs an (N, C, spatial...) input")
    sx, zx, sy, zy = unary_params(node, ins, dt)
    axes = tuple(range(3, x.ndim))
    n = int(np.prod(x.shape[3:], dtype=np.int64))
    acc = x.astype(np.int64).sum(axis=axes, keepdims=True) - lead(zx, x.ndim) * n
    scale = (sx / (sy * F32(n)).astype(F32)).astype(F32)
    return [requantize(acc, lead(scale, x.ndim), lead(zy, x.ndim), dt)]


# --- running a graph with onnxruntime's tensor types -----------------------------------------

#: ops that only move values: an integer input keeps its dtype through them
MOVE_OPS = frozenset({"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze",
                      "Unsqueeze", "Identity", "Concat", "Slice", "Gather", "Pad"})


#: the ops of onnxruntime's com.microsoft domain this module implements
CONTRIB_OPS = frozenset({"QGemm", "QLinearAdd", "QLinearSigmoid", "QLinearAveragePool",
                         "QLinearGlobalAveragePool"})
#: every op this module registers: a graph holding one is a quantized graph
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                       *INTEGER_PRODUCT_OPS, *CONTRIB_OPS})


def is_quantized(graph) -> bool:
    """Whether ``graph`` holds a quantized op (:data:`QUANT_OPS`): it then runs with
    onnxruntime's tensor types (:func:`typed_outputs`)."""
    return any(n.op in QUANT_OPS for n in graph.nodes)


def typed_outputs(node, ins, outs):
    """``outs`` of ``node`` with onnxruntime's tensor types: an integer input passed
    through a data-movement op (:data:`MOVE_OPS`) keeps its dtype, every other floating
    output is rounded to float32 (see :func:`forward_float32`)."""
    src = ins[0].dtype if ins and ins[0] is not None else None
    typed = []
    for v in outs:
        v = np.asarray(v)
        if v.dtype.kind == "f":
            keep = node.op in MOVE_OPS and src is not None and src.kind in "iu"
            v = v.astype(src) if keep else v.astype(F32)
        typed.append(v)
    return typed


def forward_float32(graph, arrays, x, keep_all=False):
    """Forward pass of a quantized graph with onnxruntime's tensor types.

    Like :func:`.graph_ops.forward`, but the float operators between quantized ones (the
    "float glue" of dynamically quantized models: Cast, Mul, Add, Relu ...) are rounded to
    float32 after each node, as onnxruntime computes them (each is a single correctly
    rounded float32 operation, which float64 followed by one rounding reproduces), and an
    integer tensor passed through a data-movement op (:data:`MOVE_OPS`) keeps its dtype.
    ``x`` ``(S, *graph.input_shape)``; returns the output, or every tensor by name."""
    env = {graph.input: np.asarray(x, dtype=F32)}
    consts = {}
    for node in graph.nodes:
        ins = [tensor(t, env, arrays, consts) for t in node.inputs]
        for t, v in zip(node.outputs, typed_outputs(node, ins, run_node(node, ins))):
            env[t] = v
    return env if keep_all else env[graph.output]


# --- onnxruntime's QDQ fusion ------------------------------------------------------------------

#: float op -> (fused op, positions of the inputs that must come from DequantizeLinear,
#: optional dequantized positions (an int32 bias))
QDQ_FUSIONS = {
    "Conv": ("QLinearConv", (0, 1), (2,)),
    "MatMul": ("QLinearMatMul", (0, 1), ()),
    "Gemm": ("QGemm", (0, 1), (2,)),
    "Add": ("QLinearAdd", (0, 1), ()),
    "Sigmoid": ("QLinearSigmoid", (0,), ()),
    "AveragePool": ("QLinearAveragePool", (0,), ()),
    "GlobalAveragePool": ("QLinearGlobalAveragePool", (0,), ()),
}
#: ops that onnxruntime runs on the integers directly when DequantizeLinear before and
#: QuantizeLinear after carry the same scale and zero point
QDQ_DROPS = frozenset({"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze",
                       "Unsqueeze"})


def qdq_triple(dq):
    """(integer tensor, scale, zero point) names of a DequantizeLinear node."""
    ins = list(dq.inputs) + [""] * (3 - len(dq.inputs))
    return ins[0], ins[1], ins[2]


def fused_inputs(op, trip, q):
    """Input names of fused op ``op`` from the DQ triples ``trip`` (by float-op input
    position; None if absent) and the QuantizeLinear node ``q``."""
    qi = list(q.inputs) + [""] * (3 - len(q.inputs))
    y = [qi[1], qi[2]]
    if op in ("QLinearConv", "QLinearMatMul", "QLinearAdd"):
        ins = [*trip[0], *trip[1], *y]
        if op == "QLinearConv" and trip.get(2):
            ins.append(trip[2][0])
        return ins
    if op == "QGemm":
        return [*trip[0], *trip[1], trip[2][0] if trip.get(2) else "", *y]
    return [*trip[0], *y]


def same_param(arrays, a, b):
    """Whether parameter tensors ``a`` and ``b`` are equal constants (or both absent)."""
    if a == b:
        return True
    if not a or not b or a not in arrays or b not in arrays:
        return False
    x, y = np.asarray(arrays[a]), np.asarray(arrays[b])
    return x.dtype == y.dtype and np.array_equal(x, y)


def fuse_one(node, dqs, cons, arrays, graph_output):
    """The fused node replacing ``node`` and its QuantizeLinear consumer, with that
    consumer; (None, None) when the group does not match."""
    users = cons.get(node.outputs[0], []) if node.outputs else []
    if len(users) != 1 or users[0].op != "QuantizeLinear" or node.outputs[0] == graph_output:
        return None, None
    q = users[0]
    if node.op in QDQ_DROPS:
        dq = dqs.get(node.inputs[0])
        if dq is None or len(node.outputs) != 1:
            return None, None
        t, s, z = qdq_triple(dq)
        _, qs, qz = qdq_triple(q)
        if not (same_param(arrays, s, qs) and same_param(arrays, z, qz)):
            return None, None
        return Node(node.name, node.op, [t, *node.inputs[1:]], q.outputs, node.attrs), q
    fused, need, optional = QDQ_FUSIONS.get(node.op, (None, (), ()))
    if fused is None or any(node.inputs[i] not in dqs for i in need if i < len(node.inputs)):
        return None, None
    if node.op == "Gemm" and float(node.attrs.get("beta", 1.0)) != 1.0:
        return None, None
    trip = {i: qdq_triple(dqs[node.inputs[i]]) for i in need}
    for i in optional:
        if i < len(node.inputs) and node.inputs[i]:
            if node.inputs[i] not in dqs:
                return None, None
            trip[i] = qdq_triple(dqs[node.inputs[i]])
    return Node(node.name, fused, fused_inputs(fused, trip, q), q.outputs, node.attrs), q


def fuse_qdq(graph, arrays):
    """``graph`` with each ``DequantizeLinear -> op -> QuantizeLinear`` group replaced by
    the integer op that onnxruntime's default session runs instead (QLinearConv,
    QLinearMatMul, QGemm, QLinearAdd, QLinearSigmoid, QLinearAveragePool,
    QLinearGlobalAveragePool), and ``DQ -> MaxPool/Flatten/Reshape... -> Q`` with equal
    parameters run on the integers; DequantizeLinear nodes left without readers are
    dropped. A graph without such groups is returned unchanged."""
    dqs = {n.outputs[0]: n for n in graph.nodes if n.op == "DequantizeLinear"}
    cons = graph.consumers()
    replaced, gone = {}, set()
    for node in graph.nodes:
        if node.op in ("DequantizeLinear", "QuantizeLinear"):
            continue
        new, q = fuse_one(node, dqs, cons, arrays, graph.output)
        if new is not None:
            replaced[node.name] = new
            gone.add(q.name)
    if not replaced:
        return graph
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in gone]
    read = {t for n in nodes for t in n.inputs} | {graph.output}
    nodes = [n for n in nodes if n.op != "DequantizeLinear" or n.outputs[0] in read]
    return Graph(nodes, graph.input, graph.input_shape, graph.output)
