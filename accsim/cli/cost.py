"""``accsim cost ops|mac|export``: technology tables, per-MAC costs, break-even, Accelergy
export; and the cost summary that ``accsim simulate`` prints (:func:`cost_summary_lines`)."""

from __future__ import annotations

import json

from ..hardware.accelerator import load_accelerator
from ..hardware.cost import (ESTIMATORS, REFETCH, VIEWS, assumptions, break_even_table,
                             export_accelergy, load_technology, mac_parts, ops_table,
                             price_run)
from ..hardware.pricing import VIEW_TEXT
from .common import DEFAULT_TECHNOLOGY, UsageError, parse_float

_TECHNOLOGY_HELP = f"built-in table name or YAML path (default {DEFAULT_TECHNOLOGY})"
_VIEW_LABEL = {"accumulator": "accumulator", "mac": "whole MAC", "memory": "with memory"}


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

    m = sub.add_parser("mac", help="per-MAC energy/area of the narrow and wide datapaths, "
                                   "and the break-even re-issued fraction per estimator")
    _common(m)
    m.add_argument("--k", type=int, default=512, help="terms per output (default 512)")
    m.add_argument("--fraction", metavar="F", default=None,
                   help="also price outputs of k terms with this re-issued fraction in "
                        "[0, 1] (savings per view, for --estimator)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_mac)

    e = sub.add_parser("export", help="Accelergy/Timeloop ERT, ART and action counts (YAML)")
    _common(e)
    e.add_argument("--m", type=int, default=1, help="GEMM rows (default 1)")
    e.add_argument("--n", type=int, default=1, help="GEMM columns (default 1)")
    e.add_argument("--k", type=int, default=512, help="terms per output (default 512)")
    e.add_argument("--recomputed", default="0", metavar="R",
                   help="outputs re-issued on the wide accumulator: a count (e.g. 12) or a "
                        "fraction of the m*n outputs in [0, 1] written with a point (e.g. "
                        "0.05, 1.0); default 0")
    e.add_argument("--out", required=True, metavar="FILE")
    e.set_defaults(func=_cmd_export)

    c.set_defaults(func=_no_action)


def _common(p):
    """The options of ``mac`` and ``export``: accelerator, technology, estimator, refetch."""
    p.add_argument("--accelerator", "-a", required=True,
                   help="built-in accelerator name or YAML path")
    p.add_argument("--technology", "-t", default=DEFAULT_TECHNOLOGY, help=_TECHNOLOGY_HELP)
    p.add_argument("--estimator", default=None, choices=list(ESTIMATORS),
                   help="hardware that decides which outputs to re-issue (default none)")
    p.add_argument("--refetch", default=None, choices=list(REFETCH),
                   help="where re-issued outputs' operands come from (default: the "
                        "accelerator's pricing.refetch, buffer unless set)")


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


def _fraction(text, name):
    """A number in [0, 1] from the option ``name`` (None for None)."""
    v = parse_float(text, name)
    if v is not None and not 0 <= v <= 1:
        raise UsageError(f"{name}: expected a fraction in [0, 1], got {text!r}")
    return v


def _datapath(acc, tech, which):
    """One datapath of ``cost mac``: its format and the MAC split into parts (pJ per MAC,
    um2 per PE)."""
    parts = mac_parts(acc, tech, which)
    fmt = acc.narrow if which == "narrow" else acc.wide
    d = {"format": fmt.label,
         "energy_pj": sum(p.energy_pj for p in parts.values()),
         "area_um2": sum(p.area_um2 for p in parts.values())}
    for name, p in parts.items():
        d[f"{name}_energy_pj"] = p.energy_pj
        d[f"{name}_area_um2"] = p.area_um2
    return d


def _views_at(acc, tech, k, fraction, estimator, refetch):
    """Savings per view of one row of k outputs of k terms with ``fraction`` re-issued."""
    layer = {"name": "row", "m": 1, "n": k, "k": k, "recomputed": round(fraction * k)}
    p = price_run(acc, tech, [layer], estimator, refetch)
    return {v: d["energy_savings"] for v, d in p["views"].items()}


def _cmd_mac(args):
    _positive("k", args.k)
    fraction = _fraction(args.fraction, "--fraction")
    acc = load_accelerator(args.accelerator)
    tech = load_technology(args.technology)
    est = args.estimator or "none"
    refetch = args.refetch or acc.refetch
    layers = [{"name": "row", "m": 1, "n": args.k, "k": args.k}]
    table = break_even_table(acc, tech, layers, refetch)
    out = {"accelerator": acc.name, "technology": tech.name,
           "narrow": _datapath(acc, tech, "narrow"), "wide": _datapath(acc, tech, "wide"),
           "estimator": est, "refetch": refetch, "k": args.k,
           "break_even_fraction": table["dynamic"][est]["mac"], "break_even": table,
           "assumptions": assumptions(acc, tech, est, refetch)}
    if fraction is not None:
        out["fraction"] = fraction
        out["savings_at_fraction"] = _views_at(acc, tech, args.k, fraction, est, refetch)
    if args.json:
        print(json.dumps(out))
        return 0
    _print_mac(acc, tech, out)
    return 0


def _fmt_f(v):
    """A break-even fraction for the text tables."""
    if v is None:
        return "-"
    if v < 0:
        return "never"
    return "always" if v > 1 else f"{v:.4f}"


def _print_mac(acc, tech, out):
    print(f"accelerator {acc.name} on {tech.name} ({acc.structure}"
          + (f", promotion {acc.promotion}" if acc.structure == "chunked" else "") + ")")
    print(f"{'datapath':<8} {'format':<10} {'energy_pj/MAC':>14} {'area_um2/PE':>12} "
          f"{'accumulator pJ':>15} {'accumulator um2':>16}")
    for d in ("narrow", "wide"):
        r = out[d]
        ae = r["accumulator_energy_pj"] + r["promotion_energy_pj"]
        aa = r["accumulator_area_um2"] + r["promotion_area_um2"]
        print(f"{d:<8} {r['format']:<10} {r['energy_pj']:>14.6g} {r['area_um2']:>12.6g} "
              f"{ae:>15.6g} {aa:>16.6g}")
    print(f"(accumulator: adder + register, promotion included; k={out['k']} terms per "
          f"output, refetch {out['refetch']})")
    print(f"break-even re-issued fraction (k={out['k']}, estimator {out['estimator']}, "
          f"refetch {out['refetch']}): {out['break_even_fraction']:.4f}")
    views = [v for v in VIEWS if v in out["break_even"]["static"]]
    print(f"{'policy / estimator':<22} " + " ".join(f"{_VIEW_LABEL[v]:>12}" for v in views))
    rows = [(f"dynamic, {e}", out["break_even"]["dynamic"][e]) for e in ESTIMATORS]
    rows.append(("static", out["break_even"]["static"]))
    for label, d in rows:
        print(f"{label:<22} " + " ".join(f"{_fmt_f(d.get(v)):>12}" for v in views))
    if "savings_at_fraction" in out:
        s = out["savings_at_fraction"]
        print(f"savings at re-issued fraction {out['fraction']:g} (estimator "
              f"{out['estimator']}): " + ", ".join(
                  f"{_VIEW_LABEL[v]} {100 * s[v]:.1f}%" for v in views if v in s))
    for line in assumption_lines(out["assumptions"]):
        print(line)


def assumption_lines(a) -> list:
    """The pricing assumptions (:func:`accsim.hardware.cost.assumptions`) as text lines."""
    lines = ["assumptions:",
             f"  baseline: {a['baseline']}",
             f"  estimator {a['estimator']}: {a['estimator_hardware']}",
             f"  re-fetch {a['refetch']}: {a['refetch_hardware']}"]
    if "promotion" in a:
        lines.append(f"  promotion {a['promotion']}: {a['promotion_hardware']}")
    lines.append(f"  re-issue: {a['reissue']}")
    return lines


def cost_summary_lines(priced) -> list:
    """What ``accsim simulate`` prints about cost: energy per inference against the
    all-wide baseline in each view, area, cycles, break-even and the assumptions
    (``priced``: :func:`accsim.hardware.cost.price_simulation`)."""
    p = priced
    lines = [f"energy on {p['technology']}: {p['energy_per_inference_pj']:.4g} pJ per "
             f"inference vs {p['baseline_energy_per_inference_pj']:.4g} pJ all-wide "
             f"(savings {100 * p['energy_savings']:.1f}%); area {p['area_um2']:.4g} um2 vs "
             f"{p['baseline_area_um2']:.4g} um2 (savings {100 * p['area_savings']:.1f}%); "
             f"{p['cycles_per_inference']:.4g} cycles per inference (re-issues add "
             f"{p['reissue_cycles_per_inference']:.4g})",
             f"{'view':<12} {'pJ/inference':>13} {'all-wide pJ':>13} {'savings':>8} "
             f"{'area um2':>11} {'all-wide um2':>13} {'savings':>8} {'break-even':>10}  "
             f"includes"]
    for v, d in p["views"].items():
        area = "-" if d["area_um2"] is None else f"{d['area_um2']:.4g}"
        base = "-" if d["baseline_area_um2"] is None else f"{d['baseline_area_um2']:.4g}"
        sav = "-" if d["area_savings"] is None else f"{100 * d['area_savings']:.1f}%"
        lines.append(f"{_VIEW_LABEL[v]:<12} {d['energy_per_inference_pj']:>13.4g} "
                     f"{d['baseline_energy_per_inference_pj']:>13.4g} "
                     f"{100 * d['energy_savings']:>7.1f}% {area:>11} {base:>13} {sav:>8} "
                     f"{_fmt_f(p['break_even_fraction'].get(v)):>10}  {VIEW_TEXT[v]}")
    lines.append("(break-even: the re-issued fraction of every layer's outputs at which "
                 "this policy and estimator stop saving energy)")
    return lines + assumption_lines(p["assumptions"])


def _recomputed(text, outputs):
    """``--recomputed``: a count (digits only) or a fraction of ``outputs`` in [0, 1]."""
    t = str(text).strip()
    if t.isdigit():
        r = int(t)
        if r > outputs:
            raise UsageError(f"--recomputed: {r} is more than the m*n = {outputs} outputs")
        return r
    f = parse_float(t, "--recomputed")
    if not 0 <= f <= 1:
        raise UsageError(f"--recomputed: expected a count of outputs or a fraction in "
                         f"[0, 1], got {text!r}")
    return round(f * outputs)


def _cmd_export(args):
    for nm in ("m", "n", "k"):
        _positive(nm, getattr(args, nm))
    recomputed = _recomputed(args.recomputed, args.m * args.n)
    acc = load_accelerator(args.accelerator)
    tech = load_technology(args.technology)
    layers = [{"name": "gemm", "m": args.m, "n": args.n, "k": args.k,
               "recomputed": recomputed}]
    try:
        export_accelergy(acc, tech, layers, out=args.out, estimator=args.estimator or "none",
                         refetch=args.refetch or acc.refetch)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot write "
                         f"({exc.__class__.__name__})") from None
    print(args.out)
    return 0

