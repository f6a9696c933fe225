"""ONNX import and the float64 graph forward pass vs onnxruntime, measured in one run.

For each model: ``import_graph`` (checker, onnxruntime's basic optimisation, folding,
one-sample walk), then ``graph_ops.forward`` on all N samples at once, against an
onnxruntime session (created once, not timed) running the same N samples one at a time
(the models may have a fixed batch of 1). Medians of ``--repeats`` runs; the forward
ratio is ours / onnxruntime's (float64 numpy vs float32 onnxruntime). Also the largest
absolute difference of the outputs and the argmax agreement.

    python bench/bench_onnx_import.py                      # tests/fixtures/onnx/*.onnx
    python bench/bench_onnx_import.py resnet18.onnx --inputs X.npy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from accsim.network.graph_ops import forward
from accsim.network.onnx_import import import_graph
from bench_models import median_time  # bench/ is on sys.path when run as a script

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"


def ort_rows(path, x, output):
    """onnxruntime's session on ``path`` and a function running ``x`` one sample at a time
    (float32), returning ``(N, outputs)`` float64."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    k = names.index(output)
    xf = x.astype(np.float32)

    def run():
        rows = []
        for v in xf:
            r = sess.run([names[k]], {name: v[None]})[0]
            if isinstance(r, list):  # ZipMap
                r = np.array([[m[c] for c in sorted(m)] for m in r])
            rows.append(np.asarray(r, dtype=np.float64).reshape(-1))
        return np.stack(rows)
    return run


def bench(path, x, output, repeats):
    t_imp, (g, arrays, _) = median_time(lambda: import_graph(path, x, output=output), repeats)
    xs = x.reshape(x.shape[0], *g.input_shape).astype(np.float64)
    t_fwd, y = median_time(lambda: forward(g, arrays, xs), repeats)
    run = ort_rows(path, x, output or g.output)
    run()
    t_ort, ref = median_time(run, repeats)
    y = y.reshape(ref.shape)
    return {"model": Path(path).name, "nodes": len(g.nodes),
            "products": len(g.product_nodes()), "import_s": t_imp, "forward_s": t_fwd,
            "ort_s": t_ort, "ratio": t_fwd / t_ort,
            "max_abs": float(np.abs(y - ref).max()),
            "argmax": float(np.mean(y.argmax(1) == ref.argmax(1)))}


def cases(args):
    if args.models:
        x = np.load(args.inputs)
        return [(m, x, args.output) for m in args.models]
    listing = json.loads((FIXTURES / "fixtures.json").read_text())
    out = []
    for f in listing:
        import onnx
        outs = [o.name for o in onnx.load(str(FIXTURES / f["file"]),
                                          load_external_data=False).graph.output]
        output = f["output"] if f["output"] in outs else None
        out.append((FIXTURES / f["file"], np.load(FIXTURES / f["inputs"]), output))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help="ONNX files (default: the test fixtures)")
    p.add_argument("--inputs", help="X.npy for the models given")
    p.add_argument("--output", help="graph output to compare")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.models and not args.inputs:
        p.error("--inputs is needed with models")
    head = (f"{'model':28s} {'nodes':>5s} {'prod':>4s} {'import s':>9s} {'fwd64 s':>8s} "
            f"{'ort s':>7s} {'ratio':>6s} {'max |diff|':>10s} {'argmax':>6s}")
    print(head)
    for path, x, output in cases(args):
        r = bench(path, x, output, args.repeats)
        print(f"{r['model']:28s} {r['nodes']:5d} {r['products']:4d} {r['import_s']:9.3f} "
              f"{r['forward_s']:8.3f} {r['ort_s']:7.3f} {r['ratio']:6.1f} "
              f"{r['max_abs']:10.2e} {r['argmax']:6.3f}")


if __name__ == "__main__":
    main()
