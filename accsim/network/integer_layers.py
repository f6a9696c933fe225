"""The integer product ops of a quantized model on the accelerator's integer register.

A node of :data:`.quant_ops.INTEGER_PRODUCT_OPS` (QLinearConv, QLinearMatMul, QGemm,
MatMulInteger, ConvInteger) is split by :func:`.quant_ops.integer_product` into its three
steps; this module runs step 2, the accumulation, on the accelerator's datapath and keeps
steps 1 and 3 (docs/quantized.md):

1. **Operands as the hardware sees them: centred.** The activation operand is the stored
   code minus its zero point, ``x - zx``, the weight operand ``w - zw``: signed integers
   of at most 9 bits (``-255 .. 255``: uint8 codes with a zero point in ``0 .. 255``;
   int8 codes with ``zx = 0`` stay in ``-128 .. 127``, 8 bits). Every product is exact
   (at most 17 bits), so the register's format alone decides overflow; padding of a
   convolution is the zero point, a centred 0.
2. **Accumulation** on the narrow datapath (:func:`accsim.numerics.engine.matmul`: the
   register's width, wrap or saturation, sequential or chunked structure), starting from
   the int32 bias (QLinearConv's ``B``, QGemm's ``C``) as the register's initial value,
   lowered to 2-D problems as :mod:`.products` lowers a Conv/MatMul (im2col per group).
3. **Requantization** of the register's (possibly wrapped or saturated) value:
   ``IntegerProduct.finish``, onnxruntime's ``MlasRequantizeOutput`` (or the int32 output
   of MatMulInteger/ConvInteger).

Per layer (:class:`RegisterStats`, the keys of ``accsim simulate --json``):
``max_partial_sum`` / ``min_partial_sum``: the extreme exact partial sums seen on the data
(the layer's inputs in the exact model, i.e. onnxruntime's: what every register that did
not overflow upstream sees), in the sequential order of the register (bias, then the
terms ``k = 0 .. K-1``);
``min_register_bits_observed``: the narrowest two's-complement register holding all of
them (it never overflowed on the data); ``worst_case_bound``: ``max over outputs of
x_max Σ|w| + |bias|`` (``IntegerProduct.worst_case_bound``, the guarantee A2Q trains for)
and ``min_register_bits_bound``: the narrowest register holding it (it cannot overflow on
any input); ``accumulator_mismatches``: outputs whose register value differs from the
exact sum of the same operands; ``output_mismatches``: outputs of the op (after
requantization) that differ from the exact accumulator's on the same operands (with no
overflow upstream: from onnxruntime's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..numerics.engine import matmul
from ..numerics.threads import PARALLEL_MIN, parallel_ranges
from . import quant_ops
from .products import conv_problems
from .graph_ops import OpError
from .results import ErrorStats, LayerResult

def signed_bits(lo: int, hi: int) -> int:
    """The fewest bits of a two's-complement register holding every integer in
    ``[lo, hi]`` (``lo <= 0 <= hi``): ``b`` with ``-2^(b-1) <= lo`` and ``hi <= 2^(b-1)-1``."""
    return max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1


@dataclass
class RegisterStats:
    """What a layer's register needed over the run (module doc for the keys)."""

    max_partial: int = 0
    min_partial: int = 0
    bound: int = 0
    acc_mismatches: int = 0
    output_mismatches: int = 0

    def to_dict(self) -> dict:
        """The per-layer JSON keys (integers)."""
        return {"max_partial_sum": self.max_partial, "min_partial_sum": self.min_partial,
                "min_register_bits_observed": signed_bits(self.min_partial,
                                                          self.max_partial),
                "worst_case_bound": self.bound,
                "min_register_bits_bound": signed_bits(-self.bound, self.bound),
                "accumulator_mismatches": self.acc_mismatches,
                "output_mismatches": self.output_mismatches}


@njit(nogil=True, cache=True)
def _prefix_range(A, BT, bias, lo, hi, r0, r1):
    """Rows ``r0 <= i < r1`` of ``A`` (m, K): into lo[i], hi[i] the (min, max) of
    ``bias[i, j] + Σ_{k<t} A[i, k] BT[j, k]`` over ``j`` and ``t = 0 .. K`` (float64
    holding integers: exact while every partial sum stays below 2^53). One thread; the
    caller spreads the rows over threads."""
    K = A.shape[1]
    n = BT.shape[0]
    for i in range(r0, r1):
        a, b = 0.0, 0.0
        for j in range(n):
            s = bias[i, j]
            a, b = min(a, s), max(b, s)
            for k in range(K):
                s += A[i, k] * BT[j, k]
                a, b = min(a, s), max(b, s)
        lo[i], hi[i] = a, b


def partial_sum_range(A, B, bias):
    """(min, max) over all outputs of the exact partial sums ``bias + Σ_{k<t} A[:, k]
    B[k, :]`` for ``t = 0 .. K`` and 0 (``A`` (m, K), ``B`` (K, n): integer values;
    ``bias`` (n,), (m, n) or None); float64 sums of integers, exact: with centred
    int8/uint8 operands and an int32 bias every partial sum is below
    ``K · 255² + 2^31``, far under 2^53 (checked)."""
    m, n = A.shape[0], B.shape[1]
    if A.shape[1] * 255 * 255 + 2 ** 31 >= 2 ** 53:
        raise ValueError(f"accumulation length {A.shape[1]} too long for exact sums")
    b = np.zeros((1, 1)) if bias is None else np.asarray(bias, dtype=np.float64)
    b = np.broadcast_to(b.reshape(1, -1) if b.ndim == 1 else b, (m, n))
    A64 = np.ascontiguousarray(A, dtype=np.float64)
    BT64 = np.ascontiguousarray(B.T, dtype=np.float64)
    lo, hi = np.zeros(m), np.zeros(m)
    parallel_ranges(lambda r0, r1: _prefix_range(A64, BT64, b, lo, hi, r0, r1), m,
                    parallel=m * n * A.shape[1] >= PARALLEL_MIN)
    return int(lo.min(initial=0)), int(hi.max(initial=0))


def _matmul_problems(p):
    """(problems [(A, B, bias)], assemble) of a matrix product's IntegerProduct ``p``."""
    x, w = p.x, p.w
    lead = np.broadcast_shapes(x.shape[:-2], w.shape[:-2])
    M, K, N = x.shape[-2], x.shape[-1], w.shape[-1]
    bias = None if p.bias is None else np.broadcast_to(p.bias, (*lead, M, N))
    if all(d == 1 for d in w.shape[:-2]):
        A = np.broadcast_to(x, (*lead, M, K)).reshape(-1, K).astype(np.float64)
        b = None if bias is None else bias.reshape(-1, N)
        return [(A, w.reshape(K, N).astype(np.float64), b)], \
            lambda zs: zs[0].reshape(*lead, M, N)
    xb = np.broadcast_to(x, (*lead, M, K))
    wb = np.broadcast_to(w, (*lead, K, N))
    probs = [(xb[i].astype(np.float64), wb[i].astype(np.float64),
              None if bias is None else bias[i]) for i in np.ndindex(*lead)]
    return probs, lambda zs: np.stack(zs).reshape(*lead, M, N)


def _conv_problems(node, p):
    """(problems, assemble) of a convolution's IntegerProduct ``p`` (im2col per group)."""
    strides, pads, dil, group = p.conv
    b = None
    if p.bias is not None:
        if p.bias.shape[0] != 1:
            raise OpError.of(node, "a per-sample bias is not supported")
        b = p.bias.reshape(-1).astype(np.float64)
    low = conv_problems(p.x.astype(np.float64), p.w.astype(np.float64), b, group,
                        tuple(strides), tuple(pads), tuple(dil))
    return [(pr.A, pr.B, pr.bias) for pr in low.problems], low.finish


def _problems(node, p):
    """(problems [(A, B, bias)], assemble) of IntegerProduct ``p`` of ``node``."""
    return _matmul_problems(p) if p.conv is None else _conv_problems(node, p)


class IntegerLayer:
    """One integer product node within a run: its :class:`LayerResult` (events, errors of
    the register against the exact sum) and :class:`RegisterStats`."""

    def __init__(self, index, node, rung_labels):
        self.index, self.node = index, node
        self.result = LayerResult(node.name, node.op, 0, level_labels=list(rung_labels),
                                  level_counts=[0] * len(rung_labels))
        self.stats = RegisterStats()
        self.errors = ErrorStats()

    def step(self, ins, ref_ins, dp, seed):
        """(output, exact model's output) (one object while they are equal and so were
        the inputs): the node on ``ins`` with step 2 on datapath
        ``dp`` (module doc), and on the exact model's inputs ``ref_ins`` (the reference
        pass) with the exact sum, whose partial sums and worst-case bound are counted
        (what every register that did not overflow upstream sees). One lowering serves
        both while the inputs are equal."""
        node, r, st = self.node, self.result, self.stats
        t0 = time.perf_counter()
        p = quant_ops.integer_product(node, ins)
        probs, assemble = _problems(node, p)
        same = all(_equal(a, b) for a, b in zip(ins, ref_ins))
        zs, exact = [], []
        for j, (A, B, bias) in enumerate(probs):
            res = matmul(A, B, dp, bias=None if bias is None else
                         (bias[None, :] if bias.ndim == 1 else bias),
                         seed=None if seed is None else seed + j)
            for k, v in res.events.total.items():
                r.events[k] += v
            z, ze = res.values, A @ B + (0 if bias is None else bias)
            st.acc_mismatches += int(np.count_nonzero(z != ze))
            r.rows += A.shape[0]
            zs.append(z)
            exact.append(ze)
        acc, acc_exact = assemble(zs), assemble(exact)
        self.errors.add_error(acc, acc_exact)
        y, y_exact = p.finish(_as_int(acc)), p.finish(_as_int(acc_exact))
        differ = int(np.count_nonzero(y != y_exact))
        st.output_mismatches += differ
        r.K, r.cols = p.k, int(acc.shape[-3] if p.conv else acc.shape[-1])
        r.outputs += acc.size
        r.level_counts[0] += acc.size
        r.seconds += time.perf_counter() - t0
        if not same:
            p = quant_ops.integer_product(node, ref_ins)
            probs, _ = _problems(node, p)
            y_exact = p.finish(p.accumulate())
        for A, B, bias in probs:
            lo, hi = partial_sum_range(A, B, bias)
            st.min_partial, st.max_partial = min(st.min_partial, lo), max(st.max_partial, hi)
        st.bound = max(st.bound, p.worst_case_bound())
        if same and not differ:      # one object: the passes stay shared downstream
            return y_exact, y_exact
        return y, y_exact

    def finish(self):
        """The layer's :class:`LayerResult`, its register statistics attached."""
        self.result.error = self.errors.summary()
        self.result.register = self.stats.to_dict()
        return self.result


def _equal(a, b):
    """Whether two node inputs (arrays or None) hold the same values."""
    if a is b:
        return True
    if a is None or b is None or np.shape(a) != np.shape(b):
        return False
    return bool(np.array_equal(a, b))


def _as_int(acc):
    """Register values (float64 integers; NaN never occurs for integer registers) as
    int64."""
    return np.asarray(acc).astype(np.int64)
