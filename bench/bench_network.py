"""End-to-end network simulation vs the float64 numpy forward pass, measured in one run.

The bundled 784-512-512-10 MNIST MLP (``traces/mnist-mlp-relu``) on its whole test split:
``accsim.simulate`` with an accelerator's narrow accumulator (default fp16-fp16acc: fp16
operands, fp16 accumulator, rne after every add) against ``accsim.network.ops.forward64`` (plain
numpy float64, BLAS matrix products). Medians of ``--repeats`` interleaved runs after a
warm-up (numba compiles on the first call; that time is reported separately). The
headline is ``simulate(analyze=False)``: everything a simulation reports (accuracy,
agreement, per-layer error statistics, events); the default ``analyze=True``
adds the componentwise error-bound checks and is timed on its own row. The split of the
headline: ``engine.matmul`` (the kernels and the engine's own passes: operand statistics,
bias, selection, gathering; timed by wrapping the engine call the network layer makes)
and everything else ``simulate`` does (the float64 reference pass, operand quantisation,
lowering, error statistics, results).

    python bench/bench_network.py
    python bench/bench_network.py --trace mnist-mlp-tanh --accelerator bf16-fp32acc
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numba
import numpy as np

import accsim.network.reissue as reissue
from accsim.network import resolve_trace, simulate
from accsim.network.products import forward64


@contextlib.contextmanager
def engine_timer():
    """Within it, every ``engine.matmul`` call of the network layer adds its seconds to
    the yielded list's first item."""
    spent = [0.0]
    inner = reissue.matmul

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0
    reissue.matmul = timed
    try:
        yield spent
    finally:
        reissue.matmul = inner


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trace", default="mnist-mlp-relu")
    p.add_argument("--accelerator", default="fp16-fp16acc")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1024)
    args = p.parse_args(argv)

    trace = resolve_trace(args.trace)
    n = len(trace.inputs) if args.limit is None else min(args.limit, len(trace.inputs))
    x = trace.inputs[:n]
    macs = 0
    for node in trace.graph.nodes:
        if node.op == "Gemm":
            macs += trace.arrays[node.inputs[1]].size
    macs *= n

    t0 = time.perf_counter()
    simulate(trace, args.accelerator, limit=min(n, 8))
    first = time.perf_counter() - t0

    # interleaved, so that both variants and the reference see the same machine load
    refs, sims, mms, engs, full = [], [], [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        forward64(trace, x)
        refs.append(time.perf_counter() - t0)
        with engine_timer() as spent:
            t0 = time.perf_counter()
            res = simulate(trace, args.accelerator, limit=n, batch_size=args.batch_size,
                           analyze=False)
            sims.append(time.perf_counter() - t0)
        engs.append(spent[0])
        mms.append(sum(lr.seconds for lr in res.layers))
        t0 = time.perf_counter()
        simulate(trace, args.accelerator, limit=n, batch_size=args.batch_size)
        full.append(time.perf_counter() - t0)
    t_ref, t_sim, t_mm, t_eng, t_full = (statistics.median(v)
                                         for v in (refs, sims, mms, engs, full))
    t_rest = statistics.median(s - e for s, e in zip(sims, engs))

    print(f"accsim network benchmark: {trace.name}, {n} samples, {macs / 1e6:.1f} M MACs, "
          f"accelerator {args.accelerator} (narrow {res.narrow}); median of {args.repeats}; "
          f"numba threads {numba.get_num_threads()}, numpy {np.__version__}")
    print(f"{'run':<40} {'time s':>8} {'MAC/s':>10} {'x float64':>10}")
    print("-" * 71)
    rows = [("numpy float64 forward (forward64)", t_ref),
            ("accsim.simulate(analyze=False)", t_sim),
            ("  of which product nodes (layer seconds)", t_mm),
            ("  of which engine.matmul", t_eng),
            ("  everything but engine.matmul", t_rest),
            ("accsim.simulate (+ error-bound checks)", t_full)]
    for name, t in rows:
        print(f"{name:<40} {t:>8.3f} {macs / t / 1e6:>8.1f} M {t / t_ref:>9.1f}x")
    print()
    print(f"accuracy {res.accuracy:.4f} (float64 {res.reference_accuracy:.4f}), "
          f"agreement {res.agreement:.4f}; events {res.events}")
    print(f"simulate runs its own float64 reference pass ({res.reference_seconds:.3f} s) and "
          f"the error statistics; the last row adds the per-component error-bound checks "
          f"(three more float64 products). First call (compile + 8 samples): {first:.2f} s.")
    print(f"ratio simulate / float64 forward: {t_sim / t_ref:.1f}x (target <= 8x: engine "
          f"{t_eng / t_ref:.1f}x + the rest {t_rest / t_ref:.1f}x); with bound checks "
          f"{t_full / t_ref:.1f}x")

if __name__ == "__main__":
    main()
