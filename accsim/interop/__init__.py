"""Layer 4 (beside :mod:`accsim.experiments`): accsim and other people's code.

Owns: users' C accumulator models and the cross-check against the engine
(:mod:`.cmodel`), and the cffi C API that embeds accsim in a C/SystemC testbench
(:mod:`.capi`). Imports :mod:`accsim.hardware` and :mod:`accsim.numerics`.
"""
