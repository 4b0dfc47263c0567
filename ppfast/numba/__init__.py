"""Models written in Python and compiled with numba, recorded by the C++ core.

A model is a function of no arguments whose random choices are calls to this module
with constant-string addresses; ``ppfast.jit`` (or ``ppfast.numba.model``) compiles it
and returns a ppfast model that runs on the C++ worker threads without the GIL::

    import ppfast
    from ppfast import numba as pn

    @ppfast.jit
    def gum():
        mu = pn.sample(pn.Normal(1.0, 5 ** 0.5), "mu")
        pn.observe(pn.Normal(mu, 2 ** 0.5), "obs0")
        pn.observe(pn.Normal(mu, 2 ** 0.5), "obs1")
        return mu

    gum.posterior_results(100_000, observe={"obs0": 8, "obs1": 9})

numba is imported on first use of anything here, so ``import ppfast`` stays light.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = [
    "Bernoulli",
    "Beta",
    "Binomial",
    "Categorical",
    "Exponential",
    "Gamma",
    "JitCompileError",
    "JitModel",
    "LogNormal",
    "Normal",
    "Poisson",
    "TruncatedNormal",
    "Uniform",
    "Weibull",
    "factor",
    "jit",
    "model",
    "observe",
    "sample",
    "tag",
]


def jit(fn: Optional[Callable[[], Any]] = None, *, name: Optional[str] = None, threads: Optional[int] = None,
        cache: bool = False) -> Any:
    """Compiles a model function with numba into a ppfast model (``ppfast.jit``); see
    :func:`ppfast.numba.model`.  Also usable as ``@ppfast.jit(threads=4, cache=True)``."""
    _require_numba()
    from ._model import model

    return model(fn, name=name, threads=threads, cache=cache)


def _require_numba() -> None:
    from .._optional import require

    require("numba", "compiled models (ppfast.jit)")


def _load(name: str) -> Any:
    _require_numba()
    from numba.core.registry import cpu_target

    from . import _dsl, _model

    # The first access may come from numba typing a model (pn.sample inside @njit):
    # the overloads registered by this import must reach the contexts already in use.
    cpu_target.typing_context.refresh()
    cpu_target.target_context.refresh()
    return getattr(_model if name in _model.__all__ else _dsl, name)


def __getattr__(name: str) -> Any:
    # PEP 562: numba and the overloads load on first access (numba resolves pn.Normal
    # inside compiled code through this too).
    if name in __all__:
        value = globals()[name] = _load(name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
