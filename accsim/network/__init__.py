"""Layer 3: networks on a simulated datapath.

Owns: traces and the bundled ones (:mod:`.trace`), ONNX import (:mod:`.onnx_import`), the
float64 operators (:mod:`.ops`), the operands' lowering and quantisation
(:mod:`.operands`), one layer batch's narrow pass, re-issue and bound check
(:mod:`.reissue`), the run over the samples (:mod:`.simulation`) and what it reports
(:mod:`.results`). Imports :mod:`accsim.precision`, :mod:`accsim.hardware` and
:mod:`accsim.numerics`.
"""

from .results import LayerResult, SimulationResult, relative_error
from .simulation import DEFAULT_BATCH, compare, simulate
from .trace import Layer, Trace, list_traces, load_trace, resolve_trace, save_trace, traces_dir

__all__ = ["DEFAULT_BATCH", "Layer", "LayerResult", "SimulationResult", "Trace", "compare",
           "list_traces", "load_trace", "relative_error", "resolve_trace", "save_trace",
           "simulate", "traces_dir"]
