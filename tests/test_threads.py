"""The thread runner (accsim.numerics.threads) and what it buys: one compiled kernel per
datapath and operand dtype, whatever the size of the product."""

import threading

import numba
import numpy as np
import pytest
from numba.core import event

from accsim.numerics.engine import matmul
from accsim.numerics.rounding import quantize
from accsim.numerics.threads import parallel_ranges


def _covered(n, parallel, **kw):
    seen = []
    lock = threading.Lock()

    def fn(lo, hi):
        with lock:
            seen.append((lo, hi, threading.get_ident()))

    parallel_ranges(fn, n, parallel=parallel, **kw)
    return seen


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1001])
def test_ranges_cover_each_index_once(n):
    seen = _covered(n, True)
    hit = np.zeros(n, dtype=int)
    for lo, hi, _ in seen:
        assert 0 <= lo < hi <= n
        hit[lo:hi] += 1
    assert (hit == 1).all()


def test_not_parallel_or_one_thread_is_one_call_on_the_calling_thread():
    me = threading.get_ident()
    assert _covered(100, False) == [(0, 100, me)]
    prev = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert _covered(100, True) == [(0, 100, me)]
    finally:
        numba.set_num_threads(prev)
    assert _covered(0, True) == []


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_several_threads_take_part():
    barrier = threading.Barrier(2, timeout=10)
    idents = set()

    def fn(lo, hi):
        if lo == 0 or hi == 2:          # the two chunks wait for each other
            barrier.wait()
        idents.add(threading.get_ident())

    parallel_ranges(fn, 2)
    assert len(idents) == 2


def test_an_exception_in_a_chunk_is_raised_once_all_threads_stopped():
    done = []

    def fn(lo, hi):
        if lo <= 500 < hi:
            raise ValueError("chunk with 500")
        done.append((lo, hi))

    with pytest.raises(ValueError, match="chunk with 500"):
        parallel_ranges(fn, 1000)
    assert all(not (lo <= 500 < hi) for lo, hi in done)


def test_results_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((70, 300))
    b = rng.standard_normal((300, 90))
    x = rng.standard_normal(1 << 17) * 1e3
    prev = numba.get_num_threads()
    out = []
    try:
        for nt in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(nt)
            r = matmul(quantize(a, "bf16"), quantize(b, "bf16"), "bf16", rounding="rz")
            s = matmul(quantize(a, "e4m3"), quantize(b, "e4m3"), "e5m7", rounding="sr", seed=5)
            q = quantize(x, "e4m3", rounding="sr", seed=9)
            out.append((r.values, r.events.inexact, s.values, q))
    finally:
        numba.set_num_threads(prev)
    for got in out[1:]:
        for u, v in zip(out[0], got):
            assert np.array_equal(u, v, equal_nan=True)


class _Compiles(event.Listener):
    def __init__(self):
        self.names = []

    def on_start(self, ev):
        pass

    def on_end(self, ev):
        self.names.append(ev.data["dispatcher"].py_func.__qualname__)


@pytest.mark.parametrize("acc, kw, scale", [
    ("fp16", {}, 2.0**-7),
    ("bf16", {"rounding": "rz"}, 2.0**-7),
    ("e5m7", {"structure": "chunked", "chunk_size": 32, "wide": "fp32"}, 2.0**-7),
    ("int16", {}, 1.0),
    ("int16", {"rounding": "rz", "structure": "chunked", "chunk_size": 16,
               "wide": "int32"}, 1.0),
])
def test_no_kernel_compiles_for_a_new_shape_size_or_selection(acc, kw, scale):
    """After products of a few small shapes (which take every path the data leads to:
    no, some and all outputs at risk of overflow, full products and selections),
    products of large shapes (K up to 4608, m·n up to 90,000) compile nothing: no
    kernel depends on the problem's size."""
    rng = np.random.default_rng(0)

    def run(shapes):
        for m, k, n in shapes:
            a = rng.integers(-128, 128, (m, k)) * scale
            b = rng.integers(-128, 128, (k, n)) * scale
            matmul(a, b, acc, **kw)
            matmul(a, b, acc, select=rng.random((m, n)) < 0.3, **kw)
            quantize(a.reshape(-1), "e4m3")
            quantize(a.reshape(-1), "int8", rounding="rz")

    run([(3, 1, 4), (3, 3, 4), (8, 40, 8), (40, 8, 40)])
    rec = _Compiles()
    event.register("numba:compile", rec)
    try:
        run([(1, 1, 1), (64, 4608, 40), (300, 64, 300), (2, 3000, 700)])
    finally:
        event.unregister("numba:compile", rec)
    assert rec.names == []
