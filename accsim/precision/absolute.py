"""The ``absolute`` policy's scores: the predicted *absolute* error of each activation
output, and the row scores of the network's output layer.

Why (``docs``: the scheduler study): when the narrow register holds ``k`` products with
``k·u ≳ 1`` it stagnates; the error is a systematic shrinkage of large sums, which sits in
the large, well-conditioned components. What the next layer sees is the absolute error
of ``φ(z)``, so that is what is ranked.

Component score (real units of the activation output)
    For row r (a sample, or a patch of a conv layer) and column i of a matmul layer with
    narrow output ``t = ẑ · out_scale``::

        Ê_ri = u · ( (k_r/2) · |t_ri| + (√k_r/2) · Ŝ_ri )     drift + random-walk terms
        s_ri = |φ'(t_ri)| · Ê_ri

    ``u``: the narrow unit roundoff; ``k_r``: the number of nonzero operands of row r
    (``A`` entries, an upper bound of its nonzero products) capped by the datapath's
    effective narrow length (chunked: the chunk size L; tree / fused: their chain length,
    :func:`accsim.precision.analysis.n_eff`); ``Ŝ_ri ≈ |w_i|ᵀ|x_r| + |b_i|`` (the
    estimator's, real units); ``φ'``: the slope of the activation consuming the layer
    (ReLU: ``1[t > 0]``; identity / softmax: 1). A non-finite ``t`` scores ``+inf``.

Threshold mode (``τ``)
    ``s_ri / mean_j |φ(t_rj)| > τ``: the predicted absolute error of the activation output
    as a fraction of the row's mean activation magnitude (dimensionless; ``τ = 0.01``:
    re-issue where the predicted error exceeds 1 % of a typical output of that row). A
    row whose activations are all zero scores ``+inf`` where ``s > 0``. The first-order
    ``Ê`` over-estimates stagnation errors by 10-100x: with ``k·u ≫ 1`` the drift term
    alone predicts ``k·u/2`` times an output's own magnitude, so useful τ are of the
    order of ``k·u`` (mnist-mlp-relu, e5m2, k·u ≈ 64-98: τ ≤ 5 re-issues every active
    ReLU output, 60 %; τ = 20: 50 %; τ = 50: 16 %). Calibrate τ (``accsim advise
    --taus``) or use the budget mode.

Output layer rows
    For the layer feeding the network output, row r's score is
    ``(Ê_r,(1) + Ê_r,(2)) / m_r``: the predicted errors (no ``φ'``) of the two largest
    narrow outputs over their margin ``m_r`` (``+inf`` where ``m_r = 0``; 0 for a row of
    one column). Rows with the largest scores are re-issued whole (budget: ``round(f·m)``
    rows; threshold: score ``> τ``, the predicted error as a fraction of the margin).
"""

from __future__ import annotations

import math

import numpy as np

from .analysis import n_eff

_ERFC = np.frompyfunc(math.erfc, 1, 1)


def _phi_cdf(t):
    """Standard normal CDF Φ(t) (float64)."""
    t = np.asarray(t, dtype=np.float64)
    return 0.5 * np.asarray(_ERFC(-t / math.sqrt(2.0)), dtype=np.float64).reshape(t.shape)


def activation_slope(kind, t):
    """``|φ'(t)|`` of activation ``kind`` (identity / softmax / None: 1)."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):
        if kind == "relu":
            return (t > 0).astype(np.float64)
        if kind == "tanh":
            return 1.0 - np.tanh(t) ** 2
        if kind == "sigmoid":
            s = 1.0 / (1.0 + np.exp(-t))
            return s * (1.0 - s)
        if kind == "gelu":
            return np.abs(_phi_cdf(t) + t * np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi))
    return np.ones_like(t)


def activation_magnitude(kind, t):
    """``|φ(t)|`` of activation ``kind`` (identity / softmax / None: ``|t|``)."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):
        if kind == "relu":
            return np.maximum(t, 0.0)
        if kind == "tanh":
            return np.abs(np.tanh(t))
        if kind == "sigmoid":
            return 1.0 / (1.0 + np.exp(-t))
        if kind == "gelu":
            return np.abs(t * _phi_cdf(t))
    return np.abs(t)


def effective_terms(A, datapath):
    """``k_r`` per row (float64, (m, 1)): nonzero operands of each row of ``A``, capped by
    the narrow chain length of ``datapath`` (module doc)."""
    A = np.asarray(A)
    K = max(A.shape[1], 1)
    k = np.count_nonzero(A, axis=1).astype(np.float64)
    st = datapath.structure
    if st == "chunked":
        cap = n_eff(K, "chunked", chunk_size=datapath.chunk_size)[0]
    elif st == "tree":
        cap = n_eff(K, "tree")
    elif st == "fused":
        cap = n_eff(K, "fused", terms=datapath.terms)
    else:
        cap = K
    return np.minimum(k, cap)[:, None]


def predicted_error(t, S, k, u):
    """``Ê = u · (k/2 · |t| + √k/2 · S)`` (real units of ``t``; ``+inf`` where ``t`` is
    not finite). ``t``, ``S``: (m, n); ``k``: (m, 1) from :func:`effective_terms`."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):
        E = u * (0.5 * k * np.abs(t) + 0.5 * np.sqrt(k) * S)
    return np.where(np.isfinite(t) & ~np.isnan(E), E, np.inf)


def absolute_score(t, S, k, u, act="identity"):
    """``s = |φ'(t)| · Ê`` per component (module doc); ``+inf`` where ``t`` is not
    finite."""
    E = predicted_error(t, S, k, u)
    with np.errstate(all="ignore"):
        s = activation_slope(act, np.where(np.isfinite(t), t, 0.0)) * E
    return np.where(np.isfinite(E), s, np.inf)


def normalized_score(score, t, act="identity"):
    """``score / mean_j |φ(t_rj)|`` per row (threshold mode, module doc)."""
    mag = activation_magnitude(act, np.where(np.isfinite(t), t, 0.0))
    mean = np.mean(mag, axis=1, keepdims=True) if mag.shape[1] else np.ones((mag.shape[0], 1))
    with np.errstate(all="ignore"):
        r = np.where(mean > 0, score / mean, np.where(score > 0, np.inf, 0.0))
    return np.where(np.isnan(r), np.inf, r)


def row_scores(t, E):
    """Output-layer row score ``(Ê_(1) + Ê_(2)) / m_r`` ((m,) float64, module doc)."""
    t = np.asarray(t, dtype=np.float64)
    m, n = t.shape
    if n < 2:
        return np.zeros(m)
    tt = np.where(np.isnan(t), -np.inf, t)
    top2 = np.argpartition(-tt, 1, axis=1)[:, :2]
    rows = np.arange(m)[:, None]
    v = tt[rows, top2]
    e = np.asarray(E)[rows, top2]
    with np.errstate(all="ignore"):
        margin = np.abs(v[:, 0] - v[:, 1])
        s = (e[:, 0] + e[:, 1]) / margin
    bad = ~np.isfinite(v).all(axis=1) | np.isnan(s)
    return np.where(bad, np.inf, s)
