"""Componentwise error analysis of a layer ``z = W x + b`` on a simulated accumulator.

Pure numpy; no engine imports. The method is the one of El Arar, Filip, Mary and Riccietti
(2025): the error of output component ``i`` is governed by the inner-product condition
number ``κ_i`` times the activation's condition number ``κ_φ``. A datapath is given as a
:class:`~accsim.numerics.datapath.Datapath` (``Accelerator.datapath(...)``); its
``wide`` and ``wide_rounding`` are those of the chunked structure's promotion register.

Notation. Matrices are given the way the engine takes them: ``A`` (m, K) operands (one row
per sample / patch), ``B`` (K, n) weights, so component (r, i) is
``z = Σ_k A[r, k] B[k, i] + b_i``. ``S = |A| |B| + |b|`` (componentwise, bias included) is the
"absolute" sum the deterministic bounds are proportional to.

Condition numbers
    ``kappa_inner(A, B, b, z)``: ``κ = S / |z|``. Conventions: ``z == 0`` with ``S > 0`` gives
    ``+inf`` (any error is infinitely large relative to 0); ``S == 0`` (every product and the
    bias are zero, so ``z`` is computed exactly) gives 1.
    ``kappa_phi(kind, t)``: ``|t φ'(t) / φ(t)|``:

    * ``identity``: 1.
    * ``relu``: 1 for ``t > 0``. For ``t < 0`` the exact output is 0 and stays 0 while the
      computed sign is right; whether it is right is decided by the error of ``z`` itself,
      so by default (``relu_negative="one"``) we use 1 there too: the criterion
      ``u κ_i κ_φ > τ`` then flags a negative component exactly when its *sign* is
      uncertain (large κ_i, i.e. ``|z|`` small against ``S``), which is the only way ReLU's
      output can go wrong. ``relu_negative="zero"`` gives the textbook value 0 (no output
      error unless the sign flips). At the kink ``t == 0``: 1.
    * ``tanh``: ``2|t| / |sinh 2t|`` (1 at ``t == 0``; 0 beyond overflow of sinh).
    * ``sigmoid``: ``|t| / (1 + e^t)``.
    * ``gelu`` (exact, ``t Φ(t)``): ``|1 + t ϕ(t) / Φ(t)|`` (log-domain for stability).
    * ``softmax`` along ``axis``: the componentwise condition number of output i with
      respect to relative perturbations of every input,
      ``Σ_j |z_j| |∂y_i/∂z_j| / y_i = |z_i| (1 - y_i) + Σ_{j≠i} |z_j| y_j``.

Effective accumulation length ``n_eff`` and the deterministic bound
    Rounding model of one rounding into a float format with p significant bits:
    ``fl(s) = s (1 + δ) + η`` with ``|δ| ≤ u`` and ``|η| ≤ η_min``, where ``u = 2^-p`` for
    round-to-nearest (rne, rna) and ``u = 2^(1-p)`` for every other mode (rz, ru, rd, ro,
    sr: the error is below one ulp), and the absolute term ``η_min`` covers underflow:
    half (nearest) or one (other modes) smallest subnormal, or the smallest normal for a
    format without subnormals (flush). Overflow is outside the model: a component whose
    register overflowed or saturated (engine flags 2 / 4) gets bound ``+inf`` ("not
    applicable") and is reported separately. ``γ_n(u) = n u / (1 - n u)`` (``+inf`` when
    ``n u ≥ 1``).

    * ``sequential``: the register is loaded with the rounded bias, then K rounded adds;
      every term passes through at most K + 1 roundings (one more when products are rounded
      to a product format: ``u`` is then ``max(u_acc, u_prod)``):
      ``|ẑ - z| ≤ γ_{K+1}(u) S + (K + 1) η (1 + γ)`` (+ ``K η_prod (1 + γ)``).
    * ``chunked`` (chunk L into the narrow register from 0, each chunk result added into
      the wide register that starts at the rounded bias, c = ceil(K / L) chunks): with
      ``P = |A||B|``,
      ``|ẑ - z| ≤ [γ_L(u_n) + γ_{c+1}(u_w)(1 + γ_L(u_n))] P + γ_{c+1}(u_w) |b| + additive``.
      The chain length is L in the narrow format plus c + 1 in the wide one instead of K.
    * ``tree``: a leaf passes through ``d = ceil(log2 K)`` node roundings, then the root's
      bias add, and the bias its load and that add: ``n = d + 2`` (``+1`` with rounded
      products); ``|ẑ - z| ≤ γ_n(u) S + (K + 1) η (1 + γ)``.
    * ``fused`` (T terms per step, g guard bits, accumulator of m fraction bits): one step
      aligns the T + 1 addends to the grid ``2^(e_max - m - g)`` (error below one grid
      unit per addend with rz/rd, half with rne; ``2^e_max ≤`` the largest addend ≤ the sum
      of the addends' magnitudes) and rounds the exact aligned sum once, so a step's error
      is at most ``v · (|acc| + Σ|p|)`` with ``v = u + (1 + u)(T + 1) c_a 2^(-m-g)``.
      The recursive-summation argument with ``v`` for ``u`` and ``n = ceil(K / T) + 1``
      steps (the bias load included) gives ``|ẑ - z| ≤ γ_n(v) S + n η (1 + γ)``.
    * integer / fixed-point registers: every add is exact; only the bias load and (for
      fixed point) the products' rounding to the grid ``2^-f`` err, by at most half (nearest)
      or one grid unit: ``|ẑ - z| ≤ (K + 1) c 2^-f`` (0 for an integer register with integer
      operands and an integer bias). Overflow / wrap / saturation: ``+inf``.

    The probabilistic form replaces ``γ_n(u)`` by ``λ √n u`` (``λ = 1`` by default); it holds
    with high probability under the usual independence model, not always.

``observed_error`` / ``bound_violations``: see :func:`check_bound`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..numerics.datapath import Datapath
from ..numerics.formats import FloatFormat

__all__ = ["ACTIVATION_KINDS", "abs_sum", "bound_coefficients", "check_bound",
           "error_bound", "gamma", "kappa_inner", "kappa_phi", "n_eff",
           "probabilistic_bound", "spearman", "unit_roundoff"]

ACTIVATION_KINDS = ("relu", "tanh", "sigmoid", "gelu", "softmax", "identity")
"""Activation layer kinds (of a trace, :mod:`accsim.network.trace`), each with its κ_φ."""
_NEAREST = ("rne", "rna")
_U64 = 2.0 ** -53


# ---------------------------------------------------------------------------------------
# condition numbers
# ---------------------------------------------------------------------------------------
def abs_sum(A, B, b=None):
    """``S = |A| |B| + |b|`` in float64 (bias broadcast along rows; (m, n))."""
    S = np.abs(np.asarray(A, dtype=np.float64)) @ np.abs(np.asarray(B, dtype=np.float64))
    if b is not None:
        S = S + np.abs(np.asarray(b, dtype=np.float64))
    return S


def kappa_inner(A, B, b=None, z=None, *, S=None):
    """``κ_i = (|w_i|ᵀ|x| + |b_i|) / |z_i|`` per component; ``z`` defaults to the float64
    product. ``z == 0``: ``+inf`` (``S > 0``) or 1 (``S == 0``)."""
    if S is None:
        S = abs_sum(A, B, b)
    if z is None:
        z = np.asarray(A, dtype=np.float64) @ np.asarray(B, dtype=np.float64)
        if b is not None:
            z = z + np.asarray(b, dtype=np.float64)
    return _kappa_from(S, z)


def _kappa_from(S, z):
    S = np.asarray(S, dtype=np.float64)
    az = np.abs(np.asarray(z, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = S / az
    k = np.where(S == 0, 1.0, k)
    return np.where(np.isfinite(az), k, np.inf)


@njit(cache=True)
def _pdf_over_cdf_kernel(t, out):
    c = 1.0 / math.sqrt(2.0 * math.pi)
    for i in range(t.shape[0]):
        v = t[i]
        if v > -30.0:
            out[i] = c * math.exp(-0.5 * v * v) / (0.5 * math.erfc(-v / math.sqrt(2.0)))
        else:
            # Mills ratio: Phi(-x) / pdf(x) = 1/x - 1/x^3 + 3/x^5 - ... for x = -v large
            x = -v
            out[i] = 1.0 / (1.0 / x - 1.0 / x ** 3 + 3.0 / x ** 5)


def _pdf_over_cdf(t):
    """pdf(t) / Phi(t) of the standard normal, stable for very negative t."""
    t = np.asarray(t, dtype=np.float64)
    flat = np.ascontiguousarray(t).reshape(-1)
    out = np.empty_like(flat)
    _pdf_over_cdf_kernel(flat, out)
    return out.reshape(t.shape)


def _average_ranks(a):
    """Ranks 1..n of a, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.shape[0])
    ranks[order] = np.arange(1, a.shape[0] + 1)
    _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    return (np.bincount(inv, weights=ranks) / counts)[inv]


def kappa_phi(kind, t, *, axis=-1, relu_negative="one"):
    """Condition number ``|t φ'(t) / φ(t)|`` of activation ``kind`` at ``t`` (module doc)."""
    t = np.asarray(t, dtype=np.float64)
    if kind in (None, "identity"):
        return np.ones_like(t)
    with np.errstate(all="ignore"):
        if kind == "relu":
            if relu_negative not in ("one", "zero"):
                raise ValueError(f"relu_negative: expected 'one' or 'zero', got {relu_negative!r}")
            if relu_negative == "one":
                return np.ones_like(t)
            return np.where(t < 0, 0.0, 1.0)
        a = np.abs(t)
        if kind == "tanh":
            k = 2 * a / np.abs(np.sinh(2 * t))
            k = np.where(a < 1e-8, 1.0, k)
            return np.where(np.isfinite(k), k, 0.0)
        if kind == "sigmoid":
            return np.where(t > 700, 0.0, a / (1 + np.exp(np.minimum(t, 700))))
        if kind == "gelu":
            # phi(t) = t Phi(t): kappa = |1 + t pdf(t) / Phi(t)|
            return np.abs(1 + t * _pdf_over_cdf(t))
        if kind == "softmax":
            m = np.max(t, axis=axis, keepdims=True)
            e = np.exp(t - m)
            y = e / e.sum(axis=axis, keepdims=True)
            tot = np.sum(a * y, axis=axis, keepdims=True)
            return a * (1 - y) + (tot - a * y)
    raise ValueError(f"activation: expected one of {', '.join(ACTIVATION_KINDS)}, got {kind!r}")


# ---------------------------------------------------------------------------------------
# bounds
# ---------------------------------------------------------------------------------------
def unit_roundoff(fmt, rounding="rne"):
    """Relative error bound of one rounding into float ``fmt``: 2^-p (nearest), 2^(1-p)."""
    u = math.ldexp(1.0, -(fmt.man_bits + 1))
    return u if rounding in _NEAREST else 2 * u


def _eta(fmt, rounding):
    """Absolute error bound (underflow) of one rounding into float ``fmt``."""
    if fmt.subnormals:
        e = math.ldexp(1.0, fmt.emin - fmt.man_bits)
    else:
        e = math.ldexp(1.0, fmt.emin)
    return e / 2 if rounding in _NEAREST else e


def gamma(n, u):
    """``γ_n(u) = n u / (1 - n u)``; ``+inf`` when ``n u ≥ 1``."""
    nu = n * u
    return math.inf if nu >= 1 else nu / (1 - nu)


def _datapath(dp):
    if not isinstance(dp, Datapath):
        raise TypeError(f"datapath: expected a Datapath (Accelerator.datapath(...)), "
                        f"got {type(dp).__name__}")
    return dp


def n_eff(K, structure="sequential", *, chunk_size=None, terms=None, rounded_products=False):
    """Effective accumulation length (the longest chain of roundings a term goes through).

    sequential K + 1 (bias load included); chunked ``(L, ceil(K/L) + 1)`` as a pair (narrow
    chain, wide chain); tree ``ceil(log2 K) + 2``; fused ``ceil(K/T) + 1`` steps. Rounded
    products add one rounding (not to the wide chain).
    """
    K = max(int(K), 1)
    extra = 1 if rounded_products else 0
    if structure == "sequential":
        return K + 1 + extra
    if structure == "chunked":
        L = min(int(chunk_size), K)
        return (L + extra, math.ceil(K / L) + 1)
    if structure == "tree":
        return max(math.ceil(math.log2(K)), 1) + 2 + extra
    if structure == "fused":
        return math.ceil(K / int(terms)) + 1 + extra
    raise ValueError(f"structure: {structure!r}")


def bound_coefficients(dp, K):
    """``(c_P, c_b, c_abs)``: the deterministic bound is ``c_P |A||B| + c_b |b| + c_abs``
    for the :class:`~accsim.numerics.datapath.Datapath` ``dp`` and accumulation length K."""
    fmt = _datapath(dp).acc
    rnd = dp.rounding
    K = max(int(K), 1)
    if not isinstance(fmt, FloatFormat):
        c = 0.5 if rnd in _NEAREST else 1.0
        unit = math.ldexp(1.0, -fmt.frac_bits)
        return 0.0, 0.0, (K + 1) * c * unit
    rounded = dp.rounded_product
    u = unit_roundoff(fmt, rnd)
    eta = _eta(fmt, rnd)
    extra_abs = 0.0
    if rounded:
        u = max(u, unit_roundoff(dp.product, dp.product_rounding))
        extra_abs = K * _eta(dp.product, dp.product_rounding)
    if dp.structure == "chunked":
        return _chunked_coefficients(dp, K, u, eta, extra_abs, rounded)
    if dp.structure == "fused":
        T, g = dp.terms, dp.guard_bits
        ca = 0.5 if dp.align_rounding == "rne" else 1.0
        v = u + (1 + u) * (T + 1) * ca * math.ldexp(1.0, -(fmt.man_bits + g))
        n = n_eff(K, "fused", terms=T, rounded_products=rounded)
        gv = gamma(n, v)
        return gv, gv, (n * eta + extra_abs) * (1 + gv)
    n = n_eff(K, dp.structure, rounded_products=rounded)
    gn = gamma(n, u)
    return gn, gn, ((K + 1) * eta + extra_abs) * (1 + gn)


def _chunked_coefficients(dp, K, u, eta, extra_abs, rounded):
    """:func:`bound_coefficients` of the chunked structure (module doc)."""
    L, c = n_eff(K, "chunked", chunk_size=dp.chunk_size, rounded_products=rounded)
    wfmt, wr = dp.wide, dp.wide_rounding
    gn = gamma(L, u)
    gw = gamma(c, unit_roundoff(wfmt, wr))
    cP = gn + gw * (1 + gn)
    ab = (K * eta + extra_abs) * (1 + gn) * (1 + gw) + c * _eta(wfmt, wr) * (1 + gw)
    return cP, gw, ab


def error_bound(A, B, b, dp, *, flags=None, P=None):
    """Deterministic componentwise bound on ``|ẑ - z|`` ((m, n) float64).

    ``z`` is the exact ``A B + b`` of the operands given; ``ẑ`` what the Datapath ``dp``
    computes. ``flags``: the engine's per-output flags; components that overflowed or
    saturated (2 | 4) get ``+inf``. ``P``: precomputed ``|A||B|``.
    """
    if P is None:
        P = abs_sum(A, B)
    K = np.asarray(A).shape[1] if np.ndim(A) == 2 else 1
    cP, cb, cabs = bound_coefficients(dp, K)
    with np.errstate(invalid="ignore"):
        bnd = cP * P + cabs if cP > 0 else np.full(P.shape, cabs)
        if b is not None and cb > 0:
            bnd = bnd + cb * np.abs(np.asarray(b, dtype=np.float64))
    if flags is not None:
        bnd = np.where((np.asarray(flags) & 6) != 0, np.inf, bnd)
    return bnd


def probabilistic_bound(A, B, b, dp, *, lam=1.0, P=None):
    """``λ √n u (|A||B| + |b|)`` with n the effective length of the Datapath ``dp`` (not
    rigorous)."""
    fmt = _datapath(dp).acc
    K = np.asarray(A).shape[1]
    S = (abs_sum(A, B) if P is None else P)
    if b is not None:
        S = S + np.abs(np.asarray(b, dtype=np.float64))
    if not isinstance(fmt, FloatFormat):
        return np.zeros_like(S)
    u = unit_roundoff(fmt, dp.rounding)
    st = dp.structure
    if st == "chunked":
        L, c = n_eff(K, "chunked", chunk_size=dp.chunk_size)
        return lam * (math.sqrt(L) * u + math.sqrt(c) * unit_roundoff(
            dp.wide, dp.wide_rounding)) * S
    n = n_eff(K, st, chunk_size=dp.chunk_size, terms=dp.terms)
    return lam * math.sqrt(n) * u * S


def check_bound(zhat, A, B, b, bound, *, P=None, z64=None):
    """Observed error and violations of ``bound``.

    "Observed error" is ``|ẑ - z|`` against the *exact* sum ``z`` of the quantized operands
    actually fed to the engine. ``z`` is approximated by the float64 product ``z64`` (any
    summation order), whose own error is at most ``γ_{K+1}(2^-53) S`` plus underflow; that
    slack is added to the bound before comparing, so a reported violation is a real one
    (and a real violation larger than the slack is always reported). Components with an
    infinite bound never count. Returns ``(observed, violations_mask)``.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if P is None:
        P = abs_sum(A, B)
    S = P if b is None else P + np.abs(np.asarray(b, dtype=np.float64))
    if z64 is None:
        z64 = A @ B
        if b is not None:
            z64 = z64 + np.asarray(b, dtype=np.float64)
    K = A.shape[1]
    slack = gamma(K + 3, _U64) * S * (1 + 1e-12) + (K + 2) * 2.0 ** -1074
    with np.errstate(invalid="ignore"):
        obs = np.abs(np.asarray(zhat, dtype=np.float64) - z64)
        obs = np.where(np.isnan(obs), np.inf, obs)
        viol = np.isfinite(bound) & (obs > bound + slack)
    return obs, viol


def spearman(x, y):
    """Spearman rank correlation (average ranks for ties); ``None`` when undefined."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2:
        return None
    rx, ry = _average_ranks(x), _average_ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return None
    return float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))
