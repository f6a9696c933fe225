"""``accsim advise TRACE``: the cheapest configuration meeting an agreement target."""

from __future__ import annotations

import json
import os
import sys

from ..experiments.advisor import RULES, STRUCTURES, advise
from ..hardware.cost import load_technology
from .common import (DEFAULT_TECHNOLOGY, add_accelerator_option, check_out_file,
                     one_line_warnings, parse_float, parse_positive_int, show_progress,
                     write_csv)


def register(subparsers):
    s = subparsers.add_parser(
        "advise", help="find the cheapest configuration (energy per inference) that meets "
                       "an agreement target",
        description="Simulate every candidate (narrow formats x structures x policies with "
                    "budgets) on a calibration split, choose the cheapest by energy per "
                    "inference whose agreement with the float64 reference meets the "
                    "target, and report it on the held-out split, with the Pareto table.")
    s.add_argument("trace", metavar="TRACE", help="a trace folder or a bundled trace name")
    add_accelerator_option(s)
    s.add_argument("--target-agreement", metavar="A", required=True,
                   help="agreement target in (0, 1], e.g. 0.995")
    s.add_argument("--narrow", metavar="F1,F2", default=None,
                   help="candidate narrow accumulator formats (default: the accelerator's)")
    s.add_argument("--structures", metavar="S1,S2", default="same",
                   help=f"candidate structures: {', '.join(STRUCTURES)} (default same: the "
                        f"accelerator's)")
    s.add_argument("--policies", metavar="P1,P2", default="uniform-narrow,absolute",
                   help="candidate policies (default uniform-narrow,absolute); the budgeted "
                        "ones get each --fractions and --taus value they accept")
    s.add_argument("--fractions", metavar="F1,F2", default="0.1,0.3,0.5",
                   help="re-issue budgets (default 0.1,0.3,0.5)")
    s.add_argument("--taus", metavar="T1,T2", default="",
                   help="thresholds (default none)")
    s.add_argument("--rule", default="wilson", choices=RULES,
                   help="what meets the target on the calibration split: wilson (the lower "
                        "end of its agreement's 95%% Wilson interval, default: guards "
                        "against lucky passes, needs more samples) or point (its agreement)")
    s.add_argument("--limit", metavar="N", default=None, help="use the first N samples")
    s.add_argument("--calibration", metavar="N", default=None,
                   help="the first N samples choose, the rest are held out (default half)")
    s.add_argument("--technology", "-t", default=DEFAULT_TECHNOLOGY,
                   help=f"technology table pricing the runs (default {DEFAULT_TECHNOLOGY})")
    s.add_argument("--scheduler", "-s", default="inprocess", metavar="S",
                   help="inprocess (default), processes, dask-local or a Dask address")
    s.add_argument("--workers", "-j", metavar="N", default=None,
                   help="worker processes for processes / dask-local (default 2)")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.add_argument("--csv", metavar="FILE", default=None,
                   help="also write the candidates (calibration split) as CSV")
    s.add_argument("--plot", metavar="FILE", default=None,
                   help="also write a PNG: agreement vs energy, Pareto front and target")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    s.set_defaults(func=_cmd_advise)


def _split(text, name, conv=None):
    """The comma-separated items of an option (each ``conv(item, name)`` if given)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return [conv(t, name) for t in items] if conv else items


def _options(args) -> dict:
    """The keywords of :func:`advise` from the options, each checked."""
    target = parse_float(args.target_agreement, "--target-agreement")
    if not 0 < target <= 1:
        raise ValueError(f"--target-agreement: expected a number in (0, 1], got "
                         f"{args.target_agreement!r}")
    fractions = _split(args.fractions, "--fractions", parse_float)
    for f in fractions:
        if not 0 <= f <= 1:
            raise ValueError(f"--fractions: expected numbers in [0, 1], got {f!r}")
    taus = _split(args.taus, "--taus", parse_float)
    for t in taus:
        if t < 0:
            raise ValueError(f"--taus: expected numbers >= 0, got {t!r}")
    try:
        load_technology(args.technology)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None
    for opt, path in (("--csv", args.csv), ("--plot", args.plot)):
        if path is not None:
            check_out_file(path, opt)
    return {"target": target, "narrow": _split(args.narrow, "--narrow") if args.narrow
            else [None], "structures": _split(args.structures, "--structures"),
            "policies": _split(args.policies, "--policies"), "fractions": fractions,
            "taus": taus, "limit": parse_positive_int(args.limit, "--limit"),
            "calibration": parse_positive_int(args.calibration, "--calibration"),
            "technology": args.technology, "scheduler": args.scheduler,
            "workers": parse_positive_int(args.workers, "--workers") or 2,
            "rule": args.rule}


def _progress(done, total, point):
    sys.stderr.write(f"accsim advise: {done}/{total} {point.label()}\n")
    sys.stderr.flush()


_NAMED = ("structures:", "policies:", "calibration:", "target_agreement:", "narrow:")


def _cmd_advise(args):
    kw = _options(args)
    target = kw.pop("target")
    show = show_progress(args.quiet, args.json)
    try:
        with one_line_warnings():
            d = advise(args.trace, args.accelerator, target,
                       progress=_progress if show else None, **kw)
    except ValueError as exc:
        msg = str(exc)
        if msg.startswith(_NAMED):
            name, _, rest = msg.partition(":")
            raise ValueError(f"--{name.replace('_', '-')}:{rest}") from None
        raise
    if args.csv is not None:
        write_csv(args.csv, _CSV_HEADER, [[r.get(k) for k in _CSV_HEADER]
                                          for r in d["candidates"]])
    if args.plot is not None:
        _plot(d, args.plot)
    if args.json:
        print(json.dumps(d))
    else:
        _print(d)
    return 0 if d["chosen"] is not None and d["held_out_result"]["meets"] else 1


#: columns of ``--csv`` (agreement: fraction; energy: pJ per inference; baseline: the
#: all-wide array added as a candidate)
_CSV_HEADER = ("id", "narrow", "structure", "policy", "tau", "fraction", "agreement",
               "normwise_error", "recomputed_fraction", "energy_per_inference_pj",
               "pareto", "meets", "n_samples", "baseline")


def _budget(r):
    if r["tau"] is not None:
        return f"tau {r['tau']:g}"
    return "-" if r["fraction"] is None else f"f {r['fraction']:g}"


def _row(r):
    lo, hi = r["agreement_ci95"]
    name = "all-wide" if r.get("baseline") else r["narrow"] or "acc narrow"
    return (f"{name:<12} {r['structure']:<11} {r['policy']:<15} "
            f"{_budget(r):<9} {100 * r['agreement']:>7.2f} [{100 * lo:5.1f},{100 * hi:6.1f}] "
            f"{r['normwise_error']:>9.3g} {100 * r['recomputed_fraction']:>8.1f} "
            f"{r['energy_per_inference_pj']:>11.4g} {'*' if r['pareto'] else '':>6} "
            f"{'yes' if r['meets'] else '':>5}")


def _print(d):
    c0, c1 = d["calibration"]
    h0, h1 = d["held_out"]
    print(f"trace {d['trace']}, accelerator {d['accelerator']}: target agreement "
          f"{100 * d['target']:.2f}% (rule {d['rule']}); calibration samples "
          f"{c0}-{c1 - 1}, held out "
          f"{h0}-{h1 - 1}; energy on {d['technology']}")
    print(f"{'narrow':<12} {'structure':<11} {'policy':<15} {'budget':<9} {'agree%':>7} "
          f"{'95% CI':>14} {'normwise':>9} {'reissue%':>8} {'pJ/infer':>11} "
          f"{'pareto':>6} {'meets':>5}")
    for r in d["candidates"]:
        print(_row(r))
    ch, h = d["chosen"], d["held_out_result"]
    if ch is None:
        print("no candidate meets the target on the calibration split")
        return
    lo, hi = h["agreement_ci95"]
    if ch.get("baseline"):
        print("no narrower candidate meeting the target is cheaper than the all-wide array")
    print(f"chosen: {ch['narrow'] or 'acc narrow'} {ch['structure']} {ch['policy']} "
          f"{_budget(ch)}, {ch['energy_per_inference_pj']:.4g} pJ per inference; held out: "
          f"agreement {100 * h['agreement']:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}], "
          f"normwise error {h['normwise_error']:.3g}: "
          f"{'meets' if h['meets'] else 'MISSES'} the target")


def _plot(d, path):
    """Agreement vs energy per inference of every candidate, the Pareto front, the
    target line and the chosen point (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = d["candidates"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r["energy_per_inference_pj"] for r in rows],
               [r["agreement"] for r in rows], s=12, label="candidates")
    front = sorted((r for r in rows if r["pareto"]),
                   key=lambda r: r["energy_per_inference_pj"])
    ax.plot([r["energy_per_inference_pj"] for r in front], [r["agreement"] for r in front],
            "-o", ms=4, color="C1", label="Pareto front")
    ax.axhline(d["target"], ls="--", color="grey", label="target")
    if d["chosen"] is not None:
        ax.plot(d["chosen"]["energy_per_inference_pj"], d["chosen"]["agreement"], "*",
                ms=14, color="C3", label="chosen")
    ax.set_xlabel("energy per inference (pJ)")
    ax.set_ylabel("agreement (calibration split)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)      # whole or not at all
