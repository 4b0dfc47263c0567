"""Empirical distributions: weighted values kept as log-weights.

PyProb's attribute names work (``values``, ``log_weights``, ``weights``, ``mean``,
``stddev``, ``variance``, ``effective_sample_size``, ``unweighted()``, ``resample()``,
``sample()``, ``combine()``).  Numeric values stay numpy arrays (views on trace batch
memory where they come from one); an Empirical over a trace batch extracts a variable
by name: ``posterior['mu']``.

>>> e = Empirical([1.0, 2.0, 3.0], log_weights=[0.0, 0.0, 0.0])
>>> e.mean
2.0
"""

from __future__ import annotations

import pickle
import zipfile
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

__all__ = ["Empirical"]

_FORMAT = "ppfast.Empirical/2"


def _logsumexp(x: np.ndarray) -> float:
    m = np.max(x) if x.size else -np.inf
    if not np.isfinite(m):
        return float(m)
    return float(m + np.log(np.sum(np.exp(x - m))))


class Empirical:
    """A weighted set of values.

    ``values``: a sequence (numpy array for numbers, list otherwise); ``log_weights``
    (default: equal weights).  ``batch`` (optional): the TraceBatch the values came
    from, which enables ``posterior['name']`` and ``traces``.
    """

    def __init__(self, values: Any = None, log_weights: Any = None, weights: Any = None, name: str = "Empirical",
                 batch: Any = None):
        if values is None:
            values = []
        if isinstance(values, np.ndarray):
            self._values = values
        else:
            values = list(values)
            try:
                arr = np.asarray(values, dtype=np.float64) if values else np.zeros(0)
                self._values = arr if arr.ndim >= 1 else arr.reshape(1)
            except (TypeError, ValueError):
                self._values = values
        n = len(self._values)
        if log_weights is not None:
            lw = np.asarray(log_weights, dtype=np.float64)
        elif weights is not None:
            with np.errstate(divide="ignore"):
                lw = np.log(np.asarray(weights, dtype=np.float64))
        else:
            lw = np.zeros(n)
        if lw.shape[0] != n:
            raise ValueError(f"Empirical: {n} values but {lw.shape[0]} weights")
        self._log_weights = lw
        self.name = name
        self.batch = batch
        self._norm: Optional[np.ndarray] = None

    # -- PyProb names ----------------------------------------------------------------
    @property
    def values(self) -> Any:
        return self._values

    @property
    def log_weights(self) -> np.ndarray:
        return self._log_weights

    @property
    def weights(self) -> np.ndarray:
        """Normalized weights (summing to 1)."""
        if self._norm is None:
            lw = self._log_weights
            total = _logsumexp(lw)
            if not np.isfinite(total):
                raise ValueError(f"{self.name}: all weights are zero (every log-weight is -inf or NaN): every "
                                 "trace failed, was skipped, or made an observed value impossible; no statistic "
                                 "is defined")
            self._norm = np.exp(lw - total)
        return self._norm

    @property
    def length(self) -> int:
        return len(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def _numeric(self) -> np.ndarray:
        if not isinstance(self._values, np.ndarray):
            raise TypeError(f"{self.name}: values are not numeric; extract a variable first, e.g. posterior['mu']")
        return self._values

    def _weighted(self) -> "tuple[np.ndarray, np.ndarray]":
        """Numeric values and normalized weights of the entries with weight > 0: failed or
        skipped traces (weight 0, value NaN) and impossible ones take no part in statistics."""
        v, w = self._numeric(), self.weights
        keep = w > 0
        if keep.all():
            return v, w
        return v[keep], w[keep]

    @property
    def mean(self) -> Any:
        v, w = self._weighted()
        m = np.tensordot(w, v, axes=(0, 0))
        return float(m) if np.ndim(m) == 0 else m

    @property
    def variance(self) -> Any:
        v, w = self._weighted()
        m = np.tensordot(w, v, axes=(0, 0))
        var = np.tensordot(w, (v - m) ** 2, axes=(0, 0))
        return float(var) if np.ndim(var) == 0 else var

    @property
    def stddev(self) -> Any:
        var = Empirical.variance.fget(self)  # type: ignore[attr-defined]  # numpy, whatever a subclass returns
        return np.sqrt(var) if np.ndim(var) else float(np.sqrt(var))

    @property
    def effective_sample_size(self) -> float:
        """Kish's effective sample size, (sum w)^2 / sum w^2."""
        w = self.weights
        return float(1.0 / np.sum(w * w))

    def quantile(self, q: Any) -> Any:
        """Weighted quantile(s) of scalar values."""
        v, w = self._weighted()
        order = np.argsort(v, kind="stable")
        cdf = np.cumsum(w[order])
        idx = np.searchsorted(cdf, np.asarray(q) * cdf[-1], side="left")
        out = v[order][np.minimum(idx, len(v) - 1)]
        return float(out) if np.ndim(out) == 0 else out

    @property
    def median(self) -> Any:
        return self.quantile(0.5)

    @property
    def mode(self) -> Any:
        """The value with the largest total weight."""
        v, w = self._weighted()
        uniq, inv = np.unique(v, return_inverse=True)
        return float(uniq[np.argmax(np.bincount(inv, weights=w))])

    @property
    def min(self) -> Any:
        """Smallest value with weight > 0."""
        return float(np.min(self._weighted()[0]))

    @property
    def max(self) -> Any:
        """Largest value with weight > 0."""
        return float(np.max(self._weighted()[0]))

    # -- derived Empiricals -----------------------------------------------------------
    def _take(self, idx: np.ndarray) -> Any:
        if isinstance(self._values, np.ndarray):
            return self._values[idx]
        return [self._values[i] for i in idx]

    def _range(self, min_index: Optional[int], max_index: Optional[int]) -> np.ndarray:
        """Indices [min_index, max_index) (PyProb's bounds: inclusive, exclusive)."""
        return np.arange(len(self))[slice(min_index, max_index)]

    def _derived(self, values: Any, log_weights: Any = None) -> "Empirical":
        """An Empirical of this class (so PyProb's namespace keeps its types)."""
        return type(self)(values, log_weights=log_weights, name=self.name)

    def unweighted(self) -> "Empirical":
        """The same values with equal weights."""
        return type(self)(self._values, log_weights=np.zeros(len(self)), name=self.name, batch=self.batch)

    def resample(self, num_samples: int, seed: Optional[int] = None, min_index: Optional[int] = None,
                 max_index: Optional[int] = None) -> "Empirical":
        """``num_samples`` values drawn by weight (multinomial) from [min_index, max_index),
        equally weighted."""
        from .runtime import check_count, next_seed

        rng = np.random.default_rng(next_seed(seed))
        part = self._range(min_index, max_index)
        w = self._part_weights(part)
        idx = part[rng.choice(len(part), size=check_count(num_samples, "num_samples"), p=w)]
        return self._derived(self._take(idx))

    def _part_weights(self, part: np.ndarray) -> np.ndarray:
        if len(part) == len(self):
            return self.weights
        lw = self._log_weights[part]
        if not len(part) or not np.isfinite(_logsumexp(lw)):
            raise ValueError(f"{self.name}: no values with nonzero weight in the index range")
        return np.exp(lw - _logsumexp(lw))

    def sample(self, seed: Optional[int] = None, min_index: Optional[int] = None,
               max_index: Optional[int] = None) -> Any:
        """One value drawn by weight from [min_index, max_index) (default: all);
        ``seed`` default: the next seed of ``set_random_seed``'s generator."""
        from .runtime import next_seed

        rng = np.random.default_rng(next_seed(seed))
        part = self._range(min_index, max_index)
        i = int(part[rng.choice(len(part), p=self._part_weights(part))])
        v = self._values[i]
        return float(v) if isinstance(v, np.floating) else v

    def map(self, func: Callable[[Any], Any]) -> "Empirical":
        return self._derived([func(v) for v in self._values], self._log_weights)

    def filter(self, func: Callable[[Any], bool]) -> "Empirical":
        keep = np.array([bool(func(v)) for v in self._values], dtype=bool)
        return self._derived(self._take(np.flatnonzero(keep)), self._log_weights[keep])

    # -- PyProb's other methods ----------------------------------------------------------
    def copy(self) -> "Empirical":
        """An independent copy (values copied when they are an array)."""
        values = self._values.copy() if isinstance(self._values, np.ndarray) else list(self._values)
        out = type(self)(values, log_weights=self._log_weights.copy(), name=self.name, batch=self.batch)
        out.metadata = list(getattr(self, "metadata", []))
        return out

    def thin(self, num_samples: int, map_func: Optional[Callable[[Any], Any]] = None,
             min_index: Optional[int] = None, max_index: Optional[int] = None) -> "Empirical":
        """About ``num_samples`` values evenly spaced over [min_index, max_index), with
        their weights (PyProb's step: floor(range / num_samples), at least 1)."""
        from .runtime import check_count

        part = self._range(min_index, max_index)
        step = max(1, len(part) // max(1, check_count(num_samples, "num_samples")))
        idx = part[::step]
        values = self._take(idx)
        if map_func is not None:
            values = [map_func(v) for v in values]
        return self._derived(values, self._log_weights[idx])

    def expectation(self, func: Callable[[Any], Any]) -> Any:
        """The weighted mean of ``func(value)`` over the values."""
        w = self.weights
        total: Any = 0.0
        for i in np.flatnonzero(w):
            total = total + w[i] * np.asarray(func(self._values[i]), dtype=np.float64)
        return float(total) if np.ndim(total) == 0 else total

    def _standardized_moment(self, k: int) -> Any:
        v, w = self._weighted()
        m = np.tensordot(w, v, axes=(0, 0))
        sd = np.sqrt(np.tensordot(w, (v - m) ** 2, axes=(0, 0)))
        out = np.tensordot(w, ((v - m) / sd) ** k, axes=(0, 0))
        return float(out) if np.ndim(out) == 0 else out

    @property
    def skewness(self) -> Any:
        """Weighted third standardized moment."""
        return self._standardized_moment(3)

    @property
    def kurtosis(self) -> Any:
        """Weighted fourth standardized moment (not the excess: a Normal gives 3)."""
        return self._standardized_moment(4)

    @property
    def weighted(self) -> bool:
        lw = self._log_weights
        return bool(len(lw)) and not np.all(lw == lw[0])

    def values_numpy(self) -> np.ndarray:
        return np.asarray(self._numeric())

    def weights_numpy(self) -> np.ndarray:
        return self.weights

    def log_weights_numpy(self) -> np.ndarray:
        return self._log_weights

    def get_values(self) -> Any:
        return self._values

    def rename(self, name: str) -> "Empirical":
        self.name = name
        return self

    def add_metadata(self, **entries: Any) -> None:
        """Appends a record (PyProb's provenance list, kept in memory)."""
        if not hasattr(self, "metadata"):
            self.metadata: List[Any] = []
        self.metadata.append(dict(entries))

    def density_estimate(self, num_mixture_components: int = 1, iterations: int = 200, seed: Optional[int] = 0) -> Any:
        """A Mixture of ``num_mixture_components`` Normals fitted to the weighted scalar
        values by expectation-maximization."""
        from .distributions import Mixture, Normal
        from .runtime import check_count

        k = check_count(num_mixture_components, "num_mixture_components", 1)
        x, w = self._weighted()
        x = x.astype(np.float64).reshape(-1)
        rng = np.random.default_rng(seed)
        means = x[rng.choice(len(x), size=k, p=w)]
        spread = max(float(np.sqrt(np.sum(w * (x - np.sum(w * x)) ** 2))), 1e-12)
        sds = np.full(k, spread)
        mix = np.full(k, 1.0 / k)
        for _ in range(check_count(iterations, "iterations", 1)):
            z = (x[:, None] - means) / sds
            log_r = np.log(mix) - 0.5 * z * z - np.log(sds)
            log_r -= log_r.max(axis=1, keepdims=True)
            r = np.exp(log_r)
            r /= r.sum(axis=1, keepdims=True)
            r *= w[:, None]
            nk = np.maximum(r.sum(axis=0), 1e-300)
            mix = nk / nk.sum()
            means = (r * x[:, None]).sum(axis=0) / nk
            sds = np.maximum(np.sqrt((r * (x[:, None] - means) ** 2).sum(axis=0) / nk), 1e-12 * spread)
        return Mixture([Normal(float(m), float(s)) for m, s in zip(means, sds)], mix)

    def plot_histogram(self, figsize: tuple = (10, 5), xlabel: Optional[str] = None, ylabel: str = "Frequency",
                       bins: Any = 30, density: bool = True, file_name: Optional[str] = None, dpi: int = 100) -> Any:
        """A weighted histogram of the scalar values (a matplotlib Figure, headless),
        saved to ``file_name`` when given."""
        from .diagnostics.plots import _figure, _finish

        fig, ax = _figure(*figsize)
        v, w = self._weighted()
        ax.hist(v.reshape(-1), weights=w, bins=bins, density=density)
        ax.set_xlabel(xlabel if xlabel is not None else self.name)
        ax.set_ylabel(ylabel)
        return _finish(fig, file_name, dpi)

    @staticmethod
    def combine(empiricals: Sequence["Empirical"], use_initial_weights: bool = True) -> "Empirical":
        """One Empirical from several (e.g. one per process or chain).  With
        ``use_initial_weights`` the log-weights are kept as they are (importance-sampling
        runs with the same proposal); otherwise each part counts equally."""
        parts = list(empiricals)
        if not parts:
            return Empirical()
        cls = type(parts[0])
        if all(isinstance(e._values, np.ndarray) for e in parts):
            values: Any = np.concatenate([e._values for e in parts])
        else:
            values = [v for e in parts for v in (e._values.tolist() if isinstance(e._values, np.ndarray) else e._values)]
        if use_initial_weights:
            lw = np.concatenate([e._log_weights for e in parts])
        else:
            lw = np.concatenate([np.log(e.weights) - np.log(len(parts)) for e in parts])
        return cls(values, log_weights=lw, name=parts[0].name)

    # -- variables of traces ----------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if self.batch is None:
                raise KeyError(f"{self.name}: no traces behind this Empirical; variables are available on "
                               "model.posterior(...) / model.prior(...) results")
            values = self.batch.values_of(key)
            if np.isnan(values).all():
                raise KeyError(f"{self.name}: no variable named {key!r} in these traces")
            return type(self)(values, log_weights=self._log_weights, name=key, batch=self.batch)
        if isinstance(key, slice):  # posterior[burn_in:] is an Empirical, as in PyProb
            idx = np.arange(len(self))[key]
            return self._derived(self._take(idx), self._log_weights[idx])
        return self._values[key]

    def variable(self, name: str) -> "Empirical":
        return self[name]

    @property
    def traces(self) -> List[Any]:
        if self.batch is None:
            return []
        return list(self.batch)

    # -- persistence ------------------------------------------------------------------
    def save(self, file_name: str) -> None:
        """Writes name, values and log-weights as a data-only ``.npz`` file (no pickle, so
        loading it cannot run code).  Values must be numbers, equal-shape arrays or strings;
        for other objects, extract a numeric variable first (``posterior['mu']``)."""
        values = self._values
        if not isinstance(values, np.ndarray):
            try:
                values = np.asarray(values)
            except ValueError:  # ragged arrays
                values = np.asarray(values, dtype=object)
        if values.dtype.kind not in "biufcUS":
            raise TypeError(f"{self.name}: Empirical.save stores numbers, equal-shape arrays and strings only, "
                            f"got values of type {type(self._values[0]).__name__ if len(self) else '?'}; "
                            "extract a numeric variable first, e.g. posterior['mu']")
        with open(file_name, "wb") as f:
            np.savez(f, format=np.array(_FORMAT), name=np.array(self.name), values=values,
                     log_weights=np.asarray(self._log_weights, dtype=np.float64))

    @classmethod
    def load(cls, file_name: str, allow_pickle: bool = False) -> "Empirical":
        """Reads a file written by ``save``.  Files of ppfast 0.1's pickle format are read
        only with ``allow_pickle=True``: unpickling runs whatever code the file names, so
        pass it only for files you trust."""
        with open(file_name, "rb") as f:
            magic = f.read(4)
        if magic[:2] != b"PK":  # not a zip (npz) archive
            if not allow_pickle:
                raise ValueError(f"{file_name}: not a ppfast Empirical file (.npz); if it is one written by an "
                                 "older ppfast (a pickle), load it with allow_pickle=True, and only if you trust "
                                 "it: unpickling can run arbitrary code")
            with open(file_name, "rb") as f:
                data = pickle.load(f)
            if not isinstance(data, dict) or data.get("format") != "ppfast.Empirical/1":
                raise ValueError(f"{file_name}: not a ppfast Empirical file")
            return cls(data["values"], log_weights=data["log_weights"], name=data["name"])
        try:
            with np.load(file_name, allow_pickle=False) as data:
                if data["format"].item() != _FORMAT:
                    raise ValueError(f"{file_name}: not a ppfast Empirical file (format {data['format'].item()!r})")
                values, log_weights, name = data["values"], data["log_weights"], str(data["name"].item())
        except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            if isinstance(e, ValueError) and "ppfast Empirical" in str(e):
                raise
            raise ValueError(f"{file_name}: not a readable ppfast Empirical file ({type(e).__name__}: {e})") from None
        if values.dtype.kind not in "biufcUS" or log_weights.ndim != 1 or len(values) != len(log_weights):
            raise ValueError(f"{file_name}: not a ppfast Empirical file (values {values.dtype} {values.shape}, "
                             f"log-weights {log_weights.shape})")
        return cls(values, log_weights=log_weights, name=name)

    def __repr__(self) -> str:
        return f"Empirical(name={self.name!r}, length={len(self)})"


def empirical_from(values: List[Any]) -> Empirical:
    return Empirical(values)
