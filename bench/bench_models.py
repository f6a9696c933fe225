"""Real exported models through accsim: import time, simulation time, memory, agreement.

The models written by ``bench/make_models.py`` (resnet18 and mobilenet_v3_small at 64x64,
TorchScript and dynamo exports) on their 16 samples. For each model, in a fresh process
(so the peak resident memory is that model's):

* ``import s``: ``accsim.network.onnx_import.import_onnx`` (the trace of 16 samples);
* ``narrow s`` / ``wide s``: ``simulate`` on ``--accelerator`` (default fp16-fp16acc) with
  ``uniform-narrow`` and ``uniform-wide`` (``analyze=False``), after a warm-up run on 2
  samples (numba compiles there; reported as ``warm-up s``); medians of ``--repeats``;
* ``ort s``: onnxruntime (CPU, default session options) on the same 16 samples, median of
  ``--repeats`` runs after one warm-up; ``x ort`` = (narrow s + wide s) / ort s;
* ``agree``: argmax agreement of the wide run's outputs with onnxruntime's;
* ``peak MB``: the process's peak resident set (``resource.getrusage``, ru_maxrss).

    python bench/make_models.py          # once, with torch (see its docstring)
    python bench/bench_models.py
    python bench/bench_models.py --models resnet18_ts17 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = Path(__file__).resolve().parent / "models"
COLUMNS = ("model", "import s", "warm-up s", "narrow s", "wide s", "ort s", "x ort",
           "agree", "peak MB")


def median_time(fn, repeats):
    """Median wall time in seconds of ``repeats`` calls of ``fn``, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def onnxruntime_run(path, x, repeats):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    return median_time(lambda: sess.run(None, {name: x})[0], repeats)


def measure(path, accelerator, repeats):
    """One model's row (a dict of COLUMNS), measured in this process."""
    from accsim import simulate
    from accsim.network.onnx_import import import_onnx
    x = np.load(MODELS / "inputs.npy")
    t_import, trace = median_time(lambda: import_onnx(path, x), 1)
    t0 = time.perf_counter()
    simulate(trace, accelerator, limit=2, analyze=False)
    simulate(trace, accelerator, limit=2, analyze=False, policy="uniform-wide")
    warm = time.perf_counter() - t0
    t_narrow, _ = median_time(lambda: simulate(trace, accelerator, analyze=False), repeats)
    t_wide, wide = median_time(lambda: simulate(trace, accelerator, analyze=False,
                                                policy="uniform-wide"), repeats)
    t_ort, ref = onnxruntime_run(path, x, max(repeats, 5))
    got = np.asarray(wide.outputs).reshape(len(x), -1)
    agree = float(np.mean(got.argmax(axis=1) == ref.reshape(len(x), -1).argmax(axis=1)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": path.stem, "import s": t_import, "warm-up s": warm,
            "narrow s": t_narrow, "wide s": t_wide, "ort s": t_ort,
            "x ort": (t_narrow + t_wide) / t_ort, "agree": agree, "peak MB": peak_mb}


def in_subprocess(path, args):
    """:func:`measure` in a fresh interpreter (its own peak RSS); a failure becomes a row."""
    cmd = [sys.executable, __file__, "--one", str(path), "--accelerator", args.accelerator,
           "--repeats", str(args.repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": path.stem, "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(rows):
    print(" | ".join(COLUMNS))
    print("|".join("---" for _ in COLUMNS))
    for r in rows:
        if "error" in r:
            print(f"{r['model']} | failed: {r['error']}")
            continue
        cells = [r["model"]] + [f"{r[c]:.3g}" if c != "agree" else f"{r[c]:.3f}"
                                for c in COLUMNS[1:]]
        print(" | ".join(cells))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None,
                   help="model stems in bench/models/ (default: every .onnx there)")
    p.add_argument("--accelerator", default="fp16-fp16acc")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(Path(args.one), args.accelerator, args.repeats)))
        return 0
    paths = sorted(MODELS.glob("*.onnx")) if args.models is None else \
        [MODELS / f"{m}.onnx" for m in args.models]
    missing = [str(q) for q in paths if not q.exists()]
    if not paths or missing:
        print(f"bench_models: no model {' '.join(missing) or 'in ' + str(MODELS)}: run "
              "bench/make_models.py first", file=sys.stderr)
        return 2
    print_table([in_subprocess(q, args) for q in paths])
    return 0


if __name__ == "__main__":
    sys.exit(main())
