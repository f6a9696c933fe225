"""Layer 1, the lowest: number formats, rounding, the bit-exact matrix-product engine.

Owns: :mod:`.formats` (FloatFormat, IntFormat, FixedFormat), :mod:`.config` (YAML
documents and built-in format names), :mod:`.rounding` (:func:`quantize`),
:mod:`.datapath` (the frozen :class:`Datapath` value), :mod:`.engine` (:func:`matmul`),
:mod:`.threads` (:func:`~.threads.parallel_ranges`: a kernel on several threads) and the
private numba kernels in :mod:`.kernels`. Imports nothing else from accsim.
"""
