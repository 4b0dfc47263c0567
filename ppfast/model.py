"""Models: anything that produces traces.

``BaseModel`` holds the user-facing API (``prior_results``, ``posterior_results``,
``prior_batch``, ...), the same for every kind of model; a subclass only says how to
simulate traces ``[first, first + count)`` into a TraceBatch.  ``Model`` is the Python
kind: subclass it and write ``forward()`` with ``ppfast.sample`` / ``observe``.

>>> import ppfast
>>> from ppfast.distributions import Normal
>>> class GUM(ppfast.Model):
...     def forward(self):
...         mu = ppfast.sample(Normal(1.0, 5 ** 0.5), name="mu")
...         ppfast.observe(Normal(mu, 2 ** 0.5), name="obs0")
...         ppfast.observe(Normal(mu, 2 ** 0.5), name="obs1")
...         return mu
>>> post = GUM().posterior_results(2000, observe={"obs0": 8, "obs1": 9}, seed=1, progress=False)
>>> abs(post.mean - 7.25) < 0.2
True
"""

from __future__ import annotations

import enum
import math
from typing import Any, Dict, List, Optional

import numpy as np

from . import _core, streaming
from ._progress import Progress, ess_summary, set_progress
from .distributions import Distribution
from .errors import ModelError, TraceError
from .posterior import Empirical
from .primitives import Handler, handler_stack, name_id
from .trace import TraceBatch, TraceList

__all__ = ["InferenceEngine", "BaseModel", "Model", "set_random_seed", "set_progress"]


class InferenceEngine(enum.Enum):
    IMPORTANCE_SAMPLING = 0
    IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK = 1
    LIGHTWEIGHT_METROPOLIS_HASTINGS = 2
    RANDOM_WALK_METROPOLIS_HASTINGS = 3


class _Config:
    seeds = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Makes runs without an explicit ``seed=`` reproducible."""
    _Config.seeds = np.random.default_rng(seed)


def next_seed(seed: Optional[int]) -> int:
    return int(seed) if seed is not None else int(_Config.seeds.integers(0, 2**63 - 1))


def check_num_traces(num_traces: Any) -> int:
    """num_traces as an int, or a ValueError saying what came."""
    n = int(num_traces)
    if n < 0:
        raise ValueError(f"num_traces must be >= 0, got {num_traces}")
    return n


def check_on_error(on_error: str) -> str:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


def observation_map(observe: Optional[Dict[str, Any]]) -> Dict[int, np.ndarray]:
    """{name: value} -> {name id: float64 array}."""
    out = {}
    for k, v in (observe or {}).items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        arr = np.ascontiguousarray(v, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"observe={{{k!r}: ...}}: value must be finite, got {v!r}")
        out[name_id(k)] = arr
    return out


class BaseModel:
    """The model interface shared by Python, embedded C++, shared-memory and PPX models."""

    name = "model"
    # Traces per simulate call between progress updates.
    chunk_size = 1 << 16

    def __init__(self, name: Optional[str] = None):
        if name is not None:
            self.name = name

    # -- what a model kind implements ----------------------------------------------------
    def _simulate(self, seed: int, first: int, count: int, observations: Dict[int, np.ndarray],
                  required: bool, skip_errors: bool = False) -> TraceBatch:
        """Traces [first, first + count) into a batch; failed traces are recorded with
        their error (``skip_errors`` lets Python models go on after an exception)."""
        raise NotImplementedError

    # -- running ----------------------------------------------------------------------
    def simulate(self, num_traces: int, observe: Optional[Dict[str, Any]] = None, seed: Optional[int] = None,
                 first: int = 0, progress: Optional[bool] = None, on_error: str = "raise",
                 required: Optional[bool] = None, desc: str = "Simulating") -> TraceBatch:
        """Runs ``num_traces`` executions; trace ``first + i`` uses RNG stream
        ``first + i`` of ``seed``.  ``on_error``: 'raise' (a failed trace raises a typed
        error carrying the traces so far) or 'skip' (failed traces stay in the batch
        with weight 0 and an error message)."""
        num_traces = check_num_traces(num_traces)
        check_on_error(on_error)
        seed = next_seed(seed)
        obs = observation_map(observe)
        required = bool(observe) if required is None else required
        skip = on_error == "skip"
        return run_in_chunks(lambda offset, n: self._simulate(seed, first + offset, n, obs, required, skip_errors=skip),
                             num_traces, self.chunk_size, desc, progress, on_error)

    @staticmethod
    def _raise_failed(part: TraceBatch, parts: List[TraceBatch]) -> None:
        from .errors import DistributionError, MissingObservationError, SupportError

        i = int(part.failed[0])
        msg = part.error(i)
        index = int(part.traces["index"][i])
        partial = TraceBatch.concat(parts)
        cls = TraceError
        if msg.startswith("invalid distribution"):
            cls = DistributionError
        elif "has no value" in msg:
            cls = MissingObservationError
        elif "outside the support" in msg:
            cls = SupportError
        err = cls(f"trace {index}: {msg}")
        err.trace, err.partial = index, partial  # type: ignore[attr-defined]
        raise err

    def prior_batch(self, num_traces: int = 10, seed: Optional[int] = None, observe: Optional[Dict[str, Any]] = None,
                    progress: Optional[bool] = None) -> TraceBatch:
        """Prior traces as a zero-copy TraceBatch."""
        return self.simulate(num_traces, observe=observe, seed=seed, progress=progress, required=False,
                             desc="Prior")

    def prior(self, num_traces: int = 10, seed: Optional[int] = None, observe: Optional[Dict[str, Any]] = None,
              progress: Optional[bool] = None, **kwargs: Any) -> Empirical:
        """Prior over traces (values are Trace views; ``result['name']`` extracts a variable)."""
        batch = self.prior_batch(num_traces, seed=seed, observe=observe, progress=progress)
        return Empirical(TraceList(batch), log_weights=np.zeros(len(batch)), name="Prior", batch=batch)

    def prior_results(self, num_traces: int = 10, seed: Optional[int] = None,
                      observe: Optional[Dict[str, Any]] = None, progress: Optional[bool] = None,
                      **kwargs: Any) -> Empirical:
        """Prior over the model's results.  ``stream=``, ``keep=``, ``summarize=``: a streamed
        run with bounded memory (:mod:`ppfast.streaming`; automatic for very large runs)."""
        retention = streaming.options(num_traces, kwargs)
        if retention is not None:
            return streaming.run(self, num_traces, retention, observe, seed, progress,  # type: ignore[return-value]
                                 kwargs.get("on_error", "raise"), prior=True)
        batch = self.prior_batch(num_traces, seed=seed, observe=observe, progress=progress)
        return Empirical(batch.results, log_weights=np.zeros(len(batch)), name="Prior", batch=batch)

    def posterior_batch(self, num_traces: int = 10,
                        inference_engine: InferenceEngine = InferenceEngine.IMPORTANCE_SAMPLING,
                        observe: Optional[Dict[str, Any]] = None, seed: Optional[int] = None,
                        progress: Optional[bool] = None, on_error: str = "raise", **kwargs: Any) -> TraceBatch:
        if inference_engine == InferenceEngine.IMPORTANCE_SAMPLING:
            return self.simulate(num_traces, observe=observe, seed=seed, progress=progress, on_error=on_error,
                                 required=True, desc="Importance sampling")
        from . import inference

        return inference.run(self, inference_engine, num_traces, observe=observe, seed=seed, progress=progress,
                             on_error=on_error, **kwargs)

    def posterior(self, num_traces: int = 10,
                  inference_engine: InferenceEngine = InferenceEngine.IMPORTANCE_SAMPLING,
                  observe: Optional[Dict[str, Any]] = None, **kwargs: Any) -> Empirical:
        """Posterior over traces (``posterior['mu']`` gives one variable)."""
        batch = self.posterior_batch(num_traces, inference_engine, observe=observe, **kwargs)
        return Empirical(TraceList(batch), log_weights=batch.log_weights, name="Posterior", batch=batch)

    def posterior_results(self, num_traces: int = 10,
                          inference_engine: InferenceEngine = InferenceEngine.IMPORTANCE_SAMPLING,
                          observe: Optional[Dict[str, Any]] = None, **kwargs: Any) -> Empirical:
        """Posterior over the model's results (importance sampling by default).  With
        ``distributed=True`` under ``mpiexec`` every rank runs its share and rank 0 gets the
        gathered Empirical (the others None): see :mod:`ppfast.distributed`.  ``stream=``,
        ``keep=``, ``summarize=``: a streamed importance-sampling run with bounded memory
        (:mod:`ppfast.streaming`; automatic for very large runs)."""
        if kwargs.pop("distributed", False):
            from . import distributed

            return distributed.posterior_results(  # type: ignore[return-value]  # None off rank 0
                self, num_traces, inference_engine, observe=observe, **kwargs)
        retention = streaming.options(num_traces, kwargs, inference_engine == InferenceEngine.IMPORTANCE_SAMPLING)
        if retention is not None:
            return streaming.run(self, num_traces, retention, observe, kwargs.get("seed"),  # type: ignore[return-value]
                                 kwargs.get("progress"), kwargs.get("on_error", "raise"), prior=False)
        batch = self.posterior_batch(num_traces, inference_engine, observe=observe, **kwargs)
        return Empirical(batch.results, log_weights=batch.log_weights, name="Posterior", batch=batch)

    # -- inference compilation (ppfast.nn) ------------------------------------------------
    def learn_inference_network(self, num_traces: Optional[int] = None, new_network: bool = False,
                                **kwargs: Any) -> Any:
        """Trains (or, when the model has one, goes on training) the inference network
        used by ``IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK``; see
        :func:`ppfast.nn.learn_inference_network` for the options."""
        from .nn import learn_inference_network

        current = None if new_network else getattr(self, "inference_network", None)
        self.inference_network = learn_inference_network(self, num_traces, network=current, **kwargs)
        return self.inference_network

    def save_inference_network(self, path: Any) -> Any:
        from .errors import PpfastError
        from .nn import save_inference_network

        if getattr(self, "inference_network", None) is None:
            raise PpfastError("no inference network to save: call learn_inference_network first")
        return save_inference_network(self.inference_network, path)

    def load_inference_network(self, path: Any, **kwargs: Any) -> Any:
        from .nn import load_inference_network

        self.inference_network = load_inference_network(path, **kwargs)
        return self.inference_network

    def save_dataset(self, dataset_dir: Any, num_traces: int, traces_per_file: Optional[int] = None,
                     seed: Optional[int] = None, **kwargs: Any) -> Any:
        """Writes ``num_traces`` prior traces as a sharded Arrow dataset (every rank its
        share under ``mpiexec``); read it with ``ppfast.data.TraceDataset``.  See
        :func:`ppfast.data.save_dataset`."""
        from .data import save_dataset

        return save_dataset(self, dataset_dir, num_traces, traces_per_file, seed=seed, **kwargs)


def run_in_chunks(simulate_part: Any, num_traces: int, chunk_size: int, desc: str, progress: Optional[bool],
                  on_error: str) -> TraceBatch:
    """Runs ``simulate_part(offset, n)`` over [0, num_traces) in chunks, with a progress
    bar; with on_error='raise' the first failed trace raises (carrying the traces so far)."""
    bar = Progress(num_traces, desc, progress)
    parts: List[TraceBatch] = []
    try:
        done = 0
        while done < num_traces or not parts:
            n = min(chunk_size, num_traces - done)
            try:
                part = simulate_part(done, n)
            except Exception as e:
                # The error carries the traces of its own chunk: add the chunks before it.
                if parts and getattr(e, "partial", None) is not None:
                    e.partial = TraceBatch.concat(parts + [e.partial])  # type: ignore[attr-defined]
                raise
            parts.append(part)
            done += n
            bar.update(n)
            if on_error == "raise" and len(part.failed):
                BaseModel._raise_failed(part, parts)
            if n == 0:
                break
        batch = TraceBatch.concat(parts)
        if bar.enabled:
            bar.summary = ess_summary(batch.traces["log_weight"])
        return batch
    except KeyboardInterrupt as e:
        # Ctrl-C: the exception carries every trace finished before it as `partial`.
        inner = getattr(e, "partial", None)
        e.partial = TraceBatch.concat(parts + ([inner] if inner is not None else [])) if parts or inner else None
        raise
    finally:
        bar.close()


class _Record(Handler):
    """Routes a Python model's random choices to the C++ recorder (prior, importance
    sampling; the recorder's policy decides values)."""

    __slots__ = ("rec", "_sample", "_observe")

    def __init__(self, rec: "_core.Recorder", fast: tuple):
        self.rec = rec
        self._sample, self._observe = fast[2], fast[3]

    def sample(self, dist: Distribution, address: int, name: int, control: bool, replace: bool) -> Any:
        flags = 1 if control else 0
        if replace:
            flags |= 2
        if dist._params is None:
            x = self._sample(dist.kind, dist._a, dist._b, address, name, flags)
            return int(x) if dist.discrete else x
        return dist.value_from(self.rec.sample_array(dist.kind, dist._size, dist._params, address, name, flags))

    def observe(self, dist: Distribution, value: Any, address: int, name: int) -> None:
        if value is not None and type(value) is not float and type(value) is not int:
            value = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float64)
        if dist._params is None:
            self._observe(dist.kind, dist._a, dist._b, address, name, value)
        else:
            self.rec.observe_array(dist.kind, dist._size, dist._params, address, name, value)

    def factor(self, log_prob: float) -> None:
        self.rec.factor(log_prob)

    def tag(self, value: Any, address: int, name: int) -> None:
        from .primitives import as_float_array

        self.rec.tag(address, name, as_float_array(value))


def _as_result(value: Any) -> float:
    """A numeric result as float, else NaN (the object is kept on the Python side)."""
    t = type(value)
    if t is float or t is int:
        return float(value)
    try:
        if np.ndim(value) == 0:
            return float(value)
    except (TypeError, ValueError):
        pass
    return math.nan


class Model(BaseModel):
    """A model written in Python: subclass and implement ``forward()``."""

    def __init__(self, name: str = "Unnamed ppfast model", **kwargs: Any):
        super().__init__(name)

    def forward(self) -> Any:
        raise NotImplementedError("subclasses of ppfast.Model implement forward()")

    def _simulate(self, seed: int, first: int, count: int, observations: Dict[int, np.ndarray],
                  required: bool, skip_errors: bool = False) -> TraceBatch:
        rec = _core.Recorder(seed, _core.Observations(observations, required))
        return run_python(self.forward, rec, _Record(rec, rec.fast()), first, count, skip_errors)


def run_python(forward: Any, rec: "_core.Recorder", handler: Handler, first: int, count: int,
               skip_errors: bool = False) -> TraceBatch:
    """Runs ``forward`` ``count`` times under ``handler`` and the recorder ``rec``."""
    results: List[Any] = []
    numeric = True
    begin, end = rec.fast()[:2]
    token = handler_stack.set(handler_stack.get() + (handler,))
    try:
        for i in range(first, first + count):
            begin(i)
            try:
                result = forward()
            except KeyboardInterrupt as e:
                rec.discard()  # stopped part-way: keep only the finished traces
                e.partial = TraceBatch(rec.take(), None if numeric else results)  # type: ignore[attr-defined]
                raise
            except Exception as e:
                rec.fail(f"{type(e).__name__}: {e}")
                rec.end(math.nan)
                if skip_errors:
                    results.append(None)
                    continue
                partial = TraceBatch(rec.take(), None if numeric else results + [None])
                if isinstance(e, TraceError) or type(e).__module__ == "ppfast.errors":
                    e.trace, e.partial = i, partial  # type: ignore[attr-defined]
                    e.args = (f"trace {i}: {e}",)
                    raise
                raise ModelError(f"trace {i}: forward() raised {type(e).__name__}: {e}", trace=i,
                                 partial=partial) from e
            results.append(result)
            t = type(result)
            if t is float or t is int:
                end(result)
            else:
                r = _as_result(result)
                numeric = numeric and (r == r or result is None)
                end(r)
    finally:
        handler_stack.reset(token)
    # Non-numeric results are kept as objects; numbers live in the batch's result column.
    return TraceBatch(rec.take(), None if numeric else results)


