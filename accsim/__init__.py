"""accsim: bit-accurate simulation of hardware accumulators for neural-network inference.

Layers, lowest first (each imports only those below it; ``pyproject.toml`` states the
contract and CI checks it): :mod:`accsim.numerics` → :mod:`accsim.hardware` |
:mod:`accsim.precision` → :mod:`accsim.network` → :mod:`accsim.experiments` |
:mod:`accsim.interop` → :mod:`accsim.cli`. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"

from .numerics.formats import FloatFormat, FixedFormat, IntFormat, ROUNDING_MODES  # noqa: E402
from .numerics.rounding import quantize  # noqa: E402
from .numerics.config import load_format, list_formats  # noqa: E402
from .numerics.engine import matmul, MatmulResult, Events  # noqa: E402
from .hardware.accelerator import Accelerator, load_accelerator, list_accelerators  # noqa: E402
from .network.trace import Trace, Layer, load_trace, save_trace  # noqa: E402
from .network.simulation import simulate  # noqa: E402
from . import _compat  # noqa: E402

_compat.install()

__all__ = [
    "FloatFormat", "IntFormat", "FixedFormat", "ROUNDING_MODES", "quantize",
    "load_format", "list_formats", "matmul", "MatmulResult", "Events",
    "Accelerator", "load_accelerator", "list_accelerators",
    "Trace", "Layer", "load_trace", "save_trace", "simulate", "__version__",
]
