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
    python bench/bench_models.py --fixtures   # the small exported test models instead
                                              # (tests/fixtures/onnx, their own inputs)
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
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"
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


def onnxruntime_run(path, x, repeats, output=None):
    """Median time of onnxruntime on the batch ``x`` (``x`` with a leading axis of 1
    inserted per sample when the model's batch is fixed at 1), and its output."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    outs = None if output is None else [output]
    if inp.shape and inp.shape[0] == 1 and len(x) > 1:
        feeds = [{inp.name: x[i:i + 1]} for i in range(len(x))]
        run = lambda: np.concatenate([_array(sess.run(outs, f)[0])  # noqa: E731
                                      for f in feeds])
    else:
        run = lambda: _array(sess.run(outs, {inp.name: x})[0])  # noqa: E731
    run()
    return median_time(run, repeats)


def _array(out):
    """An output as an array: a ZipMap's list of {class: probability} by sorted class."""
    if isinstance(out, list) and out and isinstance(out[0], dict):
        return np.array([[d[k] for k in sorted(d)] for d in out])
    return np.asarray(out)


def measure(path, accelerator, repeats, inputs=None, output=None):
    """One model's row (a dict of COLUMNS), measured in this process; ``inputs``: the
    samples' .npy (default bench/models/inputs.npy), ``output``: the graph output."""
    from accsim import simulate
    from accsim.network.onnx_import import import_onnx
    x = np.load(MODELS / "inputs.npy" if inputs is None else inputs).astype(np.float32)
    t_import, trace = median_time(lambda: import_onnx(path, x, output=output), 1)
    t0 = time.perf_counter()
    simulate(trace, accelerator, limit=2, analyze=False)
    simulate(trace, accelerator, limit=2, analyze=False, policy="uniform-wide")
    warm = time.perf_counter() - t0
    t_narrow, _ = median_time(lambda: simulate(trace, accelerator, analyze=False), repeats)
    t_wide, wide = median_time(lambda: simulate(trace, accelerator, analyze=False,
                                                policy="uniform-wide"), repeats)
    t_ort, ref = onnxruntime_run(path, x, max(repeats, 5), output)
    got = np.asarray(wide.outputs).reshape(len(x), -1)
    agree = float(np.mean(got.argmax(axis=1) == ref.reshape(len(x), -1).argmax(axis=1)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": path.stem, "import s": t_import, "warm-up s": warm,
            "narrow s": t_narrow, "wide s": t_wide, "ort s": t_ort,
            "x ort": (t_narrow + t_wide) / t_ort, "agree": agree, "peak MB": peak_mb}


def in_subprocess(path, args, inputs=None, output=None):
    """:func:`measure` in a fresh interpreter (its own peak RSS); a failure becomes a row."""
    cmd = [sys.executable, __file__, "--one", str(path), "--accelerator", args.accelerator,
           "--repeats", str(args.repeats)]
    if inputs is not None:
        cmd += ["--inputs", str(inputs)]
    if output is not None:
        cmd += ["--output", output]
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
    p.add_argument("--fixtures", action="store_true",
                   help="the exported test models of tests/fixtures/onnx instead")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--inputs", default=None, help=argparse.SUPPRESS)
    p.add_argument("--output", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(Path(args.one), args.accelerator, args.repeats,
                                 args.inputs, args.output)))
        return 0
    if args.fixtures:
        if args.models is not None:
            p.error("--models and --fixtures: give one of them")
        fx = json.loads((FIXTURES / "fixtures.json").read_text())
        print_table([in_subprocess(FIXTURES / f["file"], args, FIXTURES / f["inputs"],
                                   f.get("output")) for f in fx])
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
