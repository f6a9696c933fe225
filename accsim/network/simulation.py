"""Run a :class:`~accsim.trace.Trace` end to end on a simulated accelerator.

:func:`simulate` runs the network layer by layer. Every ``linear`` and ``conv2d`` layer's
matrix product goes through :func:`accsim.engine.matmul` on the accelerator's *narrow*
datapath (its accumulator, rounding, product mode and structure); every other layer
(pooling, activations, residual adds, reshapes) runs in float64 with :mod:`accsim.ops`.
The float64 reference (:func:`accsim.ops.forward64`) runs alongside on the same samples.

Lowering
    linear: ``z = x @ W.T + b``, so A = x (N, in), B = W.T (in, out), K = in.
    conv2d: im2col, as accelerators do: A = patches (N*Ho*Wo, C*kh*kw),
    B = W.reshape(Cout, -1).T, so the accumulation length is K = C*kh*kw.
    The bias is the accumulator register's initial value (rounded into its format).

Operand quantisation. The formats: ``trace.quant``'s where it names one whose every value
the accelerator's operand format holds (an int8-quantized model on fp16 hardware), else the
accelerator's ``input`` / ``weight`` operand formats (an fp16 model on fp8 or int8
hardware is re-quantized for it); ``SimulationResult.input_format`` / ``weight_format``
say which were used. The scale granularity comes from ``trace.quant`` (default: none for
float formats, per-tensor activations and per-channel weights for integer formats).
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

Error statistics (per matmul layer, over every output component z_i of every simulated
sample, against the float64 reference's z_i^ref of the same layer)
    ``rel_i = |z_i - z_i^ref| / |z_i^ref|``; where ``z_i^ref == 0`` it is 0 if ``z_i`` is
    0 too and +inf otherwise, and a non-finite ``z_i`` (an overflow to inf or NaN) counts
    as +inf. ``mean`` and ``max`` are exact; ``p50``, ``p90`` and ``p99`` come from a
    log2 histogram with 64 bins per octave (each within 1.1 % of the exact percentile;
    exact zeros are exact). Infinite statistics appear as ``None`` in :meth:`to_dict`,
    with ``n_infinite`` saying how many components were infinite.

Accuracy is the fraction of samples whose argmax of the network output equals the label;
``agreement`` the fraction whose argmax equals the float64 reference's argmax.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..hardware.accelerator import load_accelerator
from ..numerics.formats import FixedFormat, FloatFormat, IntFormat

MATMUL_KINDS = ("linear", "conv2d")
DEFAULT_BATCH = 256

_BINS_PER_OCTAVE = 64
_LOG2_LO, _LOG2_HI = -128, 64           # histogram range of log2(rel); beyond is clamped
_NBINS = (_LOG2_HI - _LOG2_LO) * _BINS_PER_OCTAVE


# ---------------------------------------------------------------------------------------
# error statistics
# ---------------------------------------------------------------------------------------
def relative_error(z, ref):
    """Componentwise ``|z - ref| / |ref|`` with the conventions of the module doc."""
    z = np.asarray(z, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    with np.errstate(all="ignore"):
        rel = np.abs(z - ref) / np.abs(ref)
    zero = ref == 0
    if zero.any():
        rel = np.where(zero, np.where(z == 0, 0.0, np.inf), rel)
    rel = np.where(np.isfinite(z), rel, np.inf)
    return np.where(np.isnan(rel), np.inf, rel)


class _ErrorStats:
    """Running mean/max and a log2 histogram of relative errors."""

    def __init__(self):
        self.n = 0
        self.n_zero = 0
        self.n_inf = 0
        self.total = 0.0
        self.max = 0.0
        self.hist = np.zeros(_NBINS, dtype=np.int64)

    def add(self, rel):
        rel = np.asarray(rel, dtype=np.float64).reshape(-1)
        self.n += rel.size
        inf = ~np.isfinite(rel)
        n_inf = int(inf.sum())
        self.n_inf += n_inf
        fin = rel[~inf] if n_inf else rel
        if fin.size:
            self.total += float(fin.sum())
            self.max = max(self.max, float(fin.max()))
        pos = fin[fin > 0]
        self.n_zero += fin.size - pos.size
        if pos.size:
            b = np.floor((np.log2(pos) - _LOG2_LO) * _BINS_PER_OCTAVE).astype(np.int64)
            np.clip(b, 0, _NBINS - 1, out=b)
            self.hist += np.bincount(b, minlength=_NBINS)

    def percentile(self, q):
        """Approximate q-th percentile (nearest rank): the geometric centre of the bin."""
        if self.n == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.n))          # 1-based nearest rank
        if rank <= self.n_zero:
            return 0.0
        rank -= self.n_zero
        finite_pos = self.n - self.n_zero - self.n_inf
        if rank > finite_pos:
            return math.inf
        cum = np.cumsum(self.hist)
        i = int(np.searchsorted(cum, rank))
        return min(2.0 ** (_LOG2_LO + (i + 0.5) / _BINS_PER_OCTAVE), self.max)

    def summary(self):
        if self.n_inf:
            mean = mx = math.inf
        else:
            mean = self.total / self.n if self.n else 0.0
            mx = self.max
        return {"mean": mean, "max": mx, "p50": self.percentile(50),
                "p90": self.percentile(90), "p99": self.percentile(99),
                "n_infinite": self.n_inf}


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
def _json_float(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class LayerResult:
    """What one matmul layer did: accumulation length, errors, events, time."""

    name: str
    kind: str
    K: int
    outputs: int = 0
    rows: int = 0        # m: rows of the lowered matrix products (samples x positions)
    cols: int = 0        # n: output features / channels
    error: dict = field(default_factory=dict)      # mean, max, p50, p90, p99, n_infinite
    events: dict = field(default_factory=lambda: {"overflows": 0, "saturations": 0,
                                                  "inexact": 0})
    seconds: float = 0.0
    recomputed: int = 0          # components re-issued on the wide accumulator
    bound_violations: int = 0    # components whose |z_hat - z| exceeds the bound
    bound_not_applicable: int = 0   # components with an infinite bound (overflow)
    bound_spearman: float | None = None   # rank correlation of bound and observed error
    level_labels: list = field(default_factory=list)   # rung formats, cheapest first
    level_counts: list = field(default_factory=list)   # components per rung
    neuron_levels: list | None = None     # static: the rung of every neuron (column)
    _bound_sample: list = field(default_factory=list, repr=False)

    @property
    def recomputed_fraction(self) -> float:
        return self.recomputed / self.outputs if self.outputs else 0.0

    @property
    def levels(self) -> list:
        """``[{format, count, fraction}]`` per rung (rung 0: the narrow datapath)."""
        tot = sum(self.level_counts)
        return [{"format": f, "count": int(c), "fraction": c / tot if tot else 0.0}
                for f, c in zip(self.level_labels, self.level_counts)]

    def to_dict(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "K": self.K, "outputs": self.outputs,
             "m": self.rows, "n": self.cols}
        d["recomputed"] = self.recomputed
        d["recomputed_fraction"] = self.recomputed_fraction
        d["bound_violations"] = self.bound_violations
        d["bound_not_applicable"] = self.bound_not_applicable
        d["bound_spearman"] = _json_float(self.bound_spearman)
        d["levels"] = self.levels
        if self.neuron_levels is not None:
            d["neuron_levels"] = list(self.neuron_levels)
        for k in ("mean", "max", "p50", "p90", "p99"):
            d[f"rel_error_{k}"] = _json_float(self.error.get(k))
        d["n_infinite"] = int(self.error.get("n_infinite", 0))
        d["events"] = dict(self.events)
        d["seconds"] = self.seconds
        return d


@dataclass
class SimulationResult:
    """Outcome of :func:`simulate` (see the module doc for the definitions)."""

    trace: str
    accelerator: str
    narrow: str
    wide: str
    input_format: str
    weight_format: str
    n_samples: int
    accuracy: float | None
    reference_accuracy: float | None
    recorded_reference_accuracy: float | None
    agreement: float
    layers: list
    seconds: float
    reference_seconds: float
    outputs: np.ndarray = field(repr=False, default=None)            # simulated network output
    reference_outputs: np.ndarray = field(repr=False, default=None)  # float64 reference
    policy: str = "uniform-narrow"
    estimator: str = "exact"
    tau: float | None = None
    fraction: float | None = None
    ladder: list = field(default_factory=list)       # rung labels "format:rounding"
    ladder_formats: list = field(default_factory=list, repr=False)   # rung format values
    calibration: int | None = None     # static: calibration samples (not evaluated)
    quantile: float | None = None      # static: per-neuron score quantile

    @property
    def recomputed_fraction(self) -> float:
        """Re-issued components over all matmul output components (every component not
        on rung 0, the narrow datapath)."""
        tot = sum(lr.outputs for lr in self.layers)
        return sum(lr.recomputed for lr in self.layers) / tot if tot else 0.0

    @property
    def levels(self) -> list:
        """``[{format, count, fraction}]`` per rung over every matmul layer."""
        if not self.layers:
            return []
        labels = self.layers[0].level_labels
        counts = [sum(lr.level_counts[r] for lr in self.layers) for r in range(len(labels))]
        tot = sum(counts)
        return [{"format": f, "count": int(c), "fraction": c / tot if tot else 0.0}
                for f, c in zip(labels, counts)]

    @property
    def bound_violations(self) -> int:
        return sum(lr.bound_violations for lr in self.layers)

    @property
    def events(self) -> dict:
        """Event totals over every matmul layer."""
        tot = {"overflows": 0, "saturations": 0, "inexact": 0}
        for lr in self.layers:
            for k in tot:
                tot[k] += lr.events.get(k, 0)
        return tot

    def to_dict(self) -> dict:
        """A JSON-able dict (non-finite error statistics become ``None``)."""
        return {
            "trace": self.trace, "accelerator": self.accelerator,
            "narrow": self.narrow, "wide": self.wide, "input_format": self.input_format,
            "weight_format": self.weight_format, "n_samples": self.n_samples,
            "accuracy": self.accuracy, "reference_accuracy": self.reference_accuracy,
            "recorded_reference_accuracy": self.recorded_reference_accuracy,
            "agreement": self.agreement, "events": self.events,
            "policy": self.policy, "estimator": self.estimator, "tau": _json_float(self.tau),
            "fraction": self.fraction, "recomputed_fraction": self.recomputed_fraction,
            "ladder": list(self.ladder), "levels": self.levels,
            "calibration": self.calibration, "quantile": self.quantile,
            "bound_violations": self.bound_violations,
            "layers": [lr.to_dict() for lr in self.layers],
            "seconds": self.seconds, "reference_seconds": self.reference_seconds,
        }


# ---------------------------------------------------------------------------------------
# quantisation
# ---------------------------------------------------------------------------------------
def _is_float(fmt):
    return isinstance(fmt, FloatFormat)


def _qmax(fmt):
    """Largest magnitude a symmetric scale maps to."""
    return float(fmt.max_finite)


def _qmin(fmt):
    if _is_float(fmt):
        return -float(fmt.max_finite)
    return max(float(fmt.min_value), -_qmax(fmt))     # symmetric: -127 for int8, 0 if unsigned


def _holds(big, small):
    """Is every finite value of format ``small`` a value of format ``big``?"""
    if big == small:
        return True
    if _is_float(big):
        if _is_float(small):
            return (big.man_bits >= small.man_bits and big.emax >= small.emax
                    and big.min_positive <= small.min_positive)
        mag_bits = small.bits - (1 if small.signed else 0)
        return (mag_bits <= big.man_bits + 1 and small.max_finite <= big.max_finite
                and small.min_positive >= big.min_positive)
    if _is_float(small):
        return False
    return (big.frac_bits >= small.frac_bits
            and big.bits - big.frac_bits - big.signed >= small.bits - small.frac_bits
            - small.signed and (big.signed or not small.signed))


@dataclass(frozen=True)
class _OperandSpec:
    fmt: object
    scale: str          # "none" | "per-tensor" | "per-channel"


def _operand_specs(trace, acc):
    """(input spec, weight spec): the trace's quant format where the accelerator's operand
    format holds all its values (an int8-quantized model on fp16 hardware), else the
    accelerator's operand format (an fp16 model on fp8 or int8 hardware); the trace's
    scale granularity, by default none for float and per-tensor activations /
    per-channel weights for integer formats."""
    from ..numerics.config import load_format
    q = getattr(trace, "quant", None) or {}
    specs = []
    for role, hw in (("input", acc.input), ("weight", acc.weight)):
        entry = q.get(role) or {}
        fmt = entry.get("format")
        if fmt is not None and not isinstance(fmt, (FloatFormat, IntFormat, FixedFormat)):
            fmt = load_format(fmt)
        if fmt is None or not _holds(hw, fmt):
            fmt = hw
        scale = entry.get("scale")
        allowed = ("none", "per-tensor") if role == "input" else \
            ("none", "per-tensor", "per-channel")
        if scale is not None and scale not in allowed:
            raise ValueError(f"trace {trace.name}: quant.{role}.scale: expected one of "
                             f"{', '.join(allowed)}, got {scale!r}")
        if _is_float(fmt):
            scale = scale or "none"
        elif scale in (None, "none"):
            scale = "per-tensor" if role == "input" else "per-channel"
        specs.append(_OperandSpec(fmt, scale))
    return specs[0], specs[1]


def _quantize_scaled(v, fmt, s):
    """round_rne(clip(v / s)) on the format's grid (s scalar or broadcastable)."""
    from ..numerics.rounding import quantize
    x = v / s
    np.clip(x, _qmin(fmt), _qmax(fmt), out=x)
    return np.asarray(quantize(x, fmt, "rne"), dtype=np.float64)


def _scale_from_amax(amax, fmt):
    amax = np.asarray(amax, dtype=np.float64)
    s = amax / _qmax(fmt)
    return np.where((s > 0) & np.isfinite(s), s, 1.0)


# ---------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------
def resolve_accelerator(accelerator, narrow, wide):
    """The accelerator (name, YAML path or value) with its ``narrow`` and ``wide`` register
    formats replaced where given (format names, paths or values; None keeps them)."""
    from ..numerics.config import load_format
    acc = load_accelerator(accelerator)
    changes = {}
    for key, v in (("wide", wide), ("narrow", narrow)):
        if v is None:
            continue
        try:
            changes[key] = load_format(v)
        except ValueError as exc:
            raise ValueError(f"{key}: {v!r}: {str(exc).splitlines()[0]}") from None
    if changes:
        acc = dataclasses.replace(acc, **changes)
    return acc


def _matmul_operands_ref(layer, trace):
    """(W as B (K, n), bias or None, K)."""
    W = np.asarray(trace.arrays[layer.attrs["weight"]], dtype=np.float64)
    bkey = layer.attrs.get("bias")
    b = None if bkey is None else np.asarray(trace.arrays[bkey], dtype=np.float64)
    if layer.kind == "linear":
        return W.T, b, W.shape[1]
    Cout = W.shape[0]
    return W.reshape(Cout, -1).T, b, int(np.prod(W.shape[1:]))


def _batches(n, size):
    for s in range(0, n, size):
        yield s, min(n, s + size)


def _seed_for(seed, layer_index, chunk_index):
    ss = np.random.SeedSequence([int(seed), layer_index, chunk_index])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


class _Prepared:
    """Per-layer constants: quantized weights and scales, computed once."""

    def __init__(self, layer, trace, acc, ispec, wspec, amax_x):
        self.layer = layer
        B, b, K = _matmul_operands_ref(layer, trace)
        self.K = K
        self.n = B.shape[1]
        if layer.kind == "conv2d":
            W = trace.arrays[layer.attrs["weight"]]
            self.kh, self.kw = int(W.shape[2]), int(W.shape[3])
        if wspec.scale == "none":
            s_w = np.float64(1.0)
        elif wspec.scale == "per-tensor":
            s_w = _scale_from_amax(np.abs(B).max() if B.size else 0.0, wspec.fmt)
        else:
            s_w = _scale_from_amax(np.abs(B).max(axis=0) if B.size else np.zeros(self.n),
                                   wspec.fmt)
        if ispec.scale == "none":
            s_x = np.float64(1.0)
        else:
            s_x = _scale_from_amax(amax_x, ispec.fmt)
        self.s_x, self.s_w = s_x, s_w
        self.ifmt = ispec.fmt
        self.scaled_x = ispec.scale != "none"
        if wspec.scale == "none":
            from ..numerics.rounding import quantize
            self.Bq = np.asarray(quantize(B, wspec.fmt, "rne"), dtype=np.float64)
        else:
            self.Bq = _quantize_scaled(B, wspec.fmt, s_w)
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
        if self.scaled_x:
            return _quantize_scaled(x, self.ifmt, self.s_x)
        from ..numerics.rounding import quantize
        return np.asarray(quantize(x, self.ifmt, "rne"), dtype=np.float64)


def _check_representable(q, fmt, role, layer, qfmt):
    """Values quantized to the trace's format must be values of the accelerator's."""
    if qfmt == fmt:
        return
    from ..numerics.rounding import quantize
    fin = q[np.isfinite(q)]
    try:
        back = np.asarray(quantize(fin, fmt, "rne"), dtype=np.float64)
    except ValueError:
        back = None
    if back is None or not np.array_equal(back, fin):
        raise ValueError(
            f"layer {layer.name}: the trace quantizes {role}s to {qfmt.label}, whose "
            f"values the accelerator's {role} format {fmt.label} cannot hold")


_AT = [None, None]      # (weak reference to A, A.T contiguous): the last transpose made


def _transposed(A):
    """``A.T`` as a contiguous array; the last one is kept (while A lives), so the
    narrow pass and the re-issues of a batch transpose its activations once."""
    ref, At = _AT
    if ref is not None and ref() is A:
        return At
    At = np.ascontiguousarray(A.T)
    _AT[:] = [weakref.ref(A), At]
    return At


def _layer_matmul(matmul, A, p, kw, seed):
    """The engine's product of one batch; (result, values (m, n)).

    With few output columns (a classifier head) the engine runs on the transposed
    problem ``(B.T @ A.T).T``: every output is the same sum of the same exact products in
    the same order, so the values and event totals are identical, but the engine's
    vectorised loop runs over the long side.
    """
    m = A.shape[0]
    if p.n < 32 and m > 4 * p.n:
        bias = None if p.bias is None else p.bias[:, None]
        res = matmul(p.BqT, _transposed(A), **kw, bias=bias, seed=seed)
        return res, res.values.T
    bias = None if p.bias is None else p.bias[None, :]
    res = matmul(A, p.Bq, **kw, bias=bias, seed=seed)
    return res, res.values


def _next_activation(layers, input_names, i, activations):
    """Kind of the activation that alone consumes matmul layer i's output (else identity)."""
    name = layers[i].name
    for j in range(i + 1, len(layers)):
        if name in input_names[j]:
            if layers[j].kind in activations and list(input_names[j]) == [name]:
                return layers[j].kind
            return "identity"
    return "identity"


def _activation_error(z, z64, out_scale, act):
    """The oracle's "actual error" of each component: ``|φ(ẑ) - φ(z)|`` in real units for
    an elementwise activation φ consuming the layer, ``|ẑ - z|`` otherwise."""
    from . import ops
    zs, rs = (z, z64) if out_scale is None else (z * out_scale, z64 * out_scale)
    with np.errstate(all="ignore"):
        if act in ("relu", "tanh", "sigmoid", "gelu"):
            err = np.abs(ops.activation(act, zs) - ops.activation(act, rs))
            err = err + 1e-300 * np.abs(zs - rs)     # ties: larger error in z first
        else:
            err = np.abs(zs - rs)
    return np.where(np.isnan(err), np.inf, err)


_SPEARMAN_SAMPLE = 2048      # components per batch kept for the rank correlation


# Per-MAC time of the engine's selected-output path relative to its full (dense) path,
# measured on 300 x 784 x 512 products (about 2-3 on float accumulators): a re-issue
# whose selected components cover a block of rows x cols at most this many times their
# number runs the dense path on that block instead (same values: every output is the
# same sequential sum either way; not with stochastic rounding, whose random stream
# depends on the positions computed).
_SELECT_COST = 2.5


def _dense(matmul, A, B, bias, kw, seed):
    """Values and flags (m, n) of the engine's full path (transposed for few columns, as
    :func:`_layer_matmul`)."""
    m, n = A.shape[0], B.shape[1]
    if n < 32 and m > 4 * n:
        rw = matmul(np.ascontiguousarray(B.T), _transposed(A), **kw,
                    bias=None if bias is None else bias[:, None], seed=seed)
        fl = rw.events.flags
        return rw.values.T, (fl.T if fl.shape != (m, n) else fl)
    rw = matmul(A, B, **kw, bias=None if bias is None else bias[None, :], seed=seed)
    return rw.values, rw.events.flags


def _reissue(matmul, A, p, kw, mask, count, seed):
    """Values (m, n) of rung ``kw`` at the ``mask``-ed components (everything when
    ``mask`` is None; other entries unspecified) and the engine flags (m, n)."""
    b = p.bias
    if mask is None:
        return _dense(matmul, A, p.Bq, b, kw, seed)
    m, n = mask.shape
    if kw.get("rounding") != "sr":
        ri = np.flatnonzero(mask.any(axis=1))
        ci = np.flatnonzero(mask.any(axis=0))
        if ri.size * ci.size <= _SELECT_COST * count:
            Asub = A if ri.size == m else A[ri]
            Bsub = p.Bq if ci.size == n else np.ascontiguousarray(p.Bq[:, ci])
            v, f = _dense(matmul, Asub, Bsub, None if b is None else b[ci], kw, seed)
            if ri.size == m and ci.size == n:
                return v, f
            vals = np.full((m, n), np.nan)
            flags = np.zeros((m, n), dtype=f.dtype)
            vals[np.ix_(ri, ci)] = v
            flags[np.ix_(ri, ci)] = f
            return vals, flags
        # only the rows with selected outputs reach the engine; with few columns the
        # transposed problem (as the narrow pass): a few long rows of gathered columns
        # instead of scattered (row, col) pairs
        As, ms = (A, mask) if ri.size == m else (A[ri], mask[ri])
        if n < 32 and As.shape[0] > 4 * n:
            rw = matmul(p.BqT, _transposed(As), **kw,
                        bias=None if b is None else b[:, None], select=ms.T, seed=seed)
            v, f = rw.values.T, rw.events.flags.T
        else:
            rw = matmul(As, p.Bq, **kw, bias=None if b is None else b[None, :], select=ms,
                        seed=seed)
            v, f = rw.values, rw.events.flags
        if ri.size == m:
            return v, f
        vals = np.full((m, n), np.nan)
        flags = np.zeros((m, n), dtype=f.dtype)
        vals[ri] = v
        flags[ri] = f
        return vals, flags
    rw = matmul(A, p.Bq, **kw, bias=None if b is None else b[None, :], select=mask,
                seed=seed)
    return rw.values, rw.events.flags


def _schedule_and_check(matmul, A, p, res, z, rungs, ctx, r, rng, seed):
    """Policy selection, re-issue and the bound check of one layer batch.

    ``z``: narrow (rung-0) outputs (m, n) in accumulator units; ``rungs``: engine kwargs
    of every rung (rung 0 the narrow datapath with ``wide``; the last the wide
    accumulator). Returns the final outputs (same units) after the components assigned
    to rungs r ≥ 1 were replaced by those rungs' values (the engine's selected-output
    path; its full path when a rung takes every component).
    """
    from ..precision import analysis
    from ..precision import scheduler
    policy = ctx["policy"]
    analyze = ctx["analyze"]
    collect = ctx.get("collect")
    R = len(rungs)
    if policy == "uniform-narrow" and not analyze and collect is None:
        r.level_counts[0] += z.size
        return z
    flags = res.events.flags
    if flags.shape != z.shape:
        flags = flags.T
    b = p.bias
    kw = rungs[0]
    is_float = scheduler._is_float(kw["acc"])
    # |A||B| only where something uses it: the exact estimator, integer bounds, analysis.
    # Float accumulators' selection uses it accumulated in binary32 (the estimate's own
    # "cheap format": relative error below K * 2^-24, and half the time of float64);
    # integer bounds, the bound check and static calibration use the float64 sum.
    need_est = is_float and (
        policy in ("condition", "random", "oracle", "multi-level")
        and ctx["estimator"] == "exact"
        and not (policy in ("random", "oracle") and ctx["fraction"] is not None))
    need_P = analyze or collect is not None or not is_float
    P = np.abs(A) @ p.absB if need_P else None       # = analysis.abs_sum(A, p.Bq)
    Pest = P if not is_float else (
        (np.abs(A, dtype=np.float32) @ p.absB32).astype(np.float64) if need_est else None)
    z64 = None
    if analyze or policy == "oracle":
        z64 = A @ p.Bq
        if b is not None:
            z64 = z64 + b
    if collect is not None:
        collect.setdefault(ctx["index"], []).append(scheduler.static_scores(
            z, A, p.Bq, b, rungs, flags=flags, act=ctx["act"], out_scale=p.out_scale, P=P,
            relu_negative=ctx["relu_negative"]))
    if policy == "multi-level":
        levels = scheduler.select_levels(
            zhat=z, A=A, B=p.Bq, b=b, rungs=rungs, flags=flags, act=ctx["act"],
            out_scale=p.out_scale, tau=ctx["tau"], estimator=ctx["estimator"], P=Pest,
            relu_negative=ctx["relu_negative"])
    elif policy == "static":
        nl = ctx["static"][ctx["index"]]
        levels = np.broadcast_to(nl[None, :], z.shape)
    else:
        observed = None
        if policy == "oracle":
            observed = _activation_error(z, z64, p.out_scale, ctx["act"])
        mask = scheduler.select(policy, zhat=z, A=A, B=p.Bq, b=b, acc_kwargs=kw,
                                flags=flags, act=ctx["act"], out_scale=p.out_scale,
                                tau=ctx["tau"], fraction=ctx["fraction"],
                                estimator=ctx["estimator"], rng=rng, P=Pest,
                                observed=observed, relu_negative=ctx["relu_negative"])
        levels = None              # mask policies: rung R - 1 where mask, else rung 0
    if levels is None:
        counts = np.zeros(R, dtype=np.int64)
        counts[R - 1] = np.count_nonzero(mask)
        counts[0] = z.size - counts[R - 1]
    else:
        counts = np.bincount(np.asarray(levels, dtype=np.intp).reshape(-1), minlength=R)
    for k in range(R):
        r.level_counts[k] += int(counts[k])
    nre = z.size - int(counts[0])
    r.recomputed += nre
    out = z
    rflags = {}
    for k in range(1, R):
        if not counts[k]:
            continue
        if counts[k] == z.size:      # everything: the engine's full path, same values
            vals, rflags[k] = _reissue(matmul, A, p, rungs[k], None, z.size, seed)
            out = vals
        else:
            mk = mask if levels is None else levels == k
            vals, rflags[k] = _reissue(matmul, A, p, rungs[k], mk, int(counts[k]), seed)
            out = np.where(mk, vals, out)
    if analyze:
        bnd = analysis.error_bound(A, p.Bq, b, kw, flags=flags, P=P)
        for k, fl in rflags.items():
            bk = analysis.error_bound(A, p.Bq, b, rungs[k], flags=fl, P=P)
            bnd = np.where(mask if levels is None else levels == k, bk, bnd)
        obs, viol = analysis.check_bound(out, A, p.Bq, b, bnd, P=P, z64=z64)
        r.bound_violations += int(viol.sum())
        r.bound_not_applicable += int((~np.isfinite(bnd)).sum())
        # rank key: the bound; where n*u >= 1 made it infinite, its shape |A||B| + |b|
        # (overflowed components are left out)
        ovf = (flags & 6) != 0
        key = bnd
        if not np.all(np.isfinite(bnd) | ovf):
            key = np.where(ovf, np.nan, P if b is None else P + np.abs(b))
        fo, fb = obs.reshape(-1), key.reshape(-1)
        step = max(1, fo.size // _SPEARMAN_SAMPLE)
        r._bound_sample.append((fb[::step].copy(), fo[::step].copy()))
    return out


def _ladder_for(policy, ladder, acc):
    """(accelerator with narrow / wide set to the ladder's ends, rungs as
    ``[(format, rounding)]``) for the ladder policies; ``(acc, None)`` otherwise."""
    from ..precision import scheduler
    if policy not in scheduler.LADDER_POLICIES:
        if ladder is not None:
            raise ValueError(f"ladder: only the {' and '.join(scheduler.LADDER_POLICIES)} "
                             f"policies take a ladder (policy {policy!r})")
        return acc, None
    if ladder is None:
        if policy == "static":
            rungs = [(acc.narrow, acc.narrow_rounding), (acc.wide, acc.wide_rounding)]
        else:
            ladder = scheduler.default_ladder(acc.narrow, acc.wide)
    if ladder is not None:
        rungs = scheduler.resolve_ladder(ladder, acc.narrow_rounding, acc.wide_rounding)
    try:
        acc = dataclasses.replace(acc, narrow=rungs[0][0], narrow_rounding=rungs[0][1],
                                  wide=rungs[-1][0], wide_rounding=rungs[-1][1])
    except ValueError as exc:
        raise ValueError(f"ladder: {str(exc).splitlines()[0]}") from None
    return acc, rungs


def _default_calibration(n):
    return max(1, min(500, n // 5))


def _simulate_static(trace, acc, X, labels, *, calibration, quantile, rungs, tau, fraction,
                     **kw):
    """``static``: per-neuron rungs from a uniform-narrow pass over the first
    ``calibration`` samples, then the fixed assignment on the remaining samples."""
    from ..precision import scheduler
    n = X.shape[0]
    if calibration is None:
        calibration = _default_calibration(n)
    if isinstance(calibration, bool) or not isinstance(calibration, (int, np.integer)) \
            or calibration < 1:
        raise ValueError(f"calibration: expected a positive integer, got {calibration!r}")
    if calibration >= n:
        raise ValueError(f"calibration: {calibration} calibration samples leave none of the "
                         f"{n} samples to evaluate (use fewer, or a larger --limit)")
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) \
            or not 0 <= quantile <= 1:
        raise ValueError(f"quantile: expected a number in [0, 1], got {quantile!r}")
    lab = None if labels is None else labels[:calibration]
    cal = dataclasses.replace(trace, inputs=X[:calibration], labels=lab)
    store = {}
    simulate(cal, acc, policy="uniform-narrow", analyze=False, _rungs=rungs,
             _collect=store, **{k: v for k, v in kw.items() if k != "analyze"})
    rk = [{"acc": f, "rounding": rnd} for f, rnd in rungs]
    neuron = {i: scheduler.static_neuron_levels(np.concatenate(v), rk, tau=tau,
                                                fraction=fraction, quantile=quantile)
              for i, v in store.items()}
    lab = None if labels is None else labels[calibration:]
    ev = dataclasses.replace(trace, inputs=X[calibration:], labels=lab)
    res = simulate(ev, acc, policy="static", tau=tau, fraction=fraction, _rungs=rungs,
                   _static=neuron, **kw)
    res.calibration = int(calibration)
    res.quantile = float(quantile)
    res.estimator = "none"          # nothing is estimated at inference
    return res


def _simulate(trace, accelerator="fp16-fp16acc", *, narrow=None, wide=None, limit=None,
             seed=0, progress: Callable[[int, int], None] | None = None,
             batch_size: int = DEFAULT_BATCH, policy: str = "uniform-narrow",
             tau: float | None = None, fraction: float | None = None,
             estimator: str = "exact", relu_negative: str = "one",
             analyze: bool = True, ladder=None, calibration: int | None = None,
             quantile: float = 0.99, _rungs=None, _collect=None,
             _static=None) -> SimulationResult:
    """Run ``trace`` on ``accelerator``'s narrow datapath next to the float64 reference.

    Parameters
    ----------
    trace : Trace or a path / bundled name accepted by :func:`resolve_trace`
    accelerator : Accelerator, built-in name or YAML path
    narrow, wide : format or name, optional
        Replace the accelerator's narrow / wide accumulator format (its rounding,
        product mode and structure are kept).
    limit : int, optional
        Simulate only the first ``limit`` samples.
    seed : int
        Seed of stochastic rounding (each layer and batch draws its own stream).
    progress : callable(done, total), optional
        Called after every batch with the number of samples done.
    batch_size : int
        Samples per batch (memory); results do not depend on it except with
        stochastic rounding (and the batch-wise budgets of ``random`` / ``oracle`` /
        ``condition`` with ``fraction``).
    policy, tau, fraction, estimator, relu_negative
        Scheduler policy re-issuing components to the wide accumulator (see
        :mod:`accsim.scheduler`); the default re-issues nothing. ``seed`` also seeds the
        ``random`` policy (per layer and batch).
    ladder : list of formats / names / ``"NAME:ROUNDING"``, or ``"F1,F2,F3"``, optional
        The rungs of ``multi-level`` and ``static``, cheapest first (see
        :mod:`accsim.scheduler`); they replace the accelerator's narrow (rung 0) and wide
        (last rung) accumulators, so ``narrow`` / ``wide`` in the result and the cost
        model's all-wide baseline refer to the ladder's ends. Default: ``multi-level``
        (narrow, an intermediate format, wide); ``static`` (narrow, wide).
    calibration : int, optional
        ``static``: the first ``calibration`` of the simulated samples (after ``limit``)
        choose the per-neuron rungs and are *not* evaluated; the result covers the
        remaining samples only (``n_samples``). Default ``max(1, min(500, n // 5))``;
        it must leave at least one sample.
    quantile : float
        ``static``: the quantile of each neuron's calibration scores compared with τ
        (default 0.99).
    analyze : bool
        ``bound_not_applicable`` counts components whose bound is infinite (overflow /
        saturation, or ``n u ≥ 1``); ``bound_spearman`` is the rank correlation of bound
        and observed error on a sample of each batch (the bound's shape ``|A||B| + |b|``
        stands in where it is infinite).
        Check every matmul component against the deterministic error bound of
        :mod:`accsim.analysis` (``bound_violations``, ``bound_spearman`` per layer).
        The observed error is ``|z_hat - z|`` in accumulator units against the exact
        product ``z`` of the *quantized operands actually used* (bias in accumulator
        units), so it measures the accumulator alone, not operand quantisation; ``z`` is
        the float64 product, whose own error bound is added to the bound as slack (see
        :func:`accsim.analysis.check_bound`). Re-issued components are checked against
        the wide accumulator's bound.
    """
    from . import ops
    from ..numerics.engine import matmul as _matmul

    if not hasattr(trace, "layers"):
        trace = resolve_trace(trace)
    acc = resolve_accelerator(accelerator, narrow, wide)
    X = np.asarray(trace.inputs)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ValueError(f"limit: expected a positive integer, got {limit!r}")
        X = X[:limit]
    n = X.shape[0]
    if n == 0:
        raise ValueError(f"trace {trace.name}: no input samples")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    labels = getattr(trace, "labels", None)
    if labels is not None:
        labels = np.asarray(labels)[:n]

    from ..precision.scheduler import check_policy
    check_policy(policy, tau, fraction, estimator)
    if policy == "static" and ladder is not None and fraction is not None:
        raise ValueError("fraction: the 'static' policy takes --fraction only without a "
                         "ladder (two rungs); use --tau with a ladder")
    if calibration is not None and policy != "static":
        raise ValueError(f"calibration: only the 'static' policy takes a calibration "
                         f"split (policy {policy!r})")
    if _rungs is None:
        acc, _rungs = _ladder_for(policy, ladder, acc)
        if policy == "static":
            return _simulate_static(
                trace, acc, X, labels, calibration=calibration, quantile=quantile,
                rungs=_rungs, tau=tau, fraction=fraction, seed=seed, progress=progress,
                batch_size=batch_size, estimator=estimator, relu_negative=relu_negative,
                analyze=analyze)
    ispec, wspec = _operand_specs(trace, acc)
    kw = acc.matmul_kwargs("narrow")
    wkw = acc.matmul_kwargs("wide")
    akw = dict(kw)
    akw.setdefault("wide", acc.wide)
    akw.setdefault("wide_rounding", acc.wide_rounding)
    if _rungs is None:
        rungs = [akw, wkw]
        rung_labels = [acc.narrow.label, acc.wide.label]
        rung_formats = [acc.narrow, acc.wide]
    else:
        rungs = [akw] + [{"acc": f, "rounding": rnd, "structure": "sequential",
                          "product": "exact"} for f, rnd in _rungs[1:-1]] + [wkw]
        rung_labels = [f"{f.label}:{rnd}" if isinstance(f, FloatFormat)
                       else f.label for f, rnd in _rungs]
        rung_formats = [f for f, _ in _rungs]
    layers = list(trace.layers)
    mm_index = [i for i, L in enumerate(layers) if L.kind in MATMUL_KINDS]
    input_names = dict(enumerate(ops.layer_inputs(trace)))
    acts = {i: _next_activation(layers, input_names, i, ops.ACTIVATIONS) for i in mm_index}

    t_start = time.perf_counter()
    ref_seconds = 0.0

    # static calibration of activation scales: amax over the reference activations
    amax = {i: 0.0 for i in mm_index}
    ref_cache = []
    if ispec.scale != "none":
        for s0, s1 in _batches(n, batch_size):
            t0 = time.perf_counter()
            _, outs = ops.forward64(trace, X[s0:s1], return_all=True)
            ref_seconds += time.perf_counter() - t0
            for i in mm_index:
                src = input_names[i][0]
                v = outs[src]
                if v.size:
                    amax[i] = max(amax[i], float(np.max(np.abs(v))))
            if n <= batch_size:
                ref_cache.append(outs)

    prepared = {i: _Prepared(layers[i], trace, acc, ispec, wspec, amax[i]) for i in mm_index}
    results = {i: LayerResult(layers[i].name, layers[i].kind, prepared[i].K,
                              level_labels=list(rung_labels),
                              level_counts=[0] * len(rungs))
               for i in mm_index}
    if _static is not None:
        for i in mm_index:
            results[i].neuron_levels = [int(v) for v in _static[i]]
    stats = {i: _ErrorStats() for i in mm_index}
    out_sim, out_ref = [], []

    for ci, (s0, s1) in enumerate(_batches(n, batch_size)):
        xb = np.asarray(X[s0:s1], dtype=np.float64)
        if ref_cache:
            ref = ref_cache.pop()
        else:
            t0 = time.perf_counter()
            _, ref = ops.forward64(trace, xb, return_all=True)
            ref_seconds += time.perf_counter() - t0
        vals = {"input": xb}
        prev = "input"
        for i, layer in enumerate(layers):
            args = [vals[nm] for nm in input_names[i]]
            if i in prepared:
                p = prepared[i]
                t0 = time.perf_counter()
                x = args[0]
                xq = p.quantize_x(np.asarray(x, dtype=np.float64))
                if layer.kind == "conv2d":
                    a = layer.attrs
                    A, Ho, Wo = ops.im2col(xq, p.kh, p.kw, a.get("stride", (1, 1)),
                                           a.get("padding", (0, 0, 0, 0)))
                else:
                    A = xq.reshape(xq.shape[0], -1)
                lseed = _seed_for(seed, i, ci)
                res, z = _layer_matmul(_matmul, A, p, kw, lseed)
                ctx = {"policy": policy, "analyze": analyze, "act": acts[i], "tau": tau,
                       "fraction": fraction, "estimator": estimator,
                       "relu_negative": relu_negative, "index": i, "collect": _collect,
                       "static": _static}
                z = _schedule_and_check(_matmul, A, p, res, z, rungs, ctx, results[i],
                                        np.random.default_rng(lseed), lseed)
                if p.out_scale is not None:
                    z = z * p.out_scale
                ev = res.events.total
                r = results[i]
                for k in r.events:
                    r.events[k] += ev[k]
                r.rows += A.shape[0]
                r.cols = z.size // max(A.shape[0], 1)
                if layer.kind == "conv2d":
                    z = ops.col2out(z, xq.shape[0], Ho, Wo)
                r.seconds += time.perf_counter() - t0
                zref = ref[layer.name]
                stats[i].add(relative_error(z, zref))
                r.outputs += z.size
                y = z
            else:
                y = ops.apply_layer(layer, args, trace.arrays)
            vals[layer.name] = y
            prev = layer.name
        out_sim.append(np.asarray(vals[prev]).reshape(s1 - s0, -1))
        out_ref.append(np.asarray(ref[prev]).reshape(s1 - s0, -1))
        if progress is not None:
            progress(s1, n)

    out_sim = np.concatenate(out_sim)
    out_ref = np.concatenate(out_ref)
    pred = np.argmax(out_sim, axis=1)
    pred_ref = np.argmax(out_ref, axis=1)
    agreement = float(np.mean(pred == pred_ref))
    if labels is not None:
        accuracy = float(np.mean(pred == labels))
        ref_acc = float(np.mean(pred_ref == labels))
    else:
        accuracy = ref_acc = None
    from ..precision.analysis import spearman
    for i in mm_index:
        results[i].error = stats[i].summary()
        smp = results[i]._bound_sample
        if smp:
            results[i].bound_spearman = spearman(np.concatenate([a for a, _ in smp]),
                                                 np.concatenate([o for _, o in smp]))
            results[i]._bound_sample = []
    rec = getattr(trace, "reference_accuracy", None)
    return SimulationResult(
        trace=trace.name, accelerator=acc.name, narrow=acc.narrow.label,
        wide=acc.wide.label, input_format=ispec.fmt.label,
        weight_format=wspec.fmt.label, n_samples=n, accuracy=accuracy,
        reference_accuracy=ref_acc,
        recorded_reference_accuracy=None if rec is None else float(rec),
        agreement=agreement, layers=[results[i] for i in mm_index],
        seconds=time.perf_counter() - t_start, reference_seconds=ref_seconds,
        outputs=out_sim, reference_outputs=out_ref, policy=policy, estimator=estimator,
        tau=tau, fraction=fraction, ladder=rung_labels, ladder_formats=rung_formats)


_BLAS = []   # the threadpoolctl controller, made on first use


def _one_blas_thread():
    """Context in which BLAS (the float64 reference, |A||B|) runs on the calling thread.

    The engine's numba threads and OpenBLAS's threads each spin a while after their
    work; alternating the two pools on a small machine made every BLAS call and every
    kernel launch wait for the other pool's spinning threads (measured on 2 cores: a
    whole simulation about 25 % faster with one BLAS thread, the condition re-issue
    about 2x). Values do not depend on it (OpenBLAS splits outputs, not sums).
    """
    from threadpoolctl import ThreadpoolController
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


@functools.wraps(_simulate)
def simulate(*args, **kwargs):
    with _one_blas_thread():
        return _simulate(*args, **kwargs)


def compare(trace, accelerator="fp16-fp16acc", *, narrow=None, wide=None, limit=None,
            seed=0, progress=None, batch_size: int = DEFAULT_BATCH):
    """Two runs: the narrow accumulator, then the same network with the narrow
    accumulator replaced by the wide one (format and rounding). Returns both results."""
    if not hasattr(trace, "layers"):
        trace = resolve_trace(trace)
    acc = resolve_accelerator(accelerator, narrow, wide)
    r_narrow = simulate(trace, acc, limit=limit, seed=seed, progress=progress,
                        batch_size=batch_size)
    wide_acc = dataclasses.replace(acc, narrow=acc.wide, narrow_rounding=acc.wide_rounding)
    r_wide = simulate(trace, wide_acc, limit=limit, seed=seed, progress=progress,
                      batch_size=batch_size)
    return r_narrow, r_wide


# ---------------------------------------------------------------------------------------
# bundled traces
# ---------------------------------------------------------------------------------------
def traces_dir() -> Path:
    """Folder of the bundled traces (traces/): inside the wheel, or the repository's."""
    from ..numerics.config import package_data_dir
    return package_data_dir("traces")


def list_traces():
    """Names of the bundled traces, sorted."""
    d = traces_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "trace.yaml").is_file())


def resolve_trace(name_or_path):
    """A Trace from a folder path or a bundled trace name (``list_traces()``)."""
    from .trace import load_trace
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
