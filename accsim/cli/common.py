"""What every command module of :mod:`accsim.cli` shares: the usage-error type and the
parser class that raises it, one-line error printing, number parsing and printing, and
the progress bar drawn on a terminal.

Every user error is one line on stderr and exit code 2 (:func:`accsim.cli.app.main`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from ..hardware.technology import DEFAULT_TECHNOLOGY

#: accelerator of ``accsim matmul`` and ``accsim simulate`` when none is named
DEFAULT_ACCELERATOR = "fp16-fp16acc"

__all__ = ["DEFAULT_ACCELERATOR", "DEFAULT_TECHNOLOGY", "Parser", "UsageError", "bar", "format_value", "list_or_show",
           "parse_float", "parse_number", "parse_positive_int", "print_error"]


class UsageError(Exception):
    """A mistake in the command line: its message is printed as it is, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one :class:`UsageError` line (exit 2), not
    argparse's usage block."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def print_error(message: str):
    """Print ``accsim: error: MESSAGE`` on stderr."""
    print(f"accsim: error: {message}", file=sys.stderr)


def format_value(v) -> str:
    """A number as printed by the commands: floats that are integers without '.0'
    (``-0`` keeps its sign), others by ``repr`` (exact round trip); ``nan`` / ``inf``."""
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v == 0.0:
            return "-0" if math.copysign(1.0, v) < 0 else "0"
        if v.is_integer() and abs(v) < 2**63:
            return str(int(v))
        return repr(v)
    return str(v)


def parse_number(text: str, where: str) -> float:
    """A decimal or hexadecimal (``0x1.8p-3``) number; else ``UsageError`` naming
    ``where`` (e.g. ``accsim quantize: VALUE``)."""
    t = text.strip().lower()
    try:
        if t.startswith(("0x", "-0x", "+0x")) and "p" in t:
            return float.fromhex(t)
        return float(t)
    except ValueError:
        raise UsageError(f"{where} {text!r} is not a number") from None


def parse_float(text, name):
    """``None`` for ``None``, else ``float(text)``; a ``ValueError`` naming the option
    ``name`` for text that is not a number or is NaN."""
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {text!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name}: expected a number, got {text!r}")
    return v


def parse_positive_int(text, name):
    """``None`` for ``None``, else ``int(text)`` when it is at least 1; a ``ValueError``
    naming the option ``name`` otherwise."""
    if text is None:
        return None
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {text!r}")
    return v


def bar(done: int, total: int, width: int = 30) -> str:
    """``[###...]``: ``done`` of ``total`` as ``width`` characters ('#' done, '.' to do)."""
    k = int(width * done / total) if total else width
    return f"[{'#' * k}{'.' * (width - k)}]"


def list_or_show(args, names, describe, missing, print_text) -> int:
    """``list``: print ``names()``, one per line. ``show``: ``describe(args.name)`` as one
    JSON object (``--json``) or through ``print_text``; a :class:`UsageError` with
    ``missing`` when no name is given."""
    if args.action == "list":
        for name in names():
            print(name)
        return 0
    if not args.name:
        raise UsageError(missing)
    d = describe(args.name)
    if args.json:
        print(json.dumps(d))
    else:
        print_text(d)
    return 0
