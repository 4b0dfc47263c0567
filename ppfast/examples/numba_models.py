"""The reference models as numba-compiled ppfast models (same as the C++ examples and
``python_models``: same addresses, same draws in the same order, so the same seed gives
the same traces).

The model functions are plain Python until compiled; :func:`load` compiles one by name::

    from ppfast.examples import numba_models
    gum = numba_models.load("gum")
    gum.posterior_results(100_000, observe={"obs0": 8, "obs1": 9})
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

from ppfast._optional import require

numba = require("numba", "the numba examples")

from ppfast import numba as pn  # noqa: E402
from ppfast.examples.python_models import fib as _fib

__all__ = ["gum", "branching", "hundred", "geometric", "fib", "MODELS", "load"]

SQRT5, SQRT2 = math.sqrt(5.0), math.sqrt(2.0)

fib = numba.njit(_fib)


def gum() -> float:
    """mu ~ Normal(1, sqrt 5); obs0, obs1 ~ Normal(mu, sqrt 2)."""
    mu = pn.sample(pn.Normal(1.0, SQRT5), "mu")
    pn.observe(pn.Normal(mu, SQRT2), "obs0")
    pn.observe(pn.Normal(mu, SQRT2), "obs1")
    return mu


def branching() -> int:
    """r ~ Poisson(4); l = 6 if r > 4 else 1 + fib(3r) + Poisson(4); observe Poisson(l)."""
    r = pn.sample(pn.Poisson(4.0), "r")
    if r > 4:
        rate = 6.0
    else:
        rate = 1.0 + fib(3 * r) + pn.sample(pn.Poisson(4.0), "branch")
    pn.observe(pn.Poisson(rate), "obs")
    return r


def hundred() -> float:
    """100 Normal(0, 1) latents in a loop (one address, 100 instances); observe Normal(sum, 1)."""
    s = 0.0
    for _ in range(100):
        s += pn.sample(pn.Normal(0.0, 1.0), "x")
    pn.observe(pn.Normal(s, 1.0), "obs")
    return s


def geometric() -> int:
    """Bernoulli(0.5) draws until a 0 (at most 20); k = number of 1s; observe Normal(k, 1)."""
    k = 0
    while k < 20 and pn.sample(pn.Bernoulli(0.5), "b") == 1:
        k += 1
    pn.observe(pn.Normal(float(k), 1.0), "obs")
    return k


MODELS: Dict[str, Callable[[], Any]] = {"gum": gum, "branching": branching, "hundred": hundred,
                                        "geometric": geometric}


def load(name: str, threads: Optional[int] = None, cache: bool = False) -> Any:
    """The example ``name`` compiled: a :class:`ppfast.numba.JitModel`."""
    if name not in MODELS:
        raise ValueError(f"no numba example {name!r}; available: {', '.join(sorted(MODELS))}")
    return pn.model(MODELS[name], name=name, threads=threads, cache=cache)
