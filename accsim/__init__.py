"""accsim: bit-accurate simulation of hardware accumulators for neural-network inference."""

__version__ = "0.1.0"

from .formats import FloatFormat, FixedFormat, IntFormat, ROUNDING_MODES  # noqa: E402
from .rounding import quantize  # noqa: E402
from .config import load_format, list_formats  # noqa: E402
from .engine import matmul, MatmulResult, Events  # noqa: E402
from .accelerator import Accelerator, load_accelerator, list_accelerators  # noqa: E402
from .trace import Trace, Layer, load_trace, save_trace  # noqa: E402
from .network import simulate  # noqa: E402

__all__ = [
    "FloatFormat", "IntFormat", "FixedFormat", "ROUNDING_MODES", "quantize",
    "load_format", "list_formats", "matmul", "MatmulResult", "Events",
    "Accelerator", "load_accelerator", "list_accelerators",
    "Trace", "Layer", "load_trace", "save_trace", "simulate", "__version__",
]
