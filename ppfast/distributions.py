"""Distributions with PyProb's constructor argument names.

A distribution is a small description (kind + parameters); sampling, log-densities and
parameter validation run in the C++ core, the same code the recorder uses.  Scalar
parameters take a fast path (two Python floats); tensor parameters are float64 arrays,
broadcast element-wise.

>>> from ppfast.distributions import Normal
>>> Normal(0.0, 1.0).log_prob(0.0)  # doctest: +ELLIPSIS
-0.918938...
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import _core
from .errors import DistributionError

__all__ = [
    "Distribution",
    "Normal",
    "Uniform",
    "Categorical",
    "Poisson",
    "Bernoulli",
    "Beta",
    "Exponential",
    "Gamma",
    "LogNormal",
    "Binomial",
    "Weibull",
    "TruncatedNormal",
    "Mixture",
    "KIND_NAMES",
]

_NUMBER = (int, float)
# Parameter types that take the scalar fast path (the recorder reads them as C doubles).
_FAST = frozenset((float, int, np.float64, np.float32, np.int64, np.int32))


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class Distribution:
    """Base class.  Subclasses set ``kind`` (the C++ DistKind code) and ``discrete``."""

    # Scalar distributions store only _a/_b; tensors override these defaults.
    _a = 0.0
    _b = 0.0
    _params: Optional[np.ndarray] = None
    _size = 1
    _shape: tuple = ()
    kind = 0
    discrete = False
    name = "Distribution"

    # -- construction -------------------------------------------------------------
    def _init(self, *params: Any) -> None:
        """Scalar fast path for one or two Python numbers, else broadcast arrays."""
        if len(params) <= 2 and all(type(p) in _FAST for p in params):
            self._a = params[0]
            if len(params) > 1:
                self._b = params[1]
            return
        arrays = np.broadcast_arrays(*[_to_numpy(p) for p in params])
        shape = arrays[0].shape
        self._set_params(np.concatenate([a.reshape(-1) for a in arrays]), int(np.prod(shape, dtype=np.int64)), shape)

    def _set_params(self, params: np.ndarray, size: int, shape: tuple) -> None:
        self._params = np.ascontiguousarray(params, dtype=np.float64)
        self._size = size
        self._shape = shape
        if size == 1 and self._params.size <= 2 and shape == ():
            # Scalars that arrived as arrays / tensors still take the fast path.
            self._a = float(self._params[0])
            self._b = float(self._params[1]) if self._params.size > 1 else 0.0
            self._params = None

    # -- what the recorder needs --------------------------------------------------
    def params_array(self) -> np.ndarray:
        """All parameters as one float64 array in the C++ layout."""
        if self._params is not None:
            return self._params
        n = _core_nparams(self.kind)
        return np.array([float(self._a), float(self._b)][:n], dtype=np.float64)

    @property
    def size(self) -> int:
        return self._size

    @property
    def shape(self) -> tuple:
        return self._shape

    def value_from(self, x: Any) -> Any:
        """Converts a raw draw to what models see: int for discrete scalars, float for
        continuous scalars, arrays shaped like the parameters for tensors."""
        if self._params is None or self._shape == ():
            x = float(x) if not isinstance(x, np.ndarray) else float(x.reshape(-1)[0])
            return int(x) if self.discrete else x
        return np.asarray(x).reshape(self._shape)

    # -- standalone use ------------------------------------------------------------
    def sample(self, num_samples: Optional[int] = None, seed: Optional[int] = None) -> Any:
        """One draw (or ``num_samples`` draws as an array) from the C++ sampler."""
        n = 1 if num_samples is None else int(num_samples)
        try:
            out = _core.dist_sample(self.kind, self._size, self.params_array(), n, seed)
        except ValueError as e:
            raise DistributionError(f"{self.name}: {e}") from None
        if num_samples is None:
            return self.value_from(out[0] if self._size > 1 else out[0, 0])
        return out.reshape((n,) + self._shape) if self._shape else out.reshape(n)

    def log_prob(self, value: Any, sum: bool = False) -> Any:
        v = _to_numpy(value)
        lp = _core.dist_log_prob(self.kind, self._size, self.params_array(), v.reshape(-1))
        if lp.size == 1:
            return float(lp[0])
        return float(lp.sum()) if sum else lp

    def prob(self, value: Any) -> Any:
        return np.exp(self.log_prob(value))

    def _moments(self):
        return _core.dist_moments(self.kind, self._size, self.params_array())

    @property
    def mean(self) -> Any:
        m = self._moments()[0]
        return float(m[0]) if self._size == 1 and not self._shape else m.reshape(self._shape)

    @property
    def stddev(self) -> Any:
        s = self._moments()[1]
        return float(s[0]) if self._size == 1 and not self._shape else s.reshape(self._shape)

    @property
    def variance(self) -> Any:
        return np.square(self.stddev) if self._shape else self.stddev**2

    def validate(self) -> None:
        msg = _core.dist_validate(self.kind, self._size, self.params_array())
        if msg:
            raise DistributionError(msg)

    def __repr__(self) -> str:
        if self._params is None:
            n = _core_nparams(self.kind)
            return f"{self.name}({', '.join(repr(p) for p in (self._a, self._b)[:n])})"
        return f"{self.name}(params={self._params.tolist()}, shape={self._shape})"


def _core_nparams(kind: int) -> int:
    return 1 if kind in (4, 5, 7) else 2


class Normal(Distribution):
    kind, name = 1, "Normal"

    def __init__(self, mean: Any, stddev: Any):
        if type(mean) in _FAST and type(stddev) in _FAST:
            self._a, self._b = mean, stddev
        else:
            self._init(mean, stddev)


class Uniform(Distribution):
    kind, name = 2, "Uniform"

    def __init__(self, low: Any = 0.0, high: Any = 1.0):
        if type(low) in _FAST and type(high) in _FAST:
            self._a, self._b = low, high
        else:
            self._init(low, high)


def _probs_from(probs: Any, logits: Any, name: str) -> np.ndarray:
    if (probs is None) == (logits is None):
        raise DistributionError(f"{name}: give exactly one of probs and logits")
    if probs is not None:
        return _to_numpy(probs)
    logits = _to_numpy(logits)
    return 1.0 / (1.0 + np.exp(-logits)) if name != "Categorical" else _softmax(logits)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


class Categorical(Distribution):
    """Categorical over {0, ..., len(probs) - 1}; draws are ints."""

    kind, name, discrete = 3, "Categorical", True

    def __init__(self, probs: Any = None, logits: Any = None):
        p = _probs_from(probs, logits, "Categorical").reshape(-1)
        self._params = np.ascontiguousarray(p, dtype=np.float64)
        self._size = 1
        self._shape = ()

    @property
    def probs(self) -> np.ndarray:
        return self._params


class Poisson(Distribution):
    kind, name, discrete = 4, "Poisson", True

    def __init__(self, rate: Any):
        if type(rate) in _FAST:
            self._a = rate
        else:
            self._init(rate)


class Bernoulli(Distribution):
    kind, name, discrete = 5, "Bernoulli", True

    def __init__(self, probs: Any = None, logits: Any = None):
        if logits is None and type(probs) in _FAST:
            self._a = probs
        else:
            self._init(_probs_from(probs, logits, "Bernoulli"))


class Beta(Distribution):
    kind, name = 6, "Beta"

    def __init__(self, concentration1: Any, concentration0: Any):
        if type(concentration1) in _FAST and type(concentration0) in _FAST:
            self._a, self._b = concentration1, concentration0
        else:
            self._init(concentration1, concentration0)


class Exponential(Distribution):
    kind, name = 7, "Exponential"

    def __init__(self, rate: Any):
        if type(rate) in _FAST:
            self._a = rate
        else:
            self._init(rate)


class Gamma(Distribution):
    kind, name = 8, "Gamma"

    def __init__(self, concentration: Any, rate: Any):
        if type(concentration) in _FAST and type(rate) in _FAST:
            self._a, self._b = concentration, rate
        else:
            self._init(concentration, rate)


class LogNormal(Distribution):
    kind, name = 9, "LogNormal"

    def __init__(self, loc: Any, scale: Any):
        if type(loc) in _FAST and type(scale) in _FAST:
            self._a, self._b = loc, scale
        else:
            self._init(loc, scale)


class Binomial(Distribution):
    kind, name, discrete = 10, "Binomial", True

    def __init__(self, total_count: Any = 1, probs: Any = None, logits: Any = None):
        self._init(total_count, probs if logits is None and probs is not None else _probs_from(probs, logits, "Binomial"))


class Weibull(Distribution):
    kind, name = 11, "Weibull"

    def __init__(self, scale: Any, concentration: Any):
        if type(scale) in _FAST and type(concentration) in _FAST:
            self._a, self._b = scale, concentration
        else:
            self._init(scale, concentration)


class TruncatedNormal(Distribution):
    """Normal(mean, stddev) restricted to [low, high] (PyProb's argument names)."""

    kind, name = 12, "TruncatedNormal"

    def __init__(self, mean_non_truncated: Any, stddev_non_truncated: Any, low: Any, high: Any):
        arrays = np.broadcast_arrays(*[_to_numpy(p) for p in (mean_non_truncated, stddev_non_truncated, low, high)])
        shape = arrays[0].shape
        self._params = np.ascontiguousarray(np.concatenate([a.reshape(-1) for a in arrays]))
        self._size = max(1, int(np.prod(shape, dtype=np.int64)))
        self._shape = shape


class Mixture(Distribution):
    """Mixture of scalar distributions with weights ``probs`` (uniform by default)."""

    kind, name = 13, "Mixture"

    def __init__(self, distributions: Sequence[Distribution], probs: Any = None):
        self.components = list(distributions)
        k = len(self.components)
        if k == 0:
            raise DistributionError("Mixture: needs at least one component")
        p = np.full(k, 1.0 / k) if probs is None else _to_numpy(probs).reshape(-1)
        raw = [float(k), *p.tolist()]
        for c in self.components:
            if not isinstance(c, Distribution) or isinstance(c, Mixture) or c.size != 1:
                raise DistributionError(f"Mixture: components must be scalar non-mixture distributions, got {c!r}")
            cp = c.params_array()
            raw += [float(c.kind), float(cp.size), *cp.tolist()]
        self._params = np.asarray(raw, dtype=np.float64)
        self._size = 1
        self._shape = ()

    @property
    def discrete(self) -> bool:  # type: ignore[override]
        return all(c.discrete for c in self.components)


KIND_NAMES = {cls.kind: cls.name for cls in (Normal, Uniform, Categorical, Poisson, Bernoulli, Beta, Exponential,
                                             Gamma, LogNormal, Binomial, Weibull, TruncatedNormal, Mixture)}
