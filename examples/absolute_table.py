"""Results table of the ``absolute`` policy against ``condition``, ``random``, ``oracle``
and uniform-narrow, on every bundled trace and the narrow formats where the accumulator
stagnates (k·u ≫ 1) plus bf16 (rz).

Setting: the ``fp16-fp16acc`` accelerator's fp16 operands with exact products, its narrow
accumulator replaced by each format of ``--narrow`` (``NAME`` or ``NAME:ROUNDING``), the
wide one fp32 (rne). Each cell is ``agreement / normwise error / energy``:

* agreement: share of samples whose argmax equals the float64 reference's, in %;
* normwise error: mean over samples of ``‖y - y_ref‖ / ‖y_ref‖`` of the network output;
* energy: pJ per inference on ``horowitz-45nm`` (:func:`accsim.hardware.cost.price_simulation`
  as it is: the estimator's actions charged for ``condition`` and ``absolute``, re-issues
  re-fetch their operands).

Policies at budget f (share of each layer's outputs re-issued, per batch):
``condition`` (the paper's ``u·κ_i·κ_φ``, top-f), ``random`` (mean of ``--seeds`` seeds;
its energy is seed 0's), ``absolute`` (top-f by predicted absolute error, the output layer
wide: its default), ``oracle`` (top-f by the actual error of φ(z)); ``uniform-narrow``
re-issues nothing. A last block lists where ``absolute`` agrees less than random's mean
or uniform-narrow, or has a normwise error not below random's.

    python examples/absolute_table.py                       # 300 samples, ~15 min on 2 cores
    python examples/absolute_table.py --limit 100 --traces digits-mlp-relu
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from accsim.hardware.cost import price_simulation
from accsim.network.simulation import resolve_accelerator, simulate
from accsim.network.trace import list_traces

NARROW = ("fp8_e5m2", "fp8_e4m3", "e5m4", "bf16:rz")
BUDGETS = (0.1, 0.3, 0.5)
TECH = "horowitz-45nm"
ESTIMATING = ("condition", "absolute")


def _accelerator(spec):
    name, _, rnd = spec.partition(":")
    acc = resolve_accelerator("fp16-fp16acc", name, "fp32")
    return dataclasses.replace(acc, narrow_rounding=rnd) if rnd else acc


def _run(trace, acc, limit, policy, fraction=None, seed=0):
    """(agreement, normwise error, energy pJ per inference) of one simulation."""
    r = simulate(trace, acc, limit=limit, policy=policy, fraction=fraction, seed=seed,
                 analyze=False)
    e = price_simulation(acc, TECH, r, "exact" if policy in ESTIMATING else "none")
    return r.agreement, r.normwise_error, e["energy_pj"] / r.n_samples


def _cell(v):
    return f"{100 * v[0]:.1f} / {v[1]:.3f} / {v[2]:.3g}"


def _block(trace, spec, limit, seeds):
    """Rows of one trace and narrow format; the cells by (policy, budget)."""
    acc = _accelerator(spec)
    cells = {(pol, None): _run(trace, acc, limit, pol)
             for pol in ("uniform-narrow", "uniform-wide")}
    for f in BUDGETS:
        for pol in ("condition", "absolute", "oracle"):
            cells[(pol, f)] = _run(trace, acc, limit, pol, f)
        rs = [_run(trace, acc, limit, "random", f, seed=s) for s in range(seeds)]
        cells[("random", f)] = (statistics.mean(a for a, _, _ in rs),
                                statistics.mean(n for _, n, _ in rs), rs[0][2])
    return cells


def _print_block(trace, spec, cells):
    un = cells[("uniform-narrow", None)]
    uw = cells[("uniform-wide", None)]
    print(f"### {trace}, narrow {spec}  (uniform-narrow: {_cell(un)}; uniform-wide fp32: "
          f"{_cell(uw)})")
    print()
    print("| policy | " + " | ".join(f"f = {f}" for f in BUDGETS) + " |")
    print("|---|" + "---:|" * len(BUDGETS))
    for pol in ("random", "condition", "absolute", "oracle"):
        print(f"| {pol} | " + " | ".join(_cell(cells[(pol, f)]) for f in BUDGETS) + " |")
    print(flush=True)


def _losses(trace, spec, cells):
    """Where absolute misses a target of the issue (one line each)."""
    out = []
    un = cells[("uniform-narrow", None)]
    for f in BUDGETS:
        a, r = cells[("absolute", f)], cells[("random", f)]
        if a[0] < r[0]:
            out.append(f"{trace} {spec} f={f}: agreement {100 * a[0]:.1f} < random mean "
                       f"{100 * r[0]:.1f}")
        if a[0] < un[0]:
            out.append(f"{trace} {spec} f={f}: agreement {100 * a[0]:.1f} < uniform-narrow "
                       f"{100 * un[0]:.1f}")
        if a[1] >= r[1]:
            out.append(f"{trace} {spec} f={f}: normwise {a[1]:.3f} >= random {r[1]:.3f}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=300, help="samples per trace (default 300)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds of random (default 5)")
    ap.add_argument("--traces", default=",".join(list_traces()))
    ap.add_argument("--narrow", default=",".join(NARROW))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"fp16 operands, wide fp32; {args.limit} samples per trace; cells: agreement % / "
          f"normwise output error / energy pJ per inference ({TECH}); random: mean of "
          f"{args.seeds} seeds")
    print()
    losses = []
    for trace in args.traces.split(","):
        for spec in args.narrow.split(","):
            cells = _block(trace, spec, args.limit, args.seeds)
            _print_block(trace, spec, cells)
            losses += _losses(trace, spec, cells)
    print("Where absolute misses (agreement below random's mean or uniform-narrow, or "
          "normwise error not below random's):")
    print("\n".join(f"* {x}" for x in losses) or "* nowhere")
    print()
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
