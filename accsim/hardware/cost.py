"""Cost model of the hardware layer, one import path for its three parts.

* :mod:`accsim.hardware.technology`: technology tables (``kind: technology`` YAML,
  energy per operation in pJ and area in um2 of each primitive) and the scaling rules
  that price a primitive at any width;
* :mod:`accsim.hardware.pricing`: per-MAC cost of an accelerator's narrow and wide
  datapaths, estimator and re-fetch costs, action counts, and the energy, area and
  cycles of a mixed-precision run (:func:`price_run`, :func:`price_simulation`,
  :func:`break_even_fraction`, :func:`run_break_even`), the three views of a run
  (accumulator, whole MAC, with memory) and the assumptions behind them;
* :mod:`accsim.hardware.accelergy`: the Accelergy/Timeloop export.

``accsim.cost`` (the old path) is this module.
"""

from __future__ import annotations

from .accelergy import export_accelergy
from .pricing import (
    ESTIMATORS,
    REFETCH,
    STANDARD_OPS,
    VIEWS,
    accumulate_cost,
    assumptions,
    break_even_table,
    mac_parts,
    per_inference,
    priced_estimator,
    promotion_adders,
    promotion_cost,
    run_break_even,
    sram_bits,
    action_counts,
    add_cost,
    array_area,
    break_even_fraction,
    energy_table,
    estimator_costs,
    gemm_cycles,
    mac_cost,
    mul_cost,
    op_cost,
    ops_table,
    parse_op,
    price_run,
    price_simulation,
    refetch_energy_per_term,
    register_cost,
)
from .technology import (
    OPS,
    STATUSES,
    ZERO,
    Cost,
    Primitive,
    Technology,
    list_technologies,
    load_technology,
    technology_from_doc,
)

__all__ = [
    # technology tables
    "Cost", "ZERO", "Primitive", "Technology", "OPS", "STATUSES", "technology_from_doc",
    "list_technologies", "load_technology",
    # cost model
    "ESTIMATORS", "REFETCH", "STANDARD_OPS", "op_cost", "register_cost", "mul_cost",
    "add_cost", "mac_cost", "estimator_costs", "refetch_energy_per_term", "gemm_cycles",
    "array_area", "action_counts", "energy_table", "price_run", "price_simulation",
    "break_even_fraction", "parse_op", "ops_table", "VIEWS", "accumulate_cost",
    "assumptions", "break_even_table", "mac_parts", "per_inference", "priced_estimator",
    "promotion_adders", "promotion_cost", "run_break_even", "sram_bits",
    # Accelergy export
    "export_accelergy",
]
