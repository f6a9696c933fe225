"""Layer 2 (beside :mod:`accsim.precision`): the hardware a product runs on.

Owns: accelerators read from YAML (:mod:`.accelerator`), technology tables and their
scaling rules (:mod:`.technology`), the cost model (:mod:`.pricing`) and the Accelergy
export (:mod:`.accelergy`), all three importable from :mod:`.cost`. Imports only
:mod:`accsim.numerics`; prices event and action counts, never runs a network.
"""
