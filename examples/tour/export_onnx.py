"""Write an ONNX model and its data for the README tour: the bundled digits MLP.

    pip install onnx            # (in accsim's test extra)
    python examples/tour/export_onnx.py --out /tmp/tour

writes ``digits.onnx`` (Gemm / Relu / Softmax, float32), ``X.npy`` (the 64-pixel test
images) and ``Y.npy`` (their labels) into ``--out``: a stand-in for the model a user
brings. ``accsim import-onnx`` turns them back into a trace.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def export(out: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from accsim.network import resolve_trace

    trace = resolve_trace("digits-mlp-relu")
    nodes, inits = [], []
    x, n_in = "x", None
    for layer in trace.graph.nodes:
        if layer.op == "Gemm":
            W = np.asarray(trace.arrays[layer.inputs[1]], dtype=np.float32)
            b = np.asarray(trace.arrays[layer.inputs[2]], dtype=np.float32)
            n_in = W.shape[1] if n_in is None else n_in
            inits += [numpy_helper.from_array(W, f"{layer.name}.W"),
                      numpy_helper.from_array(b, f"{layer.name}.b")]
            nodes.append(helper.make_node("Gemm", [x, f"{layer.name}.W", f"{layer.name}.b"],
                                          [layer.name], transB=1, name=layer.name))
        elif layer.op in ("Relu", "Softmax"):
            nodes.append(helper.make_node(layer.op, [x], [layer.name], name=layer.name))
        else:
            raise SystemExit(f"export_onnx: op {layer.op!r} is not handled here")
        x = layer.name
    graph = helper.make_graph(
        nodes, "digits-mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out / "digits.onnx")
    np.save(out / "X.npy", np.asarray(trace.inputs, dtype=np.float32))
    np.save(out / "Y.npy", np.asarray(trace.labels))
    return out / "digits.onnx"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("tour"))
    args = p.parse_args(argv)
    print(export(args.out))


if __name__ == "__main__":
    main()
