"""Kernels on several threads: one serial, ``nogil`` kernel called on ranges of its
outer loop from a pool of Python threads (:func:`parallel_ranges`).

Why not numba's
``parallel=True``: a ``prange`` kernel compiles about three times as long as the same
loop without it, and each needed a serial twin for small problems (the thread pool's
start-up costs more than their work), so a product compiled twice and a large one
compiled again on first use (measured: ``quantize_kernel`` 6.8 s parallel against 2.1 s
serial). Here every kernel compiles once whatever the size of the problem, and the
split is the same static loop decomposition: each output (or element) is computed by
exactly the same code on one thread, so results never depend on the thread count.

The number of threads is numba's (:func:`numba.get_num_threads`, so
``NUMBA_NUM_THREADS`` and :func:`numba.set_num_threads` keep their meaning).
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

PARALLEL_MIN = 1 << 16
"""Work (entries of an array, a matrix or a selection; multiply-adds of a product: see
the callers) from which the callers spread a kernel over threads: below it, handing
work to other threads costs more than the work."""

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_IN_POOL = threading.local()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(numba.config.NUMBA_NUM_THREADS - 1, 1),
                                       thread_name_prefix="accsim-kernel",
                                       initializer=_mark_pool_thread)
        return _POOL


def _mark_pool_thread():
    _IN_POOL.active = True


def thread_count() -> int:
    """Threads a kernel call may use: numba's thread count, 1 inside a pool thread."""
    if getattr(_IN_POOL, "active", False):
        return 1
    return numba.get_num_threads()


def parallel_ranges(fn, n: int, *, parallel: bool = True, chunks_per_thread: int = 4) -> None:
    """Call ``fn(lo, hi)`` on consecutive ranges covering ``[0, n)``, on up to
    :func:`thread_count` threads (the calling thread included) when ``parallel``, else
    once on the calling thread with ``(0, n)``.

    ``fn`` is expected to call a ``nogil`` kernel (the threads then run at once) and to
    write only its own range's outputs. The range is cut into ``chunks_per_thread``
    chunks per thread, taken in turn by whichever thread is free (rows of a selection
    differ in work). The first exception raised by any chunk is re-raised once every
    thread has stopped; no chunk starts after a failure or an interrupt.
    """
    nt = min(thread_count(), n) if parallel else 1
    if nt <= 1:
        if n > 0:
            fn(0, n)
        return
    nchunks = min(n, nt * chunks_per_thread)
    bounds = [n * c // nchunks for c in range(nchunks + 1)]
    counter = itertools.count()
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            c = next(counter)           # atomic under the GIL
            if c >= nchunks:
                return
            try:
                fn(bounds[c], bounds[c + 1])
            except BaseException:
                stop.set()
                raise

    futures = [_pool().submit(worker) for _ in range(nt - 1)]
    error = None
    try:
        worker()
    except BaseException as exc:        # KeyboardInterrupt included: stop the others
        stop.set()
        error = exc
    for f in futures:
        try:
            f.result()
        except BaseException as exc:    # noqa: BLE001  (re-raised below)
            error = error or exc
    if error is not None:
        raise error
