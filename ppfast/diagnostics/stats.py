"""Convergence and efficiency statistics: effective sample size (Kish's for weighted
samples; autocorrelation-based for chains), split R-hat, autocorrelation, log-probability
traces.

Chains come as anything :func:`ppfast.diagnostics._inputs.chain_array` accepts: an MCMC
posterior (split by chain), a list of chains, arrays, torch tensors or plain numbers.

>>> import numpy as np
>>> from ppfast import diagnostics
>>> x = np.random.default_rng(0).normal(size=(4, 1000))
>>> bool(abs(diagnostics.rhat(x) - 1) < 0.01)
True
"""

from __future__ import annotations

import math
from typing import Any, Union

import numpy as np

from ..posterior import Empirical
from ._inputs import batch_of, chain_array, chain_ids, to_numpy

__all__ = ["autocorrelation", "effective_sample_size", "ess", "ess_kish", "gelman_rubin", "log_prob_trace", "rhat"]

Number = Union[float, np.ndarray]


def _out(a: np.ndarray) -> Number:
    return float(a) if np.ndim(a) == 0 else a


def _autocovariance(a: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each chain along axis 1 (lags 0..n-1), by FFT."""
    n = a.shape[1]
    centered = a - a.mean(axis=1, keepdims=True)
    size = 1 << math.ceil(math.log2(2 * n))  # zero padding: no circular wrap-around
    f = np.fft.rfft(centered, n=size, axis=1)
    return np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n] / n


def _tau(rho: np.ndarray, cap: float) -> float:
    """Integrated autocorrelation time from rho[0..n-1] by Geyer's initial positive,
    monotone sequence of pair sums."""
    k = (len(rho) - 1) // 2
    pairs = rho[0:2 * k:2] + rho[1:2 * k:2]
    negative = np.flatnonzero(~(pairs > 0))
    pairs = pairs[: negative[0] if len(negative) else len(pairs)]
    tau = -1.0 + 2.0 * float(np.minimum.accumulate(pairs).sum()) if len(pairs) else 1.0
    return max(tau, cap)


def ess(x: Any, name: str | None = None) -> Number:
    """Autocorrelation-based effective sample size of one or more chains (all chains
    together; chains are cut to the shortest length).  Uses the between- and within-chain
    variances (Gelman et al., BDA3) and Geyer's initial monotone sequence; NaN for fewer
    than 4 draws per chain or constant values."""
    a = chain_array(x, name, "ess")
    m, n = a.shape[:2]
    if n < 4:
        return _out(np.full(a.shape[2:], np.nan))
    acov = _autocovariance(a)
    chain_var = acov[:, 0] * n / (n - 1)
    w = chain_var.mean(axis=0)
    var_plus = w * (n - 1) / n + (a.mean(axis=1).var(axis=0, ddof=1) if m > 1 else 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (w - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    cap = 1.0 / math.log10(m * n) if m * n > 10 else 1.0
    flat_rho = rho.reshape(n, -1)
    flat_var = np.reshape(var_plus, -1)
    out = np.empty(flat_rho.shape[1])
    for j in range(flat_rho.shape[1]):
        out[j] = np.nan if not flat_var[j] > 0 else m * n / _tau(flat_rho[:, j], cap)
    return _out(out.reshape(a.shape[2:]))


def ess_kish(x: Any, log_weights: bool = False) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 of a weighted sample: an Empirical,
    or weights (``log_weights=True``: log-weights)."""
    if isinstance(x, Empirical):
        return x.effective_sample_size
    w = to_numpy(x).reshape(-1)
    if log_weights:
        finite = w[np.isfinite(w)]
        if not len(finite):
            return 0.0
        w = np.exp(w - finite.max())
    w = np.where(np.isfinite(w), w, 0.0)
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def effective_sample_size(x: Any, name: str | None = None) -> Number:
    """Kish's ESS for a weighted (importance sampling) posterior, the autocorrelation ESS
    for MCMC chains and unweighted samples."""
    if isinstance(x, Empirical) and chain_ids(x) is None and len(x) and np.ptp(x.log_weights) > 0:
        return ess_kish(x)
    return ess(x, name)


def rhat(x: Any, name: str | None = None, split: bool = True) -> Number:
    """Gelman-Rubin potential scale reduction; ``split`` halves each chain first (also
    catches drift within one chain).  Near 1 when the chains agree; NaN when undefined
    (fewer than 2 (half-)chains or 2 draws, or no variance within chains)."""
    a = chain_array(x, name, "rhat")
    if split:
        half = a.shape[1] // 2
        a = np.concatenate([a[:, :half], a[:, a.shape[1] - half:]], axis=0)
    m, n = a.shape[:2]
    if m < 2 or n < 2:
        return _out(np.full(a.shape[2:], np.nan))
    w = a.var(axis=1, ddof=1).mean(axis=0)
    b = n * a.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(((n - 1) / n * w + b / n) / w)
    return _out(np.where(w > 0, r, np.nan))


gelman_rubin = rhat


def autocorrelation(x: Any, name: str | None = None, max_lag: int | None = None) -> np.ndarray:
    """Autocorrelation at lags 0..max_lag (default min(n - 1, 100)), averaged over chains."""
    a = chain_array(x, name, "autocorrelation")
    n = a.shape[1]
    if n < 2:
        return np.ones((1,) + a.shape[2:])
    lag = min(n - 1, 100 if max_lag is None else int(max_lag))
    if lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    acov = _autocovariance(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = acov[:, : lag + 1] / acov[:, :1]
    return np.nanmean(rho, axis=0) if np.isfinite(rho).any() else rho.mean(axis=0)


def log_prob_trace(x: Any) -> np.ndarray:
    """log p(x, y) = log prior + log likelihood of each trace, shaped (chains, draws)."""
    batch = batch_of(x)
    if batch is None:
        raise TypeError(f"log_prob_trace needs a posterior over traces or a TraceBatch, got {type(x).__name__}")
    lp = batch.traces["log_prior"] + batch.traces["log_likelihood"]
    ids = chain_ids(x)
    if ids is None:
        return lp[np.newaxis].copy()
    parts = [lp[ids == c] for c in np.unique(ids)]
    n = min(len(p) for p in parts)
    return np.stack([p[:n] for p in parts])
