"""Values per second of accsim.quantize (float64 -> fp16, bf16, e4m3fn, rne) on one
numba thread and on all threads, against numpy's float64 -> float16 ``astype`` measured
in the same run.

    python bench/bench_quantize.py              # 10**7 values
    python bench/bench_quantize.py --n 1000000 --repeats 3

The input mixes magnitudes (normal values scaled by 2**U(-30, 20)) so that every path
runs: normal, subnormal, overflow. Medians over --repeats after a warm-up call. The
fp16 result is also checked against numpy's cast (correctly rounded, RNE).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import numpy as np

from accsim import FloatFormat, quantize


def median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def fmt_rate(x):
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= f:
            return f"{x / f:7.1f} {unit}"
    return f"{x:7.1f}  "


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10**7, help="number of float64 values")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    # two inputs: "normal" (standard normal, like activations: almost all in the targets'
    # normal range) and "wide" (magnitudes log-uniform over 2^-30..2^20: a third
    # subnormal or flushed, a tenth overflowing for fp16 -- the slow paths' worst case)
    datasets = {"normal": rng.standard_normal(args.n),
                "wide": rng.standard_normal(args.n) * np.exp2(rng.uniform(-30, 20, args.n))}
    formats = [FloatFormat(5, 10, name="fp16"), FloatFormat(8, 7, name="bf16"),
               FloatFormat(4, 3, specials="fn", overflow="saturate", name="e4m3fn (sat)")]
    nmax = numba.config.NUMBA_NUM_THREADS
    prev = numba.get_num_threads()

    print(f"accsim.quantize benchmark: {args.n:.2e} float64 values, median of {args.repeats}; "
          f"cpus {os.cpu_count()}, numba threads 1 and {nmax}")
    hdr = (f"{'data':7s} {'format':16s} {'threads':>7s} {'values/s':>12s} {'time s':>8s} "
           f"{'x numpy astype':>14s}")
    try:
        for dname, x in datasets.items():
            with np.errstate(over="ignore"):
                t_np = median_time(lambda x=x: x.astype(np.float16), args.repeats)
                ref16 = x.astype(np.float16).astype(np.float64)
            print(f"\n{dname}: numpy float64 -> float16 astype {fmt_rate(args.n / t_np)}values/s")
            print(hdr)
            print("-" * len(hdr))
            for fmt in formats:
                for nt in sorted({1, nmax}):
                    numba.set_num_threads(nt)
                    out = quantize(x, fmt, "rne")              # warm-up / compile
                    t = median_time(lambda f=fmt, x=x: quantize(x, f, "rne"), args.repeats)
                    print(f"{dname:7s} {fmt.name:16s} {nt:7d} {fmt_rate(args.n / t):>12s} "
                          f"{t:8.3f} {t / t_np:13.2f}x")
                    if fmt.name == "fp16" and not np.array_equal(out, ref16, equal_nan=True):
                        print(f"  WARNING: fp16 differs from numpy's cast at "
                              f"{int(np.sum(out != ref16))} values")
    finally:
        numba.set_num_threads(prev)
    print("x numpy astype: accsim time / numpy float64->float16 astype time (lower is faster).")


if __name__ == "__main__":
    main()
