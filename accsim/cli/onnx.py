"""``accsim import-onnx MODEL.onnx --inputs X.npy [--labels Y.npy] --out DIR``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ..network.onnx_import import import_onnx
from ..network.trace import WEIGHT_SCALES, save_trace
from ..numerics.config import load_format
from ..numerics.formats import IntFormat
from .common import UsageError


def register(subparsers):
    p = subparsers.add_parser("import-onnx", help="convert an ONNX model and data into a trace")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--inputs", required=True, metavar="X.npy",
                   help="model inputs (N, ...) as a .npy array")
    p.add_argument("--labels", metavar="Y.npy", help="integer labels (N,) as a .npy array")
    p.add_argument("--out", required=True, metavar="DIR",
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


def _cmd_import_onnx(args):
    _check_out(args.out, args.force)
    x = _load_npy(args.inputs, "--inputs")
    y = _load_npy(args.labels, "--labels") if args.labels else None
    notice = not args.quiet and sys.stderr.isatty()
    t0 = time.perf_counter()
    if notice:
        print(f"accsim import-onnx: converting {args.model} "
              f"({x.shape[0] if x.ndim else 0} inputs) ...", file=sys.stderr, flush=True)
    trace = import_onnx(args.model, x, y, quant=_quantization(args))
    out = save_trace(trace, args.out)
    if notice:
        print(f"accsim import-onnx: {time.perf_counter() - t0:.1f} s", file=sys.stderr,
              flush=True)
    acc = trace.reference_accuracy
    print(f"wrote {out}: {len(trace.graph.nodes)} nodes "
          f"({len(trace.matmul_layers())} matrix products), {trace.inputs.shape[0]} inputs"
          + (f", float64 accuracy {acc:.4f}" if acc is not None else ""))
    return 0
