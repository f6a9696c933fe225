"""``accsim simulate TRACE``: run a network on an accelerator, narrow next to wide.

Loaded by :mod:`accsim.cli` through ``register(subparsers, UsageError)``.
"""

from __future__ import annotations

import json
import math
import sys
import time


def register(subparsers, usage_error):
    s = subparsers.add_parser(
        "simulate", help="run a network trace on an accelerator: narrow vs wide vs float64",
        description="Run every matrix product of TRACE through the accelerator's narrow "
                    "accumulator, then again with the narrow accumulator replaced by the "
                    "wide one, next to the float64 reference.")
    s.add_argument("trace", metavar="TRACE",
                   help="a trace folder or a bundled trace name (e.g. mnist-mlp-relu)")
    s.add_argument("--accelerator", "-a", default="fp16-fp16acc",
                   help="built-in accelerator name or YAML path (default fp16-fp16acc)")
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
    s.add_argument("--technology", "-t", default="horowitz-45nm",
                   help="technology table pricing the run (default horowitz-45nm)")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.set_defaults(func=lambda args: _cmd_simulate(args, usage_error))


def _parse_limit(text):
    if text is None:
        return None
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"--limit: expected a positive integer, got {text!r}") from None
    if v < 1:
        raise ValueError(f"--limit: expected a positive integer, got {text!r}")
    return v


class _Bar:
    """A one-line progress bar on stderr (only used when stderr is a terminal)."""

    def __init__(self, label):
        self.label = label
        self.t0 = time.perf_counter()

    def __call__(self, done, total):
        width = 30
        k = int(width * done / total) if total else width
        dt = time.perf_counter() - self.t0
        sys.stderr.write(f"\r{self.label:<7} [{'#' * k}{'.' * (width - k)}] "
                         f"{done}/{total} {dt:5.1f} s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def _sci(v):
    return "inf" if v is None else f"{v:.2e}"


def _cmd_simulate(args, usage_error):
    import dataclasses

    from ..network.simulation import resolve_accelerator, resolve_trace, simulate
    limit = _parse_limit(args.limit)
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    tau = _parse_float(args.tau, "--tau")
    fraction = _parse_float(args.fraction, "--fraction")
    if fraction is not None and not 0 <= fraction <= 1:
        raise ValueError(f"--fraction: expected a number in [0, 1], got {args.fraction!r}")
    from ..precision.scheduler import check_policy
    try:
        check_policy(args.policy, tau, fraction, args.estimator)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None
    calibration = None
    if args.calibration is not None:
        try:
            calibration = int(args.calibration)
        except ValueError:
            calibration = 0
        if calibration < 1:
            raise ValueError(f"--calibration: expected a positive integer, got "
                             f"{args.calibration!r}")
    quantile = _parse_float(args.quantile, "--quantile")
    if quantile is not None and not 0 <= quantile <= 1:
        raise ValueError(f"--quantile: expected a number in [0, 1], got {args.quantile!r}")
    extra = {"ladder": args.ladder, "calibration": calibration}
    if quantile is not None:
        extra["quantile"] = quantile
    trace = resolve_trace(args.trace)
    acc = resolve_accelerator(args.accelerator, args.narrow, args.wide)
    tty = sys.stderr.isatty()
    try:
        narrow = simulate(trace, acc, limit=limit, seed=args.seed,
                          progress=_Bar("narrow") if tty else None, policy=args.policy,
                          tau=tau, fraction=fraction, estimator=args.estimator, **extra)
    except ValueError as exc:
        if str(exc).startswith(("ladder:", "calibration:", "quantile:", "fraction:",
                                "tau:")):
            raise ValueError(f"--{exc}") from None
        raise
    wide = None
    if not args.narrow_only:
        top = narrow.ladder_formats[-1] if narrow.ladder_formats else acc.wide
        wide_acc = dataclasses.replace(acc, narrow=top, narrow_rounding=acc.wide_rounding)
        if narrow.ladder and ":" in narrow.ladder[-1]:
            wide_acc = dataclasses.replace(wide_acc,
                                           narrow_rounding=narrow.ladder[-1].split(":")[-1])
        wtrace, wlimit = trace, limit
        if narrow.calibration:          # static: the same evaluation samples
            import numpy as np
            X = np.asarray(trace.inputs)[:limit]
            lab = None if trace.labels is None else np.asarray(trace.labels)[:limit]
            c = narrow.calibration
            wtrace = dataclasses.replace(trace, inputs=X[c:],
                                         labels=None if lab is None else lab[c:])
            wlimit = None
        wide = simulate(wtrace, wide_acc, limit=wlimit, seed=args.seed,
                        progress=_Bar("wide") if tty else None)
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


def _parse_float(text, name):
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {text!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name}: expected a number, got {text!r}")
    return v


def _priced(acc, technology, result, estimator="none"):
    """Energy, area and cycles of the run (every output on the narrow datapath, the
    policy's re-issued outputs again on the wide one, the estimator's actions), against
    the all-wide baseline (:func:`accsim.cost.price_simulation`)."""
    from ..hardware.cost import price_simulation
    out = price_simulation(acc, technology, result, estimator)
    out.pop("layers")
    out["technology"] = technology
    return out


def _print_table(trace, acc, narrow, wide):
    print(f"trace {trace.name}: {narrow.n_samples} samples; accelerator {acc.name} "
          f"(operands {narrow.input_format} x {narrow.weight_format}, {acc.structure}, "
          f"narrow {narrow.narrow}, wide {narrow.wide})")
    runs = [("narrow", narrow)] + ([("wide", wide)] if wide is not None else [])
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
