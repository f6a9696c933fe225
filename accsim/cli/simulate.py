"""``accsim simulate TRACE``: run a network on an accelerator, narrow next to wide."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from ..hardware.cost import load_technology, price_simulation
from ..network.simulation import resolve_accelerator, resolve_trace, save_outputs, simulate
from ..precision.scheduler import (ESTIMATORS, OUTPUT_LAYER_MODES, OVERFLOW_RULES,
                                   check_policy, check_schedule_options, uses_estimator)
from .cost import cost_summary_lines
from .common import (DEFAULT_TECHNOLOGY, SampleBar, add_accelerator_option, check_out_file,
                     compile_notice, one_line_warnings, parse_float, parse_positive_int,
                     show_progress, write_csv)


def register(subparsers):
    s = subparsers.add_parser(
        "simulate", help="run a network trace on an accelerator: narrow vs wide vs float64",
        description="Run every matrix product of TRACE through the accelerator's narrow "
                    "accumulator, then again with the narrow accumulator replaced by the "
                    "wide one, next to the float64 reference.")
    s.add_argument("trace", metavar="TRACE",
                   help="a trace folder or a bundled trace name (e.g. mnist-mlp-relu)")
    add_accelerator_option(s)
    s.add_argument("--narrow", metavar="FORMAT", default=None,
                   help="replace the accelerator's narrow accumulator format")
    s.add_argument("--wide", metavar="FORMAT", default=None,
                   help="replace the accelerator's wide accumulator format")
    s.add_argument("--limit", metavar="N", default=None,
                   help="simulate only the first N samples")
    s.add_argument("--seed", type=int, default=0, help="stochastic-rounding seed")
    s.add_argument("--policy", default="uniform-narrow",
                   help="scheduler policy re-issuing components to the wide accumulator: "
                        "uniform-narrow (default), uniform-wide, condition, absolute, "
                        "random, oracle, overflow, multi-level, static")
    s.add_argument("--tau", metavar="T", default=None,
                   help="condition threshold, a number >= 0 (0: re-issue everything, inf: "
                        "nothing): re-issue where u*kappa_i*kappa_phi > T (random / "
                        "oracle: match condition's count at this T; absolute: predicted "
                        "error of the activation output over the row's mean activation "
                        "magnitude > T); not with --fraction")
    s.add_argument("--fraction", metavar="F", default=None,
                   help="re-issue budget as a fraction of the outputs in [0, 1] (random, "
                        "oracle, condition, absolute: top-F scores; static: top-F neurons)")
    s.add_argument("--estimator", default=None, choices=ESTIMATORS,
                   help="kappa_i estimator of condition, multi-level, and random / oracle "
                        "at a --tau (default exact)")
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
    s.add_argument("--output-layer", default=None, choices=OUTPUT_LAYER_MODES,
                   help="the layer feeding the network output (condition, absolute, random, "
                        "oracle): wide (all of it on the wide accumulator; default of "
                        "absolute), rows (whole rows by top-2 margin; absolute, random) or "
                        "components (like any layer; default of the others)")
    s.add_argument("--overflow-rule", default=None, choices=OVERFLOW_RULES,
                   help="integer / fixed-point narrow registers: re-issue what overflowed "
                        "or saturated (flag, default) or what the worst-case bound says "
                        "could (bound)")
    s.add_argument("--narrow-only", action="store_true",
                   help="skip the second run with the wide accumulator")
    s.add_argument("--technology", "-t", default=DEFAULT_TECHNOLOGY,
                   help=f"technology table pricing the run (default {DEFAULT_TECHNOLOGY})")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.add_argument("--csv", metavar="FILE", default=None,
                   help="also write one CSV row per layer and run (relative errors, "
                        "events, re-issued fraction)")
    s.add_argument("--save-outputs", metavar="FILE.npz", default=None,
                   help="write the network outputs (float64, samples first): outputs "
                        "(narrow / policy run), wide_outputs (unless --narrow-only), "
                        "reference_outputs (float64 reference)")
    s.add_argument("--save-tensors", action="store_true",
                   help="with --save-outputs: also every node's output tensor by name "
                        "(tensor/NAME, wide_tensor/NAME, reference_tensor/NAME)")
    s.add_argument("--dynamic-range", choices=("sample", "batch"), default=None,
                   help="quantized models with DynamicQuantizeLinear: ranges per sample "
                        "(default, a batch-1 deployment) or over all samples (one batch)")
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
        check_policy(args.policy, tau, fraction, args.estimator or "exact")
        check_schedule_options(args.policy, args.output_layer, args.overflow_rule)
    except ValueError as exc:
        raise ValueError(_option_named(exc)) from None
    if args.estimator is not None and not uses_estimator(args.policy, tau, fraction):
        raise ValueError(f"--estimator: the {args.policy!r} policy"
                         f"{' with --fraction' if fraction is not None else ''} computes "
                         f"no kappa estimate (condition, multi-level, and random / oracle "
                         f"at a --tau do)")
    calibration = parse_positive_int(args.calibration, "--calibration")
    quantile = _in_unit_interval(parse_float(args.quantile, "--quantile"), args.quantile,
                                 "--quantile")
    return {"policy": args.policy, "tau": tau, "fraction": fraction,
            "estimator": args.estimator or "exact", "ladder": args.ladder,
            "calibration": calibration, "quantile": quantile,
            "output_layer": args.output_layer, "overflow_rule": args.overflow_rule}


def _cmd_simulate(args):
    limit = parse_positive_int(args.limit, "--limit")
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    options = _policy_options(args)
    try:
        load_technology(args.technology)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None
    if args.csv is not None:
        check_out_file(args.csv, "--csv")
    if args.save_outputs is not None:
        check_out_file(args.save_outputs, "--save-outputs")
    elif args.save_tensors:
        raise ValueError("--save-tensors: needs --save-outputs FILE.npz")
    keep = bool(args.save_tensors)
    trace = resolve_trace(args.trace)
    acc = resolve_accelerator(args.accelerator, args.narrow, args.wide)
    show = show_progress(args.quiet, args.json)
    try:
        narrow = _simulate_shown("narrow", show, trace, acc, limit=limit, seed=args.seed,
                                 keep_tensors=keep, dynamic_range=args.dynamic_range,
                                 **options)
    except ValueError as exc:
        if str(exc).startswith(("ladder:", "calibration:", "quantile:", "fraction:",
                                "tau:", "output_layer:", "overflow_rule:", "narrow:",
                                "policy:", "dynamic_range:")):
            raise ValueError(_option_named(exc)) from None
        raise
    wide = None
    if not args.narrow_only:
        wide = _wide_run(trace, acc, narrow, limit, args.seed, show, keep,
                         args.dynamic_range)
    priced = _priced(acc, args.technology, narrow)
    runs = [(_run_label(narrow), narrow)] + ([(f"wide {wide.narrow}", wide)] if wide else [])
    if args.csv is not None:
        write_csv(args.csv, _CSV_HEADER, [row for tag, res in runs
                                          for row in _csv_rows(tag, res)])
    if args.save_outputs is not None:
        save_outputs(args.save_outputs, narrow, wide, tensors=keep)
    if args.json:
        d = narrow.to_dict()
        d.update(priced)
        if wide is not None:
            d["wide_run"] = wide.to_dict()
        print(json.dumps(d))
        return 0
    _print_table(trace, acc, runs, priced)
    return 0


def _option_named(exc):
    """``NAME: message`` of a keyword's error as ``--OPTION-NAME: message``."""
    name, _, rest = str(exc).partition(":")
    return f"--{name.replace('_', '-')}:{rest}"


def _wide_run(trace, acc, narrow, limit, seed, show, keep=False, dynamic_range=None):
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
    return _simulate_shown("wide", show, trace, wide_acc, limit=limit, seed=seed,
                           keep_tensors=keep, dynamic_range=dynamic_range)


def _priced(acc, technology, result):
    """Energy, area and cycles of the run (every output on the narrow datapath, the
    policy's re-issued outputs again on the wide one, the estimator's actions), against
    the all-wide baseline (:func:`accsim.hardware.cost.price_simulation`: the estimator
    priced is the policy's own, or the accelerator's ``pricing.estimator``)."""
    out = price_simulation(acc, technology, result)
    out.pop("layers")
    out["technology"] = technology
    return out


def _run_label(res):
    """What the policy run is called in the tables: ``narrow acc FMT`` when nothing is
    re-issued by design (uniform-narrow), ``uniform-wide FMT``, else the policy and its
    ladder's formats (``condition fp16+fp32``)."""
    if res.policy == "uniform-narrow":
        return f"narrow acc {res.narrow}"
    if res.policy == "uniform-wide":
        return f"uniform-wide {res.wide}"
    fmts = [lab.split(":")[0] for lab in (res.ladder or [res.narrow, res.wide])]
    return f"{res.policy} {'+'.join(fmts)}"


def _budget(res):
    """``tau 0.01``, ``fraction 0.2`` or empty, with the estimator where one is used."""
    parts = []
    if res.tau is not None:
        parts.append(f"tau {res.tau:g}")
    if res.fraction is not None:
        parts.append(f"fraction {res.fraction:g}")
    if parts and res.estimator not in (None, "none") and uses_estimator(
            res.policy, res.tau, res.fraction):
        parts.append(f"estimator {res.estimator}")
    return f" ({', '.join(parts)})" if parts else ""


def _print_table(trace, acc, runs, priced):
    narrow = runs[0][1]
    print(f"trace {trace.name}: {narrow.n_samples} samples; accelerator {acc.name} "
          f"(operands {narrow.input_format} x {narrow.weight_format}, {acc.structure}, "
          f"narrow {narrow.narrow}, wide {narrow.wide})")
    _print_layers(runs)
    _print_registers(runs)
    _print_nonfinite(runs)
    print(f"policy {narrow.policy}{_budget(narrow)}: re-issued "
          f"{100 * narrow.recomputed_fraction:.2f}% of the outputs; {_bound_text(narrow)}")
    if narrow.stagnation:
        print(narrow.stagnation["note"])
    if narrow.policy in ("multi-level", "static"):
        print("rungs: " + ", ".join(f"{lv['format']} {100 * lv['fraction']:.2f}%"
                                    for lv in narrow.levels))
    if narrow.calibration:
        print(f"static: calibrated on the first {narrow.calibration} samples (not "
              f"evaluated), quantile {narrow.quantile}")
    for line in cost_summary_lines(priced):
        print(line)
    print()
    print(f"{'':<26} {'accuracy':>9} {'agreement':>9} {'seconds':>8}   (agreement: argmax "
          f"equal to the float64 reference's)")
    ref = narrow.reference_accuracy
    exact = "exact int (onnxruntime)" if narrow.input_format == "model" else \
        "float64 reference"
    print(f"{exact:<26} {_pct(ref):>9} {'100.00%':>9} "
          f"{narrow.reference_seconds:>8.2f}")
    for tag, res in runs:
        label = tag.replace("wide ", "wide acc ", 1) if res is not narrow else tag
        print(f"{label[:26]:<26} {_pct(res.accuracy):>9} {_pct(res.agreement):>9} "
              f"{res.seconds:>8.2f}")
    if narrow.recorded_reference_accuracy is not None:
        print(f"(recorded float64 accuracy of the full test split: "
              f"{_pct(narrow.recorded_reference_accuracy)})")
    _print_metrics(runs)


def _bound_text(res):
    """``bound violations N``, with the share of outputs whose bound is infinite."""
    text = f"bound violations {res.bound_violations}"
    tot = sum(lr.outputs for lr in res.layers)
    if res.bound_not_applicable and tot:
        text += f" (bound not applicable to {100 * res.bound_not_applicable / tot:.2f}% " \
                f"of the outputs)"
    return text


def _ci(v):
    return "" if v is None else f" [{100 * v[0]:.1f}, {100 * v[1]:.1f}]"


def _print_metrics(runs):
    """Agreement and accuracy with their 95 % Wilson intervals, the normwise output error
    and each layer's accumulation-only error, per run."""
    print("95% Wilson intervals; normwise error: mean ||y - y_ref|| / ||y_ref|| of the "
          "output; accumulation-only error: ||Z_hat - Z||_F / ||Z||_F per layer against "
          "the exact product of the same quantized operands")
    for tag, res in runs:
        nw = res.normwise_error
        acc = "" if res.accuracy is None else \
            f", accuracy {_pct(res.accuracy)}{_ci(res.accuracy_ci95)}"
        layers = ", ".join(f"{lr.name} {lr.accumulation_error:.3g}" for lr in res.layers
                           if lr.accumulation_error is not None)
        print(f"  {tag}: agreement {_pct(res.agreement)}{_ci(res.agreement_ci95)}"
              f"{acc}, normwise error {_sci(nw)}"
              + (f"; accumulation-only error {layers}" if layers else ""))


def _print_layers(runs):
    """The per-layer table: relative errors, events and re-issued fraction of each run's
    matmul layers (the name column as wide as the longest node name: imported models'
    node names are paths such as ``/enc/layers.0/self_attn/MatMul``)."""
    w = max([14] + [len(lr.name) for _, res in runs for lr in res.layers])
    kw = max([7] + [len(lr.kind) for _, res in runs for lr in res.layers])
    head = (f"{'layer':<{w}} {'kind':<{kw}} {'K':>6} {'run':<26} {'mean rel':>9} "
            f"{'p50':>9} {'p99':>9} {'max rel':>9} {'overflows':>9} {'inexact':>10} "
            f"{'re-issued':>9}")
    print(head)
    print("-" * len(head))
    for i, (tag, res) in enumerate(runs):
        for lr in res.layers:
            d = lr.to_dict()
            reissued = _pct(lr.recomputed_fraction) if i == 0 else "-"
            print(f"{lr.name:<{w}} {lr.kind:<{kw}} {lr.K:>6} {tag[:26]:<26} "
                  f"{_sci(d['rel_error_mean']):>9} {_sci(d['rel_error_p50']):>9} "
                  f"{_sci(d['rel_error_p99']):>9} {_sci(d['rel_error_max']):>9} "
                  f"{lr.events['overflows']:>9} {lr.events['inexact']:>10} {reissued:>9}")


def _print_registers(runs):
    """A quantized model's integer layers: per run the register's events and output
    mismatches, and per layer the narrowest register that never overflowed on the data
    (observed) and that cannot overflow (worst-case bound sum|w||x|)."""
    if not any(lr.register for _, res in runs for lr in res.layers):
        return
    print()
    head = (f"{'layer':<16} {'run':<22} {'overflows':>9} {'saturated':>9} "
            f"{'acc diff':>9} {'out diff':>9} {'max|psum|':>10} {'bits seen':>9} "
            f"{'bits bound':>10}")
    print(head)
    print("-" * len(head))
    for tag, res in runs:
        for lr in res.layers:
            g = lr.register
            if not g:
                continue
            big = max(g["max_partial_sum"], -g["min_partial_sum"])
            print(f"{lr.name[:16]:<16} {tag[:22]:<22} {lr.events['overflows']:>9} "
                  f"{lr.events['saturations']:>9} {g['accumulator_mismatches']:>9} "
                  f"{g['output_mismatches']:>9} {big:>10} "
                  f"{g['min_register_bits_observed']:>9} {g['min_register_bits_bound']:>10}")
    print("(acc diff: accumulators differing from the exact sum; out diff: requantized "
          "outputs differing from onnxruntime's; bits seen: narrowest register holding "
          "every partial sum on the data; bits bound: narrowest holding x_max*sum|w|+|b|)")


def _print_nonfinite(runs):
    """One line per product node and run whose outputs went NaN / inf (an overflow) or
    whose operands had NaN / inf mapped by an integer operand format."""
    for tag, res in runs:
        for lr in res.layers:
            if lr.nan or lr.inf or lr.operand_nan or lr.operand_inf:
                print(f"node {lr.name} ({tag}): {lr.nan} NaN and {lr.inf} inf outputs of "
                      f"{lr.outputs}; operands: {lr.operand_nan} NaN mapped to 0, "
                      f"{lr.operand_inf} inf saturated")


#: columns of ``--csv`` (one row per matmul layer and run; rel_error_*: relative errors
#: against the float64 reference, dimensionless; seconds: wall-clock time of the layer)
_CSV_HEADER = ("run", "policy", "tau", "fraction", "estimator", "accumulator", "layer",
               "kind", "K", "outputs", "recomputed_fraction", "rel_error_mean",
               "rel_error_p50", "rel_error_p90", "rel_error_p99", "rel_error_max",
               "overflows", "saturations", "inexact", "bound_violations", "seconds")


def _csv_rows(tag, res):
    """The ``--csv`` rows of one run (``tag``: its label in the text table)."""
    for lr in res.layers:
        d = lr.to_dict()
        est = res.estimator if uses_estimator(res.policy, res.tau, res.fraction) else None
        yield (tag, res.policy, res.tau, res.fraction, est, res.narrow, lr.name,
               lr.kind, lr.K, d["outputs"], d["recomputed_fraction"], d["rel_error_mean"],
               d["rel_error_p50"], d["rel_error_p90"], d["rel_error_p99"],
               d["rel_error_max"], lr.events["overflows"], lr.events["saturations"],
               lr.events["inexact"], d["bound_violations"], d["seconds"])
