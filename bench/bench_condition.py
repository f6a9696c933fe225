"""Cost of the ``condition`` scheduler against the narrow pass alone (target: 1.3 + ρ).

The whole ``condition`` run (narrow pass, κ estimate, re-issue of the flagged components
on the wide accumulator through the engine's selected-output path) should take at most
``(1.3 + ρ)`` times the narrow pass alone (``uniform-narrow``), ρ being the re-issued
fraction. Both runs are :func:`accsim.network.simulate` on the same trace and samples with
``analyze=False`` (the bound check is diagnostics, not part of the algorithm; it is off
for both), so both include the same float64 reference forward pass and operand
quantisation: the ratio is of whole simulations, which is what a user waits for.

Printed per (trace, τ): median seconds of ``uniform-narrow`` and of ``condition`` over
``--repeats`` runs (after one warm-up run each, which also compiles the kernels; the two
run alternately so that load changes on a shared machine hit both alike), ρ, the median
of the per-repeat ratios and the target ``1.3 + ρ``.

    python bench/bench_condition.py                     # 3 traces, 2 τ, 500 samples
    python bench/bench_condition.py --limit 1000 --repeats 5

Measured on the 2-core machine, idle (500 samples, median of 7 paired runs), after the
binary32 re-issue step, the binary32 |A||B| estimate, transposed re-issues of the
selected rows, and one BLAS thread inside ``simulate``:

    | trace          | tau  | narrow s | condition s | rho   | ratio | 1.3+rho |
    | mnist-mlp-relu | 0.05 | 0.261    | 0.335       | 0.812 | 1.30  | 2.11    |
    | mnist-mlp-relu | 0.2  | 0.239    | 0.310       | 0.264 | 1.30  | 1.56    |
    | mnist-mlp-tanh | 0.05 | 0.328    | 0.429       | 0.788 | 1.30  | 2.09    |
    | mnist-mlp-tanh | 0.2  | 0.328    | 0.446       | 0.328 | 1.36  | 1.63    |
    | mnist-cnn      | 0.05 | 0.955    | 1.188       | 0.104 | 1.24  | 1.40    |
    | mnist-cnn      | 0.2  | 0.942    | 1.133       | 0.028 | 1.23  | 1.33    |

The target is met in all 6 cases (it was met in 2 before: the fp32 re-issue ran on
float64 lanes, |A||B| was a float64 product, and OpenBLAS's and numba's threads waited
for each other's spinning on the 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from accsim.network.simulation import resolve_accelerator, simulate

CASES = (("mnist-mlp-relu", (0.05, 0.2)), ("mnist-mlp-tanh", (0.05, 0.2)),
         ("mnist-cnn", (0.05, 0.2)))


def _paired(fn_a, fn_b, repeats):
    """Median seconds of ``fn_a`` and ``fn_b`` and the median of their per-repeat ratio
    b / a; the two run alternately so that a change of machine load hits both alike."""
    fn_a()                                  # warm-up (numba compile / caches)
    rb = fn_b()
    ta, tb, ratio = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn_a()
        t1 = time.perf_counter()
        rb = fn_b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
        ratio.append((t2 - t1) / (t1 - t0))
    return statistics.median(ta), statistics.median(tb), statistics.median(ratio), rb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=500, help="samples per run (default 500)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs (median; default 5)")
    ap.add_argument("--estimator", default="exact", help="kappa estimator (default exact)")
    args = ap.parse_args(argv)
    # bf16 accumulator with round-toward-zero inside an fp16 -> fp32 accelerator: the
    # narrow accumulator of the tau-sweep example (it visibly costs agreement)
    acc = dataclasses.replace(resolve_accelerator("fp16-fp32acc", "bf16", "fp32"),
                              narrow_rounding="rz")
    print(f"accelerator fp16 operands, narrow bf16 (rz), wide fp32; {args.limit} samples, "
          f"median of {args.repeats}; analyze=False; estimator {args.estimator}")
    print("| trace | tau | narrow s | condition s | rho | ratio | target 1.3+rho | ok |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for trace, taus in CASES:
        for tau in taus:
            tn, tc, ratio, rc = _paired(
                lambda t=trace: simulate(t, acc, limit=args.limit, analyze=False),
                lambda t=trace, tau=tau: simulate(t, acc, limit=args.limit, analyze=False,
                                                  policy="condition", tau=tau,
                                                  estimator=args.estimator),
                args.repeats)
            rho = rc.recomputed_fraction
            print(f"| {trace} | {tau:g} | {tn:.3f} | {tc:.3f} | {rho:.3f} | {ratio:.2f} | "
                  f"{1.3 + rho:.2f} | {'yes' if ratio <= 1.3 + rho else 'NO'} |",
                  flush=True)


if __name__ == "__main__":
    main()
