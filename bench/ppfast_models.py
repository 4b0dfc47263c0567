"""ppfast versions of the reference models, site for site the same as ``bench/pyprob_models.py``.

ppfast is imported on first access to a model class, so this module imports without it::

    from bench.ppfast_models import GUM  # PpfastUnavailable (an ImportError) without ppfast
    GUM().posterior_results(num_traces=1000, observe={'obs0': 8, 'obs1': 9}, progress=False)

``ppfast.sample`` returns a Python float for continuous and an int for discrete scalars, so the
models use plain Python arithmetic where the PyProb ones work on tensors.
"""

from __future__ import annotations

import functools
from typing import Any

from bench.pyprob_models import fibonacci

__all__ = [  # the model classes are created on first access (module __getattr__)
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
        from ppfast.distributions import Bernoulli, Normal, Poisson  # noqa: F401
    except ImportError as e:
        raise PpfastUnavailable(f"ppfast not importable ({type(e).__name__}: {e})") from e
    return ppfast


@functools.cache
def _models() -> dict[str, type]:
    ppfast = load_ppfast()
    from ppfast.distributions import Bernoulli, Normal, Poisson

    Model: Any = ppfast.Model

    class GUM(Model):
        """Gaussian with unknown mean: mu ~ N(1, sqrt 5); obs0, obs1 ~ N(mu, sqrt 2)."""

        def __init__(self, name: str = "gum") -> None:
            super().__init__(name=name)

        def forward(self) -> Any:
            mu = ppfast.sample(Normal(1.0, 5**0.5), name="mu")
            likelihood = Normal(mu, 2**0.5)
            ppfast.observe(likelihood, name="obs0")
            ppfast.observe(likelihood, name="obs1")
            return mu

    class Branching(Model):
        """r ~ Poisson(4); l = 6 if r > 4 else 1 + fib(3r) + Poisson(4) draw; obs ~ Poisson(l)."""

        def __init__(self, name: str = "branching") -> None:
            super().__init__(name=name)

        def forward(self) -> Any:
            count_prior = Poisson(4)
            r = ppfast.sample(count_prior, name="r")
            if r > 4:
                rate = 6
            else:
                rate = 1 + fibonacci(3 * r) + ppfast.sample(count_prior, name="s")
            ppfast.observe(Poisson(rate), name="obs")
            return r

    class Hundred(Model):
        """100 N(0, 1) latents drawn in a loop; obs ~ N(sum, 1)."""

        def __init__(self, name: str = "hundred") -> None:
            super().__init__(name=name)

        def forward(self) -> Any:
            total = 0.0
            for _ in range(100):
                total += ppfast.sample(Normal(0.0, 1.0), name="x")
            ppfast.observe(Normal(total, 1.0), name="obs")
            return total

    class Geometric(Model):
        """Bernoulli(0.5) draws until a 0 (at most 20); k = number of 1s; obs ~ N(k, 1)."""

        def __init__(self, name: str = "geometric") -> None:
            super().__init__(name=name)

        def forward(self) -> Any:
            k = 0
            for _ in range(20):
                if ppfast.sample(Bernoulli(0.5), name="b") == 0:
                    break
                k += 1
            ppfast.observe(Normal(float(k), 1.0), name="obs")
            return k

    return {"GUM": GUM, "Branching": Branching, "Hundred": Hundred, "Geometric": Geometric}


def __getattr__(name: str) -> Any:
    # PEP 562: the model classes exist once ppfast is imported, on first access.
    if name in ("GUM", "Branching", "Hundred", "Geometric"):
        return _models()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
