"""What diagnostics accept: Empiricals (MCMC posteriors split by chain), trace batches,
lists of chains, numpy arrays, torch tensors, plain Python numbers; all become float64
arrays shaped (chains, draws, ...)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..posterior import Empirical
from ..trace import TraceBatch

__all__ = ["batch_of", "chain_array", "chain_ids", "to_numpy", "weights_of"]


def to_numpy(x: Any) -> np.ndarray:
    """float64 array of a number, sequence, numpy array or torch tensor."""
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)) and any(hasattr(v, "detach") for v in x):
        x = [to_numpy(v) for v in x]
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"expected numbers (Python, numpy or torch), got {type(x).__name__}: {e}") from None


def batch_of(x: Any) -> TraceBatch | None:
    if isinstance(x, TraceBatch):
        return x
    b = getattr(x, "batch", None)
    return b if isinstance(b, TraceBatch) else None


def chain_ids(x: Any) -> np.ndarray | None:
    """The chain of each trace when ``x`` came from a Metropolis-Hastings run."""
    b = batch_of(x)
    info = getattr(b, "mcmc", None) if b is not None else None
    return None if info is None else np.asarray(info.chain)


def _split(values: np.ndarray, chains: np.ndarray | None) -> np.ndarray:
    if chains is None or len(chains) != len(values):
        return values[np.newaxis]
    parts = [values[chains == c] for c in np.unique(chains)]
    n = min(len(p) for p in parts)  # equal lengths: the statistics need rectangular chains
    return np.stack([p[:n] for p in parts])


def chain_array(x: Any, name: str | None = None, what: str = "values") -> np.ndarray:
    """``x`` as a float64 array shaped (chains, draws, ...).

    Empirical / MCMCResult / TraceBatch: ``name`` picks a variable; traces of an MCMC run
    are split by chain.  A list of Empiricals or of sequences: one chain each.  An
    array: 1-D is one chain, 2-D and more (chains, draws, ...).  A number: one draw.
    """
    post = getattr(x, "posterior", None)
    if isinstance(post, Empirical):  # MCMCResult
        x = post
    if isinstance(x, Empirical):
        e = x[name] if name is not None else x
        try:
            values = to_numpy(e.values)
        except TypeError:
            raise TypeError(f"{what}: the values of {e.name!r} are not numeric; pick a variable, e.g. post['mu']") from None
        return _split(values, chain_ids(x))
    if isinstance(x, TraceBatch):
        if name is None:
            values = to_numpy(x.results)
        else:
            values = x.values_of(name)
        return _split(values, chain_ids(x))
    if name is not None:
        raise TypeError(f"{what}: name={name!r} needs a posterior (Empirical) or a TraceBatch, got {type(x).__name__}")
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, Empirical) or np.ndim(v) >= 1 for v in x):
        parts = [to_numpy(v.values if isinstance(v, Empirical) else v) for v in x]
    else:
        a = to_numpy(x)
        if a.ndim == 0:
            return a.reshape(1, 1)
        return a[np.newaxis] if a.ndim == 1 else a
    n = min(len(p) for p in parts)
    return np.stack([p[:n] for p in parts])


def weights_of(x: Any) -> tuple[np.ndarray, int]:
    """Normalized per-trace weights of an Empirical (uniform for a TraceBatch) and the count."""
    if isinstance(x, Empirical):
        return np.asarray(x.weights, dtype=np.float64), len(x)
    b = batch_of(x)
    n = len(b) if b is not None else 0
    return (np.full(n, 1.0 / n) if n else np.zeros(0)), n


def as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else [x]
