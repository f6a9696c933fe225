"""What every command module of :mod:`accsim.cli` shares: the usage-error type and the
parser class that raises it, one-line error printing, number parsing and printing, and
the progress bar drawn on a terminal.

Every user error is one line on stderr and exit code 2 (:func:`accsim.cli.app.main`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from numba.core import event as numba_event

from ..experiments.results import write_text_atomic
from ..hardware.technology import DEFAULT_TECHNOLOGY

#: accelerator of ``accsim matmul`` and ``accsim simulate`` when none is named
DEFAULT_ACCELERATOR = "fp16-fp16acc"


def add_accelerator_option(parser):
    """``--accelerator/-a NAME|YAML`` (default :data:`DEFAULT_ACCELERATOR`) on ``parser``."""
    parser.add_argument("--accelerator", "-a", default=DEFAULT_ACCELERATOR,
                        help=f"built-in accelerator name or YAML path (default "
                             f"{DEFAULT_ACCELERATOR})")

__all__ = ["COMPILE_NOTICE", "DEFAULT_ACCELERATOR", "DEFAULT_TECHNOLOGY", "Interrupts",
           "PROGRESS_ENV", "Parser", "SampleBar", "UsageError", "add_accelerator_option",
           "bar", "check_out_file",
           "compile_notice", "format_value", "hms", "list_or_show", "one_line_warnings",
           "parse_float", "parse_number", "parse_positive_int", "print_error",
           "show_progress", "write_csv"]

#: environment variable forcing progress output on (1) or off (0) whatever stderr is
PROGRESS_ENV = "ACCSIM_PROGRESS"

#: printed once on stderr when numba starts compiling a kernel (a cold cache)
COMPILE_NOTICE = "accsim: compiling kernels (first run, about a minute; cached afterwards)"


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


# ---------------------------------------------------------------------------------------
# progress on stderr, compile notice, interrupts
# ---------------------------------------------------------------------------------------
def show_progress(quiet: bool = False, json_mode: bool = False) -> bool:
    """Whether a command draws progress on stderr: never with ``--quiet`` or ``--json``;
    else when :data:`PROGRESS_ENV` says ``1`` (on) or ``0`` (off), or when stderr is a
    terminal."""
    if quiet or json_mode:
        return False
    forced = os.environ.get(PROGRESS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty()


def hms(seconds: float) -> str:
    """``mm:ss`` or ``h:mm:ss`` of a duration in seconds (``--:--`` when not finite)."""
    if not math.isfinite(seconds):
        return "--:--"
    s = round(seconds)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _CompileListener(numba_event.Listener):
    """Prints :data:`COMPILE_NOTICE` when numba first compiles (it compiles only on a
    cache miss: a cached kernel loads without this event)."""

    def __init__(self):
        self.seen = False

    def on_start(self, ev):
        if not self.seen:
            self.seen = True
            sys.stderr.write(COMPILE_NOTICE + "\n")
            sys.stderr.flush()

    def on_end(self, ev):
        pass


@contextlib.contextmanager
def compile_notice(enabled: bool = True):
    """Within the block, print :data:`COMPILE_NOTICE` once on stderr if numba compiles a
    kernel (nothing when ``enabled`` is false or every kernel is in numba's cache)."""
    if not enabled:
        yield
        return
    with numba_event.install_listener("numba:compile", _CompileListener()):
        yield


class SampleBar:
    """A one-line progress bar on stderr: samples done / total, the matmul layer running,
    elapsed time and the time left (estimated from the samples done so far, in
    ``mm:ss``). ``bar(done, total)`` after each batch, ``bar.layer(done, total, name, k,
    n)`` before the ``k``-th of ``n`` matmul layers."""

    def __init__(self, label: str):
        self.label = label
        self.t0 = time.perf_counter()
        self.done = 0
        self.total = 0
        self.where = ""

    def __call__(self, done: int, total: int):
        self.done, self.total, self.where = done, total, ""
        self._draw(end=done >= total)

    def layer(self, done: int, total: int, name: str, k: int, n: int):
        self.done, self.total = done, total
        self.where = f"layer {k}/{n} {name[:16]}"
        self._draw()

    def _draw(self, end=False):
        dt = time.perf_counter() - self.t0
        left = dt * (self.total - self.done) / self.done if self.done else math.inf
        tail = self.where if not end else ""
        sys.stderr.write(f"\r{self.label:<7} {bar(self.done, max(self.total, 1))} "
                         f"{self.done}/{self.total or '?'} samples {dt:5.1f} s, "
                         f"left {hms(left)} {tail:<26}")
        if end:
            sys.stderr.write("\n")
        sys.stderr.flush()


class Interrupts:
    """``with Interrupts() as intr:``: SIGINT and SIGTERM raise ``KeyboardInterrupt`` in
    the main thread, once: later signals are ignored so that the cleanup (stopping
    workers, closing files) runs undisturbed. ``intr.signum``: the signal received, or
    ``None``. A ``KeyboardInterrupt`` that Python cannot raise (in a callback from C,
    such as numba's compiler's) is not reported: the caller sees ``signum`` and whatever
    exception the interrupted code raised instead. The previous handlers are put back on
    exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self.saved = {}
        self.saved_hook = None

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            raise KeyboardInterrupt

    def _unraisable(self, info):
        if self.signum is None or not issubclass(info.exc_type, KeyboardInterrupt):
            self.saved_hook(info)

    def __enter__(self):
        self.saved = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        self.saved_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc):
        for s, h in self.saved.items():
            signal.signal(s, h)
        sys.unraisablehook = self.saved_hook
        return False


@contextlib.contextmanager
def one_line_warnings():
    """Within the block, a warning prints as one line ``accsim: warning: MESSAGE``
    (not Python's two lines with the file, line and source)."""
    saved = warnings.formatwarning
    warnings.formatwarning = _one_line
    try:
        yield
    finally:
        warnings.formatwarning = saved


def _one_line(message, category, filename, lineno, line=None):
    return f"accsim: warning: {message}\n"
