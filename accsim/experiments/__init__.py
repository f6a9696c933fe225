"""Layer 4: experiments over networks and accelerators.

Owns: sweep specs and their points (:mod:`.spec`), executors (in-process, processes,
Dask; :mod:`.executors`), the results file (:mod:`.results`), running points and whole
sweeps (:mod:`.sweep`), reports and plots (:mod:`.report`). Imports every lower layer.
"""
