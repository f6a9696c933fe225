"""The multi-term fused adder (structure "fused"): one rounding per step of T products.

Private module. See :mod:`accsim.numerics.engine` for the model: every addend is
aligned to the quantum ``2**(e_max - man_bits - guard_bits)`` with the alignment
rounding, the aligned addends are summed exactly, the sum is rounded once.
"""

import math

import numpy as np
from numba import njit, int64, uint64

from ._codes import JIT, RD
from ._round import clz64, decompose, f2b, round_float, round_shift


@njit(**JIT)
def _ilogb(x):
    m, E, neg = decompose(x)
    return E + (63 - clz64(m))


@njit(**JIT)
def _ro_ldexp(n_neg, u, qe):
    """float64 round-to-odd of (-1)**n_neg * u * 2**qe (u a uint64)."""
    if u == 0:
        return -0.0 if n_neg else 0.0
    nb = 64 - clz64(u)
    d = 0
    if nb > 53:
        d = nb - 53
    if qe + d < -1074:
        d = -1074 - qe
    if d > 0:
        if d >= 64:
            q = uint64(0)
            sticky = True
        else:
            q = u >> uint64(d)
            sticky = (u & ((uint64(1) << uint64(d)) - uint64(1))) != 0
        if sticky:
            q = q | uint64(1)
        u = q
        qe = qe + d
    v = math.ldexp(np.float64(u), qe)
    return -v if n_neg else v


@njit(**JIT)
def fused_step(s, prods, cnt, P, S, key):
    """One step of the (cnt + 1)-term fused adder: the register s and the products
    prods[:cnt] into format P: (value, flags). ``S``: the datapath's scalars
    (rounding, guard_bits, align_rounding, sr_bits); ``key``: the step's stochastic
    key."""
    mode = S.rounding
    srbits = S.sr_bits
    # special and all-zero cases
    allzero = s == 0.0
    finite = not (math.isinf(s) or s != s)
    emax = int64(-100000)
    if s != 0.0 and finite:
        emax = _ilogb(s)
    fsum = s
    anyneg0 = s == 0.0 and f2b(s) != 0
    for t in range(cnt):
        x = prods[t]
        fsum = fsum + x
        if x != 0.0:
            allzero = False
            if math.isinf(x) or x != x:
                finite = False
            else:
                e = _ilogb(x)
                if e > emax:
                    emax = e
        elif f2b(x) != 0:
            anyneg0 = True
    if not finite:
        return round_float(fsum, P, mode, key, srbits)
    if allzero:
        v = fsum
        if mode == RD and anyneg0:
            v = -0.0
        return round_float(v, P, mode, key, srbits)
    qe = emax - P.man_bits - S.guard_bits
    total = int64(0)
    # accumulator first, then the products
    for t in range(cnt + 1):
        x = s if t == 0 else prods[t - 1]
        if x == 0.0:
            continue
        m, E, neg = decompose(x)
        sh = qe - E
        if sh <= 0:
            q = m << uint64(-sh)
            inexact = False
        else:
            q, inexact = round_shift(m, sh, neg, S.align_rounding, uint64(0), 0)
        if neg:
            total -= int64(q)
        else:
            total += int64(q)
    neg = total < 0
    u = uint64(-total) if neg else uint64(total)
    v = _ro_ldexp(neg, u, qe)
    if v == 0.0:
        v = -0.0 if mode == RD else 0.0
    return round_float(v, P, mode, key, srbits)

