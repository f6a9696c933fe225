"""``accsim advise``: the cheapest configuration (energy per inference) that meets an
agreement target, chosen on a calibration split and reported on a held-out split.

Candidates
    The product of narrow formats × structures × policies-with-budgets. A structure is
    ``sequential``, ``tree`` or ``chunked:L`` (L products per narrow chunk promoted into the
    accelerator's wide register); ``same`` keeps the accelerator's. A policy without a
    budget (``uniform-narrow``, ``uniform-wide``, ``overflow``) is one candidate; any other
    gives one candidate per fraction and per τ that
    :func:`accsim.precision.scheduler.check_policy` accepts (as sweep specs do).

    The all-wide array (``uniform-wide``, the accelerator as it is) is always a candidate:
    when no narrower configuration meeting the target is cheaper, it is the answer (added
    as row ``baseline`` when ``uniform-wide`` is not among the policies).

Splits
    The first ``calibration`` samples (of the first ``limit``) choose; the remaining ones
    are the held-out split the chosen candidate is reported on. ``static`` takes its own
    per-neuron calibration from the first fifth of whichever split it runs on.

Metrics per candidate (calibration split)
    agreement with the float64 reference's argmax and its 95 % Wilson interval; normwise
    output error; re-issued fraction; energy per inference in pJ
    (:func:`accsim.hardware.cost.price_simulation`, which charges the hardware estimator
    of the policy as every run is priced: :func:`accsim.hardware.pricing.priced_estimator`).
    ``pareto``: no other candidate has lower or equal energy and higher or equal
    agreement, one of them strictly. ``meets``: by ``rule`` (:data:`RULES`): ``point``,
    the calibration agreement ≥ target; ``wilson`` (the default), the lower end of its
    95 % Wilson interval ≥ target (guards against choosing a candidate that passed the calibration
    split by luck, at the price of needing more calibration samples: 100 % of 300 samples
    has a lower end of 0.987).

The candidates run on the sweep executors (:mod:`accsim.experiments.executors`:
``inprocess``, ``processes``, ``dask-local`` or a Dask address).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from ..hardware.cost import price_simulation
from ..network.simulation import resolve_accelerator, resolve_trace, simulate
from ..precision.scheduler import NO_BUDGET, POLICIES, check_policy
from .executors import check_scheduler, executor
from .sweep import worker_setup

STRUCTURES = ("same", "sequential", "tree", "chunked:L")
RULES = ("point", "wilson")


def parse_structure(text):
    """``(structure, chunk_size)`` of a structure name (module doc); ValueError naming
    ``structures`` otherwise."""
    if text in ("same", "sequential", "tree"):
        return text, None
    name, _, L = text.partition(":")
    if name == "chunked" and L.isdigit() and int(L) >= 1:
        return "chunked", int(L)
    raise ValueError(f"structures: expected one of {', '.join(STRUCTURES)} (L a positive "
                     f"integer), got {text!r}")


def _budgets(policy, fractions, taus):
    """The ``(tau, fraction)`` budgets of ``policy`` (module doc)."""
    if policy not in POLICIES:
        raise ValueError(f"policies: expected names among {', '.join(POLICIES)}, "
                         f"got {policy!r}")
    if policy in NO_BUDGET:
        return [(None, None)]
    out = []
    for t in taus:
        with contextlib.suppress(ValueError):
            check_policy(policy, t, None, "exact")
            out.append((t, None))
    for f in fractions:
        with contextlib.suppress(ValueError):
            check_policy(policy, None, f, "exact")
            out.append((None, f))
    if not out:
        raise ValueError(f"policies: {policy!r} needs a budget it accepts (give "
                         f"--fractions or --taus)")
    return out


@dataclass(frozen=True)
class AdvicePoint:
    """One candidate: ``run`` (the keywords of :func:`evaluate`) and a stable ``id``."""

    id: str
    run: dict

    def label(self) -> str:
        r = self.run
        b = "" if r["tau"] is None and r["fraction"] is None else \
            f" tau={r['tau']:g}" if r["tau"] is not None else f" f={r['fraction']:g}"
        return f"{r['narrow'] or 'narrow'} {r['structure']} {r['policy']}{b}"


def candidates(trace, accelerator, *, narrow=(None,), structures=("same",),
               policies=("uniform-narrow",), fractions=(), taus=(), technology,
               samples=(0, None)):
    """The :class:`AdvicePoint` of every candidate, each checked (accelerator, narrow
    format and structure build) before any runs; ``samples``: the split ``(start,
    stop)``."""
    points = []
    for n in narrow:
        for st in structures:
            s, L = parse_structure(st)
            configure(accelerator, n, s, L)        # fails here, not in a worker
            for pol in policies:
                for tau, frac in _budgets(pol, fractions, taus):
                    run = {"trace": trace, "accelerator": accelerator, "narrow": n,
                           "structure": st, "policy": pol, "tau": tau, "fraction": frac,
                           "technology": technology, "samples": list(samples)}
                    key = json.dumps(run, sort_keys=True, default=str)
                    points.append(AdvicePoint(hashlib.sha256(key.encode()).hexdigest()[:16],
                                              run))
    return points


def configure(accelerator, narrow, structure, chunk_size):
    """The accelerator with ``narrow`` (None: its own) and the structure (``same``: its
    own); ValueError naming what does not fit."""
    acc = resolve_accelerator(accelerator, narrow, None)
    if structure == "same":
        return acc
    try:
        return dataclasses.replace(acc, structure=structure, chunk_size=chunk_size)
    except ValueError as exc:
        raise ValueError(f"structures: {structure}: {str(exc).splitlines()[0]}") from None


def evaluate(run: dict) -> dict:
    """Simulate one candidate on its split and price it (module doc): agreement,
    agreement_ci95, normwise_error, recomputed_fraction, energy_per_inference_pj,
    n_samples."""
    s, L = parse_structure(run["structure"])
    acc = configure(run["accelerator"], run["narrow"], s, L)
    trace = resolve_trace(run["trace"])
    a, b = run["samples"]
    X = np.asarray(trace.inputs)[a:b]
    lab = None if trace.labels is None else np.asarray(trace.labels)[a:b]
    trace = trace.with_inputs(X, lab)
    r = simulate(trace, acc, policy=run["policy"], tau=run["tau"],
                 fraction=run["fraction"], analyze=False)
    e = price_simulation(acc, run["technology"], r)     # the policy's own estimator priced
    return {"agreement": r.agreement, "agreement_ci95": r.agreement_ci95,
            "normwise_error": r.normwise_error, "recomputed_fraction": r.recomputed_fraction,
            "energy_per_inference_pj": e["energy_per_inference_pj"],
            "n_samples": r.n_samples}


def worker_evaluate(run: dict) -> dict:
    """:func:`evaluate` in a pool / Dask worker (one thread:
    :func:`accsim.experiments.sweep.worker_setup`)."""
    worker_setup()
    return evaluate(run)


def pareto(rows):
    """Mask: each row's (energy, agreement) not dominated by another row's."""
    out = []
    for r in rows:
        e, a = r["energy_per_inference_pj"], r["agreement"]
        out.append(not any(o["energy_per_inference_pj"] <= e and o["agreement"] >= a
                           and (o["energy_per_inference_pj"] < e or o["agreement"] > a)
                           for o in rows))
    return out


def _meets(row, target, rule):
    """Whether a calibration ``row`` meets ``target`` by ``rule`` (module doc)."""
    return (row["agreement"] if rule == "point" else row["agreement_ci95"][0]) >= target


def run_points(points, scheduler="inprocess", workers=1, progress=None):
    """``{id: metrics}`` of every point on the executor ``scheduler``;
    ``progress(done, total, point, seconds=None)`` after each."""
    check_scheduler(scheduler)
    fn = evaluate if scheduler == "inprocess" else worker_evaluate
    out = {}
    with contextlib.closing(executor(scheduler)(points, workers, fn)) as finished:
        for p, m in finished:
            out[p.id] = m
            if progress is not None:
                progress(len(out), len(points), p)
    return out


def advise(trace, accelerator, target, *, narrow=(None,), structures=("same",),
           policies=("uniform-narrow",), fractions=(), taus=(), limit=None,
           calibration=None, technology="horowitz-45nm", scheduler="inprocess", workers=1,
           progress=None, rule="wilson") -> dict:
    """Choose and check the cheapest configuration meeting ``target`` agreement (module
    doc). Returns ``{target, calibration, held_out, candidates, chosen, held_out_result}``
    (JSON-able; ``chosen`` and ``held_out_result`` None when no candidate meets the
    target on the calibration split)."""
    if not 0 < target <= 1:
        raise ValueError(f"target_agreement: expected a number in (0, 1], got {target!r}")
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {', '.join(RULES)}, got {rule!r}")
    n = len(resolve_trace(trace).inputs)
    n = n if limit is None else min(n, limit)
    cal = n // 2 if calibration is None else calibration
    if not 1 <= cal < n:
        raise ValueError(f"calibration: expected 1 to {n - 1} samples (of {n}), got {cal}")
    pts = candidates(trace, accelerator, narrow=narrow, structures=structures,
                     policies=policies, fractions=fractions, taus=taus,
                     technology=technology, samples=(0, cal))
    base = set()
    if "uniform-wide" not in policies:      # the all-wide array: always a candidate
        b = candidates(trace, accelerator, policies=("uniform-wide",),
                       technology=technology, samples=(0, cal))
        pts += b
        base = {q.id for q in b}
    res = run_points(pts, scheduler, workers, progress)
    rows = [dict(p.run, id=p.id, baseline=p.id in base, **res[p.id]) for p in pts]
    for r, on in zip(rows, pareto(rows)):
        r["pareto"] = on
        r["meets"] = _meets(r, target, rule)
        del r["samples"], r["trace"], r["accelerator"], r["technology"]
    rows.sort(key=lambda r: (r["energy_per_inference_pj"], -r["agreement"]))
    ok = [r for r in rows if r["meets"]]
    chosen = ok[0] if ok else None
    held = None
    if chosen is not None:
        p = next(q for q in pts if q.id == chosen["id"])
        held = evaluate(dict(p.run, samples=[cal, n]))
        held["meets"] = held["agreement"] >= target
    return {"trace": str(trace), "accelerator": str(accelerator), "target": target,
            "rule": rule,
            "calibration": [0, cal], "held_out": [cal, n], "technology": technology,
            "candidates": rows, "chosen": chosen, "held_out_result": held}
