"""Layer 2 (beside :mod:`accsim.hardware`): error analysis and re-issue policies.

Owns: componentwise analysis, κ_i, κ_φ and error bounds (:mod:`.analysis`), and the
scheduler's policies and criteria (:mod:`.scheduler`): matrices and masks in, masks out.
Imports only :mod:`accsim.numerics`: no networks, no prices.
"""
