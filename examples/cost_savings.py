"""What mixed-precision accumulation saves on the bundled MNIST networks, in three views.

Setting: OCP e4m3 (fp8) operands with exact products (``fp8-e4m3-fp16acc``: 64 x 64
output-stationary array, fp32 wide accumulator), the narrow accumulator replaced by
``--narrow`` (default e5m2), priced on ``horowitz-45nm`` against the same array with fp32
accumulators everywhere. Rows per trace:

* ``uniform-wide``: the reference for the agreement loss (same operands, fp32 everywhere);
* ``uniform-narrow``: every output on the narrow accumulator;
* ``chunked L=32``: partial sums of 32 terms in the narrow format promoted to fp32 by a
  pool of adders outside the array (``promotion: outside``) and, for comparison, by one
  adder per PE (``per-pe``);
* ``condition`` at ``--tau`` with each estimator (``exact``: a second narrow |w||x| pass;
  ``norm``: precomputed weight norms; ``exponent``: an exponent-only adder), operands of
  re-issued outputs read again from the SRAM buffer;
* ``absolute`` re-issuing 10 % per layer (the output layer wide, its default) with each
  estimator;
* ``static`` at ``--tau``: per-neuron formats fixed on the first ``--calibration``
  samples (not evaluated), no run-time estimate.

Columns: agreement loss in percentage points against ``uniform-wide`` (agreement: argmax
equal to the float64 reference's), re-issued share of the outputs, energy savings in the
three views of :mod:`accsim.hardware.pricing` (accumulator: adders + registers with the
promotion and the estimator; whole MAC: multipliers and operand re-fetch too; with
memory: plus the SRAM traffic of every GEMM), area savings of the whole array, and the
break-even re-issued fraction of the row's policy and estimator (whole MAC; "never" /
"always": it saves at no / at every fraction).

    python examples/cost_savings.py                    # both networks, ~1 min
    python examples/cost_savings.py --narrow e5m4 --limit 500
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings

from accsim.hardware.cost import price_simulation
from accsim.network.simulation import resolve_accelerator, simulate

TRACES = (("mnist-mlp-relu", 500), ("mnist-cnn", 300))
TECH = "horowitz-45nm"
ESTIMATORS = ("exact", "norm", "exponent")


def _runs(acc, tau, calibration):
    """(label, accelerator, simulate keywords) of every row."""
    chunk = dataclasses.replace(acc, structure="chunked", chunk_size=32, promotion="outside")
    rows = [("uniform-wide", acc, {"policy": "uniform-wide"}),
            ("uniform-narrow", acc, {"policy": "uniform-narrow"}),
            ("chunked L=32, outside", chunk, {"policy": "uniform-narrow"}),
            ("chunked L=32, per-pe", dataclasses.replace(chunk, promotion="per-pe"),
             {"policy": "uniform-narrow"})]
    rows += [(f"condition, {e}", acc, {"policy": "condition", "tau": tau, "estimator": e})
             for e in ESTIMATORS]
    rows += [(f"absolute f=0.1, {e}", acc, {"policy": "absolute", "fraction": 0.1,
                                            "estimator": e}) for e in ESTIMATORS]
    rows.append(("static", acc, {"policy": "static", "tau": tau,
                                 "calibration": calibration}))
    return rows


def _be(v):
    if v is None:
        return "-"
    return "never" if v < 0 else "always" if v > 1 else f"{100 * v:.1f}%"


def _row(label, r, p, wide_agreement):
    v = p["views"]
    s = [f"{100 * v[k]['energy_savings']:.1f}" for k in ("accumulator", "mac", "memory")]
    return (f"| {label} | {100 * (wide_agreement - r.agreement):+.1f} | "
            f"{100 * r.recomputed_fraction:.1f} | {' | '.join(s)} | "
            f"{100 * p['area_savings']:.1f} | {_be(p['break_even_fraction']['mac'])} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--narrow", default="e5m2", help="narrow accumulator (default e5m2)")
    ap.add_argument("--tau", type=float, default=1.0, help="condition / static threshold")
    ap.add_argument("--limit", type=int, default=None,
                    help="samples per trace (default 500 for the MLP, 300 for the CNN)")
    ap.add_argument("--calibration", type=int, default=100,
                    help="static: calibration samples (default 100)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    acc = resolve_accelerator("fp8-e4m3-fp16acc", args.narrow, None)
    for trace, limit in TRACES:
        limit = args.limit or limit
        print(f"\n{trace}, {limit} samples, e4m3 operands, narrow {args.narrow}, wide fp32, "
              f"tau {args.tau:g}, {TECH}\n")
        print("| run | agreement loss (pp) | re-issued % | accumulator savings % | "
              "whole-MAC savings % | with-memory savings % | area savings % | "
              "break-even |")
        print("|---|---|---|---|---|---|---|---|")
        wide = None
        for label, a, kw in _runs(acc, args.tau, args.calibration):
            r = simulate(trace, a, limit=limit, **kw)
            wide = r.agreement if wide is None else wide
            print(_row(label, r, price_simulation(a, TECH, r), wide), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
