"""Streaming inference: prior sampling and importance sampling over any number of traces
with memory that follows what is kept, not the number of traces.

Traces are simulated in chunks; each chunk updates running weighted summaries (mean,
variance, min, max, effective sample size) of the results and of the variables named in
``summarize=``, appends the per-trace values of the variables named in ``keep=`` (with the
log-weights), and is then dropped (its buffers go back to the pool for the next chunk).

>>> import ppfast, ppfast.examples
>>> gum = ppfast.examples.load("gum")
>>> post = gum.posterior_results(200_000, observe={"obs0": 8, "obs1": 9}, seed=1, progress=False,
...                              stream=True, keep=["mu"])
>>> round(post.mean, 1), round(post["mu"].stddev, 1)
(7.2, 0.9)
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ._progress import Progress
from .posterior import Empirical

__all__ = ["AUTO_STREAM_TRACES", "RunningSummary", "StreamedEmpirical", "StreamingNotice"]

#: Runs of more traces than this stream by default (``stream=None``); ``stream=False`` forces
#: a full in-memory run, ``stream=True`` streams at any size.
AUTO_STREAM_TRACES = 1 << 24

# Records per streamed chunk (about 60 MB of trace buffers): bounds memory whatever the
# number of draws per trace.
_CHUNK_RECORDS = 1 << 20
_FIRST_CHUNK = 1 << 12


class StreamingNotice(UserWarning):
    """Issued when a large run streams automatically (silence it with ``stream=True``)."""


class RunningSummary:
    """Weighted mean, variance, min, max and ESS of a stream of (log-weight, value) pairs,
    updated one chunk at a time.  Weights are kept relative to the largest log-weight seen
    so far (rescaled when it grows), and chunks are merged with Chan's parallel formula,
    so the figures equal those of one pass over all the values up to summation error.
    Entries with weight 0 take no part (as in :class:`~ppfast.Empirical`)."""

    def __init__(self, name: str, edges: Any = None):
        self.name = name
        # Optional weighted histogram over fixed bin edges (bins closed on the left).
        self.edges = None if edges is None else np.asarray(edges, dtype=np.float64)
        if self.edges is not None and (self.edges.ndim != 1 or len(self.edges) < 2
                                       or not np.all(np.diff(self.edges) > 0)):
            raise ValueError(f"histogram edges of {name!r} must be increasing, at least two, got {edges!r}")
        # Bin 0: below the first edge; the last bin: above the last edge (or NaN).
        self._hist = None if self.edges is None else np.zeros(len(self.edges) + 1)
        self.count = 0          # entries seen, weight 0 included
        self._shift = -math.inf  # largest finite log-weight so far
        self._w = 0.0            # sum of exp(lw - shift)
        self._w2 = 0.0           # sum of exp(2 (lw - shift))
        self._mean = 0.0
        self._m2 = 0.0           # weighted sum of squared deviations from the mean
        self._min = math.inf
        self._max = -math.inf

    def add(self, log_weights: np.ndarray, values: np.ndarray) -> None:
        lw = np.asarray(log_weights, dtype=np.float64)
        self.count += len(lw)
        live = lw > -np.inf
        if not live.all():
            lw, values = lw[live], values[live]
        if not len(lw):
            return
        top = float(lw.max())
        if top > self._shift:
            scale = math.exp(self._shift - top) if self._w else 0.0
            self._w *= scale
            self._w2 *= scale * scale
            self._m2 *= scale
            if self._hist is not None:
                self._hist *= scale
            self._shift = top
        w = np.exp(lw - self._shift)
        # einsum, not np.dot: dot goes to a multithreaded BLAS whose thread hand-offs cost
        # ten times the arithmetic on a busy machine.
        cw = float(w.sum())
        cmean = float(np.einsum("i,i->", w, values)) / cw
        dev = values - cmean
        cm2 = float(np.einsum("i,i,i->", w, dev, dev))
        total = self._w + cw
        delta = cmean - self._mean
        self._mean += delta * cw / total
        self._m2 += cm2 + delta * delta * self._w * cw / total
        self._w = total
        self._w2 += float(np.einsum("i,i->", w, w))
        if self._hist is not None:
            bins = np.searchsorted(self.edges, values, side="right")
            self._hist += np.bincount(bins, weights=w, minlength=len(self._hist))
        self._min = min(self._min, float(values.min()))
        self._max = max(self._max, float(values.max()))

    def _check(self) -> None:
        if not self._w:
            raise ValueError(f"{self.name}: all weights are zero (every log-weight is -inf or NaN): every trace "
                             "failed, was skipped, or made an observed value impossible; no statistic is defined")

    def __len__(self) -> int:
        return self.count

    @property
    def length(self) -> int:
        return self.count

    @property
    def mean(self) -> float:
        self._check()
        return self._mean

    @property
    def variance(self) -> float:
        self._check()
        return self._m2 / self._w

    @property
    def stddev(self) -> float:
        return math.sqrt(self.variance)

    @property
    def effective_sample_size(self) -> float:
        """Kish's effective sample size, (sum w)^2 / sum w^2."""
        self._check()
        return self._w * self._w / self._w2

    @property
    def min(self) -> float:
        self._check()
        return self._min

    @property
    def max(self) -> float:
        self._check()
        return self._max

    @property
    def histogram(self) -> "tuple[np.ndarray, np.ndarray]":
        """(fraction of the total weight in each bin [edges[i], edges[i+1]), edges); the
        weight outside the edges is in the total, in no bin."""
        if self._hist is None:
            raise AttributeError(f"{self.name}: no histogram: pass histograms={{{self.name!r}: edges}}")
        self._check()
        return self._hist[1:-1] / self._w, self.edges

    def quantile(self, q: Any) -> Any:
        """Weighted quantile(s) from the histogram, linear within a bin (accurate to a bin
        width); ValueError for a quantile outside the edges."""
        frac, edges = self.histogram
        cdf = self._hist[0] / self._w + np.concatenate([[0.0], np.cumsum(frac)])
        qs = np.asarray(q, dtype=np.float64)
        if np.any((qs < cdf[0]) | (qs > cdf[-1]) | (qs > 1)):
            raise ValueError(f"{self.name}: quantile {q} lies outside the histogram edges [{edges[0]}, {edges[-1]}] "
                             f"(they hold quantiles {cdf[0]:.4g} to {cdf[-1]:.4g}): widen the edges")
        out = np.interp(qs, cdf, edges)
        return float(out) if out.ndim == 0 else out

    def __repr__(self) -> str:
        return f"RunningSummary(name={self.name!r}, length={self.count})"


class StreamedEmpirical(RunningSummary):
    """The result of a streamed run: running summaries of the results (``mean``,
    ``stddev``, ``variance``, ``effective_sample_size``, ``min``, ``max``, ``len``);
    ``post['name']`` is an :class:`~ppfast.Empirical` for a variable in ``keep=`` (all its
    values, with ``log_weights``) or a :class:`RunningSummary` for one in ``summarize=``."""

    def __init__(self, name: str, keep: Sequence[str], summarize: Sequence[str],
                 histograms: Optional[Dict[str, Any]] = None):
        super().__init__(name)
        histograms = histograms or {}
        self.kept: Dict[str, Any] = {k: [] for k in keep}
        self.summaries: Dict[str, RunningSummary] = {k: RunningSummary(k, histograms.get(k)) for k in summarize}
        self._lw: Any = [] if keep else None
        self.numeric = True

    @property
    def log_weights(self) -> np.ndarray:
        if self._lw is None:
            raise AttributeError(f"{self.name}: a streamed run keeps log-weights only with keep=[...] variables")
        return self._lw

    def __getitem__(self, key: str) -> Any:
        if key in self.kept:
            return Empirical(self.kept[key], log_weights=self.log_weights, name=key)
        if key in self.summaries:
            return self.summaries[key]
        raise KeyError(f"{self.name}: variable {key!r} was not kept by this streamed run; pass keep=[{key!r}] "
                       f"(values and weights), summarize=[{key!r}] (running mean/variance/ESS) or "
                       f"histograms={{{key!r}: edges}}")

    def _check(self) -> None:
        if not self.numeric:
            raise TypeError(f"{self.name}: results are not numeric; summarize a variable instead, e.g. "
                            "summarize=['mu'] and post['mu']")
        super()._check()

    def _add_chunk(self, part: Any, log_weights: np.ndarray) -> None:
        results = part.results
        if isinstance(results, list):
            self.numeric = False
            self.count += len(results)
        else:
            self.add(log_weights, results)
        for key, summary in self.summaries.items():
            summary.add(log_weights, part.values_of(key))
        for key, chunks in self.kept.items():
            chunks.append(part.values_of(key))
        if self._lw is not None:
            self._lw.append(np.array(log_weights, dtype=np.float64))

    def _finish(self) -> None:
        for key, chunks in self.kept.items():
            self.kept[key] = np.concatenate(chunks) if chunks else np.zeros(0)
        if self._lw is not None:
            self._lw = np.concatenate(self._lw) if self._lw else np.zeros(0)

    def __repr__(self) -> str:
        return f"StreamedEmpirical(name={self.name!r}, length={self.count}, kept={list(self.kept)})"


def _names(arg: Any, what: str) -> List[str]:
    if arg is None:
        return []
    if isinstance(arg, str):
        arg = [arg]
    names = list(arg)
    if not all(isinstance(k, str) for k in names):
        raise TypeError(f"{what}= takes variable names (strings), got {arg!r}")
    return names


def options(num_traces: int, kwargs: Dict[str, Any], streamable: bool = True) -> Optional[Dict[str, Any]]:
    """Pops ``stream``, ``keep``, ``summarize`` and ``histograms`` from ``kwargs``; the
    retention to stream with, or None for an in-memory run."""
    stream = kwargs.pop("stream", None)
    keep = _names(kwargs.pop("keep", None), "keep")
    histograms = kwargs.pop("histograms", None) or {}
    if not isinstance(histograms, dict):
        raise TypeError(f"histograms= takes {{name: bin edges}}, got {histograms!r}")
    summarize = _names(kwargs.pop("summarize", None), "summarize")
    summarize += [k for k in _names(list(histograms), "histograms") if k not in summarize]
    if stream not in (None, True, False):
        raise ValueError(f"stream must be None (automatic), True or False, got {stream!r}")
    if stream is None:
        stream = streamable and (bool(keep or summarize) or num_traces > AUTO_STREAM_TRACES)
        if stream and not (keep or summarize):
            warnings.warn(f"{num_traces:,} traces: streaming (only summaries of the results are kept, memory "
                          f"bounded) as the run is over ppfast.streaming.AUTO_STREAM_TRACES = "
                          f"{AUTO_STREAM_TRACES:,}; pass keep=[...] / summarize=[...] to keep variables, "
                          "stream=False for a full in-memory run", StreamingNotice, stacklevel=3)
    elif stream and not streamable:
        raise ValueError("stream=True works with importance sampling (the default engine) and prior sampling")
    if not stream:
        if keep or summarize:
            raise ValueError("keep=, summarize= and histograms= apply to streamed runs: drop stream=False")
        return None
    return {"keep": keep, "summarize": summarize + [k for k in keep if k not in summarize], "histograms": histograms}


def run(model: Any, num_traces: int, retention: Dict[str, Any], observe: Optional[Dict[str, Any]],
        seed: Optional[int], progress: Optional[bool], on_error: str, prior: bool) -> StreamedEmpirical:
    """Streams ``num_traces`` traces of ``model`` in chunks of about ``_CHUNK_RECORDS``
    records; trace ``i`` uses RNG stream ``i`` of ``seed``, as in an in-memory run, so the
    figures equal that run's."""
    from .model import BaseModel, check_num_traces, check_on_error, next_seed, observation_map

    num_traces = check_num_traces(num_traces)
    check_on_error(on_error)
    seed = next_seed(seed)
    obs = observation_map(observe)
    required = not prior and bool(observe)
    skip = on_error == "skip"
    out = StreamedEmpirical("Prior" if prior else "Posterior", retention["keep"], retention["summarize"],
                            retention["histograms"])
    bar = Progress(num_traces, "Prior (streaming)" if prior else "Importance sampling (streaming)", progress)
    try:
        done, chunk = 0, min(_FIRST_CHUNK, model.chunk_size)
        while done < num_traces:
            n = min(chunk, num_traces - done)
            part = model._simulate(seed, done, n, obs, required, skip_errors=skip)
            if on_error == "raise" and len(part.failed):
                BaseModel._raise_failed(part, [part])
            out._add_chunk(part, np.zeros(n) if prior else part.log_weights)
            records_per_trace = max(1.0, part.num_records / max(n, 1))
            del part  # its buffers go back to the pool before the next chunk
            done += n
            bar.update(n)
            chunk = int(min(model.chunk_size, max(_FIRST_CHUNK, _CHUNK_RECORDS / records_per_trace)))
        out._finish()
        if bar.enabled and not prior and out.numeric and out._w:
            bar.summary = f"ESS {out.effective_sample_size:,.1f}"
        return out
    finally:
        bar.close()
