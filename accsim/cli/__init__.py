"""Command-line interface: ``accsim SUBCOMMAND ...``. Thin: parses, calls the API, prints.

Every user error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _fmt_value(v):
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v == 0.0:
            return "-0" if math.copysign(1.0, v) < 0 else "0"
        if v.is_integer() and abs(v) < 2**63:
            return str(int(v))
        return repr(v)
    return str(v)


def _cmd_formats(args):
    from ..numerics.config import list_formats, load_format
    if args.action == "list":
        for name in list_formats():
            print(name)
        return 0
    if not args.name:
        raise _UsageError("accsim formats show: expected a format name or path")
    fmt = load_format(args.name)
    d = fmt.describe()
    if args.json:
        print(json.dumps(d))
    else:
        width = max(len(k) for k in d)
        for k, v in d.items():
            print(f"{k:<{width}}  {_fmt_value(v) if v is not None else '-'}")
    return 0


def _parse_number(text):
    t = text.strip().lower()
    try:
        if t.startswith(("0x", "-0x", "+0x")) and "p" in t:
            return float.fromhex(t)
        return float(t)
    except ValueError:
        raise _UsageError(f"accsim quantize: VALUE {text!r} is not a number") from None


def _cmd_quantize(args):
    from ..numerics.config import load_format
    from ..numerics.rounding import quantize
    fmt = load_format(args.format)
    vals = [_parse_number(v) for v in args.values]
    out = quantize(vals, fmt, args.rounding, seed=args.seed, sr_bits=args.sr_bits)
    for v in out:
        print(_fmt_value(float(v)) if not args.hex else float(v).hex())
    return 0


def _cmd_accelerators(args):
    from ..hardware.accelerator import list_accelerators, load_accelerator
    if args.action == "list":
        for name in list_accelerators():
            print(name)
        return 0
    if not args.name:
        raise _UsageError("accsim accelerators show: expected an accelerator name or path")
    acc = load_accelerator(args.name)
    d = acc.describe()
    if args.json:
        print(json.dumps(d))
    else:
        _print_tree(d)
    return 0


def _print_tree(d, indent=0):
    for k, v in d.items():
        if isinstance(v, dict):
            print(" " * indent + f"{k}:")
            _print_tree(v, indent + 2)
        else:
            print(" " * indent + f"{k}: {_fmt_value(v) if v is not None else '-'}")


def _random_operands(fmt, shape, rng):
    """Random operands representable in ``fmt``: normal draws (uniform integers for
    integer formats) quantized with rne."""
    import numpy as np
    from ..numerics.formats import FloatFormat
    from ..numerics.rounding import quantize
    if isinstance(fmt, FloatFormat):
        x = rng.standard_normal(shape) * min(1.0, fmt.max_finite / 8)
        return quantize(x, fmt)
    lo, hi = max(fmt.min_int, -(1 << 20)), min(fmt.max_int, 1 << 20)
    return np.ldexp(rng.integers(lo, hi + 1, size=shape).astype(float), -fmt.frac_bits)


def _cmd_matmul(args):
    """Random GEMM on an accelerator's narrow and wide datapaths vs float64."""
    import time
    import numpy as np
    from ..hardware.accelerator import load_accelerator
    for nm in ("m", "k", "n"):
        if getattr(args, nm) < 1:
            raise _UsageError(f"accsim matmul: --{nm} must be a positive integer")
    acc = load_accelerator(args.accelerator)
    rng = np.random.default_rng(args.seed)
    a = _random_operands(acc.input, (args.m, args.k), rng)
    b = _random_operands(acc.weight, (args.k, args.n), rng)
    ref = a @ b
    rows = []
    for which in ("narrow", "wide"):
        t0 = time.perf_counter()
        res = acc.matmul(a, b, which=which, seed=args.seed)
        dt = time.perf_counter() - t0
        v = res.values
        with np.errstate(all="ignore"):
            rel = np.abs(v - ref) / np.abs(ref)
        rel = rel[np.isfinite(rel)]
        fmt = acc.narrow if which == "narrow" else acc.wide
        rows.append({
            "datapath": which, "format": fmt.name or repr(fmt),
            "mean_rel_error": float(rel.mean()) if rel.size else 0.0,
            "max_rel_error": float(rel.max()) if rel.size else 0.0,
            "events": res.events.total, "seconds": dt,
            "mac_per_s": args.m * args.k * args.n / dt if dt > 0 else None,
        })
    out = {"accelerator": acc.name, "m": args.m, "k": args.k, "n": args.n,
           "seed": args.seed, "results": rows}
    if args.json:
        print(json.dumps(out))
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


def build_parser():
    p = _Parser(prog="accsim", description="Bit-accurate simulation of hardware accumulators.")
    from .. import __version__
    p.add_argument("--version", action="version", version=f"accsim {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    f = sub.add_parser("formats", help="list or show number formats")
    f.add_argument("action", choices=["list", "show"])
    f.add_argument("name", nargs="?", help="built-in name, YAML path or spec (e5m7, int12)")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=_cmd_formats)

    q = sub.add_parser("quantize", help="round values to a format, one exact result per line")
    q.add_argument("--format", "-f", required=True)
    q.add_argument("--rounding", "-r", default="rne",
                   choices=["rne", "rna", "rz", "ru", "rd", "ro", "sr"])
    q.add_argument("--seed", type=int, default=None)
    q.add_argument("--sr-bits", type=int, default=None)
    q.add_argument("--hex", action="store_true", help="print float.hex() of each result")
    q.add_argument("values", nargs="+", metavar="VALUE")
    q.set_defaults(func=_cmd_quantize)
    # values such as -1e-9, -inf or -0x1p-3 are numbers, not options
    q._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|nan|0x)", re.IGNORECASE)

    a = sub.add_parser("accelerators", help="list or show accelerator models")
    a.add_argument("action", choices=["list", "show"])
    a.add_argument("name", nargs="?")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_cmd_accelerators)

    mm = sub.add_parser("matmul", help="random GEMM on an accelerator: narrow vs wide vs float64")
    mm.add_argument("--accelerator", "-a", default="fp16-fp16acc")
    mm.add_argument("--m", type=int, default=64)
    mm.add_argument("--k", type=int, default=512)
    mm.add_argument("--n", type=int, default=64)
    mm.add_argument("--seed", type=int, default=0)
    mm.add_argument("--json", action="store_true")
    mm.set_defaults(func=_cmd_matmul)

    # subcommands of higher layers live next to their code: each module has
    # register(subparsers, UsageError) adding its parsers with set_defaults(func=...)
    import importlib
    for modname in _SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue
        mod.register(sub, _UsageError)
    return p


_SUBCOMMAND_MODULES = ("accsim.cli.simulate", "accsim.cli.onnx", "accsim.cli.cost",
                       "accsim.cli.capi", "accsim.cli.sweep")


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return args.func(args)
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:  # ConfigError is a ValueError
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"accsim: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
