"""``accsim accelerators list|show NAME``: the accelerator models (built-in names, YAML)."""

from __future__ import annotations

from ..hardware.accelerator import list_accelerators, load_accelerator
from .common import format_value, list_or_show


def register(subparsers):
    a = subparsers.add_parser("accelerators", help="list or show accelerator models")
    a.add_argument("action", choices=["list", "show"])
    a.add_argument("name", nargs="?")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_cmd_accelerators)


def _cmd_accelerators(args):
    return list_or_show(args, list_accelerators, lambda name: load_accelerator(name).describe(),
                        "show: expected an accelerator name or path",
                        _print_tree)


def _print_tree(d, indent=0):
    """``key: value`` lines, nested mappings indented by two spaces per level."""
    for k, v in d.items():
        if isinstance(v, dict):
            print(" " * indent + f"{k}:")
            _print_tree(v, indent + 2)
        else:
            print(" " * indent + f"{k}: {format_value(v) if v is not None else '-'}")
