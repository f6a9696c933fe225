"""Float MAC loops: what the accumulator register holds after every add.

Private module (the kernels package re-exports :func:`float_rows` and picks the lane
kernels, :func:`accsim.numerics.kernels.lane_kernels`). Outputs to compute are given
in CSR form (``rows[r]`` with columns ``cols[ptr[r]:ptr[r+1]]``), so the full product
and a selection of outputs share one kernel, and the work is proportional to the
number of outputs computed. The kernels run on one thread; the engine calls them on
ranges of rows (or blocks) from several threads
(:func:`accsim.numerics.threads.parallel_ranges`), never splitting the summation axis,
so results do not depend on the thread count.

A format arrives as :class:`accsim.numerics.kernels.FormatParams` (``P`` the register,
``PP`` the product format, ``PW`` the wide register of "chunked"), the datapath's other
scalars as :class:`accsim.numerics.kernels.DatapathParams` (``S``).

The outputs of a row (or a block of scattered outputs) are registers side by side
(:class:`Block`). Sequential and chunked structures step them with one loop,
:func:`lane_loop`, whatever the register: the step itself is one of the vector steps of
:mod:`._steps`, passed as an argument. The loop is inlined where it is called, so each
call site compiles its own copy with its step inlined (a separately compiled loop would
take the step as a run-time function value, which numba cannot cache). There is one
kernel per step, so that a run compiles only the steps it uses. Products must be
exact in the lanes' dtype (checked by the engine): float64, or float32 for registers of
at most 22 significant bits.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, types, float64, int64, uint64, uint8
from numba.extending import overload

from ._codes import F_INEXACT, JIT, S_FUSED, S_SEQ, S_TREE, SR
from ._fused import fused_step
from ._round import out_key, round_any, round_float, step_key
from ._simd import prefer_wide_vectors, products_t8
from ._steps import (
    consts32, consts32_rne, consts64, fadd, fadd_call, ro_sums, round32_half, round32_rne,
    step32, step32_native, step64, step64_native,
)

_OVERLOAD = dict(nogil=True, error_model="numpy")
_K_PROD = uint64(0xA0761D6478BD642F)    # key offset of a product rounding
_K_WIDE = uint64(0xE7037ED1A0B428DB)    # key offset of a promotion into the wide register


class Block(NamedTuple):
    """Scratch of w registers stepped side by side: arrays of length w."""
    acc: np.ndarray           # the register (the lanes' dtype: float32 or float64)
    tmp: np.ndarray           # its ping-pong partner: a step reads one, writes the other
    gb: np.ndarray            # a step's B entries, gathered when the columns are scattered
    ros: np.ndarray           # a step's round-to-odd sums (the lanes' dtype)
    wide: np.ndarray          # the wide register of "chunked" (float64)
    wide_tmp: np.ndarray      # its partner while a promotion is redone (float64)
    keys: np.ndarray          # the outputs' stochastic-rounding keys (uint64)
    flags: np.ndarray         # OR of every rounding's event flags (uint8)
    inexact: np.ndarray       # inexact roundings (int32 beside float32 lanes, else int64)
    bad: np.ndarray           # a step's bad lanes (nonzero; inexact's dtype)
    wide_inexact: np.ndarray  # inexact promotions into the wide register (int64)
    overflows: np.ndarray     # overflowing roundings (int64)
    saturations: np.ndarray   # saturating roundings (int64)


def _inx_scratch(A, w):
    """Inexact-count scratch: int32 beside float32 lanes (8 per register), else int64."""


@overload(_inx_scratch, jit_options=_OVERLOAD)
def _inx_scratch_typed(A, w):
    if A.dtype == types.float32:
        return lambda A, w: np.zeros(w, dtype=np.int32)
    return lambda A, w: np.zeros(w, dtype=np.int64)


@njit(**JIT)
def _block(A, B, w):
    """A :class:`Block` of w registers for operands A, B (keys not set)."""
    return Block(np.empty(w, dtype=A.dtype), np.empty(w, dtype=A.dtype),
                 np.empty(w, dtype=B.dtype), np.empty(w, dtype=A.dtype), np.empty(w),
                 np.empty(w), np.empty(w, dtype=np.uint64),
                 np.zeros(w, dtype=np.uint8), _inx_scratch(A, w), _inx_scratch(A, w),
                 np.zeros(w, dtype=np.int64),
                 np.zeros(w, dtype=np.int64), np.zeros(w, dtype=np.int64))


@njit(**JIT)
def _row_block(A, B, i, cols, e0, w, seed):
    """The :class:`Block` of the w outputs (i, cols[e0 + t]), their keys set."""
    blk = _block(A, B, w)
    keys = blk.keys
    for t in range(w):
        keys[t] = out_key(seed, i, cols[e0 + t])
    return blk


@njit(inline="always", **JIT)
def _tally(f, t, fl, nov, nsat, ninx):
    """Record the event flags f of one rounding of register t in a block's flags and
    counts (``ninx``: its narrow or wide inexact count). The callers bind the block's
    arrays to local names first: a field read inside a loop that also calls functions
    costs two atomic reference-count updates each time (measured 15x slower)."""
    fl[t] |= f
    nov[t] += (f >> 1) & 1
    nsat[t] += (f >> 2) & 1
    ninx[t] += f & 1


@njit(inline="always", **JIT)
def _store_events(blk, o0, oflags, c_ov, c_sat, c_inx):
    """The block's events into index o0 + t of the per-output arrays."""
    fl, nov, nsat, ninx, winx = (blk.flags, blk.overflows, blk.saturations, blk.inexact,
                                 blk.wide_inexact)
    for t in range(fl.shape[0]):
        n_inx = int64(ninx[t]) + winx[t]
        oflags[o0 + t] = fl[t] | (uint8(F_INEXACT) if n_inx > 0 else uint8(0))
        c_ov[o0 + t] = nov[t]
        c_sat[o0 + t] = nsat[t]
        c_inx[o0 + t] = n_inx


@njit(inline="always", **JIT)
def _product(p, PP, S, key, t, fl, nov, nsat, ninx):
    """The product as the adder sees it: exact, or rounded to the product format PP
    (events tallied as :func:`_tally`)."""
    if S.product_kind == 1:
        p, pf = round_any(p, PP, S.product_rounding, key, S.sr_bits)
        _tally(pf, t, fl, nov, nsat, ninx)
    return p


# ------------------------------------------------------------------------------------
# the lane loop

@njit(inline="always", **JIT)
def _step_src(B, k, cols, e0, w, contig, c0, gb):
    """The step's B entries of the w outputs: a view of row k when their columns are
    consecutive, else gathered into the scratch ``gb``."""
    if contig:
        return B[k, c0:c0 + w]
    bk = B[k]
    for t in range(w):
        gb[t] = bk[cols[e0 + t]]
    return gb


@njit(inline="always", **JIT)
def _settle(acc, tmp, w, swaps):
    """After ping-ponging between ``acc`` and ``tmp``: the registers end in ``acc``."""
    if swaps % 2 == 1:
        for t in range(w):
            acc[t] = tmp[t]


@njit(inline="always", **JIT)
def _all_zero(x, w):
    """True when every one of x[:w] is +-0."""
    nz = 0
    for t in range(w):
        nz += int64(x[t] != 0)
    return nz == 0


@njit(inline="always", **JIT)
def _no_zero(x, w):
    """True when none of x[:w] is +-0 (a vectorised count, no early exit)."""
    nz = 0
    for t in range(w):
        nz += int64(x[t] == 0)
    return nz == 0


@njit(inline="always", **JIT)
def _skip_a(a, cur, w, skip0):
    """Skip a step whose a[i, k] is +-0 (``skip0`` 1: B all finite, so every product
    is +-0)? Only when no register is zero: x + (+-0) = x exactly for x != 0."""
    return skip0 == 1 and a == 0 and _no_zero(cur, w)


@njit(inline="always", **JIT)
def _skip_src(src, cur, w, skip0):
    """Skip a step whose products are all +-0 (``skip0`` 2: the products are ``src``
    itself)? Only when no register is zero."""
    return skip0 == 2 and src[0] == 0 and _all_zero(src, w) and _no_zero(cur, w)


@njit(**JIT)
def _redo(x, p, t, k, nxt, keys, fl, nov, nsat, ninx, P, S):
    """Step k of register t by the general scalar code (:func:`fadd`, in float64:
    exact for float32 lanes, whose values and products are float32 values): the value
    into nxt[t] (exact in float32 too, as every value of the format is a float32), the
    step's events tallied."""
    v, f = fadd_call(float64(x), float64(p), P, S.rounding, step_key(keys[t], k), S.sr_bits,
                S.native != 0)
    nxt[t] = v
    _tally(f, t, fl, nov, nsat, ninx)


@njit(inline="always", **JIT)
def lane_loop(step, C, sums, A, B, i, cols, e0, k0, k1, blk, P, S, skip0):
    """Sequential steps k0 <= k < k1 of the block's registers, ``x = step(x, A[i, k] *
    B[k, cols[e0 + t]], C)`` for register t, vectorised over registers.

    ``step`` is a vector step of :mod:`._steps` with its constants ``C``; ``sums``
    (True for :func:`._steps.round32_rne` and :func:`._steps.round32_half`): the step
    rounds the round-to-odd sums of the registers and products, formed for the whole
    block first (:func:`._steps.ro_sums`, into ``blk.ros``). Pass 1 (branch-free,
    SIMD) steps every register, keeps the steps' ``bad`` (in ``blk.bad``, and ORed)
    and adds their ``inexact``; pass 2, only when some lane was bad, takes back the
    bad lanes' inexact and redoes them with the general scalar code (:func:`_redo`).
    Not used for stochastic rounding or rounded products.

    The registers ping-pong between ``blk.acc`` and ``blk.tmp``: the step reads one and
    writes the other, so pass 2 still sees the old value and the store is a plain
    vector store (a conditional in-place store becomes a masked store, several times
    slower).

    ``skip0``: a step that adds exact zeros to every register leaves each nonzero
    register unchanged with no event, so it is skipped unless some register is zero
    (whose sign the zero sum may change). 1: the step's A[i, k] is +-0 (the engine sets
    it when every entry of B is finite, so that 0 * B[k, j] is a zero); 2: the step's
    products ``B[k, ...]`` are all +-0 (precomputed products, :func:`float_pairs`);
    0: never. Zero pixels and ReLU zeros make this common.
    """
    prefer_wide_vectors()
    w = blk.acc.shape[0]
    keys, fl, nov, nsat, ninx = (blk.keys, blk.flags, blk.overflows, blk.saturations,
                                 blk.inexact)
    gb, ros, badv = blk.gb, blk.ros, blk.bad
    # counts stay in ninx's integer type (numba widens int32 + int32 to int64): int32
    # beside float32 lanes, 16 to an AVX-512 register
    count = ninx.dtype.type
    contig = (cols[e0 + w - 1] - cols[e0]) == w - 1
    c0 = cols[e0]
    cur = blk.acc
    nxt = blk.tmp
    swaps = 0
    for k in range(k0, k1):
        a = A[i, k]
        if _skip_a(a, cur, w, skip0):
            continue            # + (+-0) leaves every nonzero register as it is, exactly
        src = _step_src(B, k, cols, e0, w, contig, c0, gb)
        if _skip_src(src, cur, w, skip0):
            continue
        if sums:
            ro_sums(cur, src, a, ros, w)
        nbad = count(0)
        for t in range(w):
            v, bad, inexact = step(cur[t], a * src[t], ros[t], C)
            nxt[t] = v
            ninx[t] = count(ninx[t] + inexact)
            badv[t] = bad
            nbad = count(nbad | bad)
        if nbad != 0:
            for t in range(w):
                if badv[t] != 0:
                    x = cur[t]
                    p = a * src[t]
                    # pass 1 counted the bad lane's inexact; the general code recounts
                    ninx[t] = count(ninx[t] - step(x, p, ros[t], C)[2])
                    _redo(x, p, t, k, nxt, keys, fl, nov, nsat, ninx, P, S)
        cur, nxt = nxt, cur
        swaps += 1
    _settle(blk.acc, blk.tmp, w, swaps)


# ------------------------------------------------------------------------------------
# sequential and chunked registers

@njit(inline="always", **JIT)
def no_consts(P, mode):
    """The constants of a step that needs none."""
    return ()


@njit(inline="always", **JIT)
def _promote_lanes(step, C, wide, wtmp, acc, keys, fl, nov, nsat, winx, k0, PW, S):
    """:func:`_promote` by a vector step of float64 lanes (:func:`step64` or
    :func:`step64_native` with its constants C), as in :func:`lane_loop`: pass 1 steps
    every register into ``wtmp``; pass 2, only when some lane was bad, redoes those by
    the general code (from ``wide``, still the old values); then the results go back
    into ``wide``."""
    nbad = int64(0)
    for t in range(wide.shape[0]):
        x = wide[t]
        v, bad, inexact = step(x, float64(acc[t]), x, C)
        wtmp[t] = v
        winx[t] += inexact
        nbad |= bad
    if nbad != 0:
        for t in range(wide.shape[0]):
            x = wide[t]
            p = float64(acc[t])
            v, bad, inexact = step(x, p, x, C)
            if bad != 0:
                winx[t] -= inexact
                v, f = fadd_call(x, p, PW, S.wide_rounding,
                                 step_key(keys[t] ^ _K_WIDE, k0), S.sr_bits,
                                 S.wide_native != 0)
                wtmp[t] = v
                _tally(f, t, fl, nov, nsat, winx)
    for t in range(wide.shape[0]):
        wide[t] = wtmp[t]


@njit(**JIT)
def _promote(blk, k0, PW, S):
    """Add each chunk's register (``blk.acc``, its chunk starting at step k0) into the
    wide register PW (``blk.wide``, float64), rounded with ``S.wide_rounding``, events
    tallied (inexact ones as wide inexact): vectorised (:func:`_promote_lanes`) for
    IEEE binary64 with rne and for formats of at most 51 significant bits without
    stochastic rounding, else by the general scalar code."""
    wide, wtmp, acc, keys = blk.wide, blk.wide_tmp, blk.acc, blk.keys
    fl, nov, nsat, winx = blk.flags, blk.overflows, blk.saturations, blk.wide_inexact
    prefer_wide_vectors()
    if S.wide_native != 0:
        _promote_lanes(step64_native, (), wide, wtmp, acc, keys, fl, nov, nsat, winx, k0,
                       PW, S)
    elif S.wide_rounding != SR and PW.man_bits <= 50:
        _promote_lanes(step64, consts64(PW, S.wide_rounding), wide, wtmp, acc, keys, fl,
                       nov, nsat, winx, k0, PW, S)
    else:
        for t in range(wide.shape[0]):
            v, f = fadd_call(wide[t], float64(acc[t]), PW, S.wide_rounding,
                             step_key(keys[t] ^ _K_WIDE, k0), S.sr_bits,
                             S.wide_native != 0)
            wide[t] = v
            _tally(f, t, fl, nov, nsat, winx)


@njit(inline="always", **JIT)
def _lanes(step, consts, sums, A, B, i, cols, e0, init, o0, skip0, blk, P, PW, S, out,
           oflags, c_ov, c_sat, c_inx):
    """The block's registers over the products ``A[i, k] * B[k, cols[e0 + t]]`` by the
    vector step ``step`` (constants ``consts(P, S.rounding)``; ``sums`` as in
    :func:`lane_loop`), sequential or chunked
    (chunks of ``S.chunk_size`` steps from zero in the register, each promoted into the
    wide register PW, which starts at the initial value); initial values come from
    init[o0 + t], results and events go to index o0 + t."""
    K = A.shape[1]
    w = blk.acc.shape[0]
    acc, wide = blk.acc, blk.wide
    C = consts(P, S.rounding)
    seq = S.structure == S_SEQ
    # sequential: one span of K steps from the initial value; chunked: spans of
    # chunk_size steps from zero, each promoted (one lane_loop either way: each copy
    # of the inlined loop costs compile time)
    L = K if seq else S.chunk_size
    for t in range(w):
        acc[t] = init[o0 + t] if seq else 0.0
        wide[t] = init[o0 + t]
    k0 = int64(0)      # not a literal 0: one compiled _promote, not two
    while k0 < K:
        k1 = min(K, k0 + L)
        if not seq:
            for t in range(w):
                acc[t] = 0.0
        lane_loop(step, C, sums, A, B, i, cols, e0, k0, k1, blk, P, S, skip0)
        if not seq:
            _promote(blk, k0, PW, S)
        k0 = k1
    for t in range(w):
        out[o0 + t] = float64(acc[t]) if seq else wide[t]
    _store_events(blk, o0, oflags, c_ov, c_sat, c_inx)


@njit(inline="always", **JIT)
def _lane_rows(step, consts, sums, A, B, rows, ptr, cols, init, skip0, P, PW, S, out,
               oflags, c_ov,
               c_sat, c_inx):
    """Every CSR row of the selection: its registers side by side (:func:`_lanes`)."""
    for r in range(rows.shape[0]):
        e0 = ptr[r]
        w = ptr[r + 1] - e0
        if w > 0:
            blk = _row_block(A, B, rows[r], cols, e0, w, S.seed)
            _lanes(step, consts, sums, A, B, rows[r], cols, e0, init, e0, skip0, blk, P,
                   PW, S, out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def _pair_products(A, Bt, pr, pc, e0, w):
    """The exact products ``A[pr[e], k] * Bt[pc[e], k]`` of outputs e0 <= e < e0 + w,
    k-major: (K, w rounded up to 8) in A's dtype. Eight lanes by eight k at a time:
    contiguous vector loads of rows of A and of B transposed, multiplied and transposed
    in registers (a strided scalar store per product was most of the time)."""
    K = A.shape[1]
    w8 = (w + 7) // 8 * 8
    pbuf = np.empty((K, w8), dtype=A.dtype)
    K8 = K // 8 * 8
    offs = np.empty(16, dtype=np.int64)
    for t0 in range(0, w8, 8):
        for u in range(8):
            t = e0 + min(t0 + u, w - 1)
            offs[u] = pr[t] * K
            offs[8 + u] = pc[t] * K
        for k0 in range(0, K8, 8):
            products_t8(A, Bt, offs, k0, pbuf, k0 * w8 + t0, w8)
        for k in range(K8, K):
            for u in range(8):
                t = e0 + min(t0 + u, w - 1)
                pbuf[k, t0 + u] = A[pr[t], k] * Bt[pc[t], k]
    return pbuf


@njit(inline="always", **JIT)
def _lane_pairs(step, consts, sums, A, Bt, pr, pc, init, lanes, b0, b1, P, PW, S, out,
                oflags,
                c_ov, c_sat, c_inx):
    """Blocks b0 <= b < b1 of ``lanes`` scattered outputs (pr[e], pc[e]): each block's
    products (:func:`_pair_products`), then its registers over them as
    ``ones[0, k] * pbuf[k, t]`` (times 1, exact) by :func:`_lanes`."""
    K = A.shape[1]
    nnz = pr.shape[0]
    ones = np.ones((1, K), dtype=A.dtype)
    lane = np.arange(lanes)
    zero = int64(0)
    for b in range(b0, b1):
        e0 = b * lanes
        w = min(nnz, e0 + lanes) - e0
        pbuf = _pair_products(A, Bt, pr, pc, e0, w)
        blk = _block(ones, pbuf, w)
        keys = blk.keys
        for t in range(w):
            keys[t] = out_key(S.seed, pr[e0 + t], pc[e0 + t])
        _lanes(step, consts, sums, ones, pbuf, zero, lane, zero, init, e0, int64(2), blk, P,
               PW, S, out, oflags, c_ov, c_sat, c_inx)


# ------------------------------------------------------------------------------------
# the general register: stochastic rounding, rounded products, tree, fused

@njit(**JIT)
def _span_general(A, B, i, cols, e0, k0, k1, blk, P, PP, S):
    """Sequential steps k0 <= k < k1 of the block's float64 registers by the general
    scalar add (:func:`fadd`: any mode, stochastic rounding included), each product
    rounded to PP first when ``S.product_kind`` is 1."""
    acc, keys = blk.acc, blk.keys
    fl, nov, nsat, ninx = blk.flags, blk.overflows, blk.saturations, blk.inexact
    mode = S.rounding
    native = S.native != 0
    for k in range(k0, k1):
        a = A[i, k]
        for t in range(acc.shape[0]):
            p = _product(a * B[k, cols[e0 + t]], PP, S, step_key(keys[t] ^ _K_PROD, k), t,
                         fl, nov, nsat, ninx)
            v, f = fadd(acc[t], p, P, mode, step_key(keys[t], k), S.sr_bits, native)
            acc[t] = v
            _tally(f, t, fl, nov, nsat, ninx)


@njit(**JIT)
def _general(A, B, i, cols, e0, init, blk, P, PP, PW, S):
    """:func:`_lanes` with the general scalar add (:func:`_span_general`), results in
    ``blk.acc`` (sequential) or ``blk.wide`` (chunked)."""
    K = A.shape[1]
    w = blk.acc.shape[0]
    acc = blk.acc
    if S.structure == S_SEQ:
        for t in range(w):
            acc[t] = init[e0 + t]
        _span_general(A, B, i, cols, e0, 0, K, blk, P, PP, S)
        return
    wide = blk.wide
    for t in range(w):
        wide[t] = init[e0 + t]
    k0 = int64(0)      # not a literal 0: one compiled _promote, not two
    while k0 < K:
        k1 = min(K, k0 + S.chunk_size)
        for t in range(w):
            acc[t] = 0.0
        _span_general(A, B, i, cols, e0, k0, k1, blk, P, PP, S)
        _promote(blk, k0, PW, S)
        k0 = k1
    for t in range(w):
        acc[t] = wide[t]


@njit(**JIT)
def _tree(A, B, i, cols, e0, init, has_bias, blk, P, PP, S):
    """Pairwise adder tree over the K products of each register (level by level, pairs
    (0,1), (2,3), ...; an odd element passes up unchanged), every node rounded into P;
    the bias, when ``has_bias``, added to the root with one more rounding. Results in
    ``blk.acc``."""
    K = A.shape[1]
    acc, keys = blk.acc, blk.keys
    fl, nov, nsat, ninx = blk.flags, blk.overflows, blk.saturations, blk.inexact
    w = acc.shape[0]
    mode = S.rounding
    native = S.native != 0
    buf = np.empty((max(K, 1), w))
    for k in range(K):
        a = A[i, k]
        for t in range(w):
            buf[k, t] = _product(a * B[k, cols[e0 + t]], PP, S,
                                 step_key(keys[t] ^ _K_PROD, k), t, fl, nov, nsat, ninx)
    n_lv = K
    node = 0
    while n_lv > 1:
        half = n_lv // 2
        for h in range(half):
            for t in range(w):
                v, f = fadd(buf[2 * h, t], buf[2 * h + 1, t], P, mode,
                            step_key(keys[t], K + node), S.sr_bits, native)
                buf[h, t] = v
                _tally(f, t, fl, nov, nsat, ninx)
            node += 1
        if n_lv % 2 == 1:
            for t in range(w):
                buf[half, t] = buf[n_lv - 1, t]
        n_lv = half + (n_lv % 2)
    for t in range(w):
        if K == 0:
            acc[t] = init[e0 + t]
        else:
            if has_bias:
                v, f = fadd(init[e0 + t], buf[0, t], P, mode, step_key(keys[t], K + node),
                            S.sr_bits, native)
            else:  # the root itself (a lone product still rounds into acc)
                v, f = round_float(buf[0, t], P, mode, step_key(keys[t], K + node),
                                   S.sr_bits)
            acc[t] = v
            _tally(f, t, fl, nov, nsat, ninx)


@njit(**JIT)
def _fused(A, B, i, cols, e0, init, blk, P, PP, S):
    """The multi-term fused adder: each step takes the next ``S.terms`` products and the
    register (:func:`accsim.numerics.kernels._fused.fused_step`). Results in
    ``blk.acc``."""
    K = A.shape[1]
    T = S.terms
    acc, keys = blk.acc, blk.keys
    fl, nov, nsat, ninx = blk.flags, blk.overflows, blk.saturations, blk.inexact
    prods = np.empty(max(T, 1))
    for t in range(acc.shape[0]):
        acc[t] = init[e0 + t]
    for t in range(acc.shape[0]):
        j = cols[e0 + t]
        k0 = 0
        while k0 < K:
            k1 = min(K, k0 + T)
            for k in range(k0, k1):
                prods[k - k0] = _product(A[i, k] * B[k, j], PP, S,
                                         step_key(keys[t] ^ _K_PROD, k), t, fl, nov, nsat,
                                         ninx)
            v, f = fused_step(acc[t], prods, k1 - k0, P, S, step_key(keys[t], k0))
            acc[t] = v
            _tally(f, t, fl, nov, nsat, ninx)
            k0 = k1


# ------------------------------------------------------------------------------------
# kernels
#
# One kernel per step: numba compiles a kernel (and the steps inlined into it) on its
# first call, so a run compiles only the steps its registers use. The engine picks the
# kernel (:func:`accsim.numerics.kernels.lane_kernels`). Every kernel runs on one
# thread; the engine calls it on slices ``rows[r0:r1]``, ``ptr[r0:r1 + 1]`` (rows) or
# block ranges ``b0, b1`` (pairs) from several.
#
# rows kernels: the selected outputs of A @ B in CSR form (entries e in
# ptr[r]:ptr[r+1] are outputs (rows[r], cols[e])), init[e] the register's initial
# value (bias or 0, already in the format holding it), results and OR-ed flags to
# out[e], oflags[e], event counts to c_*[e]; ``skip0`` as in :func:`lane_loop` (0 or 1).
# pairs kernels: scattered outputs (pr[e], pc[e]) in blocks of ``lanes`` registers,
# Bt = B transposed (C-contiguous), so the cost is proportional to the number of
# outputs however they are scattered.

@njit(**JIT)
def rows_step64(A, B, rows, ptr, cols, init, skip0, P, PW, S, out, oflags, c_ov, c_sat,
                c_inx):
    """float64 lanes, :func:`step64` (any format of at most 51 significant bits, any
    mode but stochastic rounding, exact products)."""
    _lane_rows(step64, consts64, False, A, B, rows, ptr, cols, init, skip0, P, PW, S, out,
               oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def rows_native64(A, B, rows, ptr, cols, init, skip0, P, PW, S, out, oflags, c_ov, c_sat,
                  c_inx):
    """float64 lanes, the IEEE binary64 register with rne (:func:`step64_native`)."""
    _lane_rows(step64_native, no_consts, False, A, B, rows, ptr, cols, init, skip0, P, PW,
               S, out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def rows_step32(A, B, rows, ptr, cols, init, skip0, P, PW, S, out, oflags, c_ov, c_sat,
                c_inx):
    """float32 lanes, :func:`step32` (at most 22 significant bits, any mode but
    stochastic rounding)."""
    _lane_rows(step32, consts32, False, A, B, rows, ptr, cols, init, skip0, P, PW, S, out,
               oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def rows_rne32(A, B, rows, ptr, cols, init, skip0, P, PW, S, out, oflags, c_ov, c_sat,
               c_inx):
    """float32 lanes, :func:`step32_rne` (rne into a format with -0 and 1..21 fraction
    bits)."""
    _lane_rows(round32_rne, consts32_rne, True, A, B, rows, ptr, cols, init, skip0, P, PW,
               S, out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def rows_half32(A, B, rows, ptr, cols, init, skip0, P, PW, S, out, oflags, c_ov, c_sat,
                c_inx):
    """float32 lanes, IEEE binary16 with rne by the hardware conversion
    (:func:`step32_half`; only where :data:`._simd.HALF_NATIVE`)."""
    _lane_rows(round32_half, no_consts, True, A, B, rows, ptr, cols, init, skip0, P, PW, S,
               out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def rows_native32(A, B, rows, ptr, cols, init, skip0, P, PW, S, out, oflags, c_ov, c_sat,
                  c_inx):
    """float32 lanes, the IEEE binary32 register with rne (:func:`step32_native`)."""
    _lane_rows(step32_native, no_consts, False, A, B, rows, ptr, cols, init, skip0, P, PW,
               S, out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def pairs_step64(A, Bt, pr, pc, init, lanes, b0, b1, P, PW, S, out, oflags, c_ov, c_sat,
                 c_inx):
    """:func:`rows_step64` for scattered outputs."""
    _lane_pairs(step64, consts64, False, A, Bt, pr, pc, init, lanes, b0, b1, P, PW, S, out,
                oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def pairs_step32(A, Bt, pr, pc, init, lanes, b0, b1, P, PW, S, out, oflags, c_ov, c_sat,
                 c_inx):
    """:func:`rows_step32` for scattered outputs."""
    _lane_pairs(step32, consts32, False, A, Bt, pr, pc, init, lanes, b0, b1, P, PW, S, out,
                oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def pairs_rne32(A, Bt, pr, pc, init, lanes, b0, b1, P, PW, S, out, oflags, c_ov, c_sat,
                c_inx):
    """:func:`rows_rne32` for scattered outputs."""
    _lane_pairs(round32_rne, consts32_rne, True, A, Bt, pr, pc, init, lanes, b0, b1, P, PW,
                S, out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def pairs_half32(A, Bt, pr, pc, init, lanes, b0, b1, P, PW, S, out, oflags, c_ov, c_sat,
                 c_inx):
    """:func:`rows_half32` for scattered outputs."""
    _lane_pairs(round32_half, no_consts, True, A, Bt, pr, pc, init, lanes, b0, b1, P, PW,
                S, out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def pairs_native32(A, Bt, pr, pc, init, lanes, b0, b1, P, PW, S, out, oflags, c_ov, c_sat,
                   c_inx):
    """:func:`rows_native32` for scattered outputs."""
    _lane_pairs(step32_native, no_consts, False, A, Bt, pr, pc, init, lanes, b0, b1, P, PW,
                S, out, oflags, c_ov, c_sat, c_inx)


@njit(**JIT)
def float_rows(A, B, rows, ptr, cols, init, has_bias, P, PP, PW, S, out, oflags, c_ov,
               c_sat, c_inx):
    """The general float register on float64 operands, every structure and mode: the
    scalar add (:func:`fadd`) for stochastic rounding and rounded products, sequential
    or chunked; the adder tree; the multi-term fused adder. CSR rows as the rows
    kernels; ``has_bias``: a bias was given, which the tree adds to its root."""
    for r in range(rows.shape[0]):
        i = rows[r]
        e0 = ptr[r]
        w = ptr[r + 1] - e0
        if w == 0:
            continue
        blk = _row_block(A, B, i, cols, e0, w, S.seed)
        if S.structure == S_TREE:
            _tree(A, B, i, cols, e0, init, has_bias, blk, P, PP, S)
        elif S.structure == S_FUSED:
            _fused(A, B, i, cols, e0, init, blk, P, PP, S)
        else:
            _general(A, B, i, cols, e0, init, blk, P, PP, PW, S)
        acc = blk.acc
        for t in range(w):
            out[e0 + t] = acc[t]
        _store_events(blk, e0, oflags, c_ov, c_sat, c_inx)
