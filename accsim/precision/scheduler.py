"""Scheduler policies: which output components are re-issued to the wide accumulator.

Every matmul layer first runs on the narrow datapath; a policy then returns a boolean mask
(m, n) of components to recompute with the wide accumulator (same quantized operands,
:func:`accsim.numerics.engine.matmul` with ``select=mask``); the recomputed values replace
the narrow ones before the activation. Datapaths are
:class:`~accsim.numerics.datapath.Datapath` values: the narrow one is the accelerator's
``datapath("narrow")`` (for ``chunked``, its ``wide`` is the promotion register). Used by
:mod:`accsim.network.reissue`, which runs the re-issues.

Policies
    ``uniform-narrow``: nothing re-issued. ``uniform-wide``: everything re-issued.
    ``condition`` (El Arar et al.): re-issue where ``u_narrow · κ_i · κ_φ(ẑ_i) > τ`` with
    ``κ_i = Ŝ_i / |ẑ_i|`` estimated from the narrow output ``ẑ`` and the estimator's
    ``Ŝ ≈ |w_i|ᵀ|x| + |b_i|``; ``κ_φ`` is the condition number of the activation that
    consumes the layer (identity when none), evaluated at ``ẑ`` in real units
    (:func:`accsim.precision.analysis.kappa_phi`; ReLU convention ``relu_negative``). A
    non-finite ``ẑ`` (overflow) scores ``+inf``. Valid thresholds (:func:`valid_tau`, the
    one definition used by :func:`accsim.network.simulate`, the CLI and sweep specs):
    ``0 ≤ τ ≤ +inf``. ``τ = 0`` re-issues every component (the limit τ→0, including
    components whose score is exactly 0), ``τ = inf`` none. With ``fraction``
    given instead of ``τ``: the ``round(fraction · m n)`` highest scores of each batch.
    For integer / fixed-point narrow accumulators (``u = 0``: adds are exact) the rule is
    the overflow bound rule below.
    ``absolute``: rank by the predicted absolute error of the activation output,
    ``|φ'(ẑ)| · u · (k/2 · |ẑ| + √k/2 · Ŝ)`` (:mod:`accsim.precision.absolute`, which also
    defines its threshold: τ is that error as a fraction of the row's mean activation
    magnitude); with ``fraction``: the ``round(fraction · m n)`` highest scores of each
    batch. Integer / fixed-point narrow accumulators: as ``condition``.
    ``random``: the same number of components as ``condition`` at this ``τ`` would pick in
    each layer and batch (or ``round(fraction · m n)`` with ``fraction``), uniformly at
    random with a seeded generator.
    ``oracle``: the same budget, the components with the largest actual error
    ``|ẑ - z|`` of the narrow pass (``z``: float64 product of the quantized operands).
    ``overflow``: components whose narrow register overflowed or saturated (engine flags 2,
    4; :mod:`accsim.network.reissue` adds a bias that does not fit the register); with
    ``overflow_rule="bound"`` (integer / fixed-point accumulators) also every component
    whose bound ``|w_i|ᵀ|x| + |b_i|`` (per chunk for ``chunked``) could exceed the
    register (``≥ 2^(B-1)`` units). The same rule decides ``condition`` and ``absolute``
    on integer registers (``u = 0``: only overflow makes an error).

Output layer (:data:`OUTPUT_LAYER_MODES`)
    The matmul layer feeding the network output (``select(..., output=True)``) is
    scheduled by ``output_layer``: ``wide`` re-issues all of it, ``rows`` whole rows
    (``absolute``: by :func:`accsim.precision.absolute.row_scores`, ``round(fraction · m)``
    rows or the rows scoring above τ; ``random``: that many rows at random, at a τ the
    count of ``condition`` divided by n), ``components`` as any other layer. Default:
    :func:`default_output_layer`.

Estimators of ``Ŝ``
    ``exact``: ``|A||B| + |b|`` (what an extra cheap accumulation computes). Called
    here without ``P`` it is the float64 sum; :mod:`accsim.network.reissue` passes
    ``|A||B|`` accumulated in binary32 for float accumulators (relative error below
    ``K·2^-24``, half the time), the float64 sum for integer bounds and the bound check.
    ``norm``: ``‖w_i‖₂ ‖x‖₂ + |b_i|`` (Cauchy–Schwarz upper bound; weight norms precomputed).
    ``exponent``: ``Σ_k 2^(e(a_k) + e(b_k) + 1) + |b_i|`` with ``e = floor(log2 |·|)``
    (log-domain sum of exponents; within a factor 2 of the exact value either way).

Ladders (``multi-level`` and ``static``)
    A ladder is a list of R ≥ 2 accumulator formats, cheapest first; rung r is written
    ``NAME`` or ``NAME:ROUNDING`` (e.g. ``e6m12:rz``) or given as a format value or a
    ``(format, rounding)`` pair. Rung 0 is the accelerator's *narrow datapath* (its
    product mode and structure, rounding ``narrow_rounding`` unless the rung names one);
    rungs 1..R-1 are *re-issue datapaths* like the wide accumulator's (sequential, exact
    products, rounding ``wide_rounding`` unless the rung names one), so that a 2-rung
    ladder (narrow, wide) is exactly the ``condition`` policy and the top rung of the
    accelerator's wide format is exactly ``uniform-wide``. Float ladders: every rung a
    float format with a strictly smaller unit roundoff than the one below it (exponent
    range is not checked: a component whose rung-0 output overflowed scores ``+inf`` and
    goes to the top rung). Integer / fixed-point ladders: every rung an integer or
    fixed-point register with the same fraction bits and signedness and strictly more
    bits than the one below. Mixing float and integer rungs is an error.

    ``multi-level`` (dynamic): all components run on rung 0; with ``s = κ_i · κ_φ(ẑ_i)``
    estimated from the rung-0 output exactly as ``condition`` does (``ẑ`` from rung 0,
    the same estimator), component i gets the cheapest rung r with ``u_r · s ≤ τ``;
    components no rung satisfies (and every component when ``τ = 0``) get the top rung.
    ``u_r = unit_roundoff(format_r, rounding_r)``; since every ``u_r`` is a power of two,
    ``u_r · s`` is computed as ``(u_0 · s) · (u_r / u_0)`` exactly, so rung 0's test is
    bit for bit the ``condition`` test. Integer / fixed ladders: the cheapest register
    whose overflow bound fits (rung 0: the ``overflow`` rule of the narrow datapath,
    chunks included; rung r ≥ 1: ``|w_i|ᵀ|x| + |b_i| < 2^(B_r - 1)`` units); ``τ = 0``
    sends everything to the top rung, ``τ = inf`` keeps everything on rung 0.
    Rungs r ≥ 1 recompute exactly their components through the engine's selected-output
    path.

    Default ladder (none given): narrow, an intermediate format, wide. Floats: the
    intermediate has ``(m_narrow + m_wide) // 2`` fraction bits and the wide format's
    exponent bits capped at 8 (the engine simulates non-native formats up to emax 1019;
    never fewer than the narrow format's) (bf16 → fp32: e8m15; bf16 → fp64: e8m29;
    fp16 → fp32: e8m16); integers:
    ``(B_narrow + B_wide) // 2`` bits rounded down to a multiple of 8 (int16 → int32:
    int24). When no format fits strictly between, pass a ladder.

``static`` (calibrated per-neuron formats; the paper's stated future work)
    A neuron is an output feature of a linear layer or an output channel of a conv layer
    (a column of the lowered product). On a calibration split the network runs on the
    narrow datapath (uniform-narrow, as the hardware designer would offline) and every
    component's score ``u_0 · κ_i · κ_φ(ẑ)`` is computed from the narrow outputs with the
    ``exact`` estimator; a neuron's score is the ``quantile`` (default 0.99, numpy
    ``method="higher"``: an observed value) of its scores over every calibration row
    (samples x output positions). The neuron then gets the cheapest ladder rung r with
    ``q · u_r / u_0 ≤ τ`` (top rung if none; everything on the top rung when ``τ = 0``);
    without a ladder the two rungs are (narrow, wide). With ``fraction`` instead of ``τ``
    (two rungs only) the ``round(fraction · n)`` neurons of each layer with the largest
    scores go wide. At inference the choice is fixed: no estimate is computed or charged,
    and a wide neuron's components run on their rung only (the cost model charges no
    narrow pass and no re-fetch for them).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..numerics.config import load_format
from ..numerics.formats import ROUNDING_MODES, FloatFormat, IntFormat
from .absolute import (absolute_score, effective_terms, normalized_score, predicted_error,
                       row_scores)
from .analysis import abs_sum, kappa_phi, unit_roundoff

POLICIES = ("uniform-narrow", "uniform-wide", "condition", "absolute", "random", "oracle",
            "overflow", "multi-level", "static")
LADDER_POLICIES = ("multi-level", "static")
DEFAULT_QUANTILE = 0.99
ESTIMATORS = ("exact", "norm", "exponent")


#: policies that take no budget (neither τ nor a fraction)
NO_BUDGET = ("uniform-narrow", "uniform-wide", "overflow")

OUTPUT_LAYER_MODES = ("wide", "rows", "components")
"""How the output layer (the matmul layer feeding the network output) is scheduled:
``wide`` computes all of it on the wide accumulator, ``rows`` re-issues whole rows
(samples), ``components`` treats it as any other layer."""

#: policies that take ``output_layer``; ``rows`` only for the last two
OUTPUT_LAYER_POLICIES = ("condition", "oracle", "absolute", "random")
ROW_POLICIES = ("absolute", "random")

OVERFLOW_RULES = ("flag", "bound")
"""Integer / fixed-point narrow registers: re-issue the components whose register
actually overflowed or saturated (``flag``, the engine's flags, the default) or every
component whose worst-case bound ``|w_i|ᵀ|x| + |b_i|`` could reach the register's range
(``bound``)."""

#: policies that take ``overflow_rule`` (integer / fixed-point narrow registers only)
OVERFLOW_RULE_POLICIES = ("condition", "absolute", "overflow", "random", "oracle")


def default_output_layer(policy):
    """The ``output_layer`` mode used when none is given: ``wide`` for ``absolute`` (the
    measured best, see ``examples/README.md``), ``components`` for the other policies of
    :data:`OUTPUT_LAYER_POLICIES` (``condition`` as the paper defines it), None for the
    policies it does not apply to."""
    if policy == "absolute":
        return "wide"
    return "components" if policy in OUTPUT_LAYER_POLICIES else None


def _check_option(name, value, choices, policy, takers, what):
    """``value`` of keyword ``name`` is one of ``choices`` and ``policy`` is one of
    ``takers`` (ValueError naming ``name``); None is always valid."""
    if value is None:
        return
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    if policy not in takers:
        raise ValueError(f"{name}: the {policy!r} policy takes no {what} (only "
                         f"{', '.join(takers)} do)")


def check_schedule_options(policy, output_layer=None, overflow_rule=None):
    """Validate ``output_layer`` and ``overflow_rule`` for ``policy`` (ValueError naming
    the argument; None is always valid)."""
    _check_option("output_layer", output_layer, OUTPUT_LAYER_MODES, policy,
                  OUTPUT_LAYER_POLICIES, "output-layer mode")
    if output_layer == "rows" and policy not in ROW_POLICIES:
        raise ValueError(f"output_layer: 'rows' applies to the "
                         f"{' and '.join(ROW_POLICIES)} policies, not {policy!r} "
                         f"(use wide or components)")
    _check_option("overflow_rule", overflow_rule, OVERFLOW_RULES, policy,
                  OVERFLOW_RULE_POLICIES, "overflow rule")


def valid_tau(tau) -> bool:
    """Whether ``tau`` is a valid threshold τ (dimensionless, compared with
    ``u · κ_i · κ_φ``): a real number with ``0 ≤ τ ≤ +inf``. ``τ = 0`` re-issues every
    component, ``τ = +inf`` none (the two limits of a sweep); a negative τ would mean the
    same as 0 (scores are never negative), so it is refused as a likely mistake, and NaN
    compares with nothing."""
    return (isinstance(tau, (int, float, np.integer, np.floating))
            and not isinstance(tau, (bool, np.bool_)) and not math.isnan(tau) and tau >= 0)


#: what :func:`valid_tau` accepts, for error messages
TAU_EXPECTED = "a number >= 0 (inf: re-issue nothing)"


def check_tau(tau, name="tau"):
    """``ValueError`` naming ``name`` unless ``tau`` is ``None`` or :func:`valid_tau`."""
    if tau is not None and not valid_tau(tau):
        raise ValueError(f"{name}: expected {TAU_EXPECTED}, got {tau!r}")


def check_policy(policy, tau, fraction, estimator):
    """Validate the policy arguments (ValueError naming the argument): a known policy and
    estimator, τ by :func:`check_tau`, a fraction in [0, 1], at most one of τ and
    fraction, none for the policies without a budget (:data:`NO_BUDGET`), and the budget
    each other policy needs."""
    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, "
                         f"got {estimator!r}")
    check_tau(tau)
    if fraction is not None and (not isinstance(fraction, (int, float))
                                 or not 0 <= fraction <= 1):
        raise ValueError(f"fraction: expected a number in [0, 1], got {fraction!r}")
    if tau is not None and fraction is not None:
        raise ValueError("fraction: give --tau or --fraction, not both (the budget is "
                         "either a threshold or a fraction)")
    if policy in NO_BUDGET:
        given = "tau" if tau is not None else "fraction" if fraction is not None else None
        if given:
            takers = "condition, absolute, random, oracle, multi-level and static" \
                if given == "tau" else "condition, absolute, random, oracle and static"
            raise ValueError(f"{given}: the {policy!r} policy takes no --{given} (only "
                             f"{takers} do)")
    if policy in ("condition", "absolute") and tau is None and fraction is None:
        raise ValueError(f"tau: the {policy!r} policy needs --tau (or --fraction)")
    if policy == "multi-level":
        if fraction is not None:
            raise ValueError("fraction: the 'multi-level' policy takes --tau, not --fraction")
        if tau is None:
            raise ValueError("tau: the 'multi-level' policy needs --tau")
    if policy == "static" and tau is None and fraction is None:
        raise ValueError("tau: the 'static' policy needs --tau (or --fraction)")
    if policy in ("random", "oracle") and tau is None and fraction is None:
        raise ValueError(f"fraction: the {policy!r} policy needs --fraction (or --tau, to "
                         f"match the budget of 'condition')")


def uses_estimator(policy, tau, fraction) -> bool:
    """Whether ``policy`` with this budget computes the κ_i estimate at run time (so that
    the estimator matters): ``condition`` and ``multi-level``, and ``random`` / ``oracle``
    at a τ (they match the count of ``condition``). ``static`` calibrates with
    ``exact`` whatever is given."""
    return policy in ("condition", "absolute", "multi-level") or (
        policy in ("random", "oracle") and tau is not None and fraction is None)


def estimate_abs(A, B, b, estimator="exact", *, P=None):
    """``Ŝ ≈ |A||B| + |b|`` by ``estimator`` (module doc)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if estimator == "exact":
        S = abs_sum(A, B) if P is None else P
    elif estimator == "norm":
        S = np.linalg.norm(A, axis=1)[:, None] * np.linalg.norm(B, axis=0)[None, :]
    elif estimator == "exponent":
        def pow2(M):
            with np.errstate(divide="ignore"):
                e = np.floor(np.log2(np.abs(M)))
            return np.where(M != 0, np.exp2(e), 0.0)
        S = 2.0 * (pow2(A) @ pow2(B))
    else:
        raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, "
                         f"got {estimator!r}")
    if b is not None:
        S = S + np.abs(np.asarray(b, dtype=np.float64))
    return S


@njit(nogil=True, cache=True, error_model="numpy")
def _score_kernel(zhat, S, u, kphi, out):
    """``out = u · (S / |ẑ|) · κ_φ`` elementwise with the conventions of
    :func:`condition_score` (``S == 0``: κ = 1; NaN or non-finite ``ẑ``: +inf); an
    empty ``kphi`` means κ_φ = 1 (the product is then not formed: ``x · 1 == x``)."""
    one = kphi.size == 0
    for i in range(zhat.size):
        z = zhat[i]
        if not np.isfinite(z):
            out[i] = np.inf
            continue
        s = S[i]
        k = 1.0 if s == 0 else s / abs(z)
        v = u * k if one else u * k * kphi[i]
        out[i] = np.inf if np.isnan(v) else v


def condition_score(zhat, S_est, u, act="identity", *, out_scale=None,
                    relu_negative="one"):
    """``u · κ_i · κ_φ(ẑ)`` per component (``+inf`` where ``ẑ`` is not finite)."""
    zhat = np.asarray(zhat, dtype=np.float64)
    S_est = np.asarray(S_est, dtype=np.float64)
    if S_est.shape == zhat.shape and (act in (None, "identity") or (
            act == "relu" and relu_negative == "one") or act in ("tanh", "sigmoid")):
        # one fused pass (the common activations); the same IEEE operations as below
        if act in ("tanh", "sigmoid"):
            t = zhat if out_scale is None else zhat * out_scale
            kphi = np.ascontiguousarray(kappa_phi(act, t), dtype=np.float64).reshape(-1)
        else:
            kphi = np.empty(0)
        out = np.empty(zhat.shape)
        _score_kernel(np.ascontiguousarray(zhat).reshape(-1),
                      np.ascontiguousarray(S_est).reshape(-1), float(u), kphi,
                      out.reshape(-1))
        return out
    az = np.abs(zhat)
    with np.errstate(all="ignore"):
        kap = np.where(S_est == 0, 1.0, S_est / az)
        t = zhat if out_scale is None else zhat * out_scale
        kphi = kappa_phi(act or "identity", t, relu_negative=relu_negative)
        s = u * kap * kphi
    s = np.where(np.isnan(s), np.inf, s)
    return np.where(np.isfinite(zhat), s, np.inf)


def _int_lim(fmt):
    """Magnitude an integer / fixed-point register cannot reach: 2^(B-1) units."""
    return float(fmt.max_int) * math.ldexp(1.0, -fmt.frac_bits)


def int_overflow_risk(A, B, b, datapath, *, P=None):
    """Integer / fixed registers: components whose magnitude bound could reach 2^(B-1)
    on the Datapath ``datapath`` (per chunk and in the promotion register for
    ``chunked``)."""
    lim = _int_lim(datapath.acc)
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    babs = 0.0 if b is None else np.abs(np.asarray(b, dtype=np.float64))
    if datapath.structure == "chunked":
        L = datapath.chunk_size
        risk = np.zeros((A.shape[0], B.shape[1]), dtype=bool)
        for s in range(0, A.shape[1], L):
            risk |= (np.abs(A[:, s:s + L]) @ np.abs(B[s:s + L])) >= lim
        Pt = abs_sum(A, B) if P is None else P
        return risk | (Pt + babs >= _int_lim(datapath.wide))
    Pt = abs_sum(A, B) if P is None else P
    return Pt + babs >= lim


def _top(values, k, rng=None):
    """Mask of the k largest entries (ties broken by position)."""
    mask = np.zeros(values.size, dtype=bool)
    if k <= 0:
        return mask.reshape(values.shape)
    if k >= values.size:
        mask[:] = True
        return mask.reshape(values.shape)
    v = np.where(np.isnan(values), np.inf, values).reshape(-1)
    idx = np.argpartition(-v, k - 1)[:k]
    mask[idx] = True
    return mask.reshape(values.shape)


def _real(zhat, S, out_scale):
    """``(t, Ŝ)`` in real units (times the output scale, per column or scalar)."""
    if out_scale is None:
        return zhat, S
    return zhat * out_scale, S * np.abs(out_scale)


def _random_mask(size, k, rng):
    mask = np.zeros(size, dtype=bool)
    if k > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        mask[rng.choice(size, size=min(k, size), replace=False)] = True
    return mask


class _Selector:
    """The inputs of one :func:`select` call and the scores computed from them."""

    def __init__(self, zhat, A, B, b, datapath, flags, act, out_scale, estimator, P,
                 relu_negative, overflow_rule):
        self.zhat, self.A, self.B, self.b, self.dp = zhat, A, B, b, datapath
        self.flags, self.act, self.out_scale = flags, act, out_scale
        self.estimator, self.P, self.relu_negative = estimator, P, relu_negative
        self.overflow_rule = overflow_rule or "flag"
        self.shape = np.shape(zhat)
        self.is_float = isinstance(datapath.acc, FloatFormat)

    def overflow_mask(self):
        """Observed overflow / saturation flags; integer registers with the ``bound``
        rule also every component whose bound could reach the register's range."""
        m = np.zeros(self.shape, dtype=bool) if self.flags is None \
            else (np.asarray(self.flags) & 6) != 0
        if not self.is_float and self.overflow_rule == "bound":
            m = m | int_overflow_risk(self.A, self.B, self.b, self.dp, P=self.P)
        return m

    def estimate(self):
        P = self.P if self.estimator == "exact" else None
        return estimate_abs(self.A, self.B, self.b, self.estimator, P=P)

    def condition(self):
        if not self.is_float:
            return np.where(self.overflow_mask(), np.inf, 0.0)
        u = unit_roundoff(self.dp.acc, self.dp.rounding)
        return condition_score(self.zhat, self.estimate(), u, self.act,
                               out_scale=self.out_scale, relu_negative=self.relu_negative)

    def predicted(self):
        """``(t, Ê)``: real-unit outputs and predicted absolute errors (no φ')."""
        t, S = _real(self.zhat, self.estimate(), self.out_scale)
        if not self.is_float:
            return t, np.where(self.overflow_mask(), np.inf, 0.0)
        u = unit_roundoff(self.dp.acc, self.dp.rounding)
        return t, predicted_error(t, S, effective_terms(self.A, self.dp), u)

    def absolute(self, normalized):
        """``absolute`` component scores (normalized per row for a threshold)."""
        if not self.is_float:
            return np.where(self.overflow_mask(), np.inf, 0.0)
        t, S = _real(self.zhat, self.estimate(), self.out_scale)
        u = unit_roundoff(self.dp.acc, self.dp.rounding)
        s = absolute_score(t, S, effective_terms(self.A, self.dp), u, self.act)
        return normalized_score(s, t, self.act) if normalized else s


def _threshold(score, tau):
    if tau is not None and tau <= 0:
        return np.ones(np.shape(score), dtype=bool)
    return score > tau


def _rows(sel, policy, tau, fraction, rng):
    """Whole-row mask of the output layer (``output_layer="rows"``)."""
    m, n = sel.shape
    if policy == "random":
        if fraction is not None:
            k = round(fraction * m)
        else:
            k = round(int(_threshold(sel.condition(), tau).sum()) / max(n, 1))
        rows = _random_mask(m, k, rng)
    else:
        rs = row_scores(*sel.predicted())
        rows = _top(rs, round(fraction * m)) if fraction is not None else _threshold(rs, tau)
    return np.broadcast_to(rows[:, None], (m, n)).copy()


def select(policy, *, zhat, A, B, b, datapath, flags=None, act="identity",
           out_scale=None, tau=None, fraction=None, estimator="exact", rng=None,
           P=None, observed=None, relu_negative="one", output=False, output_layer=None,
           overflow_rule=None):
    """The (m, n) boolean mask of components ``policy`` re-issues (module doc).

    ``zhat``: narrow outputs in accumulator units; ``A``, ``B``, ``b``: the operands fed to
    the engine (accumulator units); ``datapath``: the narrow Datapath; ``flags``: the
    narrow pass's per-output engine flags; ``observed``: ``|ẑ - z|`` (oracle only);
    ``P``: precomputed ``|A||B|``. ``output``: this is the network's output layer, then
    scheduled by ``output_layer`` (:data:`OUTPUT_LAYER_MODES`; default
    :func:`default_output_layer`); ``overflow_rule``: :data:`OVERFLOW_RULES` (default
    ``flag``).
    """
    shape = np.shape(zhat)
    size = int(np.prod(shape))
    if policy == "uniform-narrow":
        return np.zeros(shape, dtype=bool)
    if policy == "uniform-wide":
        return np.ones(shape, dtype=bool)
    sel = _Selector(zhat, A, B, b, datapath, flags, act, out_scale, estimator, P,
                    relu_negative, overflow_rule)
    if policy == "overflow":
        return sel.overflow_mask()
    mode = (output_layer or default_output_layer(policy)) if output else "components"
    if mode == "wide":
        return np.ones(shape, dtype=bool)
    if mode == "rows":
        return _rows(sel, policy, tau, fraction, rng)
    if policy == "absolute":
        if fraction is not None:
            return _top(sel.absolute(False), round(fraction * size))
        return _threshold(sel.absolute(True), tau)
    if fraction is not None:
        k = round(fraction * size)
        score = None
    else:
        score = sel.condition()
        cm = _threshold(score, tau)
        k = int(cm.sum())
    if policy == "condition":
        return _top(sel.condition(), k) if score is None else cm
    if policy == "random":
        return _random_mask(size, k, rng).reshape(shape)
    if policy == "oracle":
        if observed is None:
            raise ValueError("oracle: needs the observed error")
        return _top(np.asarray(observed, dtype=np.float64), k)
    raise ValueError(f"policy: expected one of {', '.join(POLICIES)}, got {policy!r}")


# ---------------------------------------------------------------------------------------
# ladders
# ---------------------------------------------------------------------------------------
def _parse_rung(spec, i):
    """(format, rounding or None) of one ladder entry (module doc)."""
    rounding = None
    if isinstance(spec, tuple) and len(spec) == 2:
        spec, rounding = spec
    elif isinstance(spec, str) and ":" in spec:
        spec, rounding = spec.rsplit(":", 1)
    if rounding is not None and rounding not in ROUNDING_MODES:
        raise ValueError(f"ladder: rung {i}: rounding: expected one of {', '.join(ROUNDING_MODES)}"
                         f", got {rounding!r}")
    if isinstance(spec, str) and not spec:
        raise ValueError(f"ladder: rung {i}: empty format name")
    try:
        fmt = load_format(spec)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"ladder: rung {i}: {spec!r}: {str(exc).splitlines()[0]}") from None
    return fmt, rounding


def default_ladder(narrow, wide):
    """The default 3-rung ladder (narrow, intermediate, wide) of the module doc."""
    if isinstance(narrow, FloatFormat) and isinstance(wide, FloatFormat):
        m = (narrow.man_bits + wide.man_bits) // 2
        e = max(narrow.exp_bits, min(wide.exp_bits, 8))
        if narrow.man_bits < m < wide.man_bits:
            return [narrow, FloatFormat(e, m), wide]
    elif isinstance(narrow, IntFormat) and isinstance(wide, IntFormat) \
            and narrow.signed == wide.signed:
        b = (narrow.bits + wide.bits) // 2 // 8 * 8
        if narrow.bits < b < wide.bits:
            return [narrow, IntFormat(b, signed=narrow.signed, overflow=narrow.overflow), wide]
    raise ValueError(f"ladder: no default intermediate format between {narrow.label} and "
                     f"{wide.label}; pass a ladder")


def resolve_ladder(ladder, narrow_rounding="rne", wide_rounding="rne"):
    """Validated ladder: a list of ``(format, rounding)`` pairs, rung 0 first.

    ``ladder``: a sequence of rung specs, or a string ``"F1,F2,F3"`` (module doc). A rung
    without a rounding gets ``narrow_rounding`` (rung 0) or ``wide_rounding`` (others).
    Raises ValueError naming ``ladder`` (unknown format, fewer than 2 rungs, mixed kinds,
    precision not strictly increasing).
    """
    if isinstance(ladder, str):
        ladder = [t.strip() for t in ladder.split(",")]
    if not isinstance(ladder, (list, tuple)):
        raise ValueError(f"ladder: expected a list of formats, got {ladder!r}")  # noqa: TRY004
    if len(ladder) < 2:
        raise ValueError(f"ladder: expected at least 2 rungs (cheapest first), got "
                         f"{len(ladder)}")
    rungs = []
    for i, spec in enumerate(ladder):
        fmt, rnd = _parse_rung(spec, i)
        rungs.append((fmt, rnd or (narrow_rounding if i == 0 else wide_rounding)))
    kinds = {isinstance(f, FloatFormat) for f, _ in rungs}
    if len(kinds) > 1:
        raise ValueError("ladder: mixes float and integer / fixed-point formats")
    for i in range(1, len(rungs)):
        (f0, r0), (f1, r1) = rungs[i - 1], rungs[i]
        if isinstance(f1, FloatFormat):
            ok = unit_roundoff(f1, r1) < unit_roundoff(f0, r0)
            why = "a smaller unit roundoff than"
        else:
            ok = (f1.bits > f0.bits and f1.frac_bits == f0.frac_bits
                  and f1.signed == f0.signed)
            why = "more bits (same fraction bits and signedness) than"
        if not ok:
            raise ValueError(f"ladder: rung {i} ({f1.label}:{r1}) must have {why} rung "
                             f"{i - 1} ({f0.label}:{r0}): cheapest first, precision "
                             f"strictly increasing")
    return rungs


def ladder_levels(score0, u, tau):
    """Rung index (int8, shape of ``score0``) of each component: the cheapest rung r with
    ``score0 · u[r] / u[0] ≤ τ`` (``score0 = u[0] · κ_i · κ_φ``), the top rung where none
    is, and everywhere when ``τ = 0``. ``u``: the rungs' unit roundoffs (powers of two)."""
    score0 = np.asarray(score0, dtype=np.float64)
    R = len(u)
    lev = np.full(score0.shape, R - 1, dtype=np.int8)
    if tau is not None and tau <= 0:
        return lev
    for r in range(R - 2, -1, -1):
        s = score0 if r == 0 else score0 * (u[r] / u[0])
        lev[s <= tau] = r
    return lev


def _unit_roundoffs(rungs):
    return [unit_roundoff(dp.acc, dp.rounding) for dp in rungs]


def select_levels(*, zhat, A, B, b, rungs, flags=None, act="identity", out_scale=None,
                  tau=None, estimator="exact", P=None, relu_negative="one"):
    """Rung index (int8, (m, n)) of every component under ``multi-level`` (module doc).

    ``rungs``: the Datapath of every rung, rung 0 the narrow datapath, the others the
    re-issue datapaths. Other arguments as :func:`select`.
    """
    shape = np.shape(zhat)
    R = len(rungs)
    if tau is not None and tau <= 0:
        return np.full(shape, R - 1, dtype=np.int8)
    if isinstance(rungs[0].acc, FloatFormat):
        u = _unit_roundoffs(rungs)
        S = estimate_abs(A, B, b, estimator, P=P if estimator == "exact" else None)
        s0 = condition_score(zhat, S, u[0], act, out_scale=out_scale,
                             relu_negative=relu_negative)
        return ladder_levels(s0, u, tau)
    # integer / fixed point: the cheapest register whose overflow bound fits
    lev = np.full(shape, R - 1, dtype=np.int8)
    if tau == math.inf:
        return np.zeros(shape, dtype=np.int8)
    Pt = abs_sum(A, B) if P is None else P
    tot = Pt if b is None else Pt + np.abs(np.asarray(b, dtype=np.float64))
    for r in range(R - 2, 0, -1):
        lev[tot < _int_lim(rungs[r].acc)] = r
    risk0 = int_overflow_risk(A, B, b, rungs[0], P=Pt)
    if flags is not None:
        risk0 |= (np.asarray(flags) & 6) != 0
    lev[~risk0] = 0
    return lev


def static_scores(zhat, A, B, b, rungs, *, flags=None, act="identity", out_scale=None,
                  P=None, relu_negative="one"):
    """Per-component calibration score of ``static`` from a narrow (rung-0) pass.

    Float rungs: ``u_0 · κ_i · κ_φ(ẑ)`` (``exact`` estimator). Integer / fixed-point
    rungs: the index of the cheapest rung whose overflow bound fits (as a float).
    ``rungs``: the Datapath of every rung, as :func:`select_levels`.
    """
    if not isinstance(rungs[0].acc, FloatFormat):
        return select_levels(zhat=zhat, A=A, B=B, b=b, rungs=rungs, flags=flags,
                             tau=1.0, P=P).astype(np.float64)
    S = estimate_abs(A, B, b, "exact", P=P)
    u = unit_roundoff(rungs[0].acc, rungs[0].rounding)
    return condition_score(zhat, S, u, act, out_scale=out_scale, relu_negative=relu_negative)


def static_neuron_levels(scores, rungs, *, tau=None, fraction=None,
                         quantile=DEFAULT_QUANTILE):
    """Per-neuron rung (int8, (n,)) from the calibration ``scores`` (rows x n) of
    :func:`static_scores`.

    A neuron's score is the ``quantile`` of its column (numpy ``method="higher"``, so an
    observed value). Float rungs: the cheapest rung by :func:`ladder_levels`; integer
    rungs: that (rung index) score itself. ``τ = 0``: every neuron on the top rung;
    ``τ = inf``: every neuron on rung 0. ``fraction`` (instead of ``τ``, two rungs): the
    ``round(fraction · n)`` highest-scoring neurons go to the top rung. ``rungs``: the
    Datapath of every rung, as :func:`select_levels`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[1]
    R = len(rungs)
    if scores.shape[0] == 0:
        q = np.zeros(n)
    else:
        q = np.quantile(np.where(np.isnan(scores), np.inf, scores), quantile, axis=0,
                        method="higher")
    if fraction is not None:
        return _top(q, round(fraction * n)).astype(np.int8) * np.int8(R - 1)
    if tau is not None and tau <= 0:
        return np.full(n, R - 1, dtype=np.int8)
    if isinstance(rungs[0].acc, FloatFormat):
        u = _unit_roundoffs(rungs)
        return ladder_levels(q, u, tau)
    if tau == math.inf:
        return np.zeros(n, dtype=np.int8)
    return np.minimum(q, R - 1).astype(np.int8)
