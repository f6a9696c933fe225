"""``accsim crosscheck`` and ``accsim capi build``: the C interop commands."""

from __future__ import annotations

from pathlib import Path

from ..interop.capi import build
from ..interop.cmodel import compile_c_model, crosscheck
from ..numerics.config import load_format
from ..numerics.formats import ROUNDING_MODES
from .common import UsageError

#: roundings a C model can be checked against (stochastic rounding has no single answer)
_ROUNDINGS = [m for m in ROUNDING_MODES if m != "sr"]


def register(subparsers):
    c = subparsers.add_parser("crosscheck", help="cross-check a C model against accsim's model")
    c.add_argument("--c-model", required=True, metavar="FILE", help="C source file")
    c.add_argument("--function", required=True, metavar="NAME")
    c.add_argument("--format", "-f", required=True, help="accumulator / target format")
    c.add_argument("--rounding", "-r", default="rne", choices=_ROUNDINGS)
    c.add_argument("--cases", type=int, default=2000,
                   help="number of cases: every adversarial case, then random ones up to N "
                        "(at least N/4)")
    c.add_argument("--kind", choices=["step", "round"], default="step",
                   help="step: double f(double acc, double a, double b, int *flags); "
                        "round: double f(double x, int *flags)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--ignore-flags", action="store_true",
                   help="compare values only, not the event flags")
    c.set_defaults(func=_cmd_crosscheck)

    a = subparsers.add_parser("capi", help="build the C API library (libaccsim.so + accsim.h)")
    a.add_argument("action", choices=["build"])
    a.add_argument("--out", required=True, metavar="DIR")
    a.set_defaults(func=_cmd_capi)


def _hex(v):
    return float(v).hex()


def _cmd_crosscheck(args):
    if args.cases < 1:
        raise UsageError("--cases must be a positive integer")
    path = Path(args.c_model)
    if not path.is_file():
        raise UsageError(f"--c-model {args.c_model}: file not found")
    fmt = load_format(args.format)  # before compiling: a bad format is quick to report
    model = compile_c_model(path, args.function, kind=args.kind)
    res = crosscheck(model, fmt, args.rounding, cases=args.cases, seed=args.seed,
                     check_flags=not args.ignore_flags)
    print(f"{args.function} ({args.kind}) vs accsim {fmt.label} {args.rounding}: "
          f"{res.cases} cases, {res.mismatches} mismatches"
          + (f", {res.skipped} skipped (no accsim value)" if res.skipped else ""))
    if res.first:
        f = res.first
        ins = ", ".join(f"{k}={_hex(f[k])}" for k in (("acc", "a", "b") if res.kind == "step"
                                                       else ("x",)))
        print(f"first mismatch: {ins}")
        print(f"  accsim:  {_hex(f['expected'])} ({f['expected']!r}) flags {f['expected_flags']}")
        print(f"  c-model: {_hex(f['got'])} ({f['got']!r}) flags {f['got_flags']}")
    return 1 if res.mismatches else 0


def _cmd_capi(args):
    lib, header = build(args.out)
    print(lib)
    print(header)
    return 0
