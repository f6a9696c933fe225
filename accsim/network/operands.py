"""Operands of a matmul layer: their formats and scales, and their quantisation.

The formats: ``trace.quant``'s where it names one whose every value the accelerator's
operand format holds (an int8-quantized model on fp16 hardware), else the accelerator's
``input`` / ``weight`` operand formats (an fp16 model on fp8 or int8 hardware is
re-quantized for it); ``SimulationResult.input_format`` / ``weight_format`` say which were
used. The scale granularity comes from ``trace.quant`` (default: none for float formats,
per-tensor activations and per-channel weights for integer formats).

    Floating-point formats without a scale: activations entering each matmul layer and
    weights are rounded to the format with ``rne``.
    Integer / fixed-point formats (or ``scale: per-tensor`` / ``per-channel``): symmetric
    scales. An activation scale per layer ``s_x = amax / qmax`` (amax over the float64
    reference activations entering that layer, over all simulated samples: static
    calibration, independent of the chunking), a weight scale per tensor or per output
    channel ``s_w = amax / qmax``; ``q = round_rne(clip(v / s, -qmax, qmax))``. The
    accumulator holds the sum of ``q_x * q_w`` starting from the bias on its grid,
    ``round(b / (s_x * s_w))``; the result is rescaled by ``s_x * s_w`` after the
    accumulator (the standard integer-inference pipeline). For a float format with a
    per-tensor scale, ``qmax`` is its largest finite value.

Lowering (:class:`PreparedLayer` holds B)
    linear: ``z = x @ W.T + b``, so A = x (N, in), B = W.T (in, out), K = in.
    conv2d: im2col, as accelerators do: A = patches (N*Ho*Wo, C*kh*kw),
    B = W.reshape(Cout, -1).T, so the accumulation length is K = C*kh*kw.
    The bias is the accumulator register's initial value (rounded into its format).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics.config import load_format
from ..numerics.formats import FixedFormat, FloatFormat, IntFormat
from ..numerics.rounding import quantize
from .trace import INPUT_SCALES, WEIGHT_SCALES


def _qmax(fmt):
    """Largest magnitude a symmetric scale maps to."""
    return float(fmt.max_finite)


def _qmin(fmt):
    if isinstance(fmt, FloatFormat):
        return -float(fmt.max_finite)
    return max(float(fmt.min_value), -_qmax(fmt))     # symmetric: -127 for int8, 0 if unsigned


def holds(big, small):
    """Is every finite value of format ``small`` a value of format ``big``?"""
    if big == small:
        return True
    if isinstance(big, FloatFormat):
        if isinstance(small, FloatFormat):
            return (big.man_bits >= small.man_bits and big.emax >= small.emax
                    and big.min_positive <= small.min_positive)
        mag_bits = small.bits - (1 if small.signed else 0)
        return (mag_bits <= big.man_bits + 1 and small.max_finite <= big.max_finite
                and small.min_positive >= big.min_positive)
    if isinstance(small, FloatFormat):
        return False
    return (big.frac_bits >= small.frac_bits
            and big.bits - big.frac_bits - big.signed >= small.bits - small.frac_bits
            - small.signed and (big.signed or not small.signed))


@dataclass(frozen=True)
class OperandSpec:
    """How one operand (input or weight) is quantized: its format and scale granularity
    (``"none"`` | ``"per-tensor"`` | ``"per-channel"``)."""

    fmt: object
    scale: str


def operand_specs(trace, acc):
    """(input spec, weight spec) of ``trace`` on the accelerator ``acc`` (module doc)."""
    q = getattr(trace, "quant", None) or {}
    specs = []
    for role, hw, allowed in (("input", acc.input, INPUT_SCALES),
                              ("weight", acc.weight, WEIGHT_SCALES)):
        entry = q.get(role) or {}
        fmt = entry.get("format")
        if fmt is not None and not isinstance(fmt, (FloatFormat, IntFormat, FixedFormat)):
            fmt = load_format(fmt)
        if fmt is None or not holds(hw, fmt):
            fmt = hw
        scale = entry.get("scale")
        if scale is not None and scale not in allowed:
            raise ValueError(f"trace {trace.name}: quant.{role}.scale: expected one of "
                             f"{', '.join(allowed)}, got {scale!r}")
        if isinstance(fmt, FloatFormat):
            scale = scale or "none"
        elif scale in (None, "none"):
            scale = "per-tensor" if role == "input" else "per-channel"
        specs.append(OperandSpec(fmt, scale))
    return specs[0], specs[1]


def quantize_scaled(v, fmt, s):
    """round_rne(clip(v / s)) on the format's grid (s scalar or broadcastable)."""
    x = v / s
    np.clip(x, _qmin(fmt), _qmax(fmt), out=x)
    return np.asarray(quantize(x, fmt, "rne"), dtype=np.float64)


def _scale_from_amax(amax, fmt):
    amax = np.asarray(amax, dtype=np.float64)
    s = amax / _qmax(fmt)
    return np.where((s > 0) & np.isfinite(s), s, 1.0)


def _rne(v, fmt):
    return np.asarray(quantize(v, fmt, "rne"), dtype=np.float64)


def _weights_ref(layer, trace):
    """(W as B (K, n), bias or None, K)."""
    W = np.asarray(trace.arrays[layer.attrs["weight"]], dtype=np.float64)
    bkey = layer.attrs.get("bias")
    b = None if bkey is None else np.asarray(trace.arrays[bkey], dtype=np.float64)
    if layer.kind == "linear":
        return W.T, b, W.shape[1]
    Cout = W.shape[0]
    return W.reshape(Cout, -1).T, b, int(np.prod(W.shape[1:]))


def _weight_scale(B, wspec, n):
    if wspec.scale == "none":
        return np.float64(1.0)
    if wspec.scale == "per-tensor":
        return _scale_from_amax(np.abs(B).max() if B.size else 0.0, wspec.fmt)
    return _scale_from_amax(np.abs(B).max(axis=0) if B.size else np.zeros(n), wspec.fmt)


class PreparedLayer:
    """Per-layer constants of a matmul layer, computed once per run: the quantized
    weights ``Bq`` (K, n) (also transposed and as magnitudes), the scales, the bias in
    accumulator units and the output scale (None when nothing is scaled).

    ``amax_x``: the calibrated largest input magnitude (module doc; unused without an
    input scale). ``acc``: the accelerator (its narrow format decides whether the scaled
    bias is rounded to an integer; its weight format must hold ``Bq``).
    """

    def __init__(self, layer, trace, acc, ispec, wspec, amax_x):
        self.layer = layer
        B, b, K = _weights_ref(layer, trace)
        self.K = K
        self.n = B.shape[1]
        if layer.kind == "conv2d":
            W = trace.arrays[layer.attrs["weight"]]
            self.kh, self.kw = int(W.shape[2]), int(W.shape[3])
        s_w = _weight_scale(B, wspec, self.n)
        s_x = np.float64(1.0) if ispec.scale == "none" else _scale_from_amax(amax_x, ispec.fmt)
        self.s_x, self.s_w = s_x, s_w
        self.ifmt = ispec.fmt
        self.scaled_x = ispec.scale != "none"
        self.Bq = _rne(B, wspec.fmt) if wspec.scale == "none" else \
            quantize_scaled(B, wspec.fmt, s_w)
        self.out_scale = None if (ispec.scale == "none" and wspec.scale == "none") \
            else s_x * s_w
        if b is None:
            self.bias = None
        elif self.out_scale is None:
            self.bias = b
        else:
            self.bias = b / self.out_scale
            if isinstance(acc.narrow, IntFormat):       # round(b / (s_x * s_w))
                self.bias = np.rint(self.bias)
        self.Bq = np.ascontiguousarray(self.Bq)
        self.BqT = np.ascontiguousarray(self.Bq.T)
        self.absB = np.abs(self.Bq)
        self.absB32 = self.absB.astype(np.float32)
        _check_representable(self.Bq, acc.weight, "weight", layer, wspec.fmt)

    def quantize_x(self, x):
        """The layer's input activations ``x`` (float64) on the input operand grid (in
        scaled units when the input is scaled)."""
        if self.scaled_x:
            return quantize_scaled(x, self.ifmt, self.s_x)
        return _rne(x, self.ifmt)


def _check_representable(q, fmt, role, layer, qfmt):
    """Values quantized to the trace's format must be values of the accelerator's."""
    if qfmt == fmt:
        return
    fin = q[np.isfinite(q)]
    try:
        back = _rne(fin, fmt)
    except ValueError:
        back = None
    if back is None or not np.array_equal(back, fin):
        raise ValueError(
            f"layer {layer.name}: the trace quantizes {role}s to {qfmt.label}, whose "
            f"values the accelerator's {role} format {fmt.label} cannot hold")
