"""``accsim simulate TRACE``: run a network on an accelerator, narrow next to wide."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from ..hardware.cost import price_simulation
from ..network.simulation import resolve_accelerator, resolve_trace, simulate
from ..precision.scheduler import check_policy
from .common import (DEFAULT_ACCELERATOR, DEFAULT_TECHNOLOGY, SampleBar, compile_notice,
                     one_line_warnings, parse_float, parse_positive_int, show_progress)


def register(subparsers):
    s = subparsers.add_parser(
        "simulate", help="run a network trace on an accelerator: narrow vs wide vs float64",
        description="Run every matrix product of TRACE through the accelerator's narrow "
                    "accumulator, then again with the narrow accumulator replaced by the "
                    "wide one, next to the float64 reference.")
    s.add_argument("trace", metavar="TRACE",
                   help="a trace folder or a bundled trace name (e.g. mnist-mlp-relu)")
    s.add_argument("--accelerator", "-a", default=DEFAULT_ACCELERATOR,
                   help=f"built-in accelerator name or YAML path (default "
                        f"{DEFAULT_ACCELERATOR})")
    s.add_argument("--narrow", metavar="FORMAT", default=None,
                   help="replace the accelerator's narrow accumulator format")
    s.add_argument("--wide", metavar="FORMAT", default=None,
                   help="replace the accelerator's wide accumulator format")
    s.add_argument("--limit", metavar="N", default=None,
                   help="simulate only the first N samples")
    s.add_argument("--seed", type=int, default=0, help="stochastic-rounding seed")
    s.add_argument("--policy", default="uniform-narrow",
                   help="scheduler policy re-issuing components to the wide accumulator: "
                        "uniform-narrow (default), uniform-wide, condition, random, "
                        "oracle, overflow, multi-level, static")
    s.add_argument("--tau", metavar="T", default=None,
                   help="condition threshold: re-issue where u*kappa_i*kappa_phi > T "
                        "(random / oracle: match condition's count at this T)")
    s.add_argument("--fraction", metavar="F", default=None,
                   help="re-issue budget as a fraction of the outputs (random, oracle, "
                        "condition: top-F scores)")
    s.add_argument("--estimator", default="exact",
                   help="kappa_i estimator of the condition policy: exact, norm, exponent")
    s.add_argument("--ladder", metavar="F1,F2,...", default=None,
                   help="multi-level / static: accumulator formats cheapest first, each "
                        "NAME or NAME:ROUNDING (default multi-level: narrow, an "
                        "intermediate format, wide; static: narrow, wide)")
    s.add_argument("--calibration", metavar="N", default=None,
                   help="static: the first N samples choose the per-neuron formats and are "
                        "not evaluated (default min(500, n // 5))")
    s.add_argument("--quantile", metavar="Q", default=None,
                   help="static: quantile of each neuron's calibration scores compared "
                        "with --tau (default 0.99)")
    s.add_argument("--narrow-only", action="store_true",
                   help="skip the second run with the wide accumulator")
    s.add_argument("--technology", "-t", default=DEFAULT_TECHNOLOGY,
                   help=f"technology table pricing the run (default {DEFAULT_TECHNOLOGY})")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.add_argument("--quiet", "-q", action="store_true",
                   help="no progress or compile notice on stderr (also none with --json)")
    s.set_defaults(func=_cmd_simulate)


def _simulate_shown(label, show, *args, **kwargs):
    """:func:`simulate` with warnings on one line and, when ``show``, a compile notice (cold numba cache) and a
    progress bar named ``label`` (samples, matmul layer, time left) on stderr."""
    with one_line_warnings():
        if not show:
            return simulate(*args, **kwargs)
        b = SampleBar(label)
        with compile_notice():
            return simulate(*args, progress=b, layer_progress=b.layer, **kwargs)


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def _sci(v):
    return "inf" if v is None else f"{v:.2e}"


def _in_unit_interval(value, text, name):
    if value is not None and not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {text!r}")
    return value


def _policy_options(args) -> dict:
    """The scheduler keywords of :func:`accsim.network.simulate` from the options, each
    checked (a ``ValueError`` naming the option)."""
    tau = parse_float(args.tau, "--tau")
    fraction = _in_unit_interval(parse_float(args.fraction, "--fraction"), args.fraction,
                                 "--fraction")
    try:
        check_policy(args.policy, tau, fraction, args.estimator)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None
    calibration = parse_positive_int(args.calibration, "--calibration")
    quantile = _in_unit_interval(parse_float(args.quantile, "--quantile"), args.quantile,
                                 "--quantile")
    out = {"policy": args.policy, "tau": tau, "fraction": fraction,
           "estimator": args.estimator, "ladder": args.ladder, "calibration": calibration}
    if quantile is not None:
        out["quantile"] = quantile
    return out


def _cmd_simulate(args):
    limit = parse_positive_int(args.limit, "--limit")
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    options = _policy_options(args)
    trace = resolve_trace(args.trace)
    acc = resolve_accelerator(args.accelerator, args.narrow, args.wide)
    show = show_progress(args.quiet, args.json)
    try:
        narrow = _simulate_shown("narrow", show, trace, acc, limit=limit, seed=args.seed,
                                 **options)
    except ValueError as exc:
        if str(exc).startswith(("ladder:", "calibration:", "quantile:", "fraction:",
                                "tau:")):
            raise ValueError(f"--{exc}") from None
        raise
    wide = None
    if not args.narrow_only:
        wide = _wide_run(trace, acc, narrow, limit, args.seed, show)
    if args.json:
        d = narrow.to_dict()
        est = args.estimator if args.policy in ("condition", "multi-level") else "none"
        d.update(_priced(acc, args.technology, narrow, est))
        if wide is not None:
            d["wide_run"] = wide.to_dict()
        print(json.dumps(d))
        return 0
    _print_table(trace, acc, narrow, wide)
    return 0


def _wide_run(trace, acc, narrow, limit, seed, show):
    """The same samples again with the narrow accumulator replaced by the top of the
    narrow run's ladder (the wide accumulator when it had none), in its rounding."""
    top = narrow.ladder_formats[-1] if narrow.ladder_formats else acc.wide
    wide_acc = dataclasses.replace(acc, narrow=top, narrow_rounding=acc.wide_rounding)
    if narrow.ladder and ":" in narrow.ladder[-1]:
        wide_acc = dataclasses.replace(wide_acc,
                                       narrow_rounding=narrow.ladder[-1].split(":")[-1])
    if narrow.calibration:          # static: the same evaluation samples
        X = np.asarray(trace.inputs)[:limit]
        lab = None if trace.labels is None else np.asarray(trace.labels)[:limit]
        c = narrow.calibration
        trace = dataclasses.replace(trace, inputs=X[c:], labels=None if lab is None else lab[c:])
        limit = None
    return _simulate_shown("wide", show, trace, wide_acc, limit=limit, seed=seed)


def _priced(acc, technology, result, estimator="none"):
    """Energy, area and cycles of the run (every output on the narrow datapath, the
    policy's re-issued outputs again on the wide one, the estimator's actions), against
    the all-wide baseline (:func:`accsim.hardware.cost.price_simulation`)."""
    out = price_simulation(acc, technology, result, estimator)
    out.pop("layers")
    out["technology"] = technology
    return out


def _print_table(trace, acc, narrow, wide):
    print(f"trace {trace.name}: {narrow.n_samples} samples; accelerator {acc.name} "
          f"(operands {narrow.input_format} x {narrow.weight_format}, {acc.structure}, "
          f"narrow {narrow.narrow}, wide {narrow.wide})")
    runs = [("narrow", narrow)] + ([("wide", wide)] if wide is not None else [])
    _print_layers(runs)
    print(f"policy {narrow.policy}: re-issued {100 * narrow.recomputed_fraction:.2f}% of "
          f"the outputs; bound violations {narrow.bound_violations}")
    if narrow.policy in ("multi-level", "static"):
        print("rungs: " + ", ".join(f"{lv['format']} {100 * lv['fraction']:.2f}%"
                                    for lv in narrow.levels))
    if narrow.calibration:
        print(f"static: calibrated on the first {narrow.calibration} samples (not "
              f"evaluated), quantile {narrow.quantile}")
    print()
    print(f"{'':<22} {'accuracy':>9} {'agreement':>9} {'seconds':>8}   (agreement: argmax "
          f"equal to the float64 reference's)")
    ref = narrow.reference_accuracy
    print(f"{'float64 reference':<22} {_pct(ref):>9} {'100.00%':>9} "
          f"{narrow.reference_seconds:>8.2f}")
    for tag, res in runs:
        label = f"{tag} acc {res.narrow}"
        print(f"{label[:22]:<22} {_pct(res.accuracy):>9} {_pct(res.agreement):>9} "
              f"{res.seconds:>8.2f}")
    if narrow.recorded_reference_accuracy is not None:
        print(f"(recorded float64 accuracy of the full test split: "
              f"{_pct(narrow.recorded_reference_accuracy)})")


def _print_layers(runs):
    """The per-layer table: relative errors and events of each run's matmul layers."""
    head = (f"{'layer':<14} {'kind':<7} {'K':>6} {'accumulator':<17} {'mean rel':>9} "
            f"{'p50':>9} {'p99':>9} {'max rel':>9} {'overflows':>9} {'inexact':>10}")
    print(head)
    print("-" * len(head))
    for tag, res in runs:
        fmt = f"{tag} {res.narrow}"
        for lr in res.layers:
            d = lr.to_dict()
            print(f"{lr.name[:14]:<14} {lr.kind:<7} {lr.K:>6} {fmt[:17]:<17} "
                  f"{_sci(d['rel_error_mean']):>9} {_sci(d['rel_error_p50']):>9} "
                  f"{_sci(d['rel_error_p99']):>9} {_sci(d['rel_error_max']):>9} "
                  f"{lr.events['overflows']:>9} {lr.events['inexact']:>10}")
