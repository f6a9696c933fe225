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

A product node is lowered to 2-D problems ``A (m, K) @ B (K, n)`` by
:mod:`.products`; :class:`PreparedLayer` holds one problem's right operand B, quantized
once: a constant B (weights) with the weight spec (per-tensor or per-column scales), an
activation B (the keys of QK^T, the values of A.V) with the input spec and a per-tensor
scale calibrated like any activation. The bias is the accumulator register's initial
value (rounded into its format).

Non-finite activations (an overflowed accumulator upstream): NaN stays NaN and +-inf
stays +-inf in float operand formats that hold them (else the format's overflow rule);
for integer and fixed-point operand formats, +-inf saturates to the largest magnitude
(``qmax``) and NaN becomes 0. :func:`quantize_activation` returns how many values of
each kind it mapped; the simulator reports them per product node.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..numerics.config import load_format
from ..numerics.formats import FixedFormat, FloatFormat, IntFormat
from ..numerics.rounding import quantize

INPUT_SCALES = ("none", "per-tensor")
"""Scale granularities of activation operands (``quant.input.scale``)."""
WEIGHT_SCALES = ("none", "per-tensor", "per-channel")
"""Scale granularities of weight operands (``quant.weight.scale``)."""


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


def activation_scale(amax, ispec):
    """The per-tensor scale of activations of calibrated largest magnitude ``amax`` under
    the input spec ``ispec`` (None when activations are not scaled)."""
    return None if ispec.scale == "none" else _scale_from_amax(amax, ispec.fmt)


def _rne(v, fmt):
    return np.asarray(quantize(v, fmt, "rne"), dtype=np.float64)


def _weight_scale(B, wspec, n):
    if wspec.scale == "none":
        return np.float64(1.0)
    if wspec.scale == "per-tensor":
        return _scale_from_amax(np.abs(B).max() if B.size else 0.0, wspec.fmt)
    return _scale_from_amax(np.abs(B).max(axis=0) if B.size else np.zeros(n), wspec.fmt)


class PreparedLayer:
    """Constants of one 2-D problem ``A (m, K) @ B (K, n)`` of a product node, computed
    once per run (or once per slice for an activation ``B``): the quantized ``Bq``
    (K, n) (also transposed and as magnitudes), the scales, the bias in accumulator units
    and the output scale (None when nothing is scaled).

    ``name``: the node's (messages). ``B``, ``bias``: float64 reference values (bias (n,)
    or None). ``amax_x``: the calibrated largest magnitude of the activations feeding A
    (module doc; unused without an input scale). ``amax_b``: None for a constant B (the
    weight spec, scales from B itself); else B is an activation quantized with the input
    spec and a per-tensor scale from this calibrated magnitude. ``acc``: the accelerator
    (its narrow format decides whether the scaled bias is rounded to an integer).
    """

    def __init__(self, name, B, bias, acc, ispec, wspec, amax_x, amax_b=None):
        self.name = name
        B = np.asarray(B, dtype=np.float64)
        self.K, self.n = int(B.shape[0]), int(B.shape[1])
        s_x = np.float64(1.0) if ispec.scale == "none" else _scale_from_amax(amax_x, ispec.fmt)
        if amax_b is None:
            bspec, role, hw = wspec, "weight", acc.weight
            s_w = _weight_scale(B, wspec, self.n)
        else:
            bspec, role, hw = ispec, "input", acc.input
            s_w = np.float64(1.0) if ispec.scale == "none" else \
                _scale_from_amax(amax_b, ispec.fmt)
        self.s_x, self.s_w = s_x, s_w
        self.ifmt = ispec.fmt
        self.scaled_x = ispec.scale != "none"
        Bq = _rne(B, bspec.fmt) if bspec.scale == "none" else \
            quantize_scaled(_finite_for(B, bspec.fmt)[0], bspec.fmt, s_w)
        self.out_scale = None if (ispec.scale == "none" and bspec.scale == "none") \
            else s_x * s_w
        if bias is None:
            self.bias = None
        else:
            bias = np.asarray(bias, dtype=np.float64)
            self.bias = bias if self.out_scale is None else bias / self.out_scale
            if self.out_scale is not None and isinstance(acc.narrow, IntFormat):
                self.bias = np.rint(self.bias)              # round(b / (s_x * s_w))
        self.Bq = np.ascontiguousarray(Bq)
        _check_representable(self.Bq, hw, role, name, bspec.fmt)

    @functools.cached_property
    def BqT(self):
        """``Bq.T`` (n, K), C-contiguous (made on first use)."""
        return np.ascontiguousarray(self.Bq.T)

    @functools.cached_property
    def absB(self):
        """``|Bq|`` (K, n) (made on first use)."""
        return np.abs(self.Bq)

    @functools.cached_property
    def absB32(self):
        """``|Bq|`` in float32 (made on first use)."""
        return self.absB.astype(np.float32)

    def quantize_x(self, x):
        """The activations ``x`` (float64) of A on the input operand grid (in scaled
        units when the input is scaled)."""
        return quantize_activation(x, self.ifmt, self.s_x if self.scaled_x else None)[0]


def _finite_for(x, fmt):
    """``x`` with the module doc's rule for non-finite values applied when ``fmt`` is an
    integer / fixed-point format; (values, NaN count, inf count)."""
    if isinstance(fmt, FloatFormat):
        return x, 0, 0
    bad = ~np.isfinite(x)
    if not bad.any():
        return x, 0, 0
    nan = np.isnan(x)
    n_nan = int(nan.sum())
    x = np.where(nan, 0.0, x)                       # clip saturates +-inf to +-qmax
    return x, n_nan, int(bad.sum()) - n_nan


def quantize_activation(x, fmt, scale=None):
    """Activations ``x`` on the grid of ``fmt`` (divided by ``scale`` first when given);
    non-finite values follow the module doc's rule. Returns (values, NaN count, inf count):
    the NaN and inf values of ``x`` that an integer / fixed-point format mapped."""
    x, n_nan, n_inf = _finite_for(np.asarray(x, dtype=np.float64), fmt)
    if scale is None:
        if n_inf:
            x = np.clip(x, _qmin(fmt), _qmax(fmt))
        return _rne(x, fmt), n_nan, n_inf
    return quantize_scaled(x, fmt, scale), n_nan, n_inf


def _check_representable(q, fmt, role, name, qfmt):
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
            f"node {name}: the trace quantizes {role}s to {qfmt.label}, whose "
            f"values the accelerator's {role} format {fmt.label} cannot hold")
