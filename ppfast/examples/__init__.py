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


# Built only once Pythia 8.244 has been built (outside the repository, cached).
PYTHIA_EXAMPLES = ("pythia_tau", "pythia_z")
BUILD_PYTHIA = "bash scripts/build_pythia.sh"


def check_built(name: str) -> None:
    """Raises with the command that builds Pythia when a Pythia example is missing."""
    if name in PYTHIA_EXAMPLES and not (_LIB / f"{name}.so").exists():
        raise ValueError(f"example {name!r} needs Pythia 8.244, which is not built: run `{BUILD_PYTHIA}` "
                         "in the ppfast source tree (fetches and builds Pythia, cached, and rebuilds ppfast)")


def library_path(name: str) -> Path:
    path = _LIB / f"{name}.so"
    if not path.exists():
        check_built(name)
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

        check_built(name)
        return ShmModel.example(name, **kwargs)
    if mode == "python":
        from . import python_models

        return python_models.MODELS[name](**kwargs)
    if mode == "numba":
        from . import numba_models

        return numba_models.load(name, **kwargs)
    raise ValueError(f"mode must be 'embedded', 'shm', 'python' or 'numba', got {mode!r}")
