"""Example simulators built with the package, loadable by name.

>>> import ppfast.examples
>>> sorted(ppfast.examples.available())[:2]
['branching', 'gum']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

__all__ = ["available", "library_path", "load"]

from .._paths import EXAMPLES_LIB as _LIB


def available() -> List[str]:
    return sorted(p.stem for p in _LIB.glob("*.so"))


def library_path(name: str) -> Path:
    path = _LIB / f"{name}.so"
    if not path.exists():
        raise ValueError(f"no example simulator {name!r}; available: {', '.join(available()) or 'none (package not built?)'}")
    return path


def load(name: str, mode: str = "embedded", **kwargs: Any):
    """An example as a model: ``mode='embedded'`` (shared library in this process),
    ``'shm'`` (its own processes over shared memory), ``'python'`` or ``'numba'``."""
    if mode == "embedded":
        from ..models.native import NativeModel

        return NativeModel(library_path(name), **kwargs)
    if mode == "shm":
        from ..models.shm import ShmModel

        return ShmModel.example(name, **kwargs)
    if mode == "python":
        from . import python_models

        return python_models.MODELS[name](**kwargs)
    if mode == "numba":
        from . import numba_models

        return numba_models.load(name, **kwargs)
    raise ValueError(f"mode must be 'embedded', 'shm', 'python' or 'numba', got {mode!r}")
