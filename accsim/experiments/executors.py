"""Where the points of a sweep run: each executor takes the points to run, a worker count
and ``fn`` (called with ``point.run`` in the worker, returning a picklable result) and
yields ``(point, result)`` as points finish.

``inprocess`` (default): one point after the other in this process.
``processes``: a local pool of ``workers`` processes (spawn, never fork: numba's threading
layer breaks forked children), each with ``NUMBA_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``
and ``OMP_NUM_THREADS`` set to 1 before numpy or numba load.
``dask-local``: a ``dask.distributed.LocalCluster`` of ``workers`` single-threaded worker
processes (same environment). ``tcp://host:port`` (or ``tls://``, ``ucx://``...): the
Dask scheduler of a running cluster; its workers need accsim installed and the traces
and YAML files at the same paths. Dask is an optional extra: ``pip install accsim[dask]``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import logging
import multiprocessing as mp
import os
import signal
import socket
from urllib.parse import urlsplit

SCHEDULERS = ("inprocess", "processes", "dask-local")

#: environment of sweep worker processes (one thread each: the pool is the parallelism)
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}


class PointError(RuntimeError):
    """A point failed while running (after validation): names the point."""

    @classmethod
    def of(cls, point, exc):
        """The error of ``point`` failing with ``exc`` (its first line)."""
        return cls(f"point {point.id} ({point.label()}) failed: "
                   f"{exc.__class__.__name__}: {_first_line(exc)}")


def _first_line(exc):
    s = str(exc)
    return s.splitlines()[0] if s else ""


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, a ``KeyboardInterrupt``: numba's dispatcher
    turns one raised by a signal handler while it runs into ``SystemError: CPUDispatcher
    (...) returned a result with an exception set``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def iter_inprocess(todo, workers, fn):
    """Run the points of ``todo`` one after the other here (``workers`` is ignored); an
    interrupt while a point runs is a ``KeyboardInterrupt``, never a point failure."""
    for p in todo:
        try:
            out = fn(p.run)
        except Exception as exc:
            if interrupted(exc):
                raise KeyboardInterrupt from exc
            raise PointError.of(p, exc) from exc
        yield p, out


@contextlib.contextmanager
def _environment(updates=None):
    """Apply ``updates`` to ``os.environ``; on exit put back every variable as it was
    (also those a library such as dask's Nanny set meanwhile)."""
    saved = dict(os.environ)
    try:
        if updates:
            os.environ.update(updates)
        yield
    finally:
        for k in [k for k in os.environ if k not in saved]:
            del os.environ[k]
        for k, v in saved.items():
            if os.environ.get(k) != v:
                os.environ[k] = v


def ignore_sigint():
    """Pool worker initializer: Ctrl-C reaches the whole process group, and the parent
    alone handles it (it terminates the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigint_blocked():
    """Block SIGINT in the calling thread while worker processes are started: a child
    inherits the blocked mask through fork and exec, so a Ctrl-C that arrives while it
    is still importing (before :func:`ignore_sigint` or the Dask preload ran) cannot
    print a ``KeyboardInterrupt`` traceback from it. Threads started meanwhile (Dask's
    event loop, which spawns the Dask workers) keep SIGINT blocked for good; this
    thread gets a SIGINT that arrived meanwhile as soon as the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _quiet_dask_shutdown():
    """When the sweep stops early (an interrupt, a failed point), silence Dask's loggers
    in this process before the client and the local cluster close: the scheduler's
    ``CRITICAL`` complaints about the closed client comm are not news."""
    try:
        yield
    except BaseException:
        for name in list(logging.root.manager.loggerDict):
            if name == "distributed" or name.startswith("distributed."):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise


def iter_processes(todo, workers, fn):
    """Run the points on a local pool of ``workers`` spawned processes started with
    :data:`WORKER_ENV`. When the caller stops early (an interrupt, a failed point), the
    workers are terminated at once rather than left to finish their points."""
    ctx = mp.get_context("spawn")
    n = max(1, min(workers, len(todo)))
    before = set(mp.active_children())
    ex = cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=ignore_sigint)
    # spawned children inherit os.environ at start; with the spawn context the pool
    # starts its processes while tasks are submitted, so set the worker environment
    # around the submissions only (the parent runs no numba code meanwhile)
    futs = {}
    try:
        with _environment(WORKER_ENV), _sigint_blocked():
            for p in todo:
                futs[ex.submit(fn, p.run)] = p
        yield from _collect(cf.as_completed(futs), futs)
    except BaseException:       # also GeneratorExit: the consumer stopped early
        _stop_pool(ex, before)
        raise
    ex.shutdown(wait=True)


def _stop_pool(ex, before):
    """Terminate the worker processes of ``ex`` (the children of this process not in
    ``before``), then shut it down: its manager marks the pending points broken (they
    are not cancelled first: the manager would fail setting a cancelled future)."""
    workers = [c for c in mp.active_children() if c not in before]
    for c in workers:
        c.terminate()
    for c in workers:
        c.join(timeout=10)
        if c.is_alive():
            c.kill()
            c.join()
    ex.shutdown(wait=True)


def _collect(finished, futs):
    """(point, result) for each future as ``finished`` yields it; a failure names its
    point."""
    for f in finished:
        p = futs[f]
        try:
            out = f.result()
        except Exception as exc:
            raise PointError.of(p, exc) from exc
        yield p, out


def _dask():
    """``dask.distributed``, imported on first use: Dask is an optional extra."""
    try:
        import distributed
    except ImportError:
        raise ValueError("--scheduler: Dask schedulers need dask.distributed: "
                         "pip install 'accsim[dask]'") from None
    return distributed


#: Dask worker preload (Python source, run in each worker process): the workers ignore
#: SIGINT, which Ctrl-C sends to the whole process group; the parent closes the cluster
DASK_WORKER_PRELOAD = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)"


def iter_dask(todo, workers, fn, address=None, connect_timeout=10.0):
    """Run the points on the Dask scheduler at ``address``, or on a LocalCluster of
    ``workers`` single-threaded worker processes started with :data:`WORKER_ENV` when
    ``address`` is ``None``: they ignore SIGINT, and their log is silenced below
    CRITICAL (a failed point is reported through its future; the heartbeat errors of a
    cluster closed after an interrupt are not news)."""
    distributed = _dask()
    if address is None:
        # dask's Nanny writes its pre-spawn variables into this process's environment
        with _environment():
            with _sigint_blocked():
                cluster = distributed.LocalCluster(
                    n_workers=max(1, min(workers, len(todo))), threads_per_worker=1,
                    processes=True, dashboard_address=None,
                    silence_logs=logging.CRITICAL, env=dict(WORKER_ENV),
                    preload=[DASK_WORKER_PRELOAD])
            try:
                with distributed.Client(cluster) as client, _quiet_dask_shutdown():
                    yield from _dask_run(distributed, client, todo, fn)
            finally:
                cluster.close()
        return
    try:
        client = distributed.Client(address, timeout=f"{connect_timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValueError(f"--scheduler: cannot reach the Dask scheduler at {address} "
                         f"within {connect_timeout:g} s ({exc.__class__.__name__}: "
                         f"{_first_line(exc) or 'no answer'})") from None
    # closing the client releases its futures: the scheduler drops unfinished points
    with client:
        yield from _dask_run(distributed, client, todo, fn)


def _dask_run(distributed, client, todo, fn):
    futs = {}
    for p in todo:
        f = client.submit(fn, p.run, key=f"accsim-point-{p.id}", pure=False)
        futs[f] = p
    yield from _collect(distributed.as_completed(list(futs)), futs)


def check_scheduler(scheduler: str):
    """Validate ``--scheduler`` (a name of :data:`SCHEDULERS` or a Dask address)."""
    if scheduler in SCHEDULERS:
        if scheduler == "dask-local":
            _dask()
        return
    if "://" in scheduler and scheduler.split("://", 1)[1]:
        _dask()
        return
    raise ValueError(f"--scheduler: expected one of {', '.join(SCHEDULERS)} or a Dask "
                     f"scheduler address such as tcp://host:8786, got {scheduler!r}")


def preflight(address, timeout=3.0):
    """Fail fast (one line) when nothing listens at a ``tcp://`` / ``tls://`` address:
    before any folder is created, and without Dask's connection retries."""
    u = urlsplit(address)
    if u.scheme not in ("tcp", "tls"):
        return
    try:
        host, port = u.hostname, u.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise ValueError(f"--scheduler: expected a Dask scheduler address such as "
                         f"tcp://host:8786, got {address!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ValueError(f"--scheduler: cannot reach the Dask scheduler at {address} "
                         f"({reason})") from None


def executor(scheduler):
    """The executor of a checked ``scheduler``: ``(todo, workers, fn)`` → iterator of
    ``(point, fn(point.run))``."""
    if scheduler == "inprocess":
        return iter_inprocess
    if scheduler == "processes":
        return iter_processes
    if scheduler == "dask-local":
        return iter_dask
    return functools.partial(iter_dask, address=scheduler)
