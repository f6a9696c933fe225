"""Parameter sweeps: a YAML grid of simulations (:mod:`.spec`), run in-process, on a local
process pool or on a Dask cluster (:mod:`.executors`), with resumable results
(:mod:`.results`).

This module runs one point (:func:`run_point`, :func:`point_metrics`) and a whole sweep
(:func:`run_sweep`). It also exports the names of those modules that users of
``accsim.experiments.sweep`` import from it (``load_spec``, ``read_results``, ...).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numba

from .. import __version__
from ..hardware.cost import price_simulation
from ..network.simulation import resolve_accelerator, resolve_trace, simulate
from .executors import (SCHEDULERS, WORKER_ENV, PointError, check_scheduler, executor,
                        preflight)
from .results import (RESULTS, SPEC_COPY, ResultsWriter, read_results, write_atomic,
                      write_text_atomic)
from .spec import NO_BUDGET, Point, Spec, canonical_json, load_spec, point_id

__all__ = [
    "NO_BUDGET", "RESULTS", "SCHEDULERS", "SPEC_COPY", "WORKER_ENV", "Point", "PointError",
    "Spec", "SweepSummary", "canonical_json", "check_scheduler", "load_spec", "point_id",
    "cost_metrics", "point_metrics", "read_results", "run_point", "run_sweep", "worker_run_point",
    "write_atomic", "write_text_atomic",
]


# ---------------------------------------------------------------------------------------
# one point
# ---------------------------------------------------------------------------------------
_TRACE_CACHE: dict = {}


def _json_num(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def point_metrics(result, priced: dict) -> dict:
    """The metrics of a finished point (``results.jsonl`` ``metrics``).

    accuracy, reference_accuracy (float64 reference), agreement (share of samples whose
    argmax equals the reference's): fractions in [0, 1] (accuracy ``None`` without labels);
    agreement_ci95, accuracy_ci95: their 95 % Wilson intervals ``[low, high]``;
    normwise_error: mean over samples of ``|y - y_ref| / |y_ref|`` of the network output;
    recomputed_fraction: re-issued output components over all; bound_violations: count;
    energy_per_inference_pj, baseline_energy_per_inference_pj (every MAC on the wide
    accumulator): pJ per inference, whole-MAC view; energy_savings: 1 − energy / baseline;
    area_um2, baseline_area_um2: µm²; area_savings: 1 − area / baseline area;
    cycles_per_inference: array cycles per inference (the samples as one batch);
    accumulator_energy_savings, memory_energy_savings, accumulator_area_savings: the
    accumulator-only (adders + registers) and with-memory views
    (:func:`accsim.hardware.cost.price_simulation`); break_even_fraction: the re-issued
    fraction at which this policy and estimator stop saving energy (whole MAC);
    deprecated (kept for old readers): energy_pj, baseline_energy_pj (pJ for all
    ``n_samples``), energy_per_sample_pj, baseline_energy_per_sample_pj (= the
    per-inference keys), cycles (all samples); narrow / wide:
    accumulator format labels; events: overflow / saturation / inexact counts; layers:
    per matmul layer name, recomputed_fraction, bound_violations, accumulation_error
    (``|Z_hat - Z|_F / |Z|_F`` against the exact product of the same quantized operands;
    None when not computed), stagnation_ku (k·u of the narrow register), energy_per_inference_pj
    (energy_pj: all samples, deprecated), events;
    levels (ladder policies): ``[{format, count, fraction}]`` of the components per
    accumulator rung, over the network and per layer.
    """
    n = result.n_samples
    per_layer_energy = {lr["name"]: lr["energy_pj"] for lr in priced["layers"]}
    m = {
        "accuracy": _json_num(result.accuracy),
        "reference_accuracy": _json_num(result.reference_accuracy),
        "agreement": _json_num(result.agreement),
        "agreement_ci95": _json_pair(result.agreement_ci95),
        "accuracy_ci95": _json_pair(result.accuracy_ci95),
        "normwise_error": _json_num(result.normwise_error),
        "recomputed_fraction": _json_num(result.recomputed_fraction),
        "bound_violations": int(result.bound_violations),
        "energy_pj": _json_num(priced["energy_pj"]),
        "baseline_energy_pj": _json_num(priced["baseline_energy_pj"]),
        "energy_per_sample_pj": _json_num(priced["energy_pj"] / n) if n else None,
        "baseline_energy_per_sample_pj":
            _json_num(priced["baseline_energy_pj"] / n) if n else None,
        "energy_savings": _json_num(priced["energy_savings"]),
        "area_um2": _json_num(priced["area_um2"]),
        "cycles": _json_num(priced["cycles"]),
        **cost_metrics(priced),
        "n_samples": int(n),
        "narrow": result.narrow,
        "wide": result.wide,
        "events": {k: int(v) for k, v in result.events.items()},
        "layers": [{"name": lr.name,
                    "recomputed_fraction": _json_num(lr.recomputed_fraction),
                    "bound_violations": int(lr.bound_violations),
                    "accumulation_error": _json_num(lr.accumulation_error),
                    "stagnation_ku": _json_num(lr.stagnation_ku),
                    "energy_pj": _json_num(per_layer_energy.get(lr.name)),
                    "energy_per_inference_pj":
                        _json_num(per_layer_energy[lr.name] / n)
                        if n and lr.name in per_layer_energy else None,
                    "events": {k: int(v) for k, v in lr.events.items()}}
                   for lr in result.layers],
    }
    levels = getattr(result, "levels", None)
    if levels:
        m["levels"] = _levels(levels)
        for d, lr in zip(m["layers"], result.layers):
            d["levels"] = _levels(getattr(lr, "levels", []))
    return m


def _json_pair(v):
    """An interval as ``[low, high]`` (JSON numbers), or None."""
    return None if v is None else [_json_num(x) for x in v]


def cost_metrics(priced: dict) -> dict:
    """The unit-carrying cost metrics of a point (see :func:`point_metrics`) from
    :func:`accsim.hardware.cost.price_simulation`."""
    views = priced["views"]
    out = {k: _json_num(priced[k]) for k in (
        "energy_per_inference_pj", "baseline_energy_per_inference_pj", "baseline_area_um2",
        "area_savings", "cycles_per_inference")}
    for v in ("accumulator", "memory"):
        out[f"{v}_energy_savings"] = _json_num(views[v]["energy_savings"]) \
            if v in views else None
    out["accumulator_area_savings"] = _json_num(views["accumulator"]["area_savings"])
    out["break_even_fraction"] = _json_num(priced["break_even_fraction"]["mac"])
    return out


def _levels(levels):
    return [{"format": str(v["format"]), "count": int(v["count"]),
             "fraction": _json_num(v["fraction"])} for v in levels]


def run_point(run: dict) -> tuple:
    """Simulate and price one point (``Point.run``); returns ``(metrics, seconds)``.

    Runs in whichever process the executor chose; metrics depend only on ``run``.
    """
    t0 = time.perf_counter()
    key = run["trace"]
    trace = _TRACE_CACHE.get(key)
    if trace is None:
        if len(_TRACE_CACHE) > 4:
            _TRACE_CACHE.clear()
        trace = _TRACE_CACHE[key] = resolve_trace(key)
    acc = resolve_accelerator(run["accelerator"], run["narrow"], run["wide"])
    est = run["estimator"] or "exact"
    result = simulate(trace, acc, limit=run["limit"], seed=run["seed"], policy=run["policy"],
                      tau=run["tau"], fraction=run["fraction"], estimator=est,
                      **run["options"])
    priced = price_simulation(acc, run["technology"], result)
    return point_metrics(result, priced), time.perf_counter() - t0


def worker_setup():
    """Make this pool / Dask worker single-threaded: one numba thread, whatever the
    environment said (a remote cluster's workers may not have ``WORKER_ENV`` set)."""
    # numpy and numba are loaded by now (importing accsim loads them): these defaults
    # reach only what reads the environment later; numba's thread count is set here
    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    if numba.get_num_threads() != 1:
        numba.set_num_threads(1)


def worker_run_point(run: dict) -> tuple:
    """:func:`run_point` in a pool / Dask worker (:func:`worker_setup`)."""
    worker_setup()
    return run_point(run)


# ---------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------
@dataclass
class SweepSummary:
    """What :func:`run_sweep` did: points in the grid, found already done, run now;
    ``seconds``: wall-clock time of the run; ``results``: the results.jsonl path."""

    total: int
    skipped: int
    ran: int
    seconds: float
    results: Path


def _out_folder(out) -> Path:
    """The output folder ``out``, created if missing (a ``ValueError`` if it is a file)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_sweep(spec, out, *, scheduler="inprocess", workers=None, progress=None,
              log=None) -> SweepSummary:
    """Run every point of ``spec`` (a path or :class:`Spec`) not yet in
    ``out/results.jsonl``.

    ``scheduler``: ``inprocess``, ``processes``, ``dask-local`` or a Dask scheduler
    address; ``workers``: pool / LocalCluster size (default ``os.cpu_count()``);
    ``progress(done, total, point, seconds)``: called in this process after each point
    (``done`` counts the points of the grid finished so far, resumed ones included), and
    once with ``point`` and ``seconds`` ``None`` before the first;
    ``log(message)``: one-line messages.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    check_scheduler(scheduler)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers: expected a positive integer, got {workers!r}")
    if scheduler not in SCHEDULERS:
        preflight(scheduler)
    out = _out_folder(out)
    res_path = out / RESULTS
    writer = ResultsWriter(res_path)    # locks results.jsonl before reading or repairing it
    try:
        done_ids = {r["id"] for r in read_results(res_path, repair=True)}
        total = len(spec.points)
        todo = [p for p in spec.points if p.id not in done_ids]
        skipped = total - len(todo)
        write_text_atomic(out / SPEC_COPY, spec.text)
        log = log or (lambda msg: None)
        pool = "" if scheduler == "inprocess" else \
            f", {min(workers, max(len(todo), 1))} workers"
        log(f"{total} points, {skipped} already in {res_path}, {len(todo)} to run "
            f"(scheduler {scheduler}{pool})")
        t0 = time.perf_counter()
        ran = 0
        if todo and progress is not None:
            progress(skipped, total, None, None)     # draw the bar before the first point
        if todo:
            fn = run_point if scheduler == "inprocess" else worker_run_point
            # closed here on any exception (an interrupt too): the executor stops its
            # workers before the exception leaves run_sweep
            with contextlib.closing(executor(scheduler)(todo, workers, fn)) as finished:
                for p, (metrics, seconds) in finished:
                    writer.write({"id": p.id, "params": p.params,
                                  "accsim_version": __version__, "metrics": metrics,
                                  "seconds": round(seconds, 6)})
                    ran += 1
                    if progress is not None:
                        progress(skipped + ran, total, p, seconds)
    finally:
        writer.close()
    return SweepSummary(total, skipped, ran, time.perf_counter() - t0, res_path)
