"""``accsim quantize --format F VALUE...``: each value rounded to a format, one exact
result per line."""

from __future__ import annotations

import re

from ..numerics.config import load_format
from ..numerics.formats import ROUNDING_MODES
from ..numerics.rounding import quantize
from .common import format_value, parse_number

# values such as -1e-9, -inf or -0x1p-3 are numbers, not options
_NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf|nan|0x)", re.IGNORECASE)


def register(subparsers):
    q = subparsers.add_parser("quantize",
                              help="round values to a format, one exact result per line")
    q.add_argument("--format", "-f", required=True)
    q.add_argument("--rounding", "-r", default="rne", choices=list(ROUNDING_MODES))
    q.add_argument("--seed", type=int, default=None)
    q.add_argument("--sr-bits", type=int, default=None)
    q.add_argument("--hex", action="store_true", help="print float.hex() of each result")
    q.add_argument("values", nargs="+", metavar="VALUE")
    q.set_defaults(func=_cmd_quantize)
    q._negative_number_matcher = _NEGATIVE_NUMBER   # argparse's hook (no public one)


def _cmd_quantize(args):
    fmt = load_format(args.format)
    vals = [parse_number(v, "VALUE") for v in args.values]
    out = quantize(vals, fmt, args.rounding, seed=args.seed, sr_bits=args.sr_bits)
    for v in out:
        print(format_value(float(v)) if not args.hex else float(v).hex())
    return 0
