"""The ppfast side of the reference models: the package's own examples
(``ppfast.examples.python_models``), site for site the same as ``bench/pyprob_models.py``.

ppfast is imported on first access to a model class, so this module imports without it::

    from bench.ppfast_models import GUM  # PpfastUnavailable (an ImportError) without ppfast
"""

from __future__ import annotations

from typing import Any

__all__ = [  # the model classes are looked up on first access (module __getattr__)
    "GUM",  # noqa: F822
    "Branching",  # noqa: F822
    "Geometric",  # noqa: F822
    "Hundred",  # noqa: F822
    "PpfastUnavailable",
    "load_ppfast",
]


class PpfastUnavailable(ImportError):
    """ppfast (or a part these models need) cannot be imported."""


def load_ppfast() -> Any:
    """Import ppfast, or raise PpfastUnavailable saying why."""
    try:
        import ppfast
        import ppfast.examples.python_models  # noqa: F401
    except ImportError as e:
        raise PpfastUnavailable(f"ppfast not importable ({type(e).__name__}: {e})") from e
    return ppfast


def __getattr__(name: str) -> Any:
    if name in ("GUM", "Branching", "Hundred", "Geometric"):
        load_ppfast()
        from ppfast.examples import python_models

        return getattr(python_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
