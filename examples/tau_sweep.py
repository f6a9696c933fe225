"""τ sweep of the componentwise-condition scheduler on the bundled MNIST networks.

Reproduces the claim of El Arar, Filip, Mary and Riccietti (2025): computing every
component with a narrow accumulator and re-issuing only those with a large
``u · κ_i · κ_φ`` to the wide accumulator recovers the wide accumulator's agreement with
the float64 reference at a fraction of the re-issues, and does so better than re-issuing
the same number of components at random.

Setting: fp16 operands with exact products (``fp16-fp32acc``), the narrow accumulator
replaced by bf16 with round-toward-zero (u = 2^-7: it visibly costs agreement), the wide
one fp32 (rne). Policies per τ:

* ``condition``: re-issue where ``u κ_i κ_φ > τ`` (``exact`` estimator);
* ``random``: the same number of components per layer and batch, uniformly at random;
* ``multi-level``: ladder bf16 (rz) → fp16 → fp32, the cheapest rung with ``u_r κ κ_φ ≤ τ``;
* ``static``: per-neuron formats (narrow or wide) chosen on the first ``--calibration``
  samples (then not evaluated, so its row is over fewer samples) with the 0.9 quantile
  of each neuron's scores, no estimate at run time.

Columns: re-issued fraction (components not on the narrow rung), agreement (argmax equal
to the float64 reference's) and accuracy on the simulated samples, and the energy of the
run over the all-fp32 baseline (``horowitz-45nm``, estimator and re-fetch included; see
:mod:`accsim.hardware.cost`).

    python examples/tau_sweep.py                  # 400 samples per trace, ~2 min
    python examples/tau_sweep.py --limit 2000 --taus 2,1,0.5,0.2,0.1
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from accsim.hardware.cost import price_simulation
from accsim.network.simulation import resolve_accelerator, simulate

TRACES = ("mnist-mlp-relu", "mnist-mlp-tanh", "mnist-cnn")
LADDER = ["bf16:rz", "fp16", "fp32"]
TECH = "horowitz-45nm"


def _row(trace, policy, tau, r, acc):
    e = price_simulation(acc, TECH, r)
    tau_s = "-" if tau is None else f"{tau:g}"
    acc_s = "-" if r.accuracy is None else f"{100 * r.accuracy:.1f}"
    return (f"| {trace} | {policy} | {tau_s} | {100 * r.recomputed_fraction:.1f} | "
            f"{100 * r.agreement:.1f} | {acc_s} | {e['energy_pj'] / e['baseline_energy_pj']:.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=400, help="samples per trace (default 400)")
    ap.add_argument("--taus", default="1,0.2,0.05,0.02",
                    help="comma-separated thresholds (default 1,0.2,0.05,0.02)")
    ap.add_argument("--calibration", type=int, default=100,
                    help="static: calibration samples (default 100)")
    ap.add_argument("--quantile", type=float, default=0.9,
                    help="static: per-neuron score quantile (default 0.9)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    ap.add_argument("--traces", default=",".join(TRACES))
    args = ap.parse_args(argv)
    taus = [float(t) for t in args.taus.split(",")]
    acc = dataclasses.replace(resolve_accelerator("fp16-fp32acc", "bf16", "fp32"),
                              narrow_rounding="rz")
    t0 = time.perf_counter()
    print(f"fp16 operands, narrow bf16 (rz), wide fp32; {args.limit} samples per trace "
          f"(static: the first {args.calibration} calibrate and are not evaluated, "
          f"quantile {args.quantile}); "
          f"energy / all-fp32 on {TECH}")
    print()
    print("| trace | policy | tau | re-issued % | agreement % | accuracy % | energy / wide |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for trace in args.traces.split(","):
        kw = {"limit": args.limit, "analyze": False}
        for pol in ("uniform-narrow", "uniform-wide"):
            print(_row(trace, pol, None, simulate(trace, acc, policy=pol, **kw), acc),
                  flush=True)
        for tau in taus:
            runs = [("condition", simulate(trace, acc, policy="condition", tau=tau, **kw)),
                    ("random", simulate(trace, acc, policy="random", tau=tau,
                                        seed=args.seed, **kw)),
                    ("multi-level", simulate(trace, acc, policy="multi-level", tau=tau,
                                             ladder=LADDER, **kw)),
                    ("static", simulate(trace, acc, policy="static", tau=tau,
                                        calibration=args.calibration,
                                        quantile=args.quantile, **kw))]
            for pol, r in runs:
                print(_row(trace, pol, tau, r, acc), flush=True)
    print()
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
