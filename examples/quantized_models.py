"""Quantize the bundled MNIST MLP and CNN with onnxruntime's tools and run them through
accsim's integer reference (accsim.network.quant_ops), comparing with onnxruntime.

For each model and each of onnxruntime's quantizations (static QDQ per-tensor and
per-channel, static QOperator, dynamic), prints the accuracy on the trace's 1000 held-out
images of onnxruntime and of the reference, how many final outputs are bit-identical and
how many top-1 predictions agree. Needs onnx and onnxruntime (project dependencies).

Then the users' question, on the static QDQ model (per-tensor): the model imported with
``accsim.network.import_onnx`` and simulated (``accsim.network.simulate``) on the
int8-int32acc accelerator with its accumulator replaced by narrow integer registers
(int16/int20/int24, wrapping or saturating): accuracy, agreement with onnxruntime,
overflow events and requantized outputs that differ, per layer, and per layer the
narrowest register that never overflowed on these images (observed) and that cannot
overflow on any input (worst-case bound sum|w||x|).

    python examples/quantized_models.py            # both models, all quantizations
    python examples/quantized_models.py cnn 200    # one model, first 200 images
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures", "onnx_quant"))

import make_quant_fixtures as mqf  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from accsim.network import quant_ops, simulate  # noqa: E402
from accsim.network.onnx_import import import_onnx  # noqa: E402

mqf.register_float_glue()
TRACE = {"mlp": "mnist-mlp-relu", "cnn": "mnist-cnn"}
QUANTIZATIONS = [("qdq", False), ("qdq", True), ("qop", False), ("dynamic", False)]
#: the registers of the narrow-register table (int8-int32acc's accumulator replaced)
REGISTERS = ["int32", "int24", "int20", "int20-sat", "int18", "int16", "int16-sat"]


def run_onnxruntime(path, xs):
    """Outputs of a default onnxruntime session, one image per run (batch-1 models)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: x})[0] for x in xs])


def run_reference(path, xs):
    """Outputs of accsim's reference (QDQ groups fused as onnxruntime fuses them)."""
    graph, arrays = mqf.to_graph(onnx.load(path))
    return quant_ops.forward_float32(quant_ops.fuse_qdq(graph, arrays), arrays, xs)


def report(name, limit):
    """Quantize model ``name`` every way and print one line per quantization."""
    fm, xs = mqf.BUILDERS[name]()
    labels = np.load(os.path.join(mqf.TRACES, TRACE[name], "arrays.npz"))["__labels__"]
    xs, labels = xs[:limit], labels[:limit]
    with tempfile.TemporaryDirectory() as tmp:
        fpath = os.path.join(tmp, "float.onnx")
        onnx.save(fm, fpath)
        base = run_onnxruntime(fpath, xs).reshape(len(xs), -1).argmax(1)
        print(f"{name} ({TRACE[name]}, {len(xs)} images): float32 accuracy "
              f"{np.mean(base == labels):.4f}")
        for fmt, pc in QUANTIZATIONS:
            path = os.path.join(tmp, mqf.variant_name(name, fmt, pc))
            mqf.quantize(fm, xs, fmt, pc, path)
            want = run_onnxruntime(path, xs).reshape(len(xs), -1)
            got = run_reference(path, xs).reshape(len(xs), -1)
            same = np.all(got == want, axis=1)
            print(f"  {os.path.basename(path):20s} onnxruntime {np.mean(want.argmax(1) == labels):.4f}"
                  f"  accsim {np.mean(got.argmax(1) == labels):.4f}"
                  f"  bit-identical outputs {int(same.sum())}/{len(xs)}"
                  f"  top-1 agreement {np.mean(got.argmax(1) == want.argmax(1)):.4f}")
            if (fmt, pc) == ("qdq", False):
                keep = (path, want)
        register_table(keep[0], xs, labels, keep[1])


def register_table(path, xs, labels, want):
    """Simulate the quantized model at ``path`` on every register of :data:`REGISTERS`:
    one line per register (accuracy, agreement with onnxruntime's ``want``, outputs
    bit-identical), then per layer its events on each register and the narrowest
    registers (observed on these images, worst-case bound)."""
    trace = import_onnx(path, xs, labels)
    runs = {reg: simulate(trace, "int8-int32acc", narrow=reg) for reg in REGISTERS}
    print(f"  narrow registers on {os.path.basename(path)} (int8-int32acc, accumulator "
          f"replaced):")
    print(f"    {'register':<10} {'accuracy':>8} {'agree':>7} {'identical':>10}   "
          f"overflows per layer")
    for reg, r in runs.items():
        same = int(np.all(r.outputs == want, axis=1).sum())
        ev = " ".join(f"{lr.events['overflows']:>7}" for lr in r.layers)
        agree = np.mean(r.outputs.argmax(1) == want.argmax(1))
        print(f"    {reg:<10} {r.accuracy:>8.4f} {agree:>7.4f} {same:>5}/{len(xs):<4}   {ev}")
    print(f"    {'layer':<16} {'op':<14} {'K':>5} {'max|psum|':>10} {'bits seen':>9} "
          f"{'bits bound':>10}")
    for lr in runs["int32"].layers:
        g = lr.register
        big = max(g["max_partial_sum"], -g["min_partial_sum"])
        print(f"    {lr.name[:16]:<16} {lr.kind:<14} {lr.K:>5} {big:>10} "
              f"{g['min_register_bits_observed']:>9} {g['min_register_bits_bound']:>10}")


def main(argv):
    names = [a for a in argv if a in mqf.BUILDERS] or ["mlp", "cnn"]
    nums = [int(a) for a in argv if a.isdigit()]
    for name in names:
        report(name, nums[0] if nums else 1000)


if __name__ == "__main__":
    main(sys.argv[1:])
