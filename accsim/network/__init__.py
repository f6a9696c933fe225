"""Layer 3: networks on a simulated datapath.

Owns: traces (:mod:`.trace`), ONNX import (:mod:`.onnx_import`), the float64 operators
(:mod:`.ops`) and the simulation with its results (:mod:`.simulation`). Imports
:mod:`accsim.precision`, :mod:`accsim.hardware` and :mod:`accsim.numerics`.
"""

from .simulation import (DEFAULT_BATCH, LayerResult, SimulationResult, compare, list_traces,
                         relative_error, resolve_trace, simulate, traces_dir)
from .trace import Layer, Trace, load_trace, save_trace

__all__ = ["DEFAULT_BATCH", "Layer", "LayerResult", "SimulationResult", "Trace", "compare",
           "list_traces", "load_trace", "relative_error", "resolve_trace", "save_trace",
           "simulate", "traces_dir"]
