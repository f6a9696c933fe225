"""Old import paths (accsim 0.1's flat layout) kept working, each with a DeprecationWarning
naming the new one: ``import accsim.engine`` gives the module ``accsim.numerics.engine``.

One table instead of a shim file per old module. ``accsim.network`` needs no entry: it is
now a package exporting what the old module's users imported (``simulate``, ...).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "accsim.formats": "accsim.numerics.formats",
    "accsim.rounding": "accsim.numerics.rounding",
    "accsim.config": "accsim.numerics.config",
    "accsim.engine": "accsim.numerics.engine",
    "accsim.kernels": "accsim.numerics.kernels",
    "accsim.accelerator": "accsim.hardware.accelerator",
    "accsim.cost": "accsim.hardware.cost",
    "accsim.analysis": "accsim.precision.analysis",
    "accsim.scheduler": "accsim.precision.scheduler",
    "accsim.trace": "accsim.network.trace",
    "accsim.onnx_import": "accsim.network.onnx_import",
    "accsim.ops": "accsim.network.ops",
    "accsim.sweep": "accsim.experiments.sweep",
    "accsim.report": "accsim.experiments.report",
    "accsim.cmodel": "accsim.interop.cmodel",
    "accsim.capi": "accsim.interop.capi",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as the module at its new path (the same
    module object, so state and monkeypatching are shared)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        # stacklevel 2: the user's import statement (warnings skips importlib's frames)
        warnings.warn(f"{spec.name} is deprecated: import {new} instead",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        # the import system sets __spec__ on the module it gets back: keep the real one
        self._keep = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._keep
        sys.modules[module.__spec__.name] = module


def install():
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
