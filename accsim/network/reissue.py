"""One matmul layer's batch on the datapath: the narrow pass, the scheduler's choice of
rungs, the re-issue of the chosen components and the check against the error bound.

Every rung is a :class:`~accsim.numerics.datapath.Datapath`: rung 0 the accelerator's
narrow datapath (``Accelerator.datapath("narrow")``), the last rung its wide accumulator
(``datapath("wide")``), any rung between a sequential datapath with exact products (a
ladder's intermediate format). The policies and rungs are described in
:mod:`accsim.precision.scheduler`, the bound in :mod:`accsim.precision.analysis`.

Values (engine units, before the output scale) are bit for bit those of the engine's
full path whichever way a re-issue reaches the engine (transposed, a dense block or the
selected-output path): every output is the same sequential sum of the same exact
products in the same order.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from ..numerics.engine import FLAG_OVERFLOW, FLAG_SATURATE, matmul
from ..numerics.formats import FloatFormat
from ..numerics.rounding import quantize_flags
from ..precision.analysis import check_bound, error_bound, n_eff, spearman, unit_roundoff
from ..precision.scheduler import select, select_levels, static_scores
from . import ops
from .results import ErrorStats

SPEARMAN_SAMPLE = 2048
"""Components per layer batch kept for the rank correlation of bound and error."""

SELECT_COST = 2.5
"""Per-MAC time of the engine's selected-output path relative to its full (dense) path,
measured on 300 x 784 x 512 products (about 2-3 on float accumulators): a re-issue whose
selected components cover a block of rows x cols at most this many times their number runs
the dense path on that block instead (same values: every output is the same sequential
sum either way; not with stochastic rounding, whose random stream depends on the
positions computed)."""

_FEW_COLUMNS = 32       # below this many output columns ...
_LONG_SIDE = 4          # ... and with more than 4x as many rows: the transposed problem


@dataclass(frozen=True)
class ReissuePolicy:
    """What is scheduled and checked on every matmul layer batch.

    ``policy``, ``tau``, ``fraction``, ``estimator``, ``relu_negative``,
    ``output_layer``, ``overflow_rule``: the scheduler's
    (:mod:`accsim.precision.scheduler`; None: its defaults). ``analyze``: check every
    component against the deterministic error bound. ``collect``: keep every batch's
    ``static`` calibration scores (:attr:`LayerRun.scores`).
    """

    policy: str = "uniform-narrow"
    tau: float | None = None
    fraction: float | None = None
    estimator: str = "exact"
    relu_negative: str = "one"
    analyze: bool = True
    collect: bool = False
    output_layer: str | None = None
    overflow_rule: str | None = None

    @property
    def narrow_only(self) -> bool:
        """Nothing to do after the narrow pass."""
        return self.policy == "uniform-narrow" and not self.analyze and not self.collect


class Transposer:
    """``A.T`` as a contiguous array; the last one is kept (while A lives), so the narrow
    pass and the re-issues of a batch transpose its activations once. One per run."""

    def __init__(self):
        self._ref = None
        self._At = None

    def __call__(self, A):
        if self._ref is not None and self._ref() is A:
            return self._At
        At = np.ascontiguousarray(A.T)
        self._ref, self._At = weakref.ref(A), At
        return At


def _transposed_problem(m, n):
    return n < _FEW_COLUMNS and m > _LONG_SIDE * n


class LayerRun:
    """One matmul layer within one run: its constants (a
    :class:`~accsim.network.operands.PreparedLayer`), the activation consuming it, its
    :class:`~accsim.network.results.LayerResult` and what the run gathers for it (error
    statistics, bound samples, ``static`` calibration scores or per-neuron rungs)."""

    def __init__(self, index, prepared, act, result, neuron_levels=None):
        self.index = index
        self.prepared = prepared
        self.act = act
        self.result = result
        self.neuron_levels = neuron_levels
        self.stats = ErrorStats()
        self.bound_sample = []       # (rank key, observed error) per batch
        self.scores = []             # static calibration scores per batch
        self.is_output = False       # the matmul layer feeding the network output

    def add_accumulation_error(self, out, z64):
        """Add a batch's accumulation-only error: final outputs ``out`` against the
        float64 product ``z64`` of the same quantized operands (accumulator units;
        converted to real units by the output scale)."""
        d, ref = np.asarray(out, dtype=np.float64) - z64, z64
        sc = self.prepared.out_scale
        if sc is not None:
            d, ref = d * sc, ref * sc
        with np.errstate(all="ignore"):
            self.result.accumulation_sq[0] += float(np.sum(d * d))
            self.result.accumulation_sq[1] += float(np.sum(ref * ref))
            if d.size:
                a = np.abs(d)
                self.result.accumulation_error_max = max(
                    self.result.accumulation_error_max or 0.0,
                    float(np.inf if np.isnan(a).any() else a.max()))

    def finish(self):
        """Write the error statistics and the bound's rank correlation into the result."""
        r = self.result
        r.error = self.stats.summary()
        if self.bound_sample:
            r.bound_spearman = spearman(np.concatenate([a for a, _ in self.bound_sample]),
                                        np.concatenate([o for _, o in self.bound_sample]))
            self.bound_sample = []
        return r


def layer_matmul(A, p, dp, seed, transpose):
    """The engine's product of one batch on datapath ``dp``; (result, values (m, n)).

    With few output columns (a classifier head) the engine runs on the transposed
    problem ``(B.T @ A.T).T``: every output is the same sum of the same exact products in
    the same order, so the values and event totals are identical, but the engine's
    vectorised loop runs over the long side. ``transpose``: the run's :class:`Transposer`.
    """
    if _transposed_problem(A.shape[0], p.n):
        bias = None if p.bias is None else p.bias[:, None]
        res = matmul(p.BqT, transpose(A), dp, bias=bias, seed=seed)
        return res, res.values.T
    bias = None if p.bias is None else p.bias[None, :]
    res = matmul(A, p.Bq, dp, bias=bias, seed=seed)
    return res, res.values


def _dense(A, B, bias, dp, seed, transpose):
    """Values and flags (m, n) of the engine's full path (transposed for few columns, as
    :func:`layer_matmul`)."""
    m, n = A.shape[0], B.shape[1]
    if _transposed_problem(m, n):
        rw = matmul(np.ascontiguousarray(B.T), transpose(A), dp,
                    bias=None if bias is None else bias[:, None], seed=seed)
        fl = rw.events.flags
        return rw.values.T, (fl.T if fl.shape != (m, n) else fl)
    rw = matmul(A, B, dp, bias=None if bias is None else bias[None, :], seed=seed)
    return rw.values, rw.events.flags


def _scatter(m, n, index, v, f):
    """(m, n) values (NaN elsewhere) and flags (0 elsewhere) with ``v``, ``f`` at index."""
    vals = np.full((m, n), np.nan)
    flags = np.zeros((m, n), dtype=f.dtype)
    vals[index] = v
    flags[index] = f
    return vals, flags


def _selected(As, ms, p, dp, seed, transpose):
    """Values and flags of the rows ``As`` at their selected outputs ``ms`` (the engine's
    selected-output path; with few columns the transposed problem, as the narrow pass: a
    few long rows of gathered columns instead of scattered (row, col) pairs)."""
    b = p.bias
    if _transposed_problem(As.shape[0], p.n):
        rw = matmul(p.BqT, transpose(As), dp, bias=None if b is None else b[:, None],
                    select=ms.T, seed=seed)
        return rw.values.T, rw.events.flags.T
    rw = matmul(As, p.Bq, dp, bias=None if b is None else b[None, :], select=ms, seed=seed)
    return rw.values, rw.events.flags


def reissue(A, p, dp, mask, count, seed, transpose):
    """Values (m, n) of datapath ``dp`` at the ``mask``-ed components (everything when
    ``mask`` is None; other entries unspecified) and the engine flags (m, n).

    ``count``: the number of selected components. Deterministic roundings run a dense
    block (:data:`SELECT_COST`) or only the rows with selected outputs; stochastic
    rounding runs the selection on the whole batch (its stream depends on positions).
    """
    b = p.bias
    if mask is None:
        return _dense(A, p.Bq, b, dp, seed, transpose)
    m, n = mask.shape
    if dp.rounding == "sr":
        rw = matmul(A, p.Bq, dp, bias=None if b is None else b[None, :], select=mask,
                    seed=seed)
        return rw.values, rw.events.flags
    ri = np.flatnonzero(mask.any(axis=1))
    ci = np.flatnonzero(mask.any(axis=0))
    if ri.size * ci.size <= SELECT_COST * count:
        Asub = A if ri.size == m else A[ri]
        Bsub = p.Bq if ci.size == n else np.ascontiguousarray(p.Bq[:, ci])
        v, f = _dense(Asub, Bsub, None if b is None else b[ci], dp, seed, transpose)
        if ri.size == m and ci.size == n:
            return v, f
        return _scatter(m, n, np.ix_(ri, ci), v, f)
    As, ms = (A, mask) if ri.size == m else (A[ri], mask[ri])
    v, f = _selected(As, ms, p, dp, seed, transpose)
    if ri.size == m:
        return v, f
    return _scatter(m, n, ri, v, f)


def activation_error(z, z64, out_scale, act):
    """The oracle's "actual error" of each component: ``|φ(ẑ) - φ(z)|`` in real units for
    an elementwise activation φ consuming the layer, ``|ẑ - z|`` otherwise."""
    zs, rs = (z, z64) if out_scale is None else (z * out_scale, z64 * out_scale)
    with np.errstate(all="ignore"):
        if act in ("relu", "tanh", "sigmoid", "gelu"):
            err = np.abs(ops.activation(act, zs) - ops.activation(act, rs))
            err = err + 1e-300 * np.abs(zs - rs)     # ties: larger error in z first
        else:
            err = np.abs(zs - rs)
    return np.where(np.isnan(err), np.inf, err)


@dataclass(frozen=True)
class _Sums:
    """|A||B| in float64 (bounds, integer rules, calibration), the scheduler's estimate of
    it, and the float64 product ``A B + b`` (bound check, oracle); None where unused."""

    P: np.ndarray | None
    Pest: np.ndarray | None
    z64: np.ndarray | None


def _sums(A, p, dp0, pol):
    """The sums the policy and the bound check of one batch use (:class:`_Sums`).

    Float accumulators' selection uses ``|A||B|`` accumulated in binary32 (the estimate's
    own "cheap format": relative error below K * 2^-24, and half the time of float64);
    integer bounds, the bound check and static calibration use the float64 sum.
    """
    is_float = isinstance(dp0.acc, FloatFormat)
    need_est = is_float and (
        pol.policy in ("condition", "absolute", "random", "oracle", "multi-level")
        and pol.estimator == "exact"
        and not (pol.policy in ("random", "oracle") and pol.fraction is not None))
    need_P = pol.analyze or pol.collect or not is_float
    P = np.abs(A) @ p.absB if need_P else None       # = analysis.abs_sum(A, p.Bq)
    Pest = P if not is_float else (
        (np.abs(A, dtype=np.float32) @ p.absB32).astype(np.float64) if need_est else None)
    z64 = None
    if pol.analyze or pol.policy == "oracle":
        z64 = A @ p.Bq
        if p.bias is not None:
            z64 = z64 + p.bias
    return _Sums(P, Pest, z64)


@dataclass(frozen=True)
class _Assignment:
    """The rung of every component: ``levels`` (rung indices), or for the mask policies
    ``mask`` (the top rung where True, rung 0 elsewhere)."""

    levels: np.ndarray | None
    mask: np.ndarray | None

    def at(self, k):
        """Mask of the components on rung ``k`` ≥ 1 (the top rung for a mask)."""
        return self.mask if self.levels is None else self.levels == k

    def counts(self, size, R):
        """Components per rung (int64, R) of a batch of ``size`` components."""
        if self.levels is None:
            counts = np.zeros(R, dtype=np.int64)
            counts[R - 1] = np.count_nonzero(self.mask)
            counts[0] = size - counts[R - 1]
            return counts
        return np.bincount(np.asarray(self.levels, dtype=np.intp).reshape(-1), minlength=R)


def _assign(lr, A, z, flags, rungs, pol, sums, seed):
    """The policy's rung for every component of the batch (:class:`_Assignment`)."""
    p = lr.prepared
    if pol.policy == "multi-level":
        return _Assignment(select_levels(
            zhat=z, A=A, B=p.Bq, b=p.bias, rungs=rungs, flags=flags, act=lr.act,
            out_scale=p.out_scale, tau=pol.tau, estimator=pol.estimator, P=sums.Pest,
            relu_negative=pol.relu_negative), None)
    if pol.policy == "static":
        return _Assignment(np.broadcast_to(lr.neuron_levels[None, :], z.shape), None)
    observed = None
    if pol.policy == "oracle":
        observed = activation_error(z, sums.z64, p.out_scale, lr.act)
    rng = np.random.default_rng(seed) if pol.policy == "random" else None
    mask = select(pol.policy, zhat=z, A=A, B=p.Bq, b=p.bias, datapath=rungs[0], flags=flags,
                  act=lr.act, out_scale=p.out_scale, tau=pol.tau, fraction=pol.fraction,
                  estimator=pol.estimator, rng=rng, P=sums.Pest, observed=observed,
                  relu_negative=pol.relu_negative, output=lr.is_output,
                  output_layer=pol.output_layer, overflow_rule=pol.overflow_rule)
    return _Assignment(None, mask)


def _reissue_rungs(A, p, z, rungs, asg, counts, seed, transpose):
    """The outputs after the components of rungs r ≥ 1 were replaced by those rungs'
    values, and each re-issued rung's engine flags (by rung)."""
    out = z
    rflags = {}
    for k in range(1, len(rungs)):
        if not counts[k]:
            continue
        if counts[k] == z.size:      # everything: the engine's full path, same values
            out, rflags[k] = reissue(A, p, rungs[k], None, z.size, seed, transpose)
        else:
            mk = asg.at(k)
            vals, rflags[k] = reissue(A, p, rungs[k], mk, int(counts[k]), seed, transpose)
            out = np.where(mk, vals, out)
    return out, rflags


def _check_bounds(lr, A, out, flags, rflags, rungs, asg, sums):
    """Count bound violations and inapplicable bounds; keep a sample of (bound, error)."""
    p, r, P = lr.prepared, lr.result, sums.P
    b = p.bias
    bnd = error_bound(A, p.Bq, b, rungs[0], flags=flags, P=P)
    for k, fl in rflags.items():
        bk = error_bound(A, p.Bq, b, rungs[k], flags=fl, P=P)
        bnd = np.where(asg.at(k), bk, bnd)
    obs, viol = check_bound(out, A, p.Bq, b, bnd, P=P, z64=sums.z64)
    r.bound_violations += int(viol.sum())
    r.bound_not_applicable += int((~np.isfinite(bnd)).sum())
    # rank key: the bound; where n*u >= 1 made it infinite, its shape |A||B| + |b|
    # (overflowed components are left out)
    ovf = (flags & (FLAG_OVERFLOW | FLAG_SATURATE)) != 0
    key = bnd
    if not np.all(np.isfinite(bnd) | ovf):
        key = np.where(ovf, np.nan, P if b is None else P + np.abs(b))
    fo, fb = obs.reshape(-1), key.reshape(-1)
    step = max(1, fo.size // SPEARMAN_SAMPLE)
    lr.bound_sample.append((fb[::step].copy(), fo[::step].copy()))


def schedule_and_check(lr, A, res, z, rungs, pol, seed, transpose):
    """Policy selection, re-issue and the bound check of one layer batch.

    ``lr``: the :class:`LayerRun`; ``A``: the batch's quantized operands (m, K); ``res``,
    ``z``: the narrow (rung-0) engine result and its outputs (m, n) in accumulator units;
    ``rungs``: the Datapath of every rung; ``pol``: the :class:`ReissuePolicy`. Returns
    the final outputs (same units) after the components assigned to rungs r ≥ 1 were
    replaced by those rungs' values (the engine's selected-output path; its full path when
    a rung takes every component). Counts go into ``lr.result``.
    """
    r = lr.result
    p = lr.prepared
    if r.stagnation_ku is None and isinstance(rungs[0].acc, FloatFormat):
        r.stagnation_ku = narrow_ku(rungs[0], p.K)
        r.narrow_u = unit_roundoff(rungs[0].acc, rungs[0].rounding)
    if pol.narrow_only:
        r.level_counts[0] += z.size
        return z
    flags = res.events.flags
    if flags.shape != z.shape:
        flags = flags.T
    flags = flags | bias_load_flags(p.bias, rungs[0])
    sums = _sums(A, p, rungs[0], pol)
    if pol.collect:
        lr.scores.append(static_scores(
            z, A, p.Bq, p.bias, rungs, flags=flags, act=lr.act, out_scale=p.out_scale,
            P=sums.P, relu_negative=pol.relu_negative))
    asg = _assign(lr, A, z, flags, rungs, pol, sums, seed)
    counts = asg.counts(z.size, len(rungs))
    for k in range(len(rungs)):
        r.level_counts[k] += int(counts[k])
    r.recomputed += z.size - int(counts[0])
    out, rflags = _reissue_rungs(A, p, z, rungs, asg, counts, seed, transpose)
    if pol.analyze:
        _check_bounds(lr, A, out, flags, rflags, rungs, asg, sums)
    if sums.z64 is not None:
        lr.add_accumulation_error(out, sums.z64)
    return out


def bias_load_flags(bias, dp):
    """Per-column (1, n) uint8 flags of loading ``bias`` (accumulator units) into the
    register of the Datapath ``dp`` (the promotion register for ``chunked``): overflow /
    saturation where it does not fit. The engine does not count the bias load as an
    event; an integer register whose bias was clamped or wrapped has a wrong sum and no
    flag, so this flag is ORed into the narrow pass's flags (0 without a bias)."""
    if bias is None:
        return np.uint8(0)
    chunked = dp.structure == "chunked"
    fmt = dp.wide if chunked else dp.acc
    rnd = dp.wide_rounding if chunked else dp.rounding
    _, fl, _ = quantize_flags(np.asarray(bias, dtype=np.float64).reshape(-1), fmt,
                              "rne" if rnd == "sr" else rnd)
    return (fl & np.uint8(FLAG_OVERFLOW | FLAG_SATURATE))[None, :]


def narrow_ku(dp, K):
    """``k·u`` of a float narrow Datapath ``dp`` summing ``K`` products: its effective
    narrow chain length (:func:`accsim.precision.analysis.n_eff`; chunked: the chunk)
    times its unit roundoff. ``k·u ≥ 1`` means the register stagnates and the
    deterministic bound is infinite. None for integer / fixed-point registers."""
    if not isinstance(dp.acc, FloatFormat):
        return None
    st = dp.structure
    n = n_eff(K, st, chunk_size=dp.chunk_size, terms=dp.terms,
              rounded_products=dp.rounded_product)
    n = n[0] if isinstance(n, tuple) else n
    return float(n * unit_roundoff(dp.acc, dp.rounding))
