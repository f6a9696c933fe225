"""Scheduler policies: which output components are re-issued to the wide accumulator.

Every matmul layer first runs on the narrow datapath; a policy then returns a boolean mask
(m, n) of components to recompute with the wide accumulator (same quantized operands,
:func:`accsim.engine.matmul` with ``select=mask``); the recomputed values replace the
narrow ones before the activation. Used by :func:`accsim.network.simulate`.

Policies
    ``uniform-narrow``: nothing re-issued. ``uniform-wide``: everything re-issued.
    ``condition`` (El Arar et al.): re-issue where ``u_narrow · κ_i · κ_φ(ẑ_i) > τ`` with
    ``κ_i = Ŝ_i / |ẑ_i|`` estimated from the narrow output ``ẑ`` and the estimator's
    ``Ŝ ≈ |w_i|ᵀ|x| + |b_i|``; ``κ_φ`` is the condition number of the activation that
    consumes the layer (identity when none), evaluated at ``ẑ`` in real units
    (:func:`accsim.analysis.kappa_phi`; ReLU convention ``relu_negative``). A non-finite
    ``ẑ`` (overflow) scores ``+inf``. ``τ ≤ 0`` re-issues every component (the limit τ→0,
    including components whose score is exactly 0), ``τ = inf`` none. With ``fraction``
    given instead of ``τ``: the ``round(fraction · m n)`` highest scores of each batch.
    For integer / fixed-point narrow accumulators (``u = 0``: adds are exact) the rule is
    the overflow bound rule below.
    ``random``: the same number of components as ``condition`` at this ``τ`` would pick in
    each layer and batch (or ``round(fraction · m n)`` with ``fraction``), uniformly at
    random with a seeded generator.
    ``oracle``: the same budget, the components with the largest actual error
    ``|ẑ - z|`` of the narrow pass (``z``: float64 product of the quantized operands).
    ``overflow``: components whose narrow register overflowed or saturated (engine flags 2,
    4); for integer / fixed-point accumulators also every component whose bound
    ``|w_i|ᵀ|x| + |b_i|`` (per chunk for ``chunked``) could exceed the register
    (``≥ 2^(B-1)`` units).

Estimators of ``Ŝ``
    ``exact``: ``|A||B| + |b|`` (what an extra cheap accumulation computes).
    ``norm``: ``‖w_i‖₂ ‖x‖₂ + |b_i|`` (Cauchy–Schwarz upper bound; weight norms precomputed).
    ``exponent``: ``Σ_k 2^(e(a_k) + e(b_k) + 1) + |b_i|`` with ``e = floor(log2 |·|)``
    (log-domain sum of exponents; within a factor 2 of the exact value either way).
"""

from __future__ import annotations

import math

import numpy as np

from .analysis import abs_sum, kappa_phi, unit_roundoff

POLICIES = ("uniform-narrow", "uniform-wide", "condition", "random", "oracle", "overflow")
ESTIMATORS = ("exact", "norm", "exponent")


def check_policy(policy, tau, fraction, estimator):
    """Validate the policy arguments (ValueError naming the argument)."""
    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, "
                         f"got {estimator!r}")
    if tau is not None and (not isinstance(tau, (int, float)) or math.isnan(tau)):
        raise ValueError(f"tau: expected a number, got {tau!r}")
    if fraction is not None and (not isinstance(fraction, (int, float))
                                 or not 0 <= fraction <= 1):
        raise ValueError(f"fraction: expected a number in [0, 1], got {fraction!r}")
    if policy == "condition" and tau is None and fraction is None:
        raise ValueError("tau: the 'condition' policy needs --tau (or --fraction)")
    if policy in ("random", "oracle") and tau is None and fraction is None:
        raise ValueError(f"fraction: the {policy!r} policy needs --fraction (or --tau, to "
                         f"match the budget of 'condition')")


def _is_float(fmt):
    return hasattr(fmt, "man_bits")


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


def condition_score(zhat, S_est, u, act="identity", *, out_scale=None,
                    relu_negative="one"):
    """``u · κ_i · κ_φ(ẑ)`` per component (``+inf`` where ``ẑ`` is not finite)."""
    zhat = np.asarray(zhat, dtype=np.float64)
    az = np.abs(zhat)
    with np.errstate(divide="ignore", invalid="ignore"):
        kap = np.where(S_est == 0, 1.0, S_est / az)
        t = zhat if out_scale is None else zhat * out_scale
        kphi = kappa_phi(act or "identity", t, relu_negative=relu_negative)
        s = u * kap * kphi
    s = np.where(np.isnan(s), np.inf, s)
    return np.where(np.isfinite(zhat), s, np.inf)


def int_overflow_risk(A, B, b, acc_kwargs, *, P=None):
    """Integer / fixed registers: components whose magnitude bound could reach 2^(B-1)."""
    fmt = acc_kwargs["acc"]
    lim = float(fmt.max_int) * math.ldexp(1.0, -fmt.frac_bits)
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    babs = 0.0 if b is None else np.abs(np.asarray(b, dtype=np.float64))
    if acc_kwargs.get("structure") == "chunked":
        L = int(acc_kwargs["chunk_size"])
        risk = np.zeros((A.shape[0], B.shape[1]), dtype=bool)
        for s in range(0, A.shape[1], L):
            risk |= (np.abs(A[:, s:s + L]) @ np.abs(B[s:s + L])) >= lim
        wfmt = acc_kwargs["wide"]
        wl = float(wfmt.max_int) * math.ldexp(1.0, -wfmt.frac_bits)
        Pt = abs_sum(A, B) if P is None else P
        return risk | (Pt + babs >= wl)
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


def select(policy, *, zhat, A, B, b, acc_kwargs, flags=None, act="identity",
           out_scale=None, tau=None, fraction=None, estimator="exact", rng=None,
           P=None, observed=None, relu_negative="one"):
    """The (m, n) boolean mask of components ``policy`` re-issues (module doc).

    ``zhat``: narrow outputs in accumulator units; ``A``, ``B``, ``b``: the operands fed to
    the engine (accumulator units); ``acc_kwargs``: the narrow datapath's matmul kwargs
    (plus ``wide``); ``flags``: the narrow pass's per-output engine flags; ``observed``:
    ``|ẑ - z|`` (oracle only); ``P``: precomputed ``|A||B|``.
    """
    shape = np.shape(zhat)
    size = int(np.prod(shape))
    if policy == "uniform-narrow":
        return np.zeros(shape, dtype=bool)
    if policy == "uniform-wide":
        return np.ones(shape, dtype=bool)
    fmt = acc_kwargs["acc"]

    def overflow_mask():
        m = np.zeros(shape, dtype=bool) if flags is None else (np.asarray(flags) & 6) != 0
        if not _is_float(fmt):
            m = m | int_overflow_risk(A, B, b, acc_kwargs, P=P)
        return m

    if policy == "overflow":
        return overflow_mask()

    def cond_score():
        if not _is_float(fmt):
            return np.where(overflow_mask(), np.inf, 0.0)
        S = estimate_abs(A, B, b, estimator, P=P if estimator == "exact" else None)
        u = unit_roundoff(fmt, acc_kwargs.get("rounding", "rne"))
        return condition_score(zhat, S, u, act, out_scale=out_scale,
                               relu_negative=relu_negative)

    def cond_mask(score):
        if tau is not None and tau <= 0:
            return np.ones(shape, dtype=bool)
        return score > tau

    if fraction is not None:
        k = round(fraction * size)
        score = None
    else:
        score = cond_score()
        cm = cond_mask(score)
        k = int(cm.sum())
    if policy == "condition":
        if score is None:
            return _top(cond_score(), k)
        return cm
    if policy == "random":
        mask = np.zeros(size, dtype=bool)
        if k > 0:
            rng = rng if rng is not None else np.random.default_rng(0)
            mask[rng.choice(size, size=min(k, size), replace=False)] = True
        return mask.reshape(shape)
    if policy == "oracle":
        if observed is None:
            raise ValueError("oracle: needs the observed error")
        return _top(np.asarray(observed, dtype=np.float64), k)
    raise ValueError(f"policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
