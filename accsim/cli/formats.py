"""``accsim formats list|show NAME``: the number formats (built-in names, specs, YAML)."""

from __future__ import annotations

from ..numerics.config import list_formats, load_format
from .common import format_value, list_or_show


def register(subparsers):
    f = subparsers.add_parser("formats", help="list or show number formats")
    f.add_argument("action", choices=["list", "show"])
    f.add_argument("name", nargs="?", help="built-in name, YAML path or spec (e5m7, int12)")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=_cmd_formats)


def _cmd_formats(args):
    return list_or_show(args, list_formats, lambda name: load_format(name).describe(),
                        "show: expected a format name or path", _print_table)


def _print_table(d):
    """``key  value`` lines, the values aligned."""
    width = max(len(k) for k in d)
    for k, v in d.items():
        print(f"{k:<{width}}  {format_value(v) if v is not None else '-'}")
