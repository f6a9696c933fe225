"""``accsim sweep SPEC --out DIR`` and ``accsim report DIR``: grids of simulations and
their summary (tables, plots, Pareto points)."""

from __future__ import annotations

import json
import signal
import sys
import time

from ..experiments.executors import PointError, check_scheduler, interrupted
from ..experiments.report import load_results, pareto_json, points_table, write_report
from ..experiments.spec import load_spec
from ..experiments.sweep import run_sweep
from .common import (Interrupts, bar, check_out_file, compile_notice, hms, one_line_warnings,
                     parse_positive_int, print_error, show_progress, write_csv)


def register(subparsers):
    s = subparsers.add_parser(
        "sweep", help="run a grid of simulations from a YAML spec (resumable)",
        description="Run every point of the sweep SPEC (kind: sweep) not yet in "
                    "DIR/results.jsonl, appending one JSON line per finished point. "
                    "Rerun the same command to resume after a crash.")
    s.add_argument("spec", metavar="SPEC", help="sweep spec YAML (see examples/)")
    s.add_argument("--out", "-o", metavar="DIR", required=True,
                   help="output folder (results.jsonl, spec.yaml)")
    s.add_argument("--scheduler", "-s", default="inprocess", metavar="S",
                   help="inprocess (default), processes (local pool), dask-local "
                        "(dask LocalCluster) or a Dask scheduler address tcp://host:port")
    s.add_argument("--workers", "-j", metavar="N", default=None,
                   help="worker processes for processes / dask-local "
                        "(default: the number of CPUs)")
    s.add_argument("--quiet", "-q", action="store_true",
                   help="no progress, compile notice or summary on stderr (errors only)")
    s.set_defaults(func=_cmd_sweep)

    r = subparsers.add_parser(
        "report", help="summarise a sweep folder: Markdown tables, PNG plots, Pareto points",
        description="Read DIR/results.jsonl and write report.md and PNG plots (agreement "
                    "and accuracy vs energy with each policy's Pareto front, re-issued "
                    "fraction vs tau, per-layer re-issued fractions).")
    r.add_argument("dir", metavar="DIR", help="a sweep output folder")
    r.add_argument("--out", "-o", metavar="DIR2", default=None,
                   help="write the report here instead of DIR")
    r.add_argument("--json", action="store_true",
                   help="print the Pareto points as one JSON object (writes no report "
                        "files)")
    r.add_argument("--csv", metavar="FILE", default=None,
                   help="also write every point as one CSV row (parameters, metrics, "
                        "Pareto membership)")
    r.set_defaults(func=_cmd_report)


class _Progress:
    """Points done / total, rate and time left: a bar on a terminal, else log lines."""

    def __init__(self, tty):
        self.tty = tty
        self.t0 = time.perf_counter()
        self.ran = 0

    def __call__(self, done, total, point, seconds):
        if point is None:           # before the first point
            self.t0 = time.perf_counter()
            if self.tty:
                self._bar(done, total, "starting")
            return
        self.ran += 1
        dt = time.perf_counter() - self.t0
        rate = self.ran / dt if dt > 0 else 0.0
        left = (total - done) / rate if rate > 0 else float("inf")
        eta = hms(left)
        if self.tty:
            self._bar(done, total, f"{rate:5.2f}/s  left {eta}")
        else:
            sys.stderr.write(f"accsim sweep: {done}/{total} {point.id} {point.label()} "
                             f"({seconds:.2f} s; {rate:.2f} points/s, {eta} left)\n")
        sys.stderr.flush()

    def _bar(self, done, total, tail):
        sys.stderr.write(f"\rsweep {bar(done, total)} {done}/{total} points  {tail}   ")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _log(msg):
    print(f"accsim sweep: {msg}", file=sys.stderr, flush=True)


def _quiet(msg):
    pass


def _cmd_sweep(args):
    workers = parse_positive_int(args.workers, "--workers")
    check_scheduler(args.scheduler)
    spec = load_spec(args.spec)
    log = _quiet if args.quiet else _log
    # a bar on a terminal, one line per point otherwise; nothing with --quiet
    progress = None if args.quiet else _Progress(show_progress())
    with Interrupts() as intr:
        try:
            with compile_notice(progress is not None), one_line_warnings():
                summary = run_sweep(spec, args.out, scheduler=args.scheduler,
                                    workers=workers, progress=progress, log=log)
        except BaseException as exc:   # after a signal, whatever the interrupted code raised
            if intr.signum is not None or interrupted(exc):
                return _interrupted(intr.signum, args.out, progress)
            if isinstance(exc, PointError):
                print_error(f"{exc} (finished points are saved; rerun to resume)")
                return 1
            raise
    log(f"done: {summary.ran} points run, {summary.skipped} already done, "
        f"{summary.seconds:.1f} s; results in {summary.results}")
    return 0


def _interrupted(signum, out, progress):
    """Exit code 130 after SIGINT / SIGTERM (``signum``; ``None``: an interrupt seen only
    as an exception), with one line saying what is kept."""
    name = signal.Signals(signum).name if signum is not None else "interrupt"
    if progress is not None and progress.tty:
        sys.stderr.write("\n")
    _log(f"stopped by {name}: every finished point is saved in {out}/results.jsonl; "
         f"rerun the same command to resume")
    return 130


def _cmd_report(args):
    if args.csv is not None:
        check_out_file(args.csv, "--csv")
    records = load_results(args.dir)
    if args.csv is not None:
        write_csv(args.csv, *points_table(records))
    if args.json:
        print(json.dumps(pareto_json(records)))
        return 0
    paths = write_report(records, args.out or args.dir, source=args.dir)
    for p in paths + ([args.csv] if args.csv is not None else []):
        print(p)
    return 0
