"""PyProb 1.5.0 versions of the reference models: the baseline side of the benchmarks.

pyprob is imported on first access to a model class, so this module imports without it::

    from bench.pyprob_models import GUM  # BaselineUnavailable (an ImportError) without pyprob
    GUM().posterior_results(num_traces=1000, observe={'obs0': 8, 'obs1': 9})

The models mirror ``bench/ppfast_models.py`` site for site (same names, same order of draws), so
a benchmark compares the two engines on the same program. Progress output is switched off
(``pyprob.set_verbosity(0)``): PyProb prints a progress line per trace otherwise.

PyProb 1.5.0 on today's torch has two quirks that the helpers below work around:
``load_inference_network`` (torch.load now defaults to ``weights_only=True``) and IC-guided
importance sampling with Poisson latents (its proposals fail torch's argument validation).
"""

from __future__ import annotations

import functools
import os
from typing import Any

REQUIRED_VERSION = "1.5.0"
INSTALL_HINT = "bash bench/requirements-baseline.sh"

__all__ = [  # the model classes are created on first access (module __getattr__)
    "GUM",  # noqa: F822
    "BaselineUnavailable",
    "Branching",  # noqa: F822
    "Geometric",  # noqa: F822
    "Hundred",  # noqa: F822
    "disable_distribution_validation",
    "fibonacci",
    "load_inference_network",
    "load_pyprob",
]


class BaselineUnavailable(ImportError):
    """pyprob 1.5.0 cannot be imported; the message says how to install it."""


def load_pyprob() -> Any:
    """Import pyprob 1.5.0 (quietly), or raise BaselineUnavailable."""
    try:
        import pyprob
    except ImportError as e:
        message = f"pyprob {REQUIRED_VERSION} not installed ({INSTALL_HINT})"
        raise BaselineUnavailable(message) from e
    if pyprob.__version__ != REQUIRED_VERSION:
        raise BaselineUnavailable(
            f"pyprob {REQUIRED_VERSION} required, found {pyprob.__version__} ({INSTALL_HINT})"
        )
    pyprob.set_verbosity(0)
    return pyprob


@functools.cache
def fibonacci(n: int) -> int:
    """The Fibonacci variant of PyProb's Branching test model: 1, 1, 1, 2, 3, 5, ..."""
    if n < 2:
        return 1
    a, fib = 1, 1
    for _ in range(n - 2):
        a, fib = fib, a + fib
    return fib


@functools.cache
def _models() -> dict[str, type]:
    pyprob = load_pyprob()
    from pyprob.distributions import Bernoulli, Normal, Poisson

    Model: Any = pyprob.Model

    class GUM(Model):
        """Gaussian with unknown mean: mu ~ N(1, sqrt 5); obs0, obs1 ~ N(mu, sqrt 2)."""

        def __init__(self, name: str = "gum") -> None:
            super().__init__(name=name)

        def forward(self) -> Any:
            mu = pyprob.sample(Normal(1.0, 5**0.5), name="mu")
            likelihood = Normal(mu, 2**0.5)
            pyprob.observe(likelihood, name="obs0")
            pyprob.observe(likelihood, name="obs1")
            return mu

    class Branching(Model):
        """r ~ Poisson(4); l = 6 if r > 4 else 1 + fib(3r) + Poisson(4) draw; obs ~ Poisson(l)."""

        def __init__(self, name: str = "branching") -> None:
            super().__init__(name=name)

        def forward(self) -> Any:
            count_prior = Poisson(4)
            r = pyprob.sample(count_prior, name="r")
            if 4 < float(r):
                rate = 6
            else:
                rate = 1 + fibonacci(3 * int(r)) + pyprob.sample(count_prior, name="s")
            pyprob.observe(Poisson(rate), name="obs")
            return r

    class Hundred(Model):
        """100 N(0, 1) latents drawn in a loop; obs ~ N(sum, 1)."""

        def __init__(self, name: str = "hundred") -> None:
            super().__init__(name=name)

        def forward(self) -> Any:
            total = 0.0
            for _ in range(100):
                total = total + pyprob.sample(Normal(0.0, 1.0), name="x")
            pyprob.observe(Normal(total, 1.0), name="obs")
            return total

    class Geometric(Model):
        """Bernoulli(0.5) draws until a 0 (at most 20); k = number of 1s; obs ~ N(k, 1)."""

        def __init__(self, name: str = "geometric") -> None:
            super().__init__(name=name)

        def forward(self) -> Any:
            k = 0
            for _ in range(20):
                if int(pyprob.sample(Bernoulli(0.5), name="b")) == 0:
                    break
                k += 1
            pyprob.observe(Normal(float(k), 1.0), name="obs")
            return k

    return {"GUM": GUM, "Branching": Branching, "Hundred": Hundred, "Geometric": Geometric}


def __getattr__(name: str) -> Any:
    # PEP 562: the model classes exist once pyprob is imported, on first access.
    if name in ("GUM", "Branching", "Hundred", "Geometric"):
        return _models()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def disable_distribution_validation() -> None:
    """Needed for IC-guided IS with Poisson latents: PyProb's proposals fail torch's checks."""
    import torch

    torch.distributions.Distribution.set_default_validate_args(False)


def load_inference_network(model: Any, file_name: str) -> None:
    """``model.load_inference_network`` with torch.load's pre-2.6 default (weights_only=False)."""
    key = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    previous = os.environ.get(key)
    os.environ[key] = "1"
    try:
        model.load_inference_network(file_name)
    finally:
        if previous is None:
            del os.environ[key]
        else:
            os.environ[key] = previous
