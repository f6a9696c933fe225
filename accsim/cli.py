"""Command-line interface: ``accsim SUBCOMMAND ...``. Thin: parses, calls the API, prints.

Every user error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
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
    from .config import list_formats, load_format
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
    from .config import load_format
    from .rounding import quantize
    fmt = load_format(args.format)
    vals = [_parse_number(v) for v in args.values]
    out = quantize(vals, fmt, args.rounding, seed=args.seed, sr_bits=args.sr_bits)
    for v in out:
        print(_fmt_value(float(v)) if not args.hex else float(v).hex())
    return 0


def _cmd_accelerators(args):
    from .accelerator import list_accelerators, load_accelerator
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


def build_parser():
    p = _Parser(prog="accsim", description="Bit-accurate simulation of hardware accumulators.")
    from . import __version__
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

    a = sub.add_parser("accelerators", help="list or show accelerator models")
    a.add_argument("action", choices=["list", "show"])
    a.add_argument("name", nargs="?")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_cmd_accelerators)
    return p


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
