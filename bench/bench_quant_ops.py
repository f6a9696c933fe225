"""Speed of accsim's quantized reference (quant_ops) against onnxruntime, medians over
--repeats runs, on the committed fixtures (tests/fixtures/onnx_quant).

    python bench/bench_quant_ops.py                 # 1000 MNIST images per model
    python bench/bench_quant_ops.py --samples 200 --repeats 3

Measured per model: seconds for ``forward_float32`` over all samples at once (one call,
sample axis in front) and for onnxruntime one image per run (the batch-1 models as
exported, how the reference is compared); the ratio reference / onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "onnx_quant")
sys.path.insert(0, FIX)

import make_quant_fixtures as mqf  # noqa: E402

from accsim.network import quant_ops  # noqa: E402

MODELS = ["mlp-qop.onnx", "mlp-dynamic.onnx", "cnn-qop.onnx", "cnn-qdq-pc.onnx",
          "cnn-dynamic.onnx"]


def median_time(fn, repeats):
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(name, xs, repeats):
    """One line: reference, onnxruntime per image, ratio."""
    path = os.path.join(FIX, name)
    graph, arrays = mqf.to_graph(onnx.load(path))
    graph = quant_ops.fuse_qdq(graph, arrays)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    ref = median_time(lambda: quant_ops.forward_float32(graph, arrays, xs), repeats)
    per = median_time(lambda: [sess.run(None, {inp: x}) for x in xs], repeats)
    print(f"{name:18s} reference {ref:7.3f} s   onnxruntime per image {per:7.3f} s   "
          f"ratio {ref / per:6.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    mqf.register_float_glue()
    for name in MODELS:
        _, xs = mqf.BUILDERS[name.split("-")[0]]()
        bench(name, xs[:args.samples], args.repeats)


if __name__ == "__main__":
    main()
