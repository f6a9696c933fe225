"""Quantize the bundled MNIST MLP and CNN with onnxruntime's tools and run them through
accsim's integer reference (accsim.network.quant_ops), comparing with onnxruntime.

For each model and each of onnxruntime's quantizations (static QDQ per-tensor and
per-channel, static QOperator, dynamic), prints the accuracy on the trace's 1000 held-out
images of onnxruntime and of the reference, how many final outputs are bit-identical and
how many top-1 predictions agree. Needs onnx and onnxruntime (project dependencies).

    python examples/quantized_models.py            # both models, all quantizations
    python examples/quantized_models.py cnn 200    # one model, first 200 images

The narrow-register table (int16/int20/int24 accumulators, overflow per layer) comes with
the simulator's graph support; this script shows the int32-accumulator reference.
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

from accsim.network import quant_ops  # noqa: E402

mqf.register_float_glue()
TRACE = {"mlp": "mnist-mlp-relu", "cnn": "mnist-cnn"}
QUANTIZATIONS = [("qdq", False), ("qdq", True), ("qop", False), ("dynamic", False)]


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


def main(argv):
    names = [a for a in argv if a in mqf.BUILDERS] or ["mlp", "cnn"]
    nums = [int(a) for a in argv if a.isdigit()]
    for name in names:
        report(name, nums[0] if nums else 1000)


if __name__ == "__main__":
    main(sys.argv[1:])
