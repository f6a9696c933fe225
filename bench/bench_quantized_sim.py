"""Simulating a quantized model against simulating the same float model, on the same
accelerator (int8-int32acc) in the same run.

The committed fixtures tests/fixtures/onnx_quant/{cnn,rescnn}-float.onnx and their
onnxruntime quantizations (static QDQ, QOperator, dynamic) are imported with
``import_onnx`` on ``--samples`` images (the fixture images repeated); each trace is
simulated with ``accsim.simulate`` on int8-int32acc (narrow register only: no wide run).
The float model's products are quantized by accsim (symmetric int8 operands) and run on
the same register, with the error-bound checks on (the default) and off; the quantized
model's integer products run centred operands on the register and count their partial
sums (see accsim.network.integer_layers). Prints the median of ``--repeats``
interleaved runs and each quantized model's ratio to the float model's time (< 1: faster).

    python bench/bench_quantized_sim.py [--samples 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from bench_quant_ops import median_time  # this folder is on the path when run as a script

from accsim.network import simulate
from accsim.network.onnx_import import import_onnx

FIX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                   "fixtures", "onnx_quant")
MODELS = {"cnn": ["cnn-qdq.onnx", "cnn-qop.onnx", "cnn-dynamic.onnx"],
          "rescnn": ["rescnn-qdq.onnx", "rescnn-qop.onnx", "rescnn-dynamic.onnx"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    xs_all = np.load(os.path.join(FIX, "inputs.npz"))
    print(f"{'model':<22} {'seconds':>8} {'ratio to float':>15}   "
          f"(int8-int32acc, {args.samples} samples, median of {args.repeats})")
    for base, quantized in MODELS.items():
        xs = xs_all[base]
        xs = np.concatenate([xs] * (-(-args.samples // len(xs))))[:args.samples]
        float_trace = import_onnx(os.path.join(FIX, f"{base}-float.onnx"), xs)
        t_float = median_time(lambda: simulate(float_trace, "int8-int32acc"), args.repeats)
        t_float_nb = median_time(lambda: simulate(float_trace, "int8-int32acc", analyze=False),
                           args.repeats)
        print(f"{base + '-float':<22} {t_float:>8.2f} {1.0:>15.2f}")
        print(f"{base + '-float (no bounds)':<22} {t_float_nb:>8.2f} "
              f"{t_float_nb / t_float:>15.2f}")
        for name in quantized:
            tr = import_onnx(os.path.join(FIX, name), xs)
            t = median_time(lambda tr=tr: simulate(tr, "int8-int32acc"), args.repeats)
            print(f"{name.removesuffix('.onnx'):<22} {t:>8.2f} {t / t_float:>15.2f}")


if __name__ == "__main__":
    main()
