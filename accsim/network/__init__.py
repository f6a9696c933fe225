"""Layer 3: networks on a simulated datapath.

Owns: graphs (:mod:`.graph`), traces and the bundled ones (:mod:`.trace`, version 1 in
:mod:`.trace_v1`), ONNX import (:mod:`.onnx_import`), the float64 operators (:mod:`.ops`,
:mod:`.graph_ops`), the product lowering (:mod:`.products`), the operands' quantisation
(:mod:`.operands`), one 2-D problem batch's narrow pass, re-issue and bound check
(:mod:`.reissue`), the run over the samples (:mod:`.simulation`) and what it reports
(:mod:`.results`). Imports :mod:`accsim.precision`, :mod:`accsim.hardware` and
:mod:`accsim.numerics`.
"""

from .graph import Graph, Node
from .products import forward64
from .results import LayerResult, SimulationResult, relative_error
from .simulation import DEFAULT_BATCH, compare, save_outputs, simulate
from .trace import Layer, Trace, list_traces, load_trace, resolve_trace, save_trace, traces_dir

__all__ = ["DEFAULT_BATCH", "Graph", "Layer", "LayerResult", "Node", "SimulationResult",
           "Trace", "compare", "forward64", "list_traces", "load_trace", "relative_error",
           "resolve_trace", "save_outputs", "save_trace", "simulate", "traces_dir"]
