"""Run a :class:`~accsim.network.trace.Trace` end to end on a simulated accelerator.

:func:`simulate` runs the network layer by layer. Every ``linear`` and ``conv2d`` layer's
matrix product goes through :func:`accsim.numerics.engine.matmul` on the accelerator's
*narrow* datapath (``Accelerator.datapath("narrow")``: its accumulator, rounding, product
mode and structure); every other layer (pooling, activations, residual adds, reshapes)
runs in float64 with :mod:`accsim.network.ops`. The float64 reference
(:func:`accsim.network.ops.forward64`) runs alongside on the same samples.

The parts, one module each:

* :mod:`accsim.network.operands`: the lowering of a layer to one matrix product and the
  quantisation of its operands (formats, scales, the calibration of activation scales);
* :mod:`accsim.network.reissue`: one layer batch: the narrow pass, the scheduler's
  choice of rungs, the re-issues and the bound check;
* :mod:`accsim.network.results`: relative errors, their statistics, accuracy and
  agreement, and the result records;
* this module: the options of a run (:class:`RunOptions`), the pass over the samples
  (one :class:`~accsim.network.reissue.LayerRun` per matmul layer), the ``static``
  policy's calibration pass, and :func:`compare`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from ..hardware.accelerator import load_accelerator
from ..numerics.config import load_format
from ..numerics.datapath import Datapath
from ..numerics.formats import FloatFormat, IntFormat
from ..precision.scheduler import (DEFAULT_QUANTILE, LADDER_POLICIES, check_policy,
                                   check_schedule_options, default_ladder,
                                   default_output_layer, resolve_ladder, static_neuron_levels)
from . import ops
from .operands import PreparedLayer, operand_specs
from .reissue import (LayerRun, ReissuePolicy, Transposer, layer_matmul, next_activation,
                      output_layer_index, schedule_and_check)
from .results import LayerResult, SimulationResult, relative_error
from .trace import MATMUL_KINDS, resolve_trace

DEFAULT_BATCH = 256

_BLAS = ThreadpoolController()


def _one_blas_thread():
    """Context in which BLAS (the float64 reference, |A||B|) runs on the calling thread.

    The engine's numba threads and OpenBLAS's threads each spin a while after their
    work; alternating the two pools on a small machine made every BLAS call and every
    kernel launch wait for the other pool's spinning threads (measured on 2 cores: a
    whole simulation about 25 % faster with one BLAS thread, the condition re-issue
    about 2x). Values do not depend on it (OpenBLAS splits outputs, not sums).
    """
    return _BLAS.limit(limits=1, user_api="blas")


def resolve_accelerator(accelerator, narrow, wide):
    """The accelerator (name, YAML path or value) with its ``narrow`` and ``wide`` register
    formats replaced where given (format names, paths or values; None keeps them)."""
    acc = load_accelerator(accelerator)
    changes = {}
    for key, v in (("wide", wide), ("narrow", narrow)):
        if v is None:
            continue
        try:
            changes[key] = load_format(v)
        except ValueError as exc:
            msg = str(exc).splitlines()[0]
            named = repr(str(v)) in msg          # the message already names the value
            raise ValueError(f"{key}: {msg}" if named else f"{key}: {v!r}: {msg}") from None
    if changes:
        acc = dataclasses.replace(acc, **changes)
    return acc


# ---------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    """What one pass over the samples runs with.

    ``seed``: seed of stochastic rounding and of the ``random`` policy (each layer and
    batch draws its own stream); ``batch_size``: samples per batch; ``reissue``: the
    :class:`~accsim.network.reissue.ReissuePolicy`; ``rungs``: the Datapath of every
    rung (rung 0 the narrow datapath, the last the wide accumulator), with their labels
    and formats as reported.
    """

    seed: int
    batch_size: int
    reissue: ReissuePolicy
    rungs: tuple
    rung_labels: tuple
    rung_formats: tuple


def _ladder_for(policy, ladder, acc):
    """(accelerator with narrow / wide set to the ladder's ends, rungs as
    ``[(format, rounding)]``) for the ladder policies; ``(acc, None)`` otherwise."""
    if policy not in LADDER_POLICIES:
        if ladder is not None:
            raise ValueError(f"ladder: only the {' and '.join(LADDER_POLICIES)} "
                             f"policies take a ladder (policy {policy!r})")
        return acc, None
    if ladder is None:
        if policy == "static":
            rungs = [(acc.narrow, acc.narrow_rounding), (acc.wide, acc.wide_rounding)]
        else:
            ladder = default_ladder(acc.narrow, acc.wide)
    if ladder is not None:
        rungs = resolve_ladder(ladder, acc.narrow_rounding, acc.wide_rounding)
    try:
        acc = dataclasses.replace(acc, narrow=rungs[0][0], narrow_rounding=rungs[0][1],
                                  wide=rungs[-1][0], wide_rounding=rungs[-1][1])
    except ValueError as exc:
        raise ValueError(f"ladder: {str(exc).splitlines()[0]}") from None
    return acc, rungs


def _run_options(acc, ladder, seed, batch_size, reissue):
    """:class:`RunOptions` of ``acc`` (already set to the ladder's ends); ``ladder``: the
    ``[(format, rounding)]`` rungs, or None for the two rungs (narrow, wide)."""
    narrow, wide = acc.datapath("narrow"), acc.datapath("wide")
    if ladder is None:
        return RunOptions(seed, batch_size, reissue, (narrow, wide),
                          (acc.narrow.label, acc.wide.label), (acc.narrow, acc.wide))
    mid = tuple(Datapath(f, rounding=rnd, input=acc.input, weight=acc.weight)
                for f, rnd in ladder[1:-1])
    labels = tuple(f"{f.label}:{rnd}" if isinstance(f, FloatFormat) else f.label
                   for f, rnd in ladder)
    return RunOptions(seed, batch_size, reissue, (narrow, *mid, wide), labels,
                      tuple(f for f, _ in ladder))


class AccumulatorWidthWarning(UserWarning):
    """An integer accumulator narrower than one product of the operands it sums."""


def product_bits(a, w) -> int:
    """Bits of a signed register holding any product of operands of the integer formats
    ``a`` and ``w`` as quantized (symmetric: ``|x| ≤ 2^(bits-1) - 1``): ``a.bits + w.bits
    - 1``."""
    return a.bits + w.bits - 1


def check_register_widths(trace, acc, rung_formats, stacklevel=3):
    """Warn (:class:`AccumulatorWidthWarning`, one line naming the matmul layers) when an
    integer accumulator of ``rung_formats`` has fewer bits than one product of the
    trace's integer operands on ``acc`` (``int8`` register for ``int8 x int8``): its
    sums wrap or saturate from the first term."""
    ispec, wspec = operand_specs(trace, acc)
    a, w = ispec.fmt, wspec.fmt
    if not (isinstance(a, IntFormat) and isinstance(w, IntFormat)):
        return
    need = product_bits(a, w)
    layers = [la.name for la in trace.layers if la.kind in MATMUL_KINDS]
    for f in dict.fromkeys(rung_formats):
        if isinstance(f, IntFormat) and f.bits < need and layers:
            warnings.warn(f"layer{'s' if len(layers) > 1 else ''} {', '.join(layers)}: the "
                          f"{f.label} accumulator ({f.bits} bits) is narrower than the "
                          f"{a.label} x {w.label} products it sums ({need} bits)",
                          AccumulatorWidthWarning, stacklevel=stacklevel)


# ---------------------------------------------------------------------------------------
# one pass over the samples
# ---------------------------------------------------------------------------------------
def _batches(n, size):
    for s in range(0, n, size):
        yield s, min(n, s + size)


def _seed_for(seed, layer_index, chunk_index):
    ss = np.random.SeedSequence([int(seed), layer_index, chunk_index])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


class _Run:
    """The state of one pass of the samples ``X`` of ``trace`` through the network on
    ``acc`` with the options ``opts``: per matmul layer a
    :class:`~accsim.network.reissue.LayerRun`, the float64 reference's time, and the
    transposes a batch reuses. ``neuron_levels``: ``static`` inference, the rung of every
    neuron by layer index."""

    def __init__(self, trace, acc, X, labels, opts, neuron_levels=None):
        self.trace, self.acc, self.X, self.labels, self.opts = trace, acc, X, labels, opts
        self.n = X.shape[0]
        self.ispec, self.wspec = operand_specs(trace, acc)
        self.layers = list(trace.layers)
        self.input_names = dict(enumerate(ops.layer_inputs(trace)))
        self.mm_index = [i for i, la in enumerate(self.layers) if la.kind in MATMUL_KINDS]
        self.acts = {i: next_activation(self.layers, self.input_names, i)
                     for i in self.mm_index}
        self.neuron_levels = neuron_levels
        self.transpose = Transposer()
        self.ref_seconds = 0.0
        self.ref_cache = []
        self.mm = {}

    def reference(self, x):
        """Every tensor of the float64 forward pass of ``x``, by name (timed)."""
        t0 = time.perf_counter()
        _, outs = ops.forward64(self.trace, x, return_all=True)
        self.ref_seconds += time.perf_counter() - t0
        return outs

    def calibrate(self):
        """The largest magnitude of the float64 reference activations entering every
        matmul layer over all samples (none needed without an input scale); the
        reference is kept when one batch holds every sample."""
        amax = dict.fromkeys(self.mm_index, 0.0)
        if self.ispec.scale == "none":
            return amax
        for s0, s1 in _batches(self.n, self.opts.batch_size):
            outs = self.reference(self.X[s0:s1])
            for i in self.mm_index:
                v = outs[self.input_names[i][0]]
                if v.size:
                    amax[i] = max(amax[i], float(np.max(np.abs(v))))
            if self.n <= self.opts.batch_size:
                self.ref_cache.append(outs)
        return amax

    def prepare(self, amax):
        """One :class:`LayerRun` per matmul layer, its weights quantized."""
        prepared = {i: PreparedLayer(self.layers[i], self.trace, self.acc, self.ispec,
                                     self.wspec, amax[i]) for i in self.mm_index}
        R = len(self.opts.rungs)
        for i, p in prepared.items():
            r = LayerResult(p.layer.name, p.layer.kind, p.K,
                            level_labels=list(self.opts.rung_labels), level_counts=[0] * R)
            nl = None if self.neuron_levels is None else self.neuron_levels[i]
            if nl is not None:
                r.neuron_levels = [int(v) for v in nl]
            self.mm[i] = LayerRun(i, p, self.acts[i], r, nl)
            self.mm[i].is_output = i == output_layer_index(self.layers, self.input_names)

    def matmul_layer(self, lr, x, ci, zref):
        """Output of matmul layer ``lr`` on its input ``x`` in batch ``ci`` (real units);
        counts, times and errors against ``zref`` go into the layer's result."""
        p, r, layer = lr.prepared, lr.result, lr.prepared.layer
        t0 = time.perf_counter()
        xq = p.quantize_x(np.asarray(x, dtype=np.float64))
        if layer.kind == "conv2d":
            a = layer.attrs
            A, Ho, Wo = ops.im2col(xq, p.kh, p.kw, a.get("stride", (1, 1)),
                                   a.get("padding", (0, 0, 0, 0)))
        else:
            A = xq.reshape(xq.shape[0], -1)
        seed = _seed_for(self.opts.seed, lr.index, ci)
        res, z = layer_matmul(A, p, self.opts.rungs[0], seed, self.transpose)
        z = schedule_and_check(lr, A, res, z, self.opts.rungs, self.opts.reissue, seed,
                               self.transpose)
        if p.out_scale is not None:
            z = z * p.out_scale
        ev = res.events.total
        for k in r.events:
            r.events[k] += ev[k]
        r.rows += A.shape[0]
        r.cols = z.size // max(A.shape[0], 1)
        if layer.kind == "conv2d":
            z = ops.col2out(z, xq.shape[0], Ho, Wo)
        r.seconds += time.perf_counter() - t0
        lr.stats.add(relative_error(z, zref))
        r.outputs += z.size
        return z

    def batch(self, ci, xb, ref, on_layer=None):
        """(network output, reference output) of batch ``ci`` with inputs ``xb`` and the
        reference tensors ``ref``; ``on_layer(name, k, n)`` before the ``k``-th (from 1)
        of the ``n`` matmul layers."""
        vals = {"input": xb}
        prev = "input"
        for i, layer in enumerate(self.layers):
            args = [vals[nm] for nm in self.input_names[i]]
            if i in self.mm:
                if on_layer is not None:
                    on_layer(layer.name, self.mm_index.index(i) + 1, len(self.mm_index))
                y = self.matmul_layer(self.mm[i], args[0], ci, ref[layer.name])
            else:
                y = ops.apply_layer(layer, args, self.trace.arrays)
            vals[layer.name] = y
            prev = layer.name
        return vals[prev], ref[prev]

    def execute(self, progress=None, layer_progress=None):
        """Run every batch; the :class:`~accsim.network.results.SimulationResult`.
        ``progress(done, n)`` after each batch, ``layer_progress(done, n, name, k, K)``
        before the ``k``-th of the ``K`` matmul layers of each batch (``done``: samples
        finished before the batch)."""
        t_start = time.perf_counter()
        self.prepare(self.calibrate())
        out_sim, out_ref = [], []
        for ci, (s0, s1) in enumerate(_batches(self.n, self.opts.batch_size)):
            xb = np.asarray(self.X[s0:s1], dtype=np.float64)
            ref = self.ref_cache.pop() if self.ref_cache else self.reference(xb)
            on_layer = None if layer_progress is None else \
                (lambda name, k, K, s0=s0: layer_progress(s0, self.n, name, k, K))
            y, y_ref = self.batch(ci, xb, ref, on_layer)
            out_sim.append(np.asarray(y).reshape(s1 - s0, -1))
            out_ref.append(np.asarray(y_ref).reshape(s1 - s0, -1))
            if progress is not None:
                progress(s1, self.n)
        return self.result(np.concatenate(out_sim), np.concatenate(out_ref), t_start)

    def result(self, out_sim, out_ref, t_start):
        pred = np.argmax(out_sim, axis=1)
        pred_ref = np.argmax(out_ref, axis=1)
        agreement = float(np.mean(pred == pred_ref))
        if self.labels is not None:
            accuracy = float(np.mean(pred == self.labels))
            ref_acc = float(np.mean(pred_ref == self.labels))
        else:
            accuracy = ref_acc = None
        layers = [self.mm[i].finish() for i in self.mm_index]
        rec = getattr(self.trace, "reference_accuracy", None)
        acc, pol = self.acc, self.opts.reissue
        return SimulationResult(
            trace=self.trace.name, accelerator=acc.name, narrow=acc.narrow.label,
            wide=acc.wide.label, input_format=self.ispec.fmt.label,
            weight_format=self.wspec.fmt.label, n_samples=self.n, accuracy=accuracy,
            reference_accuracy=ref_acc,
            recorded_reference_accuracy=None if rec is None else float(rec),
            agreement=agreement, layers=layers,
            seconds=time.perf_counter() - t_start, reference_seconds=self.ref_seconds,
            outputs=out_sim, reference_outputs=out_ref, policy=pol.policy,
            estimator=pol.estimator, tau=pol.tau, fraction=pol.fraction,
            ladder=list(self.opts.rung_labels), ladder_formats=list(self.opts.rung_formats),
            output_layer=pol.output_layer or default_output_layer(pol.policy),
            overflow_rule=pol.overflow_rule)


# ---------------------------------------------------------------------------------------
# static: calibration pass, then the fixed assignment
# ---------------------------------------------------------------------------------------
def _default_calibration(n):
    return max(1, min(500, n // 5))


def _check_static(n, calibration, quantile):
    """The number of calibration samples (validated; the default where None)."""
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
    return calibration


def _simulate_static(trace, acc, X, labels, opts, *, calibration, quantile, progress,
                     layer_progress=None):
    """``static``: per-neuron rungs from a uniform-narrow pass over the first
    ``calibration`` samples, then the fixed assignment on the remaining samples."""
    calibration = _check_static(X.shape[0], calibration, quantile)
    pol = opts.reissue
    cal_opts = dataclasses.replace(opts, reissue=ReissuePolicy(
        estimator=pol.estimator, relu_negative=pol.relu_negative, analyze=False,
        collect=True))
    cal = _Run(trace, acc, X[:calibration],
               None if labels is None else labels[:calibration], cal_opts)
    cal.execute(progress, layer_progress)
    neuron = {i: static_neuron_levels(np.concatenate(lr.scores), opts.rungs, tau=pol.tau,
                                      fraction=pol.fraction, quantile=quantile)
              for i, lr in cal.mm.items()}
    res = _Run(trace, acc, X[calibration:], None if labels is None else labels[calibration:],
               opts, neuron_levels=neuron).execute(progress, layer_progress)
    res.calibration = int(calibration)
    res.quantile = float(quantile)
    res.estimator = "none"          # nothing is estimated at inference
    return res


# ---------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------
def _positive(name, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        what = "a positive integer" if lo == 1 else "a non-negative integer"
        raise ValueError(f"{name}: expected {what}, got {v!r}")


def _samples(trace, limit):
    """(inputs, labels) of the samples to simulate (the first ``limit``)."""
    X = np.asarray(trace.inputs)
    if limit is not None:
        _positive("limit", limit)
        X = X[:limit]
    n = X.shape[0]
    if n == 0:
        raise ValueError(f"trace {trace.name}: no input samples")
    labels = getattr(trace, "labels", None)
    return X, None if labels is None else np.asarray(labels)[:n]


def _check_ladder_args(policy, ladder, fraction, calibration, quantile):
    if policy == "static" and ladder is not None and fraction is not None:
        raise ValueError("fraction: the 'static' policy takes --fraction only without a "
                         "ladder (two rungs); use --tau with a ladder")
    if calibration is not None and policy != "static":
        raise ValueError(f"calibration: only the 'static' policy takes a calibration "
                         f"split (policy {policy!r})")
    if quantile is not None and policy != "static":
        raise ValueError(f"quantile: only the 'static' policy takes a quantile "
                         f"(policy {policy!r})")


def simulate(trace, accelerator="fp16-fp16acc", *, narrow=None, wide=None, limit=None,
             seed=0, progress: Callable[[int, int], None] | None = None,
             batch_size: int = DEFAULT_BATCH, policy: str = "uniform-narrow",
             tau: float | None = None, fraction: float | None = None,
             estimator: str = "exact", relu_negative: str = "one",
             analyze: bool = True, ladder=None, calibration: int | None = None,
             quantile: float | None = None,
             layer_progress: Callable[[int, int, str, int, int], None] | None = None,
             output_layer: str | None = None, overflow_rule: str | None = None,
             ) -> SimulationResult:
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
    layer_progress : callable(done, total, name, k, n), optional
        Called before the ``k``-th (from 1) of the ``n`` matmul layers of every batch
        (``done``: samples finished before the batch; ``name``: the layer's).
    batch_size : int
        Samples per batch (memory); results do not depend on it except with
        stochastic rounding (and the batch-wise budgets of ``random`` / ``oracle`` /
        ``condition`` with ``fraction``).
    policy, tau, fraction, estimator, relu_negative
        Scheduler policy re-issuing components to the wide accumulator (see
        :mod:`accsim.precision.scheduler`); the default re-issues nothing. ``seed`` also
        seeds the ``random`` policy (per layer and batch).
    ladder : list of formats / names / ``"NAME:ROUNDING"``, or ``"F1,F2,F3"``, optional
        The rungs of ``multi-level`` and ``static``, cheapest first (see
        :mod:`accsim.precision.scheduler`); they replace the accelerator's narrow (rung 0)
        and wide (last rung) accumulators, so ``narrow`` / ``wide`` in the result and the
        cost model's all-wide baseline refer to the ladder's ends. Default:
        ``multi-level`` (narrow, an intermediate format, wide); ``static`` (narrow, wide).
    calibration : int, optional
        ``static``: the first ``calibration`` of the simulated samples (after ``limit``)
        choose the per-neuron rungs and are *not* evaluated; the result covers the
        remaining samples only (``n_samples``). Default ``max(1, min(500, n // 5))``;
        it must leave at least one sample.
    quantile : float, optional
        ``static``: the quantile of each neuron's calibration scores compared with τ
        (default 0.99); an error for the other policies.
    analyze : bool
        Check every matmul component against the deterministic error bound of
        :mod:`accsim.precision.analysis` (``bound_violations``, ``bound_spearman`` per
        layer). The observed error is ``|z_hat - z|`` in accumulator units against the
        exact product ``z`` of the *quantized operands actually used* (bias in
        accumulator units), so it measures the accumulator alone, not operand
        quantisation; ``z`` is the float64 product, whose own error bound is added to
        the bound as slack (see :func:`accsim.precision.analysis.check_bound`). Re-issued
        components are checked against their rung's bound. ``bound_not_applicable``
        counts components whose bound is infinite (overflow / saturation, or
        ``n u ≥ 1``); ``bound_spearman`` is the rank correlation of bound and observed
        error on a sample of each batch (the bound's shape ``|A||B| + |b|`` stands in
        where it is infinite).
    output_layer : {"wide", "rows", "components"}, optional
        How the network's output layer is scheduled (condition, absolute, random,
        oracle; ``rows``: absolute and random); default ``wide`` for ``absolute``,
        ``components`` otherwise (:mod:`accsim.precision.scheduler`).
    overflow_rule : {"flag", "bound"}, optional
        Integer / fixed-point narrow registers: re-issue what overflowed / saturated
        (``flag``, default) or what the worst-case bound says could (``bound``); an
        error for float narrow registers.
    """
    with _one_blas_thread():
        trace = resolve_trace(trace)
        acc = resolve_accelerator(accelerator, narrow, wide)
        X, labels = _samples(trace, limit)
        _positive("batch_size", batch_size)
        _positive("seed", seed, lo=0)
        check_policy(policy, tau, fraction, estimator)
        _check_ladder_args(policy, ladder, fraction, calibration, quantile)
        check_schedule_options(policy, output_layer, overflow_rule)
        if overflow_rule is not None and isinstance(acc.narrow, FloatFormat):
            raise ValueError(f"overflow_rule: applies to integer / fixed-point narrow "
                             f"registers, not {acc.narrow.label}")
        acc, rungs = _ladder_for(policy, ladder, acc)
        opts = _run_options(acc, rungs, seed, batch_size, ReissuePolicy(
            policy, tau, fraction, estimator, relu_negative, analyze,
            output_layer=output_layer, overflow_rule=overflow_rule))
        check_register_widths(trace, acc, opts.rung_formats)
        if policy == "static":
            return _simulate_static(trace, acc, X, labels, opts, calibration=calibration,
                                    quantile=DEFAULT_QUANTILE if quantile is None
                                    else quantile, progress=progress,
                                    layer_progress=layer_progress)
        return _Run(trace, acc, X, labels, opts).execute(progress, layer_progress)


def compare(trace, accelerator="fp16-fp16acc", *, narrow=None, wide=None, limit=None,
            seed=0, progress=None, batch_size: int = DEFAULT_BATCH):
    """Two runs: the narrow accumulator, then the same network with the narrow
    accumulator replaced by the wide one (format and rounding). Returns both results."""
    trace = resolve_trace(trace)
    acc = resolve_accelerator(accelerator, narrow, wide)
    r_narrow = simulate(trace, acc, limit=limit, seed=seed, progress=progress,
                        batch_size=batch_size)
    wide_acc = dataclasses.replace(acc, narrow=acc.wide, narrow_rounding=acc.wide_rounding)
    r_wide = simulate(trace, wide_acc, limit=limit, seed=seed, progress=progress,
                      batch_size=batch_size)
    return r_narrow, r_wide
