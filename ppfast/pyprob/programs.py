"""Runs a PyProb program file unchanged on ppfast: ``import pyprob`` and ``from pyprob...``
inside it resolve to :mod:`ppfast.pyprob` while it loads.

>>> # module = load_program("examples/pyprob/branching.py")
>>> # module.run(1000).mean
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, Union

__all__ = ["load_program"]


def load_program(path: Union[str, Path], backend: str = "ppfast") -> types.ModuleType:
    """Executes the program at ``path`` as a fresh module, with ``pyprob`` meaning
    ``ppfast.pyprob`` (``backend='ppfast'``) or the installed PyProb (``'pyprob'``)."""
    if backend not in ("ppfast", "pyprob"):
        raise ValueError(f"backend must be 'ppfast' or 'pyprob', got {backend!r}")
    path = Path(path)
    swapped: dict[str, Any] = {}
    if backend == "ppfast":
        import ppfast.pyprob as compat

        for name, module in (("pyprob", compat), ("pyprob.distributions", compat.distributions),
                             ("pyprob.diagnostics", compat.diagnostics)):
            swapped[name] = sys.modules.get(name)
            sys.modules[name] = module
    try:
        spec = importlib.util.spec_from_file_location(f"_pyprob_program_{backend}_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for name, previous in swapped.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
