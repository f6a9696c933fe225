"""Simulated MACs per second of accsim.numerics.engine.matmul, against baselines measured in the
same run.

For every case (operand format, accumulator, structure) at m = n = k = --size:

* accsim      ``accsim.numerics.engine.matmul`` (values and events), all numba threads (or --threads).
* numpy f64   ``A @ B`` in float64 (no simulation: the ceiling). Ratio = accsim time / it.
* numpy loop  a loop over k, vectorised over the m x n outputs, rounding the running sum
              after every add with an independent numpy rounding (float16 cast, or rint on
              the frexp significand, or int16 wrap / clip). "match" says whether it gave
              bit-identical values to accsim (a sanity check, not a test).
* APyTypes    the 0.5.1 accumulator context, timed at a smaller size (--apy-size) and
              extrapolated per MAC (MAC/s is a per-MAC figure: time / (m n k)). Its
              semantics differ slightly: it rounds each product to the accumulator format
              before adding (multiply-round-add) and does not saturate per add.
* select 5 %  accsim recomputing a random 5 % of the outputs (``select=mask``), as a
              fraction of the full product's time.

Medians over --repeats runs after a warm-up call (numba compiles on the first call).

    python bench/bench_matmul.py                 # m = n = k = 512
    python bench/bench_matmul.py --size 256 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numba
import numpy as np

from accsim import FloatFormat, IntFormat, quantize
from accsim.numerics.engine import matmul


def median_time(fn, repeats):
    ts = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


# ---- independent numpy roundings (no accsim code) -----------------------------------

def round_p_rne(x, p, emin, max_finite):
    """Round float64 x to p significant bits, ties to even (np.rint), with the format's
    subnormal quantum 2**(emin - p + 1) and overflow to inf. Vectorised."""
    _, e = np.frexp(x)                       # x = m * 2**e, 0.5 <= |m| < 1
    e = np.maximum(e - 1, emin)              # exponent of the leading bit, clamped
    q = np.ldexp(1.0, e - (p - 1))           # quantum at that exponent
    r = np.rint(x / q) * q                   # exact scaling by a power of two
    return np.where(np.abs(r) > max_finite, np.copysign(np.inf, r), r)


def loop_fp16(A, B):
    s = np.zeros((A.shape[0], B.shape[1]))
    for k in range(A.shape[1]):
        s = (s + np.outer(A[:, k], B[k, :])).astype(np.float16).astype(np.float64)
    return s


def loop_bf16(A, B):
    s = np.zeros((A.shape[0], B.shape[1]))
    mx = (2 - 2.0**-7) * 2.0**127
    for k in range(A.shape[1]):
        s = round_p_rne(s + np.outer(A[:, k], B[k, :]), 8, -126, mx)
    return s


def loop_e5m7_chunked_fp32(A, B, L=128):
    w = np.zeros((A.shape[0], B.shape[1]), dtype=np.float32)
    mx = (2 - 2.0**-7) * 2.0**15
    for k0 in range(0, A.shape[1], L):
        s = np.zeros((A.shape[0], B.shape[1]))
        for k in range(k0, min(k0 + L, A.shape[1])):
            s = round_p_rne(s + np.outer(A[:, k], B[k, :]), 8, -14, mx)
        w = (w.astype(np.float64) + s).astype(np.float32)
    return w.astype(np.float64)


def loop_int16(A, B, saturate):
    Ai = A.astype(np.int32)
    Bi = B.astype(np.int32)
    if saturate:
        s = np.zeros((A.shape[0], B.shape[1]), dtype=np.int32)
        for k in range(A.shape[1]):
            s = np.clip(s + np.outer(Ai[:, k], Bi[k, :]), -32768, 32767)
        return s.astype(np.float64)
    s = np.zeros((A.shape[0], B.shape[1]), dtype=np.int16)
    A16 = A.astype(np.int16)
    B16 = B.astype(np.int16)
    for k in range(A.shape[1]):
        s += np.outer(A16[:, k], B16[k, :])   # int8 x int8 fits int16; += wraps mod 2**16
    return s.astype(np.float64)


def loop_quantize(A, B, fmt):
    """The same loop with accsim.quantize as the per-step rounding."""
    s = np.zeros((A.shape[0], B.shape[1]))
    for k in range(A.shape[1]):
        s = quantize(s + np.outer(A[:, k], B[k, :]), fmt)
    return s


# ---- APyTypes ------------------------------------------------------------------------

def apy_runner(case, A, B):
    try:
        import apytypes as apy
    except ImportError:
        return None
    if case["apy"] is None:
        return None
    kind, opbits, accbits = case["apy"]
    if kind == "float":
        (oe, om), (ae, am) = opbits, accbits
        XA = apy.APyFloatArray.from_float(A, exp_bits=oe, man_bits=om)
        XB = apy.APyFloatArray.from_float(B, exp_bits=oe, man_bits=om)

        def run():
            with apy.APyFloatAccumulatorContext(exp_bits=ae, man_bits=am,
                                                quantization=apy.QuantizationMode.TIES_EVEN):
                return XA @ XB
    else:
        ov = apy.OverflowMode.SAT if accbits[1] == "saturate" else apy.OverflowMode.WRAP
        XA = apy.APyFixedArray.from_float(A, int_bits=opbits, frac_bits=0)
        XB = apy.APyFixedArray.from_float(B, int_bits=opbits, frac_bits=0)

        def run():
            with apy.APyFixedAccumulatorContext(int_bits=accbits[0], frac_bits=0, overflow=ov):
                return XA @ XB
    return run


# ---- cases ---------------------------------------------------------------------------

def make_cases():
    fp16 = FloatFormat(5, 10, name="fp16")
    bf16 = FloatFormat(8, 7, name="bf16")
    e5m7 = FloatFormat(5, 7, name="e5m7")
    fp32 = FloatFormat(8, 23, name="fp32")
    e4m3 = FloatFormat(4, 3, specials="fn", name="e4m3fn")
    return [
        dict(name="fp16 x fp16 -> fp16 seq rne", op=fp16, acc=fp16, kw={},
             loop=loop_fp16, apy=("float", (5, 10), (5, 10))),
        dict(name="bf16 x bf16 -> bf16 seq rne", op=bf16, acc=bf16, kw={},
             loop=loop_bf16, apy=("float", (8, 7), (8, 7))),
        dict(name="e4m3 -> e5m7 chunk128 -> fp32", op=e4m3, acc=e5m7,
             kw=dict(structure="chunked", chunk_size=128, wide=fp32),
             loop=loop_e5m7_chunked_fp32, apy=None),
        dict(name="int8 -> int16 saturate", op="int8", acc=IntFormat(16, overflow="saturate"),
             kw={}, loop=lambda A, B: loop_int16(A, B, True), apy=("fixed", 8, (16, "saturate"))),
        dict(name="int8 -> int16 wrap", op="int8", acc=IntFormat(16), kw={},
             loop=lambda A, B: loop_int16(A, B, False), apy=("fixed", 8, (16, "wrap"))),
    ]


def operands(case, m, k, n, rng):
    if case["op"] == "int8":
        return (rng.integers(-128, 128, (m, k)).astype(np.float64),
                rng.integers(-128, 128, (k, n)).astype(np.float64))
    scale = 0.5 if case["op"].exp_bits >= 5 else 1.0
    A = quantize(rng.standard_normal((m, k)) * scale, case["op"])
    B = quantize(rng.standard_normal((k, n)) * scale, case["op"])
    return A, B


def fmt_rate(x):
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= f:
            return f"{x / f:7.2f} {unit}"
    return f"{x:7.2f}  "


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512, help="m = n = k (default 512)")
    ap.add_argument("--apy-size", type=int, default=128,
                    help="m = n = k for APyTypes, extrapolated per MAC (default 128)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    ap.add_argument("--loop-repeats", type=int, default=3, help="repeats of the numpy loops")
    ap.add_argument("--threads", type=int, default=None, help="numba threads (default all)")
    ap.add_argument("--no-apy", action="store_true", help="skip APyTypes")
    ap.add_argument("--quantize-loop", action="store_true",
                    help="also time the numpy loop with accsim.quantize as the rounding")
    args = ap.parse_args(argv)

    if args.threads:
        numba.set_num_threads(args.threads)
    n = m = k = args.size
    macs = m * n * k
    rng = np.random.default_rng(0)
    print(f"accsim matmul benchmark: m = n = k = {n} ({macs / 1e6:.1f} M MACs), "
          f"median of {args.repeats}; numba threads {numba.get_num_threads()}, "
          f"cpus {os.cpu_count()}, {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}")
    rows = []
    for case in make_cases():
        A, B = operands(case, m, k, n, rng)

        def sim(select=None, A=A, B=B, case=case):
            r = matmul(A, B, case["acc"], select=select, **case["kw"])
            _ = r.values, r.events.total          # force values and events
            return r

        t0 = time.perf_counter()
        sim()                                                     # warm-up / compile
        t_compile = time.perf_counter() - t0
        t_sim, res = median_time(sim, args.repeats)
        # values alone (events are lazy where the engine can skip them: integer wrap is
        # modular, so values come from one exact float64 product)
        t_vals, _ = median_time(
            lambda A=A, B=B, c=case: matmul(A, B, c["acc"], **c["kw"]).values, args.repeats)
        t_np, _ = median_time(lambda A=A, B=B: A @ B, max(args.repeats, 5))
        t_loop, loop_vals = median_time(lambda A=A, B=B, c=case: c["loop"](A, B),
                                        args.loop_repeats)
        match = np.mean((loop_vals == res.values) | (np.isnan(loop_vals) & np.isnan(res.values)))
        t_q = None
        if args.quantize_loop and case["kw"] == {} and hasattr(case["acc"], "exp_bits"):
            t_q, _ = median_time(lambda A=A, B=B, f=case["acc"]: loop_quantize(A, B, f),
                                 args.loop_repeats)
        # 5 % selected outputs
        mask = rng.random((m, n)) < 0.05
        sim(mask)
        t_sel, _ = median_time(lambda sim=sim, mask=mask: sim(mask), args.repeats)
        # APyTypes at a smaller size, per MAC
        apy_rate = None
        if not args.no_apy:
            s = args.apy_size
            As, Bs = A[:s, :s], B[:s, :s]
            run = apy_runner(case, As, Bs)
            if run is not None:
                run()
                t_apy, _ = median_time(run, max(1, args.repeats // 2))
                apy_rate = s ** 3 / t_apy
        rows.append(dict(case=case["name"], rate=macs / t_sim, t=t_sim, comp=t_compile,
                         np_ratio=t_sim / t_np, np_rate=macs / t_np,
                         loop_rate=macs / t_loop, loop_ratio=t_loop / t_sim, match=match,
                         q_rate=(macs / t_q) if t_q else None,
                         apy_rate=apy_rate, sel=t_sel / t_sim, ev=res.events.total,
                         vals_ratio=t_vals / t_np))

    hdr = (f"{'case':32s} {'accsim MAC/s':>13s} {'time s':>8s} {'x numpy f64':>11s} "
           f"{'numpy loop MAC/s':>16s} {'accsim/loop':>11s} {'match':>6s} "
           f"{'APyTypes MAC/s':>14s} {'accsim/APy':>10s} {'select 5%':>9s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        apy = fmt_rate(r["apy_rate"]) if r["apy_rate"] else "     -  "
        apyr = f"{r['rate'] / r['apy_rate']:9.1f}x" if r["apy_rate"] else "         -"
        print(f"{r['case']:32s} {fmt_rate(r['rate']):>13s} {r['t']:8.3f} "
              f"{r['np_ratio']:10.0f}x {fmt_rate(r['loop_rate']):>16s} "
              f"{r['loop_ratio']:10.1f}x {r['match']:6.3f} "
              f"{apy:>14s} {apyr} {r['sel']:8.1%}")
    print()
    print("x numpy f64: accsim time / numpy float64 matmul time (how much slower than no "
          "simulation); accsim/loop and accsim/APy: speed-up of accsim.")
    print(f"numpy float64 matmul: {fmt_rate(rows[0]['np_rate'])}MAC/s. APyTypes timed at "
          f"m = n = k = {args.apy_size} and extrapolated per MAC.")
    for r in rows:
        extra = f", numpy loop with accsim.quantize {fmt_rate(r['q_rate'])}MAC/s" if r["q_rate"] else ""
        print(f"  {r['case']}: first call (compile + run) {r['comp']:.2f} s; values only "
              f"{r['vals_ratio']:.1f}x numpy f64; events {r['ev']}{extra}")


if __name__ == "__main__":
    main()
