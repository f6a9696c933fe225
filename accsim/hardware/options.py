"""The pricing vocabulary shared by the accelerator YAML and the cost model: where a
chunked accumulator's promotion adder lives, where re-issued operands come back from,
and how the re-issue decision is made in hardware (:mod:`accsim.hardware.accelerator`
reads them, :mod:`accsim.hardware.pricing` prices them; this module imports neither, so
the cost model stays free of the engine)."""

from __future__ import annotations

PROMOTIONS = ("per-pe", "per-row", "per-column", "outside")
"""Where a ``chunked`` accumulator's wide promotion adder lives (module docstring)."""
DEFAULT_PROMOTION = "outside"
"""The promotion location when the YAML gives none (DeepSeek-V3 on Hopper)."""
REFETCH = ("buffer", "pe", "none")
"""Where a re-issued output's operands come back from (:mod:`accsim.hardware.pricing`)."""
ESTIMATOR_HARDWARE = {
    "none": "no run-time decision (static or uniform assignment): free",
    "exact": "a second narrow pass computing |w||x| (one narrow MAC per term)",
    "norm": "||w_i||*||x|| with weight norms precomputed (one narrow MAC per input element)",
    "exponent": "an exponent-only adder (two integer adds of the exponent width per term)",
    "output": "the narrow output alone (no extra MACs; one exponent compare per output)",
    "flag": "the narrow accumulator's saturation/overflow flag (one flag bit per output)",
}
"""How the re-issue decision is made in hardware, by name, as the cost model prices it."""
PRICING_ESTIMATORS = ("auto",) + tuple(ESTIMATOR_HARDWARE)
"""Values of the accelerator YAML's ``pricing.estimator`` (``auto``: the policy's own)."""
