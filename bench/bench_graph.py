"""Graph traces: simulate time of product kinds the version-1 traces did not have, against
the float64 forward pass and onnxruntime in the same run.

Two synthetic graphs (random weights, no training): a self-attention block over (T, d)
tokens (Q, K, V projections, QK^T and A.V per sample, output projection) and a
depthwise-separable convolution block (grouped 3x3 then 1x1). Prints the median of
``--repeats`` interleaved runs of: onnxruntime (float32, CPU), the float64 forward pass
(``accsim.network.forward64``), and ``accsim.simulate`` on fp16-fp16acc without and with
the error-bound checks; and the ratios to onnxruntime.

    python bench/bench_graph.py [--samples 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from accsim.network import Graph, Node, Trace, forward64, simulate


def _f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def attention(rng, n, T=16, d=64):
    """Single-head self-attention over (T, d): QK^T as Gemm(Q, K, transB) (K = d), A.V as
    MatMul (K = T), both activation x activation, one 2-D problem per sample."""
    arrays = {k: _f32(rng.standard_normal((d, d)) / np.sqrt(d)) for k in ("Wq", "Wk", "Wv", "Wo")}
    nodes = [Node("q", "MatMul", ["x", "Wq"], ["q"]), Node("k", "MatMul", ["x", "Wk"], ["k"]),
             Node("v", "MatMul", ["x", "Wv"], ["v"]),
             Node("scores", "Gemm", ["q", "k"], ["s"], {"transB": 1, "alpha": 1 / np.sqrt(d)}),
             Node("softmax", "Softmax", ["s"], ["p"], {"axis": -1}),
             Node("mix", "MatMul", ["p", "v"], ["o"]),
             Node("out", "MatMul", ["o", "Wo"], ["y"])]
    g = Graph(nodes, "x", (T, d), "y")
    return g, arrays, _f32(rng.standard_normal((n, T, d))), (T, d)


def separable(rng, n, C=32, S=16):
    arrays = {"Wd": _f32(rng.standard_normal((C, 1, 3, 3)) / 3),
              "Wp": _f32(rng.standard_normal((2 * C, C, 1, 1)) / np.sqrt(C))}
    nodes = [Node("depthwise", "Conv", ["x", "Wd"], ["a"], {"group": C, "pads": [1, 1, 1, 1]}),
             Node("relu", "Relu", ["a"], ["r"]),
             Node("pointwise", "Conv", ["r", "Wp"], ["y"])]
    g = Graph(nodes, "x", (1, C, S, S), "y")
    return g, arrays, _f32(rng.standard_normal((n, C, S, S))), (1, 2 * C, S, S)


def _ort_session(g, arrays, out_shape):
    nodes = []
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
             for k, v in arrays.items()]
    for nd in g.nodes:
        nodes.append(helper.make_node(nd.op, list(nd.inputs), list(nd.outputs), name=nd.name,
                                      **nd.attrs))
    graph = helper.make_graph(
        nodes, "b", [helper.make_tensor_value_info(g.input, TensorProto.FLOAT,
                                                   list(g.input_shape))],
        [helper.make_tensor_value_info(g.output, TensorProto.FLOAT, list(out_shape))], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(name, g, arrays, X, out_shape, repeats):
    t = Trace.from_graph(name, g, arrays, X)
    sess = _ort_session(g, arrays, out_shape)
    xin = sess.get_inputs()[0].name
    Xm = t.model_inputs(X).astype(np.float32)
    simulate(t, "fp16-fp16acc", limit=4)                        # compile / warm up
    runs = {"onnxruntime (float32)": lambda: [sess.run(None, {xin: x}) for x in Xm],
            "float64 forward (forward64)": lambda: forward64(t),
            "simulate(analyze=False)": lambda: simulate(t, "fp16-fp16acc", analyze=False),
            "simulate (+ bound checks)": lambda: simulate(t, "fp16-fp16acc")}
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            times[k].append(_time(fn))
    base = statistics.median(times["onnxruntime (float32)"])
    print(f"\n{name}: {len(X)} samples, products "
          f"{', '.join(n.name for n in g.product_nodes())}")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"  {k:<30} {m:8.3f} s  {m / base:8.1f}x onnxruntime")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"accsim graph benchmark (median of {args.repeats}; numpy {np.__version__}, "
          f"onnxruntime {ort.__version__}, onnx {onnx.__version__})")
    bench("attention", *attention(rng, args.samples), args.repeats)
    bench("separable-conv", *separable(rng, args.samples), args.repeats)


if __name__ == "__main__":
    main()
