"""``accsim cost ops|mac|export``: technology tables, per-MAC costs, Accelergy export."""

from __future__ import annotations

import json

from ..hardware.accelerator import load_accelerator
from ..hardware.cost import (ESTIMATORS, REFETCH, break_even_fraction, export_accelergy,
                             load_technology, mac_cost, ops_table)
from .common import DEFAULT_TECHNOLOGY, UsageError

_TECHNOLOGY_HELP = f"built-in table name or YAML path (default {DEFAULT_TECHNOLOGY})"


def register(subparsers):
    c = subparsers.add_parser(
        "cost", help="energy and area: primitives, per-MAC costs, break-even, export",
        description="Price primitives and MACs from a technology table (accsim.hardware.cost).")
    sub = c.add_subparsers(dest="cost_action", parser_class=type(c))

    o = sub.add_parser("ops", help="energy and area of every primitive (and asked widths)")
    o.add_argument("--technology", "-t", default=DEFAULT_TECHNOLOGY, help=_TECHNOLOGY_HELP)
    o.add_argument("--op", action="append", default=[], metavar="OP:WIDTH",
                   help="another primitive, e.g. fp_add:e5m7, int_add:12, int_mul:8x16 "
                        "(repeatable)")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=_cmd_ops)

    m = sub.add_parser("mac", help="per-MAC energy/area of the narrow and wide datapaths "
                                   "and the break-even re-issued fraction")
    _common(m)
    m.add_argument("--k", type=int, default=512, help="terms per output (default 512)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_mac)

    e = sub.add_parser("export", help="Accelergy/Timeloop ERT, ART and action counts (YAML)")
    _common(e)
    e.add_argument("--m", type=int, default=1, help="GEMM rows (default 1)")
    e.add_argument("--n", type=int, default=1, help="GEMM columns (default 1)")
    e.add_argument("--k", type=int, default=512, help="terms per output (default 512)")
    e.add_argument("--recomputed", type=int, default=0,
                   help="outputs re-issued on the wide accumulator (default 0)")
    e.add_argument("--out", required=True, metavar="FILE")
    e.set_defaults(func=_cmd_export)

    c.set_defaults(func=_no_action)


def _common(p):
    """The options of ``mac`` and ``export``: accelerator, technology, estimator, refetch."""
    p.add_argument("--accelerator", "-a", required=True,
                   help="built-in accelerator name or YAML path")
    p.add_argument("--technology", "-t", default=DEFAULT_TECHNOLOGY, help=_TECHNOLOGY_HELP)
    p.add_argument("--estimator", default="none", choices=list(ESTIMATORS),
                   help="cost of deciding which outputs to re-issue (default none)")
    p.add_argument("--refetch", default="buffer", choices=list(REFETCH),
                   help="where re-issued outputs' operands come from (default buffer)")


def _no_action(args):
    raise UsageError("cost: expected ops, mac or export")


def _cmd_ops(args):
    tech = load_technology(args.technology)
    table = ops_table(tech, args.op)
    if args.json:
        print(json.dumps({"technology": tech.name, "ops": table}))
        return 0
    print(f"technology {tech.name}")
    print(f"{'op':<14} {'energy_pj':>12} {'area_um2':>12}")
    for k, v in table.items():
        print(f"{k:<14} {v['energy_pj']:>12.6g} {v['area_um2']:>12.6g}")
    return 0


def _positive(name, v, allow_zero=False):
    if v < 0 or (v == 0 and not allow_zero):
        raise UsageError(f"--{name} must be a "
                         f"{'non-negative' if allow_zero else 'positive'} integer, got {v}")


def _cmd_mac(args):
    _positive("k", args.k)
    acc = load_accelerator(args.accelerator)
    tech = load_technology(args.technology)
    n = mac_cost(acc, tech, "narrow")
    w = mac_cost(acc, tech, "wide")
    be = break_even_fraction(acc, tech, args.k, args.estimator, args.refetch)
    out = {"accelerator": acc.name, "technology": tech.name,
           "narrow": {"format": acc.narrow.label, **n.as_dict()},
           "wide": {"format": acc.wide.label, **w.as_dict()},
           "estimator": args.estimator, "refetch": args.refetch, "k": args.k,
           "break_even_fraction": be}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"accelerator {acc.name} on {tech.name} ({acc.structure})")
    print(f"{'datapath':<8} {'format':<10} {'energy_pj/MAC':>14} {'area_um2/PE':>12}")
    for d in ("narrow", "wide"):
        r = out[d]
        print(f"{d:<8} {r['format']:<10} {r['energy_pj']:>14.6g} {r['area_um2']:>12.6g}")
    print(f"break-even re-issued fraction (k={args.k}, estimator {args.estimator}, "
          f"refetch {args.refetch}): {be:.4f}")
    return 0


def _cmd_export(args):
    for nm in ("m", "n", "k"):
        _positive(nm, getattr(args, nm))
    _positive("recomputed", args.recomputed, allow_zero=True)
    acc = load_accelerator(args.accelerator)
    tech = load_technology(args.technology)
    layers = [{"name": "gemm", "m": args.m, "n": args.n, "k": args.k,
               "recomputed": args.recomputed}]
    try:
        export_accelergy(acc, tech, layers, out=args.out, estimator=args.estimator,
                         refetch=args.refetch)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write "
                         f"({exc.__class__.__name__})") from None
    print(args.out)
    return 0
