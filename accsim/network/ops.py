"""Float64 reference operators of a trace, in plain numpy.

Layout conventions (shared by the simulator, the ONNX importer and the bundled traces):

- activations are NCHW (``(N, C, H, W)``) for convolutional layers, ``(N, features)`` otherwise;
- ``padding`` is ``(top, left, bottom, right)``; ``stride`` and ``kernel`` are ``(h, w)``;
- a linear layer computes ``y = x @ W.T + b`` with ``W`` of shape ``(out, in)``;
- a conv2d layer is lowered to one matrix product the way accelerators do it::

      patches, Ho, Wo = im2col(x, kh, kw, stride, padding)   # (N*Ho*Wo, C*kh*kw)
      y = patches @ W.reshape(Cout, -1).T + b                 # K = C*kh*kw per output
      out = col2out(y, N, Ho, Wo)                             # (N, Cout, Ho, Wo)

  The patch columns are ordered (c, i, j), the order of ``W.reshape(Cout, C*kh*kw)``.

The graph operators (:mod:`.graph_ops`) and the product lowering (:mod:`.products`) build
on these; :func:`accsim.network.products.forward64` runs a whole trace in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..precision.analysis import ACTIVATION_KINDS


def _pair(v, name):
    if np.ndim(v) == 0:
        return (int(v), int(v))
    v = tuple(int(t) for t in v)
    if len(v) != 2:
        raise ValueError(f"{name}: expected 2 values (h, w), got {v}")
    return v


def _quad(v):
    if np.ndim(v) == 0:
        return (int(v),) * 4
    v = tuple(int(t) for t in v)
    if len(v) == 2:  # (h, w) symmetric
        return (v[0], v[1], v[0], v[1])
    if len(v) != 4:
        raise ValueError(f"padding: expected (top, left, bottom, right), got {v}")
    return v


def out_size(size, k, stride, pad_lo, pad_hi):
    """Output length of a window of ``k`` sliding with ``stride`` over a padded axis."""
    return (size + pad_lo + pad_hi - k) // stride + 1


def _windows(x, kh, kw, stride, padding, fill, dilation=(1, 1)):
    """(N, C, Ho, Wo, kh, kw) view of the padded input's windows (taps ``dilation``
    apart)."""
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    t, l, b, r = _quad(padding)
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW array, got shape {x.shape}")
    if t or l or b or r:
        x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if x.shape[2] < eh or x.shape[3] < ew:
        raise ValueError(f"window {eh}x{ew} larger than the padded input {x.shape[2:]}")
    w = sliding_window_view(x, (eh, ew), axis=(2, 3))
    if dh > 1 or dw > 1:
        return w[:, :, ::sh, ::sw, ::dh, ::dw]
    return w[:, :, ::sh, ::sw]


def im2col(x, kh, kw, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1)):
    """Patches of an NCHW array as rows: ``(N*Ho*Wo, C*kh*kw)``, with ``Ho`` and ``Wo``.

    Row ``(n, ho, wo)`` (C order) holds the window under output pixel ``(ho, wo)`` of image
    ``n``; columns are ordered ``(c, i, j)`` like ``W.reshape(Cout, C*kh*kw)``. Padding is
    zeros; ``dilation`` spaces the kernel's taps (ONNX ``dilations``).
    """
    x = np.asarray(x, dtype=np.float64)
    w = _windows(x, int(kh), int(kw), stride, padding, 0.0, dilation)
    n, _, ho, wo = w.shape[:4]
    patches = np.ascontiguousarray(w.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, -1)
    return patches, ho, wo


def col2out(y, N, Ho, Wo):
    """``(N*Ho*Wo, Cout)`` rows of a lowered convolution back to ``(N, Cout, Ho, Wo)``."""
    y = np.asarray(y)
    return np.ascontiguousarray(y.reshape(N, Ho, Wo, -1).transpose(0, 3, 1, 2))


def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0)):
    """Float64 convolution (cross-correlation, groups = dilation = 1) through im2col."""
    weight = np.asarray(weight, dtype=np.float64)
    cout, _, kh, kw = weight.shape
    patches, ho, wo = im2col(x, kh, kw, stride, padding)
    y = patches @ weight.reshape(cout, -1).T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return col2out(y, x.shape[0], ho, wo)


def linear(x, weight, bias=None):
    """``x @ W.T + b`` in float64, ``W`` of shape ``(out, in)``."""
    y = np.asarray(x, dtype=np.float64) @ np.asarray(weight, dtype=np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y


def maxpool(x, kernel, stride=None, padding=(0, 0, 0, 0)):
    """Max pooling of an NCHW array; padded positions never win (they hold -inf).

    ``stride`` defaults to ``kernel``.
    """
    kh, kw = _pair(kernel, "kernel")
    stride = (kh, kw) if stride is None else stride
    w = _windows(np.asarray(x, dtype=np.float64), kh, kw, stride, padding, -np.inf)
    return w.max(axis=(-2, -1))


def avgpool(x, kernel, stride=None, padding=(0, 0, 0, 0), count_include_pad=False):
    """Average pooling of an NCHW array.

    ``count_include_pad=False`` (ONNX's default, ``count_include_pad=0``) divides each window's
    sum by the number of real (unpadded) elements in it; ``True`` (PyTorch's default) divides
    by ``kh*kw``. ``stride`` defaults to ``kernel``.
    """
    kh, kw = _pair(kernel, "kernel")
    stride = (kh, kw) if stride is None else stride
    x = np.asarray(x, dtype=np.float64)
    s = _windows(x, kh, kw, stride, padding, 0.0).sum(axis=(-2, -1))
    if count_include_pad or not any(_quad(padding)):
        return s / (kh * kw)
    ones = np.ones((1, 1) + x.shape[2:])
    cnt = _windows(ones, kh, kw, stride, padding, 0.0).sum(axis=(-2, -1))
    return s / cnt


def globalavgpool(x):
    """Mean over the spatial axes, keeping them: ``(N, C, H, W)`` → ``(N, C, 1, 1)``."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


_erf = np.frompyfunc(math.erf, 1, 1)


def erf(z):
    """Elementwise error function in float64 (``math.erf``, correctly rounded to ~1 ulp)."""
    z = np.asarray(z, dtype=np.float64)
    return np.asarray(_erf(z), dtype=np.float64).reshape(z.shape)


def activation(kind, z):
    """Elementwise activation ``kind`` (softmax: over the last axis) in float64.

    gelu is the exact form ``0.5 z (1 + erf(z / sqrt 2))``.
    """
    z = np.asarray(z, dtype=np.float64)
    if kind == "relu":
        return np.maximum(z, 0.0)
    if kind == "tanh":
        return np.tanh(z)
    if kind == "sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-z))
    if kind == "gelu":
        return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))
    if kind == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if kind == "identity":
        return z.copy()
    raise ValueError(f"unknown activation {kind!r} (expected one of {', '.join(ACTIVATION_KINDS)})")


def apply_layer(layer, ins, arrays):
    """Float64 output of one trace layer given its input tensors (a list) and the arrays."""
    k = layer.kind
    a = layer.attrs
    x = ins[0]
    if k == "linear":
        b = a.get("bias")
        return linear(x, arrays[a["weight"]], None if b is None else arrays[b])
    if k == "conv2d":
        b = a.get("bias")
        return conv2d(x, arrays[a["weight"]], None if b is None else arrays[b],
                      a.get("stride", (1, 1)), a.get("padding", (0, 0, 0, 0)))
    if k == "flatten":
        return x.reshape(x.shape[0], -1)
    if k == "reshape":
        return x.reshape((x.shape[0],) + tuple(int(s) for s in a["shape"]))
    if k == "maxpool":
        return maxpool(x, a["kernel"], a.get("stride"), a.get("padding", (0, 0, 0, 0)))
    if k == "avgpool":
        return avgpool(x, a["kernel"], a.get("stride"), a.get("padding", (0, 0, 0, 0)),
                       bool(a.get("count_include_pad", False)))
    if k == "globalavgpool":
        return globalavgpool(x)
    if k == "add":
        return ins[0] + ins[1]
    if k in ACTIVATION_KINDS:
        return activation(k, x)
    raise ValueError(f"layer {layer.name!r}: unknown kind {k!r}")
