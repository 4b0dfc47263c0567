"""The reference models written as Python ppfast models (same as the C++ examples)."""

from __future__ import annotations

import math

import ppfast
from ppfast.distributions import Bernoulli, Normal, Poisson

__all__ = ["GUM", "Branching", "Hundred", "Geometric", "MODELS", "fib"]


class GUM(ppfast.Model):
    """mu ~ Normal(1, sqrt 5); obs0, obs1 ~ Normal(mu, sqrt 2)."""

    def __init__(self, name: str = "gum"):
        super().__init__(name)

    def forward(self):
        mu = ppfast.sample(Normal(1.0, math.sqrt(5.0)), name="mu")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs0")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs1")
        return mu


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


class Branching(ppfast.Model):
    """r ~ Poisson(4); l = 6 if r > 4 else 1 + fib(3r) + Poisson(4); observe Poisson(l)."""

    def __init__(self, name: str = "branching"):
        super().__init__(name)

    def forward(self):
        r = ppfast.sample(Poisson(4.0), name="r")
        if r > 4:
            l = 6.0
        else:
            l = 1.0 + fib(3 * r) + ppfast.sample(Poisson(4.0), name="branch")
        ppfast.observe(Poisson(l), name="obs")
        return r


class Hundred(ppfast.Model):
    """100 Normal(0, 1) latents in a loop; observe Normal(sum, 1)."""

    def __init__(self, name: str = "hundred"):
        super().__init__(name)

    def forward(self):
        s = 0.0
        for _ in range(100):
            s += ppfast.sample(Normal(0.0, 1.0), name="x")
        ppfast.observe(Normal(s, 1.0), name="obs")
        return s


class Geometric(ppfast.Model):
    """Bernoulli(0.5) draws until a 0 (at most 20); k = number of 1s; observe Normal(k, 1)."""

    def __init__(self, name: str = "geometric"):
        super().__init__(name)

    def forward(self):
        k = 0
        while k < 20 and ppfast.sample(Bernoulli(0.5), name="b") == 1:
            k += 1
        ppfast.observe(Normal(float(k), 1.0), name="obs")
        return k


MODELS = {"gum": GUM, "branching": Branching, "hundred": Hundred, "geometric": Geometric}
