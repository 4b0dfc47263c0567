"""Export to ArviZ, so its summaries and plots work on ppfast posteriors.

>>> import arviz as az                                   # doctest: +SKIP
>>> idata = ppfast.diagnostics.to_arviz(post)            # doctest: +SKIP
>>> az.summary(idata)                                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core
from ..trace import DISCRETE_KINDS, FLAG_CONTROL, FLAG_DISCARDED, FLAG_OBSERVED, RecordKind, TraceBatch, address_name
from ._inputs import batch_of, chain_array, chain_ids, to_numpy

__all__ = ["to_arviz", "variable_names", "variable_values"]


def variable_names(batch: TraceBatch) -> list[str]:
    """Names of the named controlled sample sites, in order of first appearance."""
    rec = batch.records
    mask = (rec["kind"] == RecordKind.SAMPLE) & ((rec["flags"] & FLAG_CONTROL) != 0) & (rec["name"] != 0)
    ids, first = np.unique(rec["name"][mask], return_index=True)
    return [address_name(int(i)) for i in ids[np.argsort(first)]]


def variable_values(batch: TraceBatch, name: str, kind: int = RecordKind.SAMPLE,
                    field: str = "value") -> np.ndarray:
    """Per-trace values of the variable ``name`` (a name or an address) as an array shaped
    (traces, instances, elements), NaN where a trace lacks an instance; ``field='log_prob'``
    gives the records' log-probabilities instead."""
    i = _core.intern(name)
    rec = batch.records
    mask = ((rec["name"] == i) | (rec["address"] == i)) & (rec["kind"] == kind)
    mask &= (rec["flags"] & FLAG_DISCARDED) == 0
    idx = np.flatnonzero(mask)
    if not len(idx):
        raise KeyError(f"no variable named {name!r} in these traces")
    trace, inst = rec["trace"][idx], rec["instance"][idx]
    length = 1 if field == "log_prob" else int(rec["value_len"][idx].max())
    out = np.full((len(batch), int(inst.max()) + 1, max(length, 1)), np.nan)
    if length <= 1:
        out[trace, inst, 0] = rec[field][idx]
    else:
        arena = batch.arenas["values"]
        for j, t, k in zip(idx, trace, inst):
            n = int(rec["value_len"][j])
            if n > 1:
                off = int(rec["value_offset"][j])
                out[t, k, :n] = arena[off:off + n]
            else:
                out[t, k, 0] = rec["value"][j]
    return out


def _discrete(batch: TraceBatch, name: str) -> bool:
    """True when every draw of the variable ``name`` comes from a discrete distribution."""
    i = _core.intern(name)
    rec = batch.records
    mask = ((rec["name"] == i) | (rec["address"] == i)) & (rec["kind"] == RecordKind.SAMPLE)
    return bool(mask.any()) and bool(np.isin(rec["dist"][mask], list(DISCRETE_KINDS)).all())


def _split(values: np.ndarray, ids: np.ndarray | None, take: np.ndarray | None) -> np.ndarray:
    if take is not None:
        values = values[take]
    if ids is None:
        return values[np.newaxis]
    parts = [values[ids == c] for c in np.unique(ids)]
    n = min(len(p) for p in parts)
    return np.stack([p[:n] for p in parts])


def _squeeze(m: np.ndarray) -> np.ndarray:
    """(traces, instances, elements) without the length-1 axes after the first."""
    if m.shape[2] == 1:
        m = m[:, :, 0]
    if m.shape[1] == 1:
        m = m[:, 0]
    return m


def to_arviz(x: Any, var_names: Sequence[str] | None = None, results: bool = True) -> Any:
    """An ArviZ ``InferenceData`` of a posterior.

    Groups: ``posterior`` (each named controlled variable, or ``var_names``; instances
    and tensor elements as extra dimensions ``<name>_instance`` / ``<name>_element``; the
    numeric result as ``result``), ``sample_stats`` (``lp``: log joint probability),
    ``log_likelihood`` (each named observation's pointwise log-likelihood) and
    ``observed_data``.  MCMC runs keep their chains; a weighted (importance sampling)
    posterior is resampled to equal weights first (ArviZ has no weights), with a fixed seed.
    Plain arrays / lists / tensors become one variable ``x`` shaped (chains, draws).
    Discrete variables (Categorical, Poisson, Bernoulli, Binomial) are int64, unless some
    trace lacks an instance of them (NaN marks it, so they stay float).
    """
    from .._optional import require

    az = require("arviz", "to_arviz")

    batch = batch_of(x)
    if batch is None:
        return az.from_dict(posterior={"x": chain_array(x, None, "to_arviz")})
    ids = chain_ids(x)
    take = None
    weights = getattr(x, "weights", None)
    if ids is None and weights is not None and len(batch) and np.ptp(np.asarray(x.log_weights)) > 0:
        take = np.sort(np.random.default_rng(0).choice(len(batch), size=len(batch), p=np.asarray(weights)))

    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    for name in var_names if var_names is not None else variable_names(batch):
        m = variable_values(batch, name)
        if _discrete(batch, name) and np.isfinite(m).all():  # NaN marks a missing instance: stays float
            m = m.astype(np.int64)
        d = []
        if m.shape[1] > 1:
            d.append(f"{name}_instance")
        if m.shape[2] > 1:
            d.append(f"{name}_element")
        posterior[name] = _split(_squeeze(m), ids, take)
        if d:
            dims[name] = d
    if results and "result" not in posterior:
        try:
            res = to_numpy(batch.results)
        except TypeError:
            res = None
        if res is not None and res.ndim == 1 and np.isfinite(res).any():
            posterior["result"] = _split(res, ids, take)

    rec = batch.records
    lp = batch.traces["log_prior"] + batch.traces["log_likelihood"]
    sample_stats = {"lp": _split(lp, ids, take)}
    log_lik: dict[str, np.ndarray] = {}
    observed: dict[str, np.ndarray] = {}
    obs_mask = (rec["kind"] == RecordKind.OBSERVE) & ((rec["flags"] & FLAG_OBSERVED) != 0) & (rec["name"] != 0)
    for i in np.unique(rec["name"][obs_mask]):
        name = address_name(int(i))
        if name in posterior:
            continue
        ll = variable_values(batch, name, RecordKind.OBSERVE, "log_prob")
        log_lik[name] = _split(_squeeze(ll), ids, take)
        first = variable_values(batch, name, RecordKind.OBSERVE)[0]
        observed[name] = np.atleast_1d(_squeeze(first[np.newaxis])[0])
    return az.from_dict(posterior=posterior, sample_stats=sample_stats, log_likelihood=log_lik or None,
                        observed_data=observed or None, dims=dims or None)
