"""Layer 2 (beside :mod:`accsim.precision`): the hardware a product runs on.

Owns: accelerators read from YAML (:mod:`.accelerator`), the cost model with its
technology tables and the Accelergy export (:mod:`.cost`). Imports only
:mod:`accsim.numerics`; prices event and action counts, never runs a network.
"""
