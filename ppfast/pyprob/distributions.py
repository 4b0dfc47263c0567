"""PyProb's distributions: ppfast's, with draws, log-densities and moments returned as
torch tensors (float64; int64 for Categorical indices), and PyProb's Empirical."""

from __future__ import annotations

from typing import Any, Optional

from .. import distributions as _d
from ._empirical import Empirical
from ._state import to_tensor

__all__ = ["Distribution", "Normal", "Uniform", "Categorical", "Poisson", "Bernoulli", "Beta", "Exponential",
           "Gamma", "LogNormal", "Binomial", "Weibull", "TruncatedNormal", "Mixture", "VonMises",
           "MultivariateNormal", "Factor", "Empirical"]

Distribution = _d.Distribution


class _TorchValues:
    """Mixin: what a standalone distribution returns comes back as a torch tensor."""

    kind: int

    def sample(self, num_samples: Optional[int] = None, seed: Optional[int] = None) -> Any:
        return to_tensor(super().sample(num_samples, seed), self.kind == 3)  # type: ignore[misc]

    def log_prob(self, value: Any, sum: bool = False) -> Any:
        return to_tensor(super().log_prob(value, sum))  # type: ignore[misc]

    def prob(self, value: Any) -> Any:
        return self.log_prob(value).exp()

    @property
    def mean(self) -> Any:
        return to_tensor(super().mean)  # type: ignore[misc]

    @property
    def stddev(self) -> Any:
        return to_tensor(super().stddev)  # type: ignore[misc]

    @property
    def variance(self) -> Any:
        return to_tensor(super().variance)  # type: ignore[misc]


def _torch_class(native: type) -> type:
    return type(native.__name__, (_TorchValues, native), {"__doc__": native.__doc__,
                                                           "__module__": __name__})


Normal = _torch_class(_d.Normal)
Uniform = _torch_class(_d.Uniform)
Categorical = _torch_class(_d.Categorical)
Poisson = _torch_class(_d.Poisson)
Bernoulli = _torch_class(_d.Bernoulli)
Beta = _torch_class(_d.Beta)
Exponential = _torch_class(_d.Exponential)
Gamma = _torch_class(_d.Gamma)
LogNormal = _torch_class(_d.LogNormal)
Binomial = _torch_class(_d.Binomial)
Weibull = _torch_class(_d.Weibull)
TruncatedNormal = _torch_class(_d.TruncatedNormal)
Mixture = _torch_class(_d.Mixture)
VonMises = _torch_class(_d.VonMises)
MultivariateNormal = _torch_class(_d.MultivariateNormal)
Factor = _d.Factor
