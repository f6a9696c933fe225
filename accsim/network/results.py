"""What a simulation reports: relative errors, their statistics, and the result records.

Error statistics (per matmul layer, over every output component z_i of every simulated
sample, against the float64 reference's z_i^ref of the same layer)
    ``rel_i = |z_i - z_i^ref| / |z_i^ref|``; where ``z_i^ref == 0`` it is 0 if ``z_i`` is
    0 too and +inf otherwise, and a non-finite ``z_i`` (an overflow to inf or NaN) counts
    as +inf. ``mean`` and ``max`` are exact; ``p50``, ``p90`` and ``p99`` come from a
    log2 histogram with 64 bins per octave (each within 1.1 % of the exact percentile;
    exact zeros are exact). Infinite statistics appear as ``None`` in ``to_dict()``,
    with ``n_infinite`` saying how many components were infinite.

Accuracy is the fraction of samples whose argmax of the network output equals the label;
``agreement`` the fraction whose argmax equals the float64 reference's argmax. An output
row holding a NaN (an overflow upstream) predicts no class: it is neither accurate nor in
agreement. Both come with a 95 % Wilson score interval (``agreement_ci95``, ``accuracy_ci95``:
:func:`wilson_interval`).

``normwise_error``: the mean over samples of ``‖y - y_ref‖₂ / ‖y_ref‖₂`` of the network
output against the float64 reference (0 where both are 0, +inf where only ``y_ref`` is).
Per matmul layer, ``accumulation_error`` is ``‖Ẑ - Z‖_F / ‖Z‖_F`` over every output
of the layer, with ``Z`` the float64 product of the *same quantized operands* (the
accumulator's own error, operand quantisation left out; real units) and
``accumulation_error_max`` the largest ``|ẑ - z|`` (real units); both None when the run
did not compute ``Z`` (``analyze=False`` without ``oracle``). ``stagnation_ku``: ``k·u`` of
the narrow register (None for integer registers); at ``k·u ≥ 1`` the register stagnates
and its error bound is infinite (``stagnation`` in the run's dict lists those layers).

Filled in by :mod:`accsim.network.simulation`; priced by :mod:`accsim.hardware.cost`.
``accsim simulate --json`` is :meth:`SimulationResult.to_dict` plus the keys of
:func:`accsim.hardware.cost.price_simulation`: per inference ``energy_per_inference_pj``,
``baseline_energy_per_inference_pj``, ``cycles_per_inference``; ``energy_savings``,
``area_um2``, ``baseline_area_um2``, ``area_savings``, ``views``, ``break_even``; the
deprecated ``energy_pj``, ``baseline_energy_pj`` and ``cycles`` are totals over the
``n_samples`` simulated samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

_BINS_PER_OCTAVE = 64
_LOG2_LO, _LOG2_HI = -128, 64           # histogram range of log2(rel); beyond is clamped
_NBINS = (_LOG2_HI - _LOG2_LO) * _BINS_PER_OCTAVE
EVENT_KINDS = ("overflows", "saturations", "inexact")
"""The engine's event counters summed per layer (keys of ``events``)."""


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


class ErrorStats:
    """Running mean/max and a log2 histogram of relative errors (module doc)."""

    def __init__(self):
        self.n = 0
        self.n_zero = 0
        self.n_inf = 0
        self.total = 0.0
        self.max = 0.0
        self.hist = np.zeros(_NBINS, dtype=np.int64)

    def add(self, rel):
        """Count the relative errors ``rel`` (any shape)."""
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
            self._bin(pos)

    def add_error(self, z, ref):
        """Count the relative errors of ``z`` against ``ref`` (same shape): the same
        statistics as ``add(relative_error(z, ref))`` in fewer passes and copies when
        every error is finite (then :func:`relative_error`'s conventions change nothing:
        they apply only where ``|z - ref| / |ref|`` is not finite, and ``|(z - ref) /
        ref|`` is that quotient bit for bit: IEEE division rounds magnitudes alike
        whatever the signs). Returns whether every error was finite (then every value
        of ``z`` is)."""
        z = np.asarray(z, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        with np.errstate(all="ignore"):
            rel = np.subtract(z, ref)
            rel /= ref
            np.abs(rel, out=rel)
            rel = rel.reshape(-1)
            # a sum of non-negative values is finite only when every value is
            total = float(rel.sum()) if rel.size else 0.0
        if not math.isfinite(total):
            self.add(relative_error(z, ref))
            return False
        self.n += rel.size
        if not rel.size:
            return True
        self.total += total
        self.max = max(self.max, float(rel.max()))
        if rel.min() > 0:
            self._bin(rel)
            return True
        positive = rel > 0
        n_pos = int(np.count_nonzero(positive))
        self.n_zero += rel.size - n_pos
        if n_pos:
            self._bin(rel[positive])
        return True

    def _bin(self, pos):
        """Add the positive finite errors ``pos`` (a 1-D array of the caller's own,
        overwritten) to the histogram."""
        t = np.log2(pos, out=pos)
        t -= _LOG2_LO
        t *= _BINS_PER_OCTAVE
        np.floor(t, out=t)
        np.clip(t, 0, _NBINS - 1, out=t)        # integers in range: clipping commutes
        self.hist += np.bincount(t.astype(np.intp), minlength=_NBINS)

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
        """``{mean, max, p50, p90, p99, n_infinite}`` of everything added."""
        if self.n_inf:
            mean = mx = math.inf
        else:
            mean = self.total / self.n if self.n else 0.0
            mx = self.max
        return {"mean": mean, "max": mx, "p50": self.percentile(50),
                "p90": self.percentile(90), "p99": self.percentile(99),
                "n_infinite": self.n_inf}


# ---------------------------------------------------------------------------------------
# intervals and output errors
# ---------------------------------------------------------------------------------------
Z95 = 1.959963984540054
"""The two-sided 95 % standard normal quantile of the Wilson intervals."""


def wilson_interval(successes, n, z=Z95):
    """Wilson score interval ``[lo, hi]`` of a proportion ``successes / n`` (None when
    ``n == 0``)."""
    if n <= 0:
        return None
    p = successes / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, c - h), min(1.0, c + h)]


def normwise_error(y, y_ref):
    """Mean over samples (rows) of ``‖y - y_ref‖₂ / ‖y_ref‖₂`` (module doc)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    r = np.asarray(y_ref, dtype=np.float64).reshape(len(y_ref), -1)
    if y.shape[0] == 0:
        return 0.0
    with np.errstate(all="ignore"):
        num = np.linalg.norm(y - r, axis=1)
        den = np.linalg.norm(r, axis=1)
        e = np.where(den > 0, num / den, np.where(num == 0, 0.0, np.inf))
    e = np.where(np.isnan(e), np.inf, e)
    return float(np.mean(e))


STAGNATION_NOTE = ("stagnation: k*u = {ku:.3g} ({layers}), bound not applicable; prefer "
                   "chunks <= 1/u = {chunk} or --policy absolute")
"""Text of the stagnation note (``k·u ≥ 1`` in some layer)."""


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
def _json_float(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _levels(labels, counts):
    tot = sum(counts)
    return [{"format": f, "count": int(c), "fraction": c / tot if tot else 0.0}
            for f, c in zip(labels, counts)]


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
    events: dict = field(default_factory=lambda: dict.fromkeys(EVENT_KINDS, 0))
    seconds: float = 0.0
    recomputed: int = 0          # components re-issued on the wide accumulator
    bound_violations: int = 0    # components whose |z_hat - z| exceeds the bound
    bound_not_applicable: int = 0   # components with an infinite bound (overflow)
    bound_spearman: float | None = None   # rank correlation of bound and observed error
    level_labels: list = field(default_factory=list)   # rung formats, cheapest first
    level_counts: list = field(default_factory=list)   # components per rung
    neuron_levels: list | None = None     # static: the rung of every neuron (column)
    nan: int = 0             # simulated outputs that are NaN (an overflow upstream)
    inf: int = 0             # simulated outputs that are +-inf
    operand_nan: int = 0     # NaN activations an integer operand format mapped to 0
    operand_inf: int = 0     # +-inf activations an integer operand format saturated
    stagnation_ku: float | None = None    # k*u of the narrow register (float only)
    narrow_u: float | None = field(default=None, repr=False)   # its unit roundoff
    accumulation_sq: list = field(default_factory=lambda: [0.0, 0.0], repr=False)
    accumulation_error_max: float | None = None   # max |z_hat - z|, real units
    register: dict | None = None   # integer product ops of a quantized model: what the
    #                                register needed (accsim.network.integer_layers)

    @property
    def recomputed_fraction(self) -> float:
        return self.recomputed / self.outputs if self.outputs else 0.0

    @property
    def accumulation_error(self) -> float | None:
        """``‖Ẑ - Z‖_F / ‖Z‖_F`` (module doc); None when not computed."""
        if self.accumulation_error_max is None:
            return None
        num, den = self.accumulation_sq
        if den > 0:
            return math.sqrt(num / den) if math.isfinite(num) else math.inf
        return 0.0 if num == 0 else math.inf

    @property
    def levels(self) -> list:
        """``[{format, count, fraction}]`` per rung (rung 0: the narrow datapath)."""
        return _levels(self.level_labels, self.level_counts)

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
        d["nonfinite"] = {"nan": self.nan, "inf": self.inf, "operand_nan": self.operand_nan,
                          "operand_inf": self.operand_inf}
        d["seconds"] = self.seconds
        d["stagnation_ku"] = self.stagnation_ku
        d["accumulation_error"] = _json_float(self.accumulation_error)
        d["accumulation_error_max"] = _json_float(self.accumulation_error_max)
        if self.register is not None:
            d.update(self.register)
        return d


@dataclass
class SimulationResult:
    """Outcome of :func:`accsim.network.simulate` (module doc for the definitions)."""

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
    tensors: dict | None = field(repr=False, default=None)   # keep_tensors: name -> (S, ...)
    reference_tensors: dict | None = field(repr=False, default=None)
    output_layer: str | None = None    # how the output layer was scheduled
    overflow_rule: str | None = None   # integer registers: flag / bound (None: default)

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
        return _levels(labels, counts)

    @property
    def bound_violations(self) -> int:
        return sum(lr.bound_violations for lr in self.layers)

    @property
    def bound_not_applicable(self) -> int:
        return sum(lr.bound_not_applicable for lr in self.layers)

    @property
    def agreement_ci95(self):
        """95 % Wilson interval of ``agreement``."""
        return wilson_interval(round(self.agreement * self.n_samples), self.n_samples)

    @property
    def accuracy_ci95(self):
        """95 % Wilson interval of ``accuracy`` (None without labels)."""
        if self.accuracy is None:
            return None
        return wilson_interval(round(self.accuracy * self.n_samples), self.n_samples)

    @property
    def normwise_error(self) -> float | None:
        """Mean normwise output error against the reference (module doc)."""
        if self.outputs is None or self.reference_outputs is None:
            return None
        return normwise_error(self.outputs, self.reference_outputs)

    @property
    def stagnation(self) -> dict | None:
        """``{ku_max, layers, note}`` when some layer has ``k·u ≥ 1``, else None."""
        st = [lr for lr in self.layers if lr.stagnation_ku is not None
              and lr.stagnation_ku >= 1]
        if not st:
            return None
        ku = max(lr.stagnation_ku for lr in st)
        u = max(lr.narrow_u or 0.0 for lr in st)
        chunk = 2 ** max(0, math.floor(math.log2(1 / u))) if u > 0 else 1
        names = ", ".join(f"{lr.name} {lr.stagnation_ku:.3g}" for lr in st)
        return {"ku_max": ku, "layers": [lr.name for lr in st],
                "note": STAGNATION_NOTE.format(ku=ku, layers=names, chunk=chunk)}

    @property
    def events(self) -> dict:
        """Event totals over every matmul layer."""
        tot = dict.fromkeys(EVENT_KINDS, 0)
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
            "output_layer": self.output_layer, "overflow_rule": self.overflow_rule,
            "bound_violations": self.bound_violations,
            "bound_not_applicable": self.bound_not_applicable,
            "agreement_ci95": self.agreement_ci95, "accuracy_ci95": self.accuracy_ci95,
            "normwise_error": _json_float(self.normwise_error),
            "stagnation": self.stagnation,
            "layers": [lr.to_dict() for lr in self.layers],
            "seconds": self.seconds, "reference_seconds": self.reference_seconds,
        }
