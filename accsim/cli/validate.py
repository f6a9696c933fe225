"""``accsim validate FILE...``: check YAML files of any kind without running anything."""

from __future__ import annotations

import difflib
from pathlib import Path

from ..experiments.spec import load_spec
from ..hardware.accelerator import load_accelerator
from ..hardware.technology import load_technology
from ..network.trace import load_trace
from ..numerics.config import load_format, read_yaml
from .common import print_error

#: ``kind:`` of each accsim YAML document -> (loader of a path, what it is called)
LOADERS = {
    "number_format": (load_format, "number format"),
    "accelerator": (load_accelerator, "accelerator"),
    "technology": (load_technology, "technology table"),
    "trace": (load_trace, "trace"),
    "sweep": (load_spec, "sweep spec"),
}


def register(subparsers):
    v = subparsers.add_parser(
        "validate", help="check YAML files of any kind (format, accelerator, technology, "
                         "trace, sweep spec)",
        description="Read each FILE's 'kind:' and check it with the loader of that kind "
                    "(every key, every name it refers to); one line per file. A trace "
                    "may be given as its folder. Exit 2 when any file is invalid.")
    v.add_argument("files", nargs="+", metavar="FILE", help="YAML file (or trace folder)")
    v.set_defaults(func=_cmd_validate)


def validate(path) -> str:
    """One line describing the valid file ``path`` (``FILE: ok: accelerator NAME``); a
    one-line ``ValueError`` naming the file and key otherwise."""
    p = Path(path)
    yml = p / "trace.yaml" if p.is_dir() else p
    kind = read_yaml(yml).get("kind")
    if kind not in LOADERS:
        close = difflib.get_close_matches(str(kind), list(LOADERS), 1, 0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"{yml}: key 'kind': expected one of {', '.join(LOADERS)} "
                         f"({hint}got {kind!r})")
    loader, what = LOADERS[kind]
    value = loader(p if kind == "trace" else yml)
    name = getattr(value, "name", None) or getattr(value, "label", None)
    if kind == "sweep":
        name = f"{len(value.points)} points"
    return f"{path}: ok: {what} {name}"


def _cmd_validate(args):
    rc = 0
    for f in args.files:
        try:
            print(validate(f))
        except ValueError as exc:
            print_error(str(exc).splitlines()[0])
            rc = 2
    return rc
