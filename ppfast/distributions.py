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

import copy
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
    "VonMises",
    "MultivariateNormal",
    "Factor",
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
        from .runtime import check_count, next_seed

        n = 1 if num_samples is None else check_count(num_samples, "num_samples", 1)
        try:
            # seed=None: the next seed of set_random_seed's generator, so draws are reproducible.
            out = _core.dist_sample(self.kind, self._size, self.params_array(), n, next_seed(seed))
        except ValueError as e:
            raise DistributionError(f"{self.name}: {e}") from None
        if num_samples is None:
            return self.value_from(out[0] if self._size > 1 else out[0, 0])
        return out.reshape((n,) + self._shape) if self._shape else out.reshape(n)

    def log_prob(self, value: Any, sum: bool = False) -> Any:
        """Log-density of ``value``.  Scalar distributions: a float (an array for an
        array of values).  Tensor parameters are a batch, as in PyProb and torch: one
        log-density per element, of the broadcast shape of value and parameters
        (``sum=True`` adds them up).  A joint site (:meth:`to_event`) gives one
        log-density per value of the event shape."""
        v = _to_numpy(value)
        if self._shape and not self._event:
            shape = np.broadcast_shapes(v.shape, self._shape)
            flat = np.ascontiguousarray(np.broadcast_to(v, shape)).reshape(-1)
            lp = _core.dist_log_prob_elements(self.kind, self._size, self.params_array(), flat).reshape(shape)
            return float(lp.sum()) if sum else lp
        lp = _core.dist_log_prob(self.kind, self._size, self.params_array(), v.reshape(-1))
        if lp.size == 1:
            return float(lp[0])
        return float(lp.sum()) if sum else lp

    # -- batch and event shapes -------------------------------------------------------
    _event = False

    @property
    def batch_shape(self) -> tuple:
        """Shape of the batch of independent distributions (PyProb's batch_shape)."""
        return () if self._event else self._shape

    @property
    def event_shape(self) -> tuple:
        """Shape of one joint value: () for a batch, the parameters' shape after
        :meth:`to_event`."""
        return self._shape if self._event else ()

    def to_event(self) -> "Distribution":
        """The same distribution seen as one joint (event) site: ``log_prob`` gives one
        density per whole value instead of one per element.  At a model site both
        record the same thing (the value and its summed log-density); this only
        changes what ``log_prob`` returns.

        >>> Normal([0.0, 1.0], 1.0).log_prob([0.0, 1.0]).shape
        (2,)
        >>> round(Normal([0.0, 1.0], 1.0).to_event().log_prob([0.0, 1.0]), 4)
        -1.8379
        """
        other = copy.copy(self)
        other._event = True
        return other

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

    # -- parameters -------------------------------------------------------------------
    # Constructor argument names, in the C++ parameter order (one table: repr and the
    # parameter attributes read it).
    param_names: tuple = ()

    def _param(self, i: int) -> Any:
        if self._params is None:
            return (self._a, self._b)[i]
        part = self._params[i * self._size:(i + 1) * self._size]
        return float(part[0]) if not self._shape else part.reshape(self._shape)

    def __repr__(self) -> str:
        """``Normal(mean=0.0, stddev=1.0)``: evaluates back to an equal distribution."""
        def text(v: Any) -> str:
            return repr(v.tolist() if isinstance(v, np.ndarray) else v)

        body = ", ".join(f"{n}={text(getattr(self, n))}" for n in self.param_names)
        joint = self._event and not type(self)._event  # declared with to_event()
        return f"{self.name}({body})" + (".to_event()" if joint else "")


def _core_nparams(kind: int) -> int:
    return 1 if kind in (4, 5, 7) else 2


class Normal(Distribution):
    """Normal(mean, stddev); PyProb's names ``loc`` / ``scale`` work too."""

    kind, name, param_names = 1, "Normal", ("mean", "stddev")

    def __init__(self, mean: Any = None, stddev: Any = None, *, loc: Any = None, scale: Any = None):
        if loc is not None or scale is not None:
            if mean is not None or stddev is not None:
                raise TypeError("Normal: give mean/stddev or loc/scale, not both")
            mean, stddev = loc, scale
        if mean is None or stddev is None:
            raise TypeError("Normal needs a mean (loc) and a stddev (scale)")
        if type(mean) in _FAST and type(stddev) in _FAST:
            self._a, self._b = mean, stddev
        else:
            self._init(mean, stddev)


class Uniform(Distribution):
    kind, name, param_names = 2, "Uniform", ("low", "high")

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
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Categorical(Distribution):
    """Categorical over {0, ..., k - 1}; draws are ints.  ``probs`` are normalized (as
    in PyProb: ``Categorical([1, 1, 1])`` is uniform).  2-D ``probs`` (or more) are a
    batch of categoricals over the last axis, with ``batch_shape = probs.shape[:-1]``
    (standalone use; a model site takes one categorical)."""

    kind, name, discrete, param_names = 3, "Categorical", True, ("probs",)

    def __init__(self, probs: Any = None, logits: Any = None):
        p = _probs_from(probs, logits, "Categorical")
        if p.ndim == 0 or p.shape[-1] == 0:
            raise DistributionError(f"Categorical: probs must be a non-empty vector, got shape {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise DistributionError(f"Categorical: probs must be finite and >= 0, got {p.tolist()}")
        total = p.sum(axis=-1, keepdims=True)
        if np.any(total <= 0):
            raise DistributionError(f"Categorical: probs must not all be zero, got {p.tolist()}")
        p = p / total
        self._rows = np.ascontiguousarray(p.reshape(-1, p.shape[-1]))
        self._size = 1
        self._shape = p.shape[:-1]
        # One categorical: its probabilities are the C++ parameters; a batch has none.
        self._params = self._rows[0] if not self._shape else np.ascontiguousarray(p.reshape(-1))
        if self._shape:
            self._size = self._rows.shape[0]

    @property
    def probs(self) -> np.ndarray:
        return self._rows.reshape(self._shape + (-1,)) if self._shape else self._rows[0]

    @property
    def logits(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.probs)

    def _row(self, i: int) -> "Categorical":
        return Categorical(self._rows[i])

    def sample(self, num_samples: Optional[int] = None, seed: Optional[int] = None) -> Any:
        if not self._shape:
            return super().sample(num_samples, seed)
        from .runtime import next_seed

        rng = np.random.default_rng(next_seed(seed))
        draws = [self._row(i).sample(num_samples, int(rng.integers(2**63))) for i in range(len(self._rows))]
        out = np.stack([np.asarray(d) for d in draws], axis=-1)
        return out.reshape(self._shape) if num_samples is None else out.reshape((-1,) + self._shape)

    def log_prob(self, value: Any, sum: bool = False) -> Any:
        if not self._shape:
            return super().log_prob(value, sum)
        v = np.broadcast_to(_to_numpy(value), np.broadcast_shapes(np.shape(_to_numpy(value)), self._shape))
        cols = v.reshape(-1, len(self._rows))
        lp = np.stack([np.asarray(self._row(i).log_prob(cols[:, i]), dtype=np.float64).reshape(-1)
                       for i in range(len(self._rows))], axis=-1).reshape(v.shape)
        return float(lp.sum()) if sum or self._event else lp

    @property
    def mean(self) -> Any:
        k = self._rows.shape[1]
        m = self._rows @ np.arange(k)
        return float(m[0]) if not self._shape else m.reshape(self._shape)

    @property
    def stddev(self) -> Any:
        k = np.arange(self._rows.shape[1])
        var = self._rows @ (k * k) - (self._rows @ k) ** 2
        sd = np.sqrt(np.maximum(var, 0.0))
        return float(sd[0]) if not self._shape else sd.reshape(self._shape)


class Poisson(Distribution):
    kind, name, discrete, param_names = 4, "Poisson", True, ("rate",)

    def __init__(self, rate: Any):
        if type(rate) in _FAST:
            self._a = rate
        else:
            self._init(rate)


class Bernoulli(Distribution):
    kind, name, discrete, param_names = 5, "Bernoulli", True, ("probs",)

    def __init__(self, probs: Any = None, logits: Any = None):
        if logits is None and type(probs) in _FAST:
            self._a = probs
        else:
            self._init(_probs_from(probs, logits, "Bernoulli"))


class Beta(Distribution):
    kind, name, param_names = 6, "Beta", ("concentration1", "concentration0")

    def __init__(self, concentration1: Any, concentration0: Any):
        if type(concentration1) in _FAST and type(concentration0) in _FAST:
            self._a, self._b = concentration1, concentration0
        else:
            self._init(concentration1, concentration0)


class Exponential(Distribution):
    kind, name, param_names = 7, "Exponential", ("rate",)

    def __init__(self, rate: Any):
        if type(rate) in _FAST:
            self._a = rate
        else:
            self._init(rate)


class Gamma(Distribution):
    kind, name, param_names = 8, "Gamma", ("concentration", "rate")

    def __init__(self, concentration: Any, rate: Any):
        if type(concentration) in _FAST and type(rate) in _FAST:
            self._a, self._b = concentration, rate
        else:
            self._init(concentration, rate)


class LogNormal(Distribution):
    kind, name, param_names = 9, "LogNormal", ("loc", "scale")

    def __init__(self, loc: Any, scale: Any):
        if type(loc) in _FAST and type(scale) in _FAST:
            self._a, self._b = loc, scale
        else:
            self._init(loc, scale)


class Binomial(Distribution):
    kind, name, discrete, param_names = 10, "Binomial", True, ("total_count", "probs")

    def __init__(self, total_count: Any = 1, probs: Any = None, logits: Any = None):
        self._init(total_count, probs if logits is None and probs is not None else _probs_from(probs, logits, "Binomial"))


class Weibull(Distribution):
    kind, name, param_names = 11, "Weibull", ("scale", "concentration")

    def __init__(self, scale: Any, concentration: Any):
        if type(scale) in _FAST and type(concentration) in _FAST:
            self._a, self._b = scale, concentration
        else:
            self._init(scale, concentration)


class TruncatedNormal(Distribution):
    """Normal(mean, stddev) restricted to [low, high] (PyProb's argument names)."""

    kind, name, param_names = 12, "TruncatedNormal", ("mean_non_truncated", "stddev_non_truncated", "low", "high")

    def __init__(self, mean_non_truncated: Any, stddev_non_truncated: Any, low: Any, high: Any,
                 clamp_mean_between_low_high: bool = False):
        if clamp_mean_between_low_high:  # PyProb's option: the mean moved into [low, high] first
            mean_non_truncated = np.minimum(np.maximum(_to_numpy(mean_non_truncated), _to_numpy(low)), _to_numpy(high))
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

    @property
    def probs(self) -> np.ndarray:
        k = len(self.components)
        return self._params[1:1 + k].copy()

    def __repr__(self) -> str:
        return f"Mixture(distributions=[{', '.join(repr(c) for c in self.components)}], probs={self.probs.tolist()})"


class VonMises(Distribution):
    """von Mises(loc, concentration): the circular normal, draws in [-pi, pi); the density
    is torch's (periodic, defined on the whole line)."""

    kind, name, param_names = 14, "VonMises", ("loc", "concentration")

    def __init__(self, loc: Any, concentration: Any):
        if type(loc) in _FAST and type(concentration) in _FAST:
            self._a, self._b = loc, concentration
        else:
            self._init(loc, concentration)


class MultivariateNormal(Distribution):
    """MultivariateNormal(mean, covariance_matrix): one joint (event) site of dimension d
    with a full covariance, samplable and observable.  ``log_prob`` gives one density per
    value of shape (d,) (or per row of an (n, d) array).

    >>> d = MultivariateNormal([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]])
    >>> d.event_shape, d.sample().shape
    ((2,), (2,))
    """

    kind, name, param_names = 15, "MultivariateNormal", ("mean", "covariance_matrix")
    _event = True

    def __init__(self, mean: Any, covariance_matrix: Any = None, *, scale_tril: Any = None):
        m = _to_numpy(mean)
        if m.ndim != 1 or m.size == 0:
            raise DistributionError(f"MultivariateNormal: mean must be a non-empty vector, got shape {m.shape}")
        if (covariance_matrix is None) == (scale_tril is None):
            raise DistributionError("MultivariateNormal: give exactly one of covariance_matrix and scale_tril")
        if scale_tril is not None:
            lower = np.tril(_to_numpy(scale_tril))
            cov = lower @ lower.T
        else:
            cov = _to_numpy(covariance_matrix)
        d = m.size
        if cov.shape != (d, d):
            raise DistributionError(f"MultivariateNormal: covariance_matrix must have shape ({d}, {d}), "
                                    f"got {cov.shape}")
        self._params = np.ascontiguousarray(np.concatenate([m, cov.reshape(-1)]), dtype=np.float64)
        self._size = d
        self._shape = (d,)
        msg = _core.dist_validate(self.kind, d, self._params)
        if msg:
            raise DistributionError(msg)

    @property
    def mean(self) -> Any:  # type: ignore[override]
        return self._params[:self._size].copy()

    @property
    def covariance_matrix(self) -> np.ndarray:
        d = self._size
        return self._params[d:].reshape(d, d).copy()

    def _param(self, i: int) -> Any:
        return self.mean if i == 0 else self.covariance_matrix

    def to_event(self) -> "Distribution":
        return self


class Factor(Distribution):
    """PyProb's pseudo-distribution for ``observe(Factor(...))``: adds ``log_prob`` (or
    ``log_prob_func(value)``, value being the observed one) to the trace's
    log-likelihood.  It has no samples."""

    kind, name = 0, "Factor"

    def __init__(self, log_prob: Any = None, log_prob_func: Any = None):
        if (log_prob is None) == (log_prob_func is None):
            raise DistributionError("Factor: give exactly one of log_prob and log_prob_func")
        self._log_prob, self._log_prob_func = log_prob, log_prob_func

    def log_prob(self, value: Any = None, sum: bool = False) -> Any:
        lp = self._log_prob if self._log_prob_func is None else self._log_prob_func(value)
        if hasattr(lp, "detach"):
            lp = lp.detach().cpu().numpy()
        lp = np.asarray(lp, dtype=np.float64)
        return float(lp.sum()) if sum or lp.ndim == 0 else lp

    def sample(self, num_samples: Optional[int] = None, seed: Optional[int] = None) -> Any:
        return None

    def __repr__(self) -> str:
        return "Factor()"


def _parameter_property(i: int, name: str) -> property:
    return property(lambda self: self._param(i), doc=f"The {name} parameter (shaped like the batch).")


for _cls in (Normal, Uniform, Poisson, Bernoulli, Beta, Exponential, Gamma, LogNormal, Binomial, Weibull,
             TruncatedNormal, VonMises):
    for _i, _n in enumerate(_cls.param_names):
        if not hasattr(_cls, _n):
            setattr(_cls, _n, _parameter_property(_i, _n))
Normal.loc = Normal.mean  # type: ignore[attr-defined]  # PyProb's names
Normal.scale = Normal.stddev  # type: ignore[attr-defined]

KIND_NAMES = {cls.kind: cls.name for cls in (Normal, Uniform, Categorical, Poisson, Bernoulli, Beta, Exponential,
                                             Gamma, LogNormal, Binomial, Weibull, TruncatedNormal, Mixture, VonMises,
                                             MultivariateNormal)}
