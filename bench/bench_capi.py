"""Per-call overhead of accsim's C interop, medians over --repeats runs.

    python bench/bench_capi.py               # builds libaccsim.so into a temp dir
    python bench/bench_capi.py --calls 20000 --repeats 5

Measured:

* C API (libaccsim.so, cffi embedding), called from a compiled C loop: ``accsim_round``
  (fp16, rne), ``accsim_step`` (fp16, rne) and ``accsim_dot`` (fp16-fp16acc, 64 terms):
  microseconds per call, Python start-up excluded (the first call is made before
  timing).
* A plugged-in C model (examples/c/fp16_rne_step.c): ``CModel.step`` called from Python
  per element, ``CModel.step_many`` (one C loop over an array) per element, and
  ``cmodel_matmul`` per multiply-accumulate; accsim's own ``matmul`` per MAC for scale.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import accsim
from accsim.interop.capi import build
from accsim.interop.cmodel import cmodel_matmul, compile_c_model

ROOT = Path(__file__).resolve().parent.parent

_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "accsim.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv)
{
    int calls = atoi(argv[1]), i, fl, f = accsim_load_format("fp16");
    int acc = accsim_load_accelerator("fp16-fp16acc");
    double v, t0, a[64], b[64], sink = 0.0;
    for (i = 0; i < 64; i++) { a[i] = 1.0 + i / 64.0; b[i] = 0.5 - i / 128.0; }
    accsim_round(f, "rne", 1.0, &v, &fl);
    accsim_step(f, "rne", 1.0, 2.0, 3.0, &v, &fl);
    accsim_dot(acc, NULL, NULL, 64, a, b, NULL, &v, &fl);
    t0 = now();
    for (i = 0; i < calls; i++) { accsim_round(f, "rne", 1.0 + i * 1e-6, &v, &fl); sink += v; }
    printf("round %.6e\n", (now() - t0) / calls);
    t0 = now();
    for (i = 0; i < calls / 10; i++) { accsim_step(f, "rne", 1.0, 1.0 + i * 0x1p-10, 0.25, &v, &fl); sink += v; }
    printf("step %.6e\n", (now() - t0) / (calls / 10));
    t0 = now();
    for (i = 0; i < calls / 10; i++) { accsim_dot(acc, NULL, NULL, 64, a, b, NULL, &v, &fl); sink += v; }
    printf("dot %.6e\n", (now() - t0) / (calls / 10));
    return sink == 12345.0;
}
"""


def capi_overheads(calls, repeats):
    work = Path(tempfile.mkdtemp(prefix="accsim-bench-capi-"))
    try:
        build(work)
        (work / "driver.c").write_text(_DRIVER)
        cc = shutil.which("cc") or shutil.which("gcc")
        subprocess.run([cc, "-O2", "-I", str(work), str(work / "driver.c"), "-L", str(work),
                        "-laccsim", f"-Wl,-rpath,{work}", "-o", str(work / "driver")],
                       check=True)
        runs = {}
        for _ in range(repeats):
            out = subprocess.run([str(work / "driver"), str(calls)], check=True,
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                k, v = line.split()
                runs.setdefault(k, []).append(float(v))
        return {k: statistics.median(v) for k, v in runs.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def cmodel_overheads(calls, repeats):
    m = compile_c_model(ROOT / "examples" / "c" / "fp16_rne_step.c", "fp16_rne_step")
    rng = np.random.default_rng(0)
    acc = accsim.quantize(rng.standard_normal(calls), "fp16")
    a = accsim.quantize(rng.standard_normal(calls), "fp16")
    b = accsim.quantize(rng.standard_normal(calls), "fp16")
    n_py = min(calls, 20000)

    def per_call():
        step = m.step
        for i in range(n_py):
            step(acc[i], a[i], b[i])
    A = accsim.quantize(rng.standard_normal((64, 256)), "fp16")
    B = accsim.quantize(rng.standard_normal((256, 64)), "fp16")
    m.step_many(acc[:10], a[:10], b[:10])
    accsim.matmul(A, B, "fp16")
    macs = 64 * 256 * 64
    return {
        "CModel.step (Python call)": median_time(per_call, repeats) / n_py,
        "CModel.step_many (per element)": median_time(lambda: m.step_many(acc, a, b), repeats) / calls,
        "cmodel_matmul (per MAC)": median_time(lambda: cmodel_matmul(A, B, m), repeats) / macs,
        "accsim.matmul fp16 (per MAC, for scale)":
            median_time(lambda: accsim.matmul(A, B, "fp16"), repeats) / macs,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {args.calls} calls, median of {args.repeats}")
    for k, v in capi_overheads(args.calls, args.repeats).items():
        print(f"C API accsim_{k:<28} {v * 1e6:10.3f} us/call")
    for k, v in cmodel_overheads(args.calls, args.repeats).items():
        print(f"{k:<40} {v * 1e6:10.3f} us")


if __name__ == "__main__":
    main()
