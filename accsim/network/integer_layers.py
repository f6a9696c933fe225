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

from ..numerics.engine import matmul
from . import quant_ops
from .products import conv_problems
from .graph_ops import OpError
from .results import ErrorStats, LayerResult, relative_error

#: elements of one block of products in the partial-sum scan (memory bound)
SCAN_BLOCK = 1 << 22


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


def partial_sum_range(A, B, bias):
    """(min, max) over all outputs of the exact partial sums ``bias + Σ_{k<j} A[:, k]
    B[k, :]`` for ``j = 0 .. K`` (float64 BLAS-free sums of integers, exact below 2^53;
    ``bias`` (n,), (m, n) or None)."""
    m, K = A.shape
    n = B.shape[1]
    run = np.zeros((m, n)) if bias is None else np.broadcast_to(bias, (m, n)).astype(
        np.float64)
    lo, hi = float(min(run.min(initial=0), 0)), float(max(run.max(initial=0), 0))
    step = max(1, SCAN_BLOCK // max(m * n, 1))
    for k0 in range(0, K, step):
        k1 = min(K, k0 + step)
        part = np.cumsum(A[:, k0:k1, None] * B[None, k0:k1, :], axis=1) + run[:, None, :]
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
        run = part[:, -1, :]
    return int(lo), int(hi)


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

    def observe(self, ref_ins):
        """Count the partial sums and the worst-case bound of the node on the exact
        model's inputs ``ref_ins`` (the reference pass: what any register that does not
        overflow upstream sees)."""
        st = self.stats
        p = quant_ops.integer_product(self.node, ref_ins)
        probs, _ = _problems(self.node, p)
        for A, B, bias in probs:
            lo, hi = partial_sum_range(A, B, bias)
            st.min_partial, st.max_partial = min(st.min_partial, lo), max(st.max_partial, hi)
        st.bound = max(st.bound, p.worst_case_bound())

    def run(self, ins, dp, seed):
        """The node's output on ``ins`` with step 2 on datapath ``dp`` (module doc)."""
        node, r, st = self.node, self.result, self.stats
        t0 = time.perf_counter()
        p = quant_ops.integer_product(node, ins)
        probs, assemble = _problems(node, p)
        zs, exact = [], []
        for j, (A, B, bias) in enumerate(probs):
            res = matmul(A, B, dp, bias=None if bias is None else
                         (bias[None, :] if bias.ndim == 1 else bias),
                         seed=None if seed is None else seed + j)
            for k, v in res.events.total.items():
                r.events[k] += v
            z = res.values
            ze = A @ B + (0 if bias is None else bias)
            st.acc_mismatches += int(np.count_nonzero(z != ze))
            r.rows += A.shape[0]
            zs.append(z)
            exact.append(ze)
        acc, acc_exact = assemble(zs), assemble(exact)
        self.errors.add(relative_error(acc, acc_exact))
        y = p.finish(_as_int(acc))
        st.output_mismatches += int(np.count_nonzero(y != p.finish(_as_int(acc_exact))))
        r.K, r.cols = p.k, int(acc.shape[-3] if p.conv else acc.shape[-1])
        r.outputs += acc.size
        r.level_counts[0] += acc.size
        r.seconds += time.perf_counter() - t0
        return y

    def finish(self):
        """The layer's :class:`LayerResult`, its register statistics attached."""
        self.result.error = self.errors.summary()
        self.result.register = self.stats.to_dict()
        return self.result


def _as_int(acc):
    """Register values (float64 integers; NaN never occurs for integer registers) as
    int64."""
    return np.asarray(acc).astype(np.int64)
