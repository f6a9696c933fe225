"""Layer 4: experiments over networks and accelerators.

Owns: sweep specs, executors (in-process, processes, Dask) and the results file
(:mod:`.sweep`), reports and plots (:mod:`.report`). Imports every lower layer.
"""
