"""``accsim matmul``: a random GEMM on an accelerator's narrow and wide datapaths, against
float64."""

from __future__ import annotations

import json
import time

import numpy as np

from ..hardware.accelerator import load_accelerator
from ..numerics.formats import FloatFormat
from ..numerics.rounding import quantize
from .common import UsageError, add_accelerator_option


def register(subparsers):
    mm = subparsers.add_parser(
        "matmul", help="random GEMM on an accelerator: narrow vs wide vs float64",
        description="Multiply random operands (normal draws, or uniform integers for "
                    "integer formats, quantized to the accelerator's operand formats) on "
                    "the narrow and on the wide datapath; print each one's relative "
                    "errors against float64, its events and its speed.")
    add_accelerator_option(mm)
    mm.add_argument("--m", type=int, default=64, help="rows of A and of the result "
                                                      "(default 64)")
    mm.add_argument("--k", type=int, default=512,
                    help="terms per output: columns of A, rows of B (default 512)")
    mm.add_argument("--n", type=int, default=64, help="columns of B and of the result "
                                                      "(default 64)")
    mm.add_argument("--seed", type=int, default=0,
                    help="seed of the random operands and of stochastic rounding "
                         "(default 0)")
    mm.add_argument("--json", action="store_true", help="one JSON object on stdout")
    mm.set_defaults(func=_cmd_matmul)


def _random_operands(fmt, shape, rng):
    """Random operands representable in ``fmt``: normal draws (uniform integers for
    integer formats) quantized with rne."""
    if isinstance(fmt, FloatFormat):
        x = rng.standard_normal(shape) * min(1.0, fmt.max_finite / 8)
        return quantize(x, fmt)
    lo, hi = max(fmt.min_int, -(1 << 20)), min(fmt.max_int, 1 << 20)
    return np.ldexp(rng.integers(lo, hi + 1, size=shape).astype(float), -fmt.frac_bits)


def _run(acc, a, b, ref, which, args):
    """One datapath's row: relative errors against ``ref`` (float64 ``a @ b``; finite
    ones only), event counts, seconds and simulated MACs per second."""
    t0 = time.perf_counter()
    res = acc.matmul(a, b, which=which, seed=args.seed)
    dt = time.perf_counter() - t0
    with np.errstate(all="ignore"):
        rel = np.abs(res.values - ref) / np.abs(ref)
    rel = rel[np.isfinite(rel)]
    fmt = acc.narrow if which == "narrow" else acc.wide
    return {
        "datapath": which, "format": fmt.label,
        "mean_rel_error": float(rel.mean()) if rel.size else 0.0,
        "max_rel_error": float(rel.max()) if rel.size else 0.0,
        "events": res.events.total, "seconds": dt,
        "mac_per_s": args.m * args.k * args.n / dt if dt > 0 else None,
    }


def _cmd_matmul(args):
    for nm in ("m", "k", "n"):
        if getattr(args, nm) < 1:
            raise UsageError(f"--{nm} must be a positive integer")
    acc = load_accelerator(args.accelerator)
    rng = np.random.default_rng(args.seed)
    a = _random_operands(acc.input, (args.m, args.k), rng)
    b = _random_operands(acc.weight, (args.k, args.n), rng)
    ref = a @ b
    rows = [_run(acc, a, b, ref, which, args) for which in ("narrow", "wide")]
    if args.json:
        print(json.dumps({"accelerator": acc.name, "m": args.m, "k": args.k, "n": args.n,
                          "seed": args.seed, "results": rows}))
        return 0
    print(f"accelerator {acc.name}: {args.m}x{args.k} @ {args.k}x{args.n}, seed {args.seed}")
    print(f"{'datapath':<8} {'format':<12} {'mean rel err':>12} {'max rel err':>12} "
          f"{'overflows':>9} {'saturated':>9} {'inexact adds':>12} {'MAC/s':>9}")
    for r in rows:
        e = r["events"]
        print(f"{r['datapath']:<8} {r['format']:<12} {r['mean_rel_error']:>12.3e} "
              f"{r['max_rel_error']:>12.3e} {e['overflows']:>9} {e['saturations']:>9} "
              f"{e['inexact']:>12} {r['mac_per_s'] or 0:>9.2e}")
    return 0
