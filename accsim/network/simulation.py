"""Run a :class:`~accsim.network.trace.Trace` end to end on a simulated accelerator.

:func:`simulate` walks the trace's graph once per batch. Every product node (Gemm, MatMul,
Conv: :data:`accsim.network.graph.PRODUCT_OPS`) is lowered to 2-D problems
(:mod:`accsim.network.products`) that go through :func:`accsim.numerics.engine.matmul` on
the accelerator's *narrow* datapath (``Accelerator.datapath("narrow")``: its accumulator,
rounding, product mode and structure); every other node runs in float64
(:mod:`accsim.network.graph_ops`). The float64 reference
(:func:`accsim.network.products.run_reference_node`) runs alongside on the same samples,
node by node in step with the simulated pass (each tensor released after its last reader).

The parts, one module each:

* :mod:`accsim.network.products`: the lowering of product nodes to 2-D problems, the
  float64 forward pass, the activation consuming each product and bias folding;
* :mod:`accsim.network.operands`: the quantisation of operands (formats, scales, the
  calibration of activation scales, non-finite activations);
* :mod:`accsim.network.reissue`: one 2-D problem's batch: the narrow pass, the
  scheduler's choice of rungs, the re-issues and the bound check;
* :mod:`accsim.network.results`: relative errors, their statistics, accuracy and
  agreement, and the result records (one per product node, keyed by its name);
* this module: the options of a run (:class:`RunOptions`), the pass over the samples
  (one :class:`~accsim.network.reissue.LayerRun` per product node), the ``static``
  policy's calibration pass, :func:`compare` and :func:`save_outputs`.

An overflow never aborts a run: non-finite outputs of a product are counted per node
(``LayerResult.nan`` / ``inf``) and flow on through the graph (numpy's warnings about them
are silenced); the next product quantizes them by the rule of :mod:`.operands`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from ..hardware.accelerator import load_accelerator
from ..numerics.config import load_format
from ..numerics.datapath import Datapath
from ..numerics.formats import FloatFormat, IntFormat
from ..precision.scheduler import (DEFAULT_QUANTILE, LADDER_POLICIES, check_policy,
                                   check_schedule_options, default_ladder,
                                   default_output_layer, resolve_ladder, static_neuron_levels)
from . import quant_ops
from .graph import Graph
from .graph_ops import run_node, tensor
from .integer_layers import IntegerLayer
from .operands import PreparedLayer, activation_scale, operand_specs, quantize_activation
from .products import (consumer_activation, foldable_bias, last_uses, lower, operand_inputs,
                       output_product, run_reference_node)
from .reissue import LayerRun, ReissuePolicy, Transposer, layer_matmul, schedule_and_check
from .results import LayerResult, SimulationResult
from .trace import resolve_trace, write_npz

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
    """Warn (:class:`AccumulatorWidthWarning`, one line naming the product nodes) when an
    integer accumulator of ``rung_formats`` has fewer bits than one product of the
    trace's integer operands on ``acc`` (``int8`` register for ``int8 x int8``): its
    sums wrap or saturate from the first term."""
    ispec, wspec = operand_specs(trace, acc)
    a, w = ispec.fmt, wspec.fmt
    if not (isinstance(a, IntFormat) and isinstance(w, IntFormat)):
        return
    need = product_bits(a, w)
    layers = trace.matmul_layers()
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


def _seed_for(seed, node_index, chunk_index, problem=None):
    """The engine's seed of one problem of a product node in one batch (the problem index
    is left out for nodes lowered to a single problem)."""
    key = [int(seed), node_index, chunk_index] + ([] if problem is None else [problem])
    ss = np.random.SeedSequence(key)
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


class _Product:
    """A product node within a run: its :class:`~accsim.network.reissue.LayerRun`, the
    tensor it writes (a folded ``Add``'s output when its bias was folded), the inputs
    feeding A and an activation B, their calibrated magnitudes, and the prepared constant
    operands (:class:`~accsim.network.operands.PreparedLayer`, by problem key)."""

    def __init__(self, index, node, arrays, fold, act, lr):
        self.index, self.node, self.lr = index, node, lr
        self.fold, self.bias = fold
        self.out = self.fold.outputs[0] if self.fold is not None else node.outputs[0]
        self.const = [t in arrays for t in node.inputs]
        self.a_input, self.b_input = operand_inputs(node, arrays)
        self.act = act
        self.amax_a = self.amax_b = 0.0
        self.s_x = None
        self.prepared = {}
        self.levels = None           # static inference: the rung of every output column
        self.groups = 1

    def scores(self):
        """``static`` calibration scores (rows, output columns) of every batch."""
        s, g = self.lr.scores, self.groups
        if g == 1:
            return np.concatenate(s)
        return np.concatenate([np.concatenate(s[k:k + g], axis=1)
                               for k in range(0, len(s), g)])


def _predictions(out):
    """Argmax of every row of ``out`` (S, classes); -1 (no class: it neither agrees nor
    is accurate) for a row holding a NaN."""
    pred = np.argmax(out, axis=1)
    return np.where(np.isnan(out).any(axis=1), -1, pred)


def _shared(node, env, ref):
    """Whether every activation input of ``node`` is the same object in the simulated
    pass ``env`` and the reference pass ``ref`` (nothing diverged upstream): the node's
    reference outputs are then its simulated outputs too."""
    return all(ref.get(t) is env[t] for t in node.inputs if t and t in env)


class _Run:
    """The state of one pass of the samples ``X`` of ``trace`` through its graph on
    ``acc`` with the options ``opts``: per product node a :class:`_Product`, the float64
    reference's time, and the transposes a batch reuses. ``neuron_levels``: ``static``
    inference, the rung of every output column by node index. ``keep_tensors``: gather
    every tensor of both passes (:attr:`SimulationResult.tensors`)."""

    def __init__(self, trace, acc, X, labels, opts, neuron_levels=None, keep_tensors=False):
        self.trace, self.acc, self.labels, self.opts = trace, acc, labels, opts
        self.graph, self.arrays = trace.graph, trace.arrays
        self.X = trace.model_inputs(X)
        self.n = X.shape[0]
        self.ispec, self.wspec = operand_specs(trace, acc)
        self.neuron_levels = neuron_levels
        self.keep_tensors = keep_tensors
        self.transpose = Transposer()
        self.ref_seconds = 0.0
        self.typed = quant_ops.is_quantized(self.graph)
        if self.typed:            # a quantized model: its integer products on the register
            self.products, self.skip = {}, set()
            self.ints = {i: IntegerLayer(i, n, opts.rung_labels)
                         for i, n in enumerate(self.graph.nodes)
                         if n.op in quant_ops.INTEGER_PRODUCT_OPS}
        else:
            self.products, self.skip = self._plan(trace.shapes())
            self.ints = {}
        self.mm = {i: pr.lr for i, pr in self.products.items()} | self.ints
        self.mm_index = sorted(self.mm)
        self.release = {} if keep_tensors else last_uses(self.graph)
        self.tensors, self.ref_tensors = {}, {}

    def _plan(self, shapes):
        """The product nodes (by node index) and the folded ``Add`` nodes (skipped)."""
        products, skip = {}, set()
        R = len(self.opts.rungs)
        out_index = output_product(self.graph)
        for i, node in enumerate(self.graph.nodes):
            if not node.is_product:
                continue
            fold = foldable_bias(self.graph, node, self.arrays, shapes)
            if fold[0] is not None:
                skip.add(self.graph.nodes.index(fold[0]))
            out = fold[0].outputs[0] if fold[0] is not None else node.outputs[0]
            act = consumer_activation(self.graph, out, self.arrays)
            r = LayerResult(node.name, node.op, 0, level_labels=list(self.opts.rung_labels),
                            level_counts=[0] * R)
            nl = None if self.neuron_levels is None else self.neuron_levels[i]
            if nl is not None:
                r.neuron_levels = [int(v) for v in nl]
            products[i] = _Product(i, node, self.arrays, fold, act,
                                   LayerRun(i, None, act, r, nl))
            products[i].levels = nl
            products[i].lr.is_output = i == out_index
        return products, skip

    def reference(self, i, ref, consts):
        """Run node ``i`` of the float64 reference on its tensors ``ref`` (timed); a
        product whose bias is folded runs its ``Add`` too."""
        t0 = time.perf_counter()
        nodes = [self.graph.nodes[i]]
        pr = self.products.get(i)
        if pr is not None and pr.fold is not None:
            nodes.append(pr.fold)
        for node in nodes:
            ins = [tensor(t, ref, self.arrays, consts) for t in node.inputs]
            for t, v in zip(node.outputs, run_reference_node(node, ins, self.arrays,
                                                             self.typed)):
                ref[t] = v
        self.ref_seconds += time.perf_counter() - t0

    def _release(self, i, *envs):
        for t in self.graph.nodes[i].inputs:
            if self.release.get(t) == i:
                for env in envs:
                    env.pop(t, None)

    def calibrate(self):
        """The largest magnitude of the float64 reference activations entering every
        product node (A, and an activation B) over all samples, and the activation
        scales; nothing to do without an input scale."""
        if self.ispec.scale == "none" or not self.products:
            return
        for s0, s1 in _batches(self.n, self.opts.batch_size):
            ref, consts = {self.graph.input: self.X[s0:s1]}, {}
            for i, node in enumerate(self.graph.nodes):
                pr = self.products.get(i)
                for k, attr in (() if pr is None else
                                ((pr.a_input, "amax_a"), (pr.b_input, "amax_b"))):
                    v = None if k is None else tensor(node.inputs[k], ref, self.arrays,
                                                      consts)
                    if v is not None and v.size:
                        setattr(pr, attr, max(getattr(pr, attr), float(np.max(np.abs(v)))))
                if i not in self.skip:
                    self.reference(i, ref, consts)
                self._release(i, ref)
        for pr in self.products.values():
            pr.s_x = activation_scale(pr.amax_a, self.ispec)

    def prepared(self, pr, prob):
        """The :class:`PreparedLayer` of one problem of ``pr`` (constant B: made once)."""
        if prob.key is None:
            return PreparedLayer(pr.node.name, prob.B, prob.bias, self.acc, self.ispec,
                                 self.wspec, pr.amax_a, amax_b=pr.amax_b)
        p = pr.prepared.get(prob.key)
        if p is None:
            p = pr.prepared[prob.key] = PreparedLayer(pr.node.name, prob.B, prob.bias,
                                                      self.acc, self.ispec, self.wspec,
                                                      pr.amax_a)
        return p

    def problem(self, pr, j, prob, ci, multi):
        """Outputs (m, n) of problem ``j`` of product ``pr`` in batch ``ci`` (real units),
        its events counted in the node's result."""
        lr, r = pr.lr, pr.lr.result
        p = lr.prepared = self.prepared(pr, prob)
        if pr.levels is not None:
            lr.neuron_levels = pr.levels if pr.groups == 1 else \
                pr.levels[j * p.n:(j + 1) * p.n]
        A = np.ascontiguousarray(prob.A)
        seed = _seed_for(self.opts.seed, pr.index, ci, j if multi else None)
        res, z = layer_matmul(A, p, self.opts.rungs[0], seed, self.transpose)
        z = schedule_and_check(lr, A, res, z, self.opts.rungs, self.opts.reissue, seed,
                               self.transpose)
        if p.out_scale is not None:
            z = z * p.out_scale
        ev = res.events.total
        for k in r.events:
            r.events[k] += ev[k]
        return z

    def product(self, pr, ins, ci, zref):
        """Output of product node ``pr`` on its inputs ``ins`` in batch ``ci`` (real
        units); counts, times, errors against ``zref`` and non-finite outputs go into the
        node's result."""
        r = pr.lr.result
        t0 = time.perf_counter()
        ins = list(ins)
        ins[pr.a_input], n_nan, n_inf = quantize_activation(ins[pr.a_input],
                                                            self.ispec.fmt, pr.s_x)
        r.operand_nan += n_nan
        r.operand_inf += n_inf
        low = lower(pr.node, ins, pr.const, pr.bias)
        r.K, pr.groups = low.K, low.groups
        multi = len(low.problems) > 1
        y = low.finish([self.problem(pr, j, prob, ci, multi)
                        for j, prob in enumerate(low.problems)])
        r.rows += y.size // max(low.columns, 1)
        r.cols = low.columns
        r.seconds += time.perf_counter() - t0
        r.outputs += y.size
        if pr.lr.stats.add_error(y, zref):     # every error finite: so is every output
            return y
        finite = int(np.count_nonzero(np.isfinite(y)))
        if finite != y.size:
            nan = int(np.count_nonzero(np.isnan(y)))
            r.nan += nan
            r.inf += y.size - finite - nan
        return y

    def batch(self, ci, xb, on_layer=None):
        """The simulated and the reference tensors (two dicts) of batch ``ci`` with model
        inputs ``xb``, computed node by node in step (each tensor released after its last
        reader unless every tensor is kept); ``on_layer(name, k, n)`` before the ``k``-th
        (from 1) of the ``n`` product nodes."""
        if self.typed:                          # onnxruntime's float32 model input
            xb = xb.astype(np.float32)
        env, ref = {self.graph.input: xb}, {self.graph.input: xb}
        consts = {}
        for i, node in enumerate(self.graph.nodes):
            if i in self.skip:                  # a folded Add: done with its product
                self._release(i, env, ref)
                continue
            if i not in self.ints:          # an integer product runs both passes
                self.reference(i, ref, consts)
                if self.typed and _shared(node, env, ref):
                    env.update((t, ref[t]) for t in node.outputs if t in ref)
                    self._release(i, env, ref)
                    continue
            ins = [tensor(t, env, self.arrays, consts) for t in node.inputs]
            pr = self.products.get(i)
            if i in self.mm and on_layer is not None:
                on_layer(node.name, self.mm_index.index(i) + 1, len(self.mm_index))
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    if pr is not None:
                        env[pr.out] = self.product(pr, ins, ci, ref[pr.out])
                    elif i in self.ints:
                        env[node.outputs[0]], ref[node.outputs[0]] = self.ints[i].step(
                            ins, [tensor(t, ref, self.arrays, consts) for t in node.inputs],
                            self.opts.rungs[0], _seed_for(self.opts.seed, i, ci))
                    elif self.typed:       # onnxruntime's types between integer products
                        env.update(zip(node.outputs, run_reference_node(
                            node, ins, self.arrays, True)))
                    else:                  # an overflow upstream: inf, NaN flow on
                        env.update(zip(node.outputs, run_node(node, ins)))
            except ValueError as exc:
                msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                if msg.startswith(f"node {node.name} "):
                    raise
                raise ValueError(f"node {node.name} ({node.op}): {msg}") from None
            self._release(i, env, ref)
        return env, ref

    def _gather(self, env, ref):
        for store, src in ((self.tensors, env), (self.ref_tensors, ref)):
            for k, v in src.items():
                store.setdefault(k, []).append(np.asarray(v, dtype=np.float64))

    def execute(self, progress=None, layer_progress=None):
        """Run every batch; the :class:`~accsim.network.results.SimulationResult`.
        ``progress(done, n)`` after each batch, ``layer_progress(done, n, name, k, K)``
        before the ``k``-th of the ``K`` product nodes of each batch (``done``: samples
        finished before the batch)."""
        t_start = time.perf_counter()
        self.calibrate()
        out_sim, out_ref = [], []
        g_out = self.graph.output
        for ci, (s0, s1) in enumerate(_batches(self.n, self.opts.batch_size)):
            on_layer = None if layer_progress is None else \
                (lambda name, k, K, s0=s0: layer_progress(s0, self.n, name, k, K))
            env, ref = self.batch(ci, self.X[s0:s1], on_layer)
            out_sim.append(np.asarray(env[g_out]).reshape(s1 - s0, -1))
            out_ref.append(np.asarray(ref[g_out]).reshape(s1 - s0, -1))
            if self.keep_tensors:
                self._gather(env, ref)
            if progress is not None:
                progress(s1, self.n)
        res = self.result(np.concatenate(out_sim), np.concatenate(out_ref), t_start)
        if self.keep_tensors:
            res.tensors = {k: np.concatenate(v) for k, v in self.tensors.items()}
            res.reference_tensors = {k: np.concatenate(v) for k, v in self.ref_tensors.items()}
        return res

    def result(self, out_sim, out_ref, t_start):
        pred = _predictions(out_sim)
        pred_ref = _predictions(out_ref)
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
            wide=acc.wide.label,
            input_format="model" if self.typed else self.ispec.fmt.label,
            weight_format="model" if self.typed else self.wspec.fmt.label, n_samples=self.n, accuracy=accuracy,
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
                     layer_progress=None, keep_tensors=False):
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
    neuron = {i: static_neuron_levels(pr.scores(), opts.rungs, tau=pol.tau,
                                      fraction=pol.fraction, quantile=quantile)
              for i, pr in cal.products.items()}
    res = _Run(trace, acc, X[calibration:], None if labels is None else labels[calibration:],
               opts, neuron_levels=neuron, keep_tensors=keep_tensors).execute(
        progress, layer_progress)
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


#: ``dynamic_range`` values: DynamicQuantizeLinear ranges per sample or over all samples
DYNAMIC_RANGES = ("sample", "batch")


def quantized_setup(trace, acc, policy, dynamic_range, batch_size, n):
    """(trace, batch size) of a run of a quantized ``trace`` (:func:`.quant_ops.
    is_quantized`): its integer products need an integer narrow register and the
    ``uniform-narrow`` policy; ``dynamic_range`` ``"batch"`` computes every
    DynamicQuantizeLinear range over all ``n`` samples (run as one batch), ``"sample"``
    (the default) per sample. An option that does not apply is a ValueError."""
    if not quant_ops.is_quantized(trace.graph):
        if dynamic_range is not None:
            raise ValueError(f"dynamic_range: trace {trace.name} is not a quantized model")
        return trace, batch_size
    if not isinstance(acc.narrow, IntFormat):
        raise ValueError(f"narrow: the quantized model {trace.name} accumulates integers; "
                         f"{acc.narrow.label} (accelerator {acc.name}) is not an integer "
                         f"register (use an integer accelerator such as int8-int32acc, or "
                         f"an integer narrow format such as int16)")
    if policy != "uniform-narrow":
        raise ValueError(f"policy: the quantized model {trace.name} runs the "
                         f"uniform-narrow policy only, got {policy!r}")
    if dynamic_range is None:
        return trace, batch_size
    if dynamic_range not in DYNAMIC_RANGES:
        raise ValueError(f"dynamic_range: expected one of {', '.join(DYNAMIC_RANGES)}, "
                         f"got {dynamic_range!r}")
    dyn = [k for k, nd in enumerate(trace.graph.nodes) if nd.op == "DynamicQuantizeLinear"]
    if not dyn:
        raise ValueError(f"dynamic_range: the quantized model {trace.name} has no "
                         f"DynamicQuantizeLinear node")
    nodes = [dataclasses.replace(nd, attrs={**nd.attrs, quant_ops.RANGE_ATTR: dynamic_range})
             if k in dyn else nd for k, nd in enumerate(trace.graph.nodes)]
    g = trace.graph
    trace = dataclasses.replace(trace, graph=Graph(nodes, g.input, g.input_shape, g.output))
    return trace, (n if dynamic_range == "batch" else batch_size)


def simulate(trace, accelerator="fp16-fp16acc", *, narrow=None, wide=None, limit=None,
             seed=0, progress: Callable[[int, int], None] | None = None,
             batch_size: int = DEFAULT_BATCH, policy: str = "uniform-narrow",
             tau: float | None = None, fraction: float | None = None,
             estimator: str = "exact", relu_negative: str = "one",
             analyze: bool = True, ladder=None, calibration: int | None = None,
             quantile: float | None = None,
             layer_progress: Callable[[int, int, str, int, int], None] | None = None,
             keep_tensors: bool = False, output_layer: str | None = None,
             overflow_rule: str | None = None, dynamic_range: str | None = None
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
    dynamic_range : "sample" | "batch", optional
        A quantized model's DynamicQuantizeLinear ranges: per sample (default, each
        sample a batch-1 run) or over all simulated samples (one batch); an error for a
        model without DynamicQuantizeLinear. A quantized model (ONNX quantized ops, see
        docs/quantized.md) runs its integer products on the narrow integer register
        (:mod:`accsim.network.integer_layers`) and everything else with onnxruntime's
        tensor types; its reference is the exact integer pass (onnxruntime's outputs).
    keep_tensors : bool
        Keep every tensor of the simulated and of the reference pass over all samples
        (``result.tensors`` / ``result.reference_tensors``, name -> (S, *model shape);
        memory grows with the samples; a folded MatMul's own output is not kept, its
        Add's is).
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
        trace, batch_size = quantized_setup(trace, acc, policy, dynamic_range, batch_size,
                                            X.shape[0])
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
        if not quant_ops.is_quantized(trace.graph):
            check_register_widths(trace, acc, opts.rung_formats)
        if policy == "static":
            return _simulate_static(trace, acc, X, labels, opts, calibration=calibration,
                                    quantile=DEFAULT_QUANTILE if quantile is None
                                    else quantile, progress=progress,
                                    layer_progress=layer_progress,
                                    keep_tensors=keep_tensors)
        return _Run(trace, acc, X, labels, opts, keep_tensors=keep_tensors).execute(
            progress, layer_progress)


def compare(trace, accelerator="fp16-fp16acc", *, narrow=None, wide=None, limit=None,
            seed=0, progress=None, batch_size: int = DEFAULT_BATCH, keep_tensors=False):
    """Two runs: the narrow accumulator, then the same network with the narrow
    accumulator replaced by the wide one (format and rounding). Returns both results."""
    trace = resolve_trace(trace)
    acc = resolve_accelerator(accelerator, narrow, wide)
    r_narrow = simulate(trace, acc, limit=limit, seed=seed, progress=progress,
                        batch_size=batch_size, keep_tensors=keep_tensors)
    wide_acc = dataclasses.replace(acc, narrow=acc.wide, narrow_rounding=acc.wide_rounding)
    r_wide = simulate(trace, wide_acc, limit=limit, seed=seed, progress=progress,
                      batch_size=batch_size, keep_tensors=keep_tensors)
    return r_narrow, r_wide


def save_outputs(path, narrow, wide=None, tensors=False):
    """Write the outputs of a run as ``path`` (.npz), atomically (a temporary file in the
    same folder renamed into place). Every array is float64 with the samples first:
    ``outputs`` (the narrow / policy run, (S, classes)), ``wide_outputs`` (when ``wide``,
    the all-wide run, is given), ``reference_outputs`` (float64 reference); with
    ``tensors`` every tensor of the runs by name as ``tensor/NAME``, ``wide_tensor/NAME``
    and ``reference_tensor/NAME`` (S, *model shape) (the runs must have been made with
    ``keep_tensors=True``). Returns the path."""
    arrays = {"outputs": narrow.outputs, "reference_outputs": narrow.reference_outputs}
    if wide is not None:
        arrays["wide_outputs"] = wide.outputs
    if tensors:
        if narrow.tensors is None or (wide is not None and wide.tensors is None):
            raise ValueError("tensors: the runs kept no tensors (simulate with "
                             "keep_tensors=True)")
        runs = [("tensor", narrow.tensors), ("reference_tensor", narrow.reference_tensors)]
        if wide is not None:
            runs.append(("wide_tensor", wide.tensors))
        for prefix, d in runs:
            arrays.update({f"{prefix}/{k}": v for k, v in d.items()})
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_npz(tmp, arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
