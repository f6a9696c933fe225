"""Command-line interface: ``accsim COMMAND ...``. Thin: parses, calls the API, prints.

One module per command group (``formats``, ``quantize``, ``accelerators``, ``matmul``,
``simulate``, ``onnx``: import-onnx, ``cost``, ``capi``: crosscheck and capi, ``sweep``:
sweep and report, ``validate``: any YAML file), each with ``register(subparsers)``; :mod:`.app` assembles the parser
and runs it; :mod:`.common` holds what they share. Every user error is one line on
stderr and exit code 2.
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
