"""Cold start: whole ``accsim`` processes with an empty numba cache against the same
processes with the cache filled, and the compilations a new matrix shape triggers.

Cold start (one row per command)
    Every cold run is a new process with its own empty temporary ``NUMBA_CACHE_DIR`` (so
    nothing compiled earlier is reused: with the variable set, numba reads and writes
    only there, never the package's ``__pycache__``); the warm runs reuse the cache the
    first cold run filled. ``compile s`` = median cold - median warm (wall seconds).
    ``saved`` / ``loaded``: kernel specializations the run compiled and wrote to the
    cache / read from it (numba's ``NUMBA_DEBUG_CACHE`` lines, workers included);
    a warm run that compiles nothing saves 0. The ``sweep (processes)`` row runs a small
    sweep on a pool of spawned worker processes, each with a fresh output folder: its
    warm runs show whether the workers reuse the on-disk cache (saved = 0).

Cache location check
    In a fresh process with a temporary ``NUMBA_CACHE_DIR``, every numba dispatcher in the
    ``accsim`` modules (kernels, ``accsim.network``, ``accsim.precision``) is listed with
    the folder its cache goes to; all must lie under the variable's folder. Every run
    also checks that no ``*.nbi`` / ``*.nbc`` file of the package's own ``__pycache__``
    folders was written.

No compile per shape
    In one new process with an empty cache, ``engine.matmul`` runs on a datapath at
    several (m, n, K), small and large, after a warm-up call at the first shape;
    compilations are counted with a ``numba:compile`` event listener (a load from the
    disk cache is not a compilation, hence the empty cache). Target: 0 after the warm-up.

    python bench/bench_coldstart.py                     # everything, 3 cold + 3 warm runs
    python bench/bench_coldstart.py --repeats 1 --only shapes
    python bench/bench_coldstart.py --only cold --commands main,matmul
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "accsim"

SWEEP_SPEC = """kind: sweep
version: 1
grid:
  traces: [digits-mlp-relu]
  accelerators: [fp16-fp32acc]
  narrow: [e5m5, e5m7]
  policies: [uniform-narrow, condition]
  taus: [0.1]
  seeds: [0]
limit: 200
technology: horowitz-45nm
"""

#: name -> (label, accsim arguments); ``{spec}`` / ``{out}``: the sweep's files
COMMANDS = {
    "main": ("simulate int8-int16acc-sat (README)",
             ["simulate", "mnist-mlp-relu", "--accelerator", "int8-int16acc-sat",
              "--limit", "1000"]),
    "condition": ("simulate bf16 --policy condition",
                  ["simulate", "mnist-mlp-relu", "--accelerator", "fp16-fp16acc",
                   "--narrow", "bf16", "--policy", "condition", "--tau", "0.2",
                   "--limit", "300"]),
    "matmul": ("matmul fp16-fp16acc", ["matmul", "--accelerator", "fp16-fp16acc"]),
    "sweep": ("sweep 4 points, 2 processes",
              ["sweep", "{spec}", "--out", "{out}", "--scheduler", "processes",
               "--workers", "2"]),
}

#: (m, n, K) of the shape check; the first is the warm-up
SHAPES = [(8, 8, 64), (8, 8, 4608), (1, 10, 784), (64, 64, 4608), (512, 512, 64),
          (300, 512, 784)]
#: accelerators whose narrow datapath the shape check runs
SHAPE_ACCELERATORS = ("fp16-fp16acc", "int8-int16acc-sat", "fp8-e4m3-fp16acc")

_SAVED = re.compile(r"\[cache\] data saved to '([^']*)'")
_LOADED = re.compile(r"\[cache\] data loaded from '([^']*)'")


def _env(cache_dir):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["NUMBA_DEBUG_CACHE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _package_cache_files():
    """{path: mtime} of the numba cache files in the package's own __pycache__ folders."""
    return {str(p): p.stat().st_mtime_ns for pat in ("*.nbi", "*.nbc")
            for p in PACKAGE.rglob(f"__pycache__/{pat}")}


def run_process(args, cache_dir, scratch):
    """Run ``python -m accsim ARGS`` with ``cache_dir``; a dict of its wall seconds and
    the cache files it saved / loaded. Raises on a non-zero exit."""
    spec = scratch / "sweep.yaml"
    if not spec.exists():
        spec.write_text(SWEEP_SPEC)
    out = Path(tempfile.mkdtemp(prefix="out-", dir=scratch))
    argv = [a.format(spec=spec, out=out / "runs") for a in args]
    before = _package_cache_files()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "accsim", *argv], env=_env(cache_dir),
                       capture_output=True, text=True, cwd=scratch)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"accsim {' '.join(argv)}: exit {p.returncode}\n{p.stderr[-2000:]}")
    text = p.stdout + p.stderr
    saved, loaded = _SAVED.findall(text), _LOADED.findall(text)
    outside = [f for f in saved + loaded if not f.startswith(str(cache_dir))]
    in_tree = {k for k, v in _package_cache_files().items() if before.get(k) != v}
    return {"wall": wall, "saved": saved, "loaded": loaded, "outside": outside,
            "in_tree": sorted(in_tree)}


def _module_of(path):
    """'kernels/_round' of a cache file written for that module (numba names the folder
    after the module's package folder and a hash of its path)."""
    p = Path(path)
    return f"{p.parent.name.rsplit('_', 1)[0]}/{p.name.split('.')[0]}"


def cold_start(names, repeats, scratch):
    """One row per command: cold / warm medians and the cache traffic of each."""
    rows = []
    for name in names:
        label, args = COMMANDS[name]
        colds, warms, first = [], [], None
        for r in range(repeats):
            cache = Path(tempfile.mkdtemp(prefix="numba-", dir=scratch))
            res = run_process(args, cache, scratch)
            colds.append(res)
            if r == 0:
                first = cache
            else:
                shutil.rmtree(cache)
        for _ in range(repeats):
            warms.append(run_process(args, first, scratch))
        mods = sorted({_module_of(f) for f in colds[0]["saved"]})
        shutil.rmtree(first)
        rows.append((label, colds, warms, mods))
        _print_cold_row(label, colds, warms)
    return rows


def _median(runs, key):
    return statistics.median(r[key] if key == "wall" else len(r[key]) for r in runs)


def _print_cold_header():
    print(f"{'command':<38} {'cold s':>7} {'warm s':>7} {'compile s':>9} "
          f"{'cold saved':>10} {'warm saved':>10} {'warm loaded':>11} {'elsewhere':>9}")
    print("-" * 108)


def _print_cold_row(label, colds, warms):
    c, w = _median(colds, "wall"), _median(warms, "wall")
    bad = sum(len(r["outside"]) + len(r["in_tree"]) for r in colds + warms)
    print(f"{label:<38} {c:>7.2f} {w:>7.2f} {c - w:>9.2f} {_median(colds, 'saved'):>10.0f} "
          f"{max(len(r['saved']) for r in warms):>10d} {_median(warms, 'loaded'):>11.0f} "
          f"{bad:>9d}", flush=True)


# ---- where every dispatcher caches -------------------------------------------------

def _dispatchers():
    """(module, name, cache folder) of every numba dispatcher in the accsim modules."""
    import importlib
    import pkgutil

    import accsim
    from numba.core.dispatcher import Dispatcher

    found = []
    for info in pkgutil.walk_packages(accsim.__path__, "accsim."):
        if info.name.endswith("__main__"):
            continue
        try:
            mod = importlib.import_module(info.name)
        except ImportError:          # an optional dependency (dask, onnx ...)
            continue
        for k, v in vars(mod).items():
            if isinstance(v, Dispatcher) and v.py_func.__module__ == info.name:
                found.append((info.name, k, v.stats.cache_path))
    return found


def location_worker():
    """Child of :func:`cache_location`: prints the dispatchers as JSON."""
    print(json.dumps(_dispatchers()))


def cache_location(scratch):
    cache = Path(tempfile.mkdtemp(prefix="numba-", dir=scratch))
    env = _env(cache)
    env.pop("NUMBA_DEBUG_CACHE")
    p = subprocess.run([sys.executable, __file__, "--worker", "location"], env=env,
                       capture_output=True, text=True, check=True)
    found = json.loads(p.stdout.splitlines()[-1])
    by_pkg = {}
    for mod, _, path in found:
        pkg = ".".join(mod.split(".")[:2])
        ok = path is not None and path.startswith(str(cache))
        n_ok, n = by_pkg.get(pkg, (0, 0))
        by_pkg[pkg] = (n_ok + ok, n + 1)
    print(f"cache location: {len(found)} numba dispatchers in the accsim "
          f"modules; under NUMBA_CACHE_DIR:")
    for pkg, (n_ok, n) in sorted(by_pkg.items()):
        print(f"  {pkg:<20} {n_ok}/{n}")
    wrong = [(m, k, p) for m, k, p in found if p is None or not p.startswith(str(cache))]
    for m, k, p in wrong:
        print(f"  NOT REDIRECTED: {m}.{k} -> {p}")
    shutil.rmtree(cache)
    return not wrong


# ---- compilations per shape --------------------------------------------------------

def _operands(dp, m, n, K, rng):
    from accsim import quantize
    from accsim.numerics.formats import IntFormat

    def draw(shape, fmt):
        if isinstance(fmt, IntFormat):
            return rng.integers(-127, 128, size=shape).astype(np.float64)
        return np.asarray(quantize(rng.standard_normal(shape), fmt, "rne"), dtype=np.float64)
    return draw((m, K), dp.input), draw((K, n), dp.weight)


def shapes_worker():
    """Child of :func:`per_shape`: runs the shapes, prints the compilations as JSON."""
    from numba.core import event

    from accsim.hardware.accelerator import load_accelerator
    from accsim.numerics.engine import matmul

    compiled = []

    class Count(event.Listener):
        def on_start(self, ev):
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)

        def on_end(self, ev):
            pass

    event.register("numba:compile", Count())
    out = {}
    rng = np.random.default_rng(0)
    for name in SHAPE_ACCELERATORS:
        dp = load_accelerator(name).datapath("narrow")
        rows = []
        for m, n, K in SHAPES:
            a, b = _operands(dp, m, n, K, rng)
            del compiled[:]
            t0 = time.perf_counter()
            matmul(a, b, dp)
            rows.append([m, n, K, time.perf_counter() - t0, sorted(set(compiled)),
                         len(compiled)])
        out[name] = rows
    print(json.dumps(out))


def per_shape(scratch):
    cache = Path(tempfile.mkdtemp(prefix="numba-", dir=scratch))
    env = _env(cache)
    env.pop("NUMBA_DEBUG_CACHE")
    p = subprocess.run([sys.executable, __file__, "--worker", "shapes"], env=env,
                       capture_output=True, text=True)
    shutil.rmtree(cache)
    if p.returncode:
        raise SystemExit(f"shape check failed:\n{p.stderr[-2000:]}")
    res = json.loads(p.stdout.splitlines()[-1])
    print("no compile per shape: engine.matmul in one process, empty numba cache; "
          "the first shape is the warm-up")
    print(f"{'accelerator (narrow)':<22} {'m':>5} {'n':>5} {'K':>6} {'call s':>8} "
          f"{'compiles':>8}  functions compiled")
    print("-" * 100)
    after = 0
    for name, rows in res.items():
        for j, (m, n, K, t, funcs, count) in enumerate(rows):
            if j:
                after += count
            print(f"{name:<22} {m:>5} {n:>5} {K:>6} {t:>8.2f} {count:>8d}  "
                  f"{', '.join(funcs)[:60]}")
    print(f"compilations after the warm-up shape: {after} (target 0)")
    return after


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="cold and warm runs per command")
    ap.add_argument("--only", choices=("cold", "location", "shapes"), default=None)
    ap.add_argument("--commands", default=",".join(COMMANDS),
                    help=f"comma-separated subset of {', '.join(COMMANDS)}")
    ap.add_argument("--worker", choices=("location", "shapes"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "location":
        return location_worker()
    if args.worker == "shapes":
        return shapes_worker()
    names = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = [c for c in names if c not in COMMANDS]
    if unknown:
        ap.error(f"--commands: unknown {', '.join(unknown)} (expected {', '.join(COMMANDS)})")
    import numba
    print(f"accsim cold-start benchmark: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numba "
          f"{numba.__version__}; medians of {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="accsim-coldstart-") as tmp:
        scratch = Path(tmp)
        if args.only in (None, "location"):
            cache_location(scratch)
            print()
        if args.only in (None, "cold"):
            _print_cold_header()
            rows = cold_start(names, args.repeats, scratch)
            print("\nmodules compiled by each command's first cold run:")
            for label, _, _, mods in rows:
                print(f"  {label}: {', '.join(mods)}")
            print()
        if args.only in (None, "shapes"):
            per_shape(scratch)


if __name__ == "__main__":
    main()
