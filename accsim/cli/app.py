"""The ``accsim`` parser, assembled from each command module's ``register(subparsers)``,
and :func:`main`."""

from __future__ import annotations

import threading

from .. import __version__
from . import (accelerators, advise, capi, cost, formats, matmul, onnx, quantize, simulate,
               sweep, validate)
from .common import Interrupts, Parser, UsageError, print_error

#: command modules in the order their commands are listed by ``accsim --help``
COMMAND_MODULES = (formats, quantize, accelerators, matmul, simulate, onnx, cost, capi, sweep,
                   validate, advise)


def build_parser() -> Parser:
    """The ``accsim`` argument parser with every command; each command's parser sets
    ``func(args) -> int``."""
    p = Parser(prog="accsim", description="Bit-accurate simulation of hardware accumulators.")
    p.add_argument("--version", action="version", version=f"accsim {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv=None) -> int:
    """Run ``accsim ARGV`` (default ``sys.argv[1:]``); returns the exit code: 0, 1 (a
    command's own failure, e.g. mismatches of ``crosscheck``), 2 (a user error, one line
    on stderr), 130 (interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return _run_command(args)
    except (UsageError, ValueError) as exc:  # ConfigError is a ValueError
        print_error(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:   # a file the command had to read or write
        where = f"{exc.filename}: " if exc.filename else ""
        print_error(f"{where}{exc.strerror or exc.__class__.__name__}")
        return 2


def _run_command(args) -> int:
    """``args.func(args)`` with SIGINT and SIGTERM ending it as exit code 130, whatever the
    interrupted code raised (numba's dispatcher may turn the interrupt into a
    ``SystemError``); commands with their own cleanup (``sweep``) handle them first."""
    if threading.current_thread() is not threading.main_thread():
        return args.func(args)      # signal handlers can only be set in the main thread
    with Interrupts() as intr:
        try:
            result = args.func(args)
        except BaseException:
            if intr.signum is not None:
                raise KeyboardInterrupt from None
            raise
        if intr.signum is not None:
            # the signal's KeyboardInterrupt was raised where Python could not raise it
            # (a callback from C, e.g. while a kernel thread hands back its work) and the
            # command ran on: it still ends as interrupted
            raise KeyboardInterrupt
        return result
