"""``accsim import-onnx MODEL.onnx --inputs X.npy [--labels Y.npy] --out DIR [--output NAME]
[--force]`` and ``accsim import-onnx --list-ops``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ..network import quant_ops
from ..network.graph_ops import supported_ops
from ..network.onnx_import import LOOK_THROUGH, import_graph, trace_of_graph
from ..network.onnx_rnn import RECURRENT
from ..network.trace import WEIGHT_SCALES, save_trace
from ..numerics.config import load_format
from ..numerics.formats import IntFormat
from .common import UsageError


def register(subparsers):
    p = subparsers.add_parser("import-onnx", help="convert an ONNX model and data into a trace")
    p.add_argument("model", metavar="MODEL.onnx", nargs="?")
    p.add_argument("--list-ops", action="store_true",
                   help="print the ONNX operators accsim runs and exit")
    p.add_argument("--inputs", metavar="X.npy",
                   help="model inputs (N, ...) as a .npy array: N samples, each of the "
                        "model input's shape without its batch axis")
    p.add_argument("--labels", metavar="Y.npy", help="integer labels (N,) as a .npy array")
    p.add_argument("--output", metavar="NAME",
                   help="the graph output to import when the model has several")
    p.add_argument("--out", metavar="DIR",
                   help="trace folder to write (an existing trace is replaced only with "
                        "--force)")
    p.add_argument("--force", action="store_true",
                   help="replace the trace already in --out")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no notice on stderr while the model is converted")
    p.add_argument("--input-format", metavar="FORMAT",
                   help="operand format of the inputs (quantised with rne / per-tensor scale)")
    p.add_argument("--weight-format", metavar="FORMAT",
                   help="operand format of the weights")
    p.add_argument("--weight-scale", choices=list(WEIGHT_SCALES),
                   default=None, help="scaling of integer weight formats (default per-channel)")
    p.set_defaults(func=_cmd_import_onnx)


def _load_npy(path, what):
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} {p}: file not found")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 (any failure means unreadable)
        raise UsageError(f"{what} {p}: not a readable .npy file "
                         f"({exc.__class__.__name__})") from None


def _quantization(args):
    """The ``quant`` argument of :func:`accsim.network.onnx_import.import_onnx`: operand
    formats and scalings asked for (integer formats scaled, float formats not), or
    ``None``."""
    if not (args.input_format or args.weight_format):
        return None
    quant = {}
    if args.input_format:
        f = load_format(args.input_format)
        quant["input"] = {"format": args.input_format,
                          "scale": "per-tensor" if isinstance(f, IntFormat) else "none"}
    if args.weight_format:
        f = load_format(args.weight_format)
        sc = args.weight_scale or ("per-channel" if isinstance(f, IntFormat) else "none")
        quant["weight"] = {"format": args.weight_format, "scale": sc}
    return quant


def _check_out(out, force):
    """Refuse, before any work, an ``--out`` that holds a trace (without ``force``) or
    that is something else than a trace folder or an empty one."""
    p = Path(out)
    if (p / "trace.yaml").is_file():
        if not force:
            raise UsageError(f"--out {out}: a trace is already there (pass --force to "
                             f"replace it)")
    elif p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise UsageError(f"--out {out}: exists and is not a trace folder; refusing to "
                         f"overwrite it")


#: options that need a model (refused with --list-ops)
MODEL_OPTIONS = ("model", "inputs", "labels", "out", "output", "input_format",
                 "weight_format", "weight_scale")


def _list_ops(args):
    given = [o for o in MODEL_OPTIONS if getattr(args, o) is not None] + \
        (["force"] if args.force else [])
    if given:
        names = ["MODEL" if o == "model" else "--" + o.replace("_", "-") for o in given]
        raise UsageError(f"import-onnx --list-ops: takes no model options (got "
                         f"{', '.join(names)})")
    print("ONNX operators accsim imports (default domain; Constant is folded):")
    print(" ".join(supported_ops()))
    print(f"unrolled into per-step products at import: {' '.join(sorted(RECURRENT))}")
    print(f"looked through at the chosen output: {' '.join(LOOK_THROUGH)}; nodes after it "
          f"are dropped")
    return 0


def _cmd_import_onnx(args):
    if args.list_ops:
        return _list_ops(args)
    missing = [n for n, v in (("MODEL.onnx", args.model), ("--inputs", args.inputs),
                              ("--out", args.out)) if v is None]
    if missing:
        raise UsageError(f"import-onnx: the following arguments are required: "
                         f"{', '.join(missing)}")
    _check_out(args.out, args.force)
    x = _load_npy(args.inputs, "--inputs")
    y = _load_npy(args.labels, "--labels") if args.labels else None
    notice = not args.quiet and sys.stderr.isatty()
    t0 = time.perf_counter()
    if notice:
        print(f"accsim import-onnx: converting {args.model} "
              f"({x.shape[0] if x.ndim else 0} inputs) ...", file=sys.stderr, flush=True)
    quant = _quantization(args)
    graph, arrays, notes = import_graph(args.model, x, output=args.output)
    integer = [n for n in graph.nodes if n.op in quant_ops.INTEGER_PRODUCT_OPS]
    if quant and quant_ops.is_quantized(graph):
        raise ValueError(f"--{next(iter(quant))}-format: {args.model} is a quantized model "
                         f"(its operands are the model's own integers)")
    if not args.quiet:
        for n in notes:
            print(f"accsim import-onnx: note: {n}", file=sys.stderr)
    trace = trace_of_graph(args.model, graph, arrays, x, y, quant=quant)
    out = save_trace(trace, args.out)
    if notice:
        print(f"accsim import-onnx: {time.perf_counter() - t0:.1f} s", file=sys.stderr,
              flush=True)
    acc = trace.reference_accuracy
    kind = "exact integer" if integer else "float64"
    print(f"wrote {out}: {len(graph.nodes)} nodes "
          f"({len(graph.product_nodes()) + len(integer)} matrix products"
          f"{', integer' if integer else ''}), {x.shape[0]} inputs"
          + (f", {kind} accuracy {acc:.4f}" if acc is not None else ""))
    return 0
