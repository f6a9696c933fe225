"""The bundled transformer ``mnist-vit`` on narrow accumulators: every product of the
network -- the patch embedding, the Q/K/V and output projections, Q K^T and A V of both
heads, the feed-forward layers and the head -- on the simulated register.

Setting: ``fp16-fp32acc`` (fp16 operands, exact products, fp32 wide accumulator) with the
narrow accumulator replaced by each of ``--narrow`` (default e5m4, bf16 with rz), priced
on ``horowitz-45nm`` against the same array with fp32 accumulators everywhere. Rows:
``uniform-narrow``, ``uniform-wide``, ``condition`` at tau 0.1 and 1 (the paper's
criterion), ``absolute`` at fractions 0.1 and 0.3 (its default output layer: wide), and
``random`` at 0.3 (seed 0). Columns: accuracy and agreement with the float64 reference
(argmax equal), the re-issued share of the products' outputs, the normwise output error
``|y - y_ref| / |y_ref|`` (mean over samples), and the whole-MAC energy savings.

    python examples/transformer.py                   # 500 test images, ~1-2 min on 2 cores
    python examples/transformer.py --limit 1000 --narrow e5m2,e5m4
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings

from accsim.hardware.cost import price_simulation
from accsim.network.simulation import resolve_accelerator, simulate

TRACE = "mnist-vit"
ACCELERATOR = "fp16-fp32acc"
TECH = "horowitz-45nm"
RUNS = (("uniform-narrow", {"policy": "uniform-narrow"}),
        ("uniform-wide", {"policy": "uniform-wide"}),
        ("condition tau=0.1", {"policy": "condition", "tau": 0.1}),
        ("condition tau=1", {"policy": "condition", "tau": 1.0}),
        ("absolute f=0.1", {"policy": "absolute", "fraction": 0.1}),
        ("absolute f=0.3", {"policy": "absolute", "fraction": 0.3}),
        ("random f=0.3", {"policy": "random", "fraction": 0.3, "seed": 0}))


def _narrow(spec):
    """``NAME`` or ``NAME:ROUNDING`` -> (format name, rounding or None)."""
    name, _, rounding = spec.partition(":")
    return name, rounding or None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=500, help="test images (default 500)")
    ap.add_argument("--narrow", default="e5m4,bf16:rz",
                    help="narrow accumulators, NAME or NAME:ROUNDING (default e5m4,bf16:rz)")
    args = ap.parse_args(argv)
    print(f"{TRACE}, {args.limit} test images, accelerator {ACCELERATOR}, {TECH}\n")
    for spec in args.narrow.split(","):
        name, rounding = _narrow(spec)
        acc = resolve_accelerator(ACCELERATOR, name, None)
        if rounding is not None:
            acc = dataclasses.replace(acc, narrow_rounding=rounding)
        print(f"narrow {spec}")
        print("| run | accuracy | agreement | re-issued % | normwise error | "
              "whole-MAC savings % |")
        print("|---|---|---|---|---|---|")
        for label, kw in RUNS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = simulate(TRACE, acc, limit=args.limit, **kw)
            cost = price_simulation(acc, TECH, r)
            print(f"| {label} | {100 * r.accuracy:.1f} | {100 * r.agreement:.1f} | "
                  f"{100 * r.recomputed_fraction:.1f} | {r.normwise_error:.3g} | "
                  f"{100 * cost['energy_savings']:.1f} |")
        print()


if __name__ == "__main__":
    main()
