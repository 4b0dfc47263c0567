"""Optional dependencies: each is imported where it is first needed, and a missing one
fails with the pip command that installs it (the extras of pyproject.toml)."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require", "EXTRAS"]

#: Top-level module -> the extra of ``pip install 'ppfast[EXTRA]'`` that provides it.
EXTRAS = {
    "torch": "torch",
    "numba": "numba",
    "matplotlib": "diagnostics",
    "networkx": "diagnostics",
    "arviz": "diagnostics",
    "mpi4py": "mpi",
    "pyarrow": "data",
    "pandas": "data",
    "flatbuffers": "ppx",
    "zmq": "ppx",
    "tensorboard": "tensorboard",
}


def require(module: str, what: str = "") -> ModuleType:
    """Imports ``module`` (e.g. ``"torch"`` or ``"matplotlib.figure"``); if it is missing,
    raises ``ModuleNotFoundError`` saying which extra installs it and, with ``what``, what
    needed it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        missing = getattr(e, "name", None) or top
        if missing.split(".")[0] != top:
            raise  # the package is there but one of its own dependencies is broken: show that
        extra = EXTRAS.get(top)
        hint = f"pip install 'ppfast[{extra}]'" if extra else f"pip install {top}"
        needs = f"{what} needs {top}" if what else f"{top} is needed here"
        raise ModuleNotFoundError(f"{needs}, which is not installed: {hint}", name=top) from e
