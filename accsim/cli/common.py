"""What every command module of :mod:`accsim.cli` shares: the usage-error type and the
parser class that raises it, one-line error printing, number parsing and printing, and
the progress bar drawn on a terminal.

Every user error is one line on stderr and exit code 2 (:func:`accsim.cli.app.main`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from ..experiments.results import write_text_atomic
from ..hardware.technology import DEFAULT_TECHNOLOGY

#: accelerator of ``accsim matmul`` and ``accsim simulate`` when none is named
DEFAULT_ACCELERATOR = "fp16-fp16acc"

__all__ = ["DEFAULT_ACCELERATOR", "DEFAULT_TECHNOLOGY", "Parser", "UsageError", "bar",
           "check_out_file", "format_value", "list_or_show", "parse_float", "parse_number",
           "parse_positive_int", "print_error", "write_csv"]


class UsageError(Exception):
    """A mistake in the command line: printed by :func:`print_error` (the one error
    style of every command), exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one :class:`UsageError` line (exit 2), not
    argparse's usage block; the line names the command (``simulate: argument ...``)."""

    def error(self, message):
        command = self.prog.partition(" ")[2]
        raise UsageError(f"{command}: {message}" if command else message)


def print_error(message: str):
    """Print ``accsim: error: MESSAGE`` on stderr: the one style of every command's
    errors."""
    print(f"accsim: error: {message}", file=sys.stderr)


def check_out_file(path, option: str, *, force=True) -> Path:
    """The file ``path`` an option (e.g. ``--csv``) will write, checked before any work:
    its folder exists and it is not a folder; with ``force`` false, it must not exist
    either. A :class:`UsageError` naming ``option`` otherwise."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {path}: is a folder (expected a file name)")
    if not p.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {p.parent} does not exist")
    if not force and p.exists():
        raise UsageError(f"{option} {path}: exists (pass --force to overwrite it)")
    return p


def write_csv(path, header, rows):
    """Write a CSV file (one header line, then ``rows``) whole or not at all; ``None``
    is an empty cell, floats are written by ``repr`` (exact)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


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
    ``where`` (e.g. ``VALUE``)."""
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
