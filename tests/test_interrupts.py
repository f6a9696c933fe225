"""SIGINT (Ctrl-C: the whole process group) and SIGTERM (the sweep process alone) end
every sweep scheduler cleanly: exit 130, one line and no traceback on stderr, every
finished point kept as a whole line, no worker process left behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
kind: sweep
version: 1
grid:
  traces: [digits-mlp-relu]
  accelerators: [fp16-fp32acc]
  narrow: [e5m3, e5m4, e5m5, e5m7]
  policies: [uniform-narrow, condition, random]
  taus: [0.1, 0.3, 1.0]
  seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39]
limit: 300
"""
# 28 points × 40 seeds: far longer than any machine needs to deliver the signal (the
# test stops the sweep after its first point, so the grid's size costs nothing).



def _start(tmp_path, scheduler):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "accsim", "sweep", str(spec), "--out", str(out),
           "--scheduler", scheduler, "--workers", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, out / "results.jsonl"


def _wait_first_point(proc, path, timeout=300):
    """Wait until ``path`` holds a finished point (a cold numba cache compiles first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= 1:
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no point finished (rc {proc.poll()}): {proc.communicate()[1][-2000:]}")


def _survivors(procs, timeout=15):
    """Those of ``procs`` still running (zombies excluded) after up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _interrupt(tmp_path, scheduler, signum, group):
    if scheduler == "dask-local":
        pytest.importorskip("distributed")
    proc, path = _start(tmp_path, scheduler)
    try:
        _wait_first_point(proc, path)
        children = psutil.Process(proc.pid).children(recursive=True)
        if group:       # Ctrl-C in a terminal signals the whole foreground group
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Error" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"accsim sweep: stopped by {signal.Signals(signum).name}:"), err
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""                     # whole lines only
    assert len(lines) >= 2
    for line in lines[:-1]:
        assert "metrics" in json.loads(line)
    assert not _survivors(children), [(p.pid, p.cmdline()) for p in children]


def test_sigint_ends_an_inprocess_sweep(tmp_path):
    _interrupt(tmp_path, "inprocess", signal.SIGINT, group=True)


@pytest.mark.slow
@pytest.mark.parametrize("scheduler,signum,group", [
    ("inprocess", signal.SIGTERM, False),
    ("processes", signal.SIGINT, True),
    ("processes", signal.SIGTERM, False),
    ("dask-local", signal.SIGINT, True),
    ("dask-local", signal.SIGTERM, False),
])
def test_interrupts_end_every_scheduler(tmp_path, scheduler, signum, group):
    _interrupt(tmp_path, scheduler, signum, group)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupts_end_a_simulation(signum):
    """Any command, here ``simulate``: SIGINT / SIGTERM once it runs give exit 130 and no
    traceback (the progress bar, forced on, tells when the simulation has started)."""
    cmd = [sys.executable, "-m", "accsim", "simulate", "mnist-cnn", "--policy", "condition",
           "--tau", "0.1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), ACCSIM_PROGRESS="1")
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, start_new_session=True) as proc:
        try:
            os.set_blocking(proc.stderr.fileno(), False)
            seen = b""
            deadline = time.monotonic() + 300
            while b"narrow" not in seen and proc.poll() is None \
                    and time.monotonic() < deadline:
                seen += proc.stderr.read() or b""
                time.sleep(0.05)
            assert proc.poll() is None, seen.decode()[-2000:]
            os.kill(proc.pid, signum)
            proc.wait(timeout=120)
            err = seen + (proc.stderr.read() or b"")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"Traceback" not in err, err.decode()[-2000:]
