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
from .primitives import Handler, handler_stack, run_ended, run_started
from .runtime import (Config, ObservationMap, check_num_traces, check_observed_shape, check_on_error, next_seed,
                      observation_map, set_random_seed, warn_unused_observations)
from .trace import TraceBatch, TraceList

__all__ = ["InferenceEngine", "BaseModel", "Model", "set_random_seed", "set_progress", "check_num_traces",
           "check_on_error", "next_seed", "observation_map"]


class InferenceEngine(enum.Enum):
    IMPORTANCE_SAMPLING = 0
    IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK = 1
    LIGHTWEIGHT_METROPOLIS_HASTINGS = 2
    RANDOM_WALK_METROPOLIS_HASTINGS = 3


# Shared helpers live in ppfast.runtime; these names stay importable from here.
_Config = Config

_MCMC_ENGINES = (InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS, InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS)
_IS_ENGINES = (InferenceEngine.IMPORTANCE_SAMPLING, InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK)


def _inflation_factor(prior_inflation: Any) -> float:
    """PyProb's PriorInflation (DISABLED / ENABLED), a bool, or a widening factor."""
    name = getattr(prior_inflation, "name", None)
    if name is not None:
        if name not in ("DISABLED", "ENABLED"):
            raise ValueError(f"prior_inflation: unknown value {prior_inflation!r}")
        return 3.0 if name == "ENABLED" else 0.0
    if prior_inflation is None or prior_inflation is False:
        return 0.0
    if prior_inflation is True:
        return 3.0
    factor = float(prior_inflation)
    if not (math.isfinite(factor) and factor >= 1.0):
        raise ValueError(f"prior_inflation must be a factor >= 1 (or True / False), got {prior_inflation!r}")
    return factor


def _check_importance(likelihood_importance: Any) -> float:
    li = float(likelihood_importance)
    if not (math.isfinite(li) and li >= 0.0):
        raise ValueError(f"likelihood_importance must be a finite number >= 0, got {likelihood_importance!r}")
    return li


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
        with weight 0 and an error message).  Names in ``observe`` that no site of the
        run carries give a warning with the nearest name the model uses."""
        num_traces = check_num_traces(num_traces)
        check_on_error(on_error)
        first = check_num_traces(first, "first")
        seed = next_seed(seed)
        obs = observation_map(observe)
        required = bool(observe) if required is None else required
        skip = on_error == "skip"
        batch = run_in_chunks(lambda offset, n: self._simulate(seed, first + offset, n, obs, required,
                                                               skip_errors=skip),
                              num_traces, self.chunk_size, desc, progress, on_error)
        warn_unused_observations(obs, batch.column_chunks("records", "name"))
        return batch

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
        elif "outside the support" in msg or "observed value has shape" in msg:
            cls = SupportError
        err = cls(f"trace {index}: {msg}")
        err.trace, err.partial = index, partial  # type: ignore[attr-defined]
        raise err

    def prior_batch(self, num_traces: int = 10, seed: Optional[int] = None, observe: Optional[Dict[str, Any]] = None,
                    progress: Optional[bool] = None, prior_inflation: Any = None) -> TraceBatch:
        """Prior traces as a zero-copy TraceBatch.

        ``seed``: an int in [0, 2**64) (default: the next seed of ``set_random_seed``'s
        generator); ``observe``: {name: value} fixing observed values (and named samples,
        as in PyProb); ``progress``: show a progress bar (default: ``set_progress``);
        ``prior_inflation``: PyProb's PriorInflation, True (factor 3) or a factor that
        widens Normal / LogNormal scales and makes Categorical / Bernoulli draws uniform
        (Python and embedded models)."""
        factor = _inflation_factor(prior_inflation)
        if not factor:
            return self.simulate(num_traces, observe=observe, seed=seed, progress=progress, required=False,
                                 desc="Prior")
        if observe:
            raise NotImplementedError("prior with prior_inflation and observe= together")
        from .nn.train import _simulator  # the inflated-prior runner that training uses

        num_traces = check_num_traces(num_traces)
        run = _simulator(self, next_seed(seed), factor)
        return run_in_chunks(run, num_traces, self.chunk_size, "Prior (inflated)", progress, "raise")

    def _prior_empirical(self, num_traces: Any, prior_inflation: Any, map_func: Any, file_name: Any,
                         likelihood_importance: Any, seed: Any, observe: Any, progress: Any, results: bool,
                         streamed: Optional[Dict[str, Any]] = None) -> Empirical:
        _check_importance(likelihood_importance)  # prior traces are equally weighted whatever it is
        retention = _retention(num_traces, streamed, True, prior_inflation=_inflation_factor(prior_inflation) or None,
                               map_func=map_func,
                               file_name=file_name)
        if retention is not None:
            return streaming.run(self, num_traces, retention, observe, seed, progress,  # type: ignore[return-value]
                                 "raise", prior=True)
        batch = self.prior_batch(num_traces, seed=seed, observe=observe, progress=progress,
                                 prior_inflation=prior_inflation)
        return _empirical(batch, np.zeros(len(batch)), "Prior", map_func, file_name, results)

    def prior(self, num_traces: int = 10, *, prior_inflation: Any = None, map_func: Optional[Any] = None,
              file_name: Optional[str] = None, likelihood_importance: float = 1.0, seed: Optional[int] = None,
              observe: Optional[Dict[str, Any]] = None, progress: Optional[bool] = None) -> Empirical:
        """Prior over traces (values are Trace views; ``prior['name']`` extracts a variable).

        PyProb's options: ``prior_inflation`` (see :meth:`prior_batch`), ``map_func``
        (values become ``map_func(trace)``), ``file_name`` (the values are also appended
        to this folder of Arrow segments, see :mod:`ppfast.empirical_file`), ``likelihood_importance`` (prior traces are
        equally weighted, so it changes nothing here).  Others as in :meth:`prior_batch`."""
        return self._prior_empirical(num_traces, prior_inflation, map_func, file_name, likelihood_importance,
                                     seed, observe, progress, results=False)

    def prior_results(self, num_traces: int = 10, *, prior_inflation: Any = None, map_func: Optional[Any] = None,
                      file_name: Optional[str] = None, likelihood_importance: float = 1.0,
                      seed: Optional[int] = None, observe: Optional[Dict[str, Any]] = None,
                      progress: Optional[bool] = None, stream: Optional[bool] = None, keep: Any = None,
                      summarize: Any = None, histograms: Optional[Dict[str, Any]] = None) -> Empirical:
        """Prior over the model's results (``forward()``'s return values); options as in
        :meth:`prior`.  ``stream=``, ``keep=``, ``summarize=``, ``histograms=``: a streamed
        run with bounded memory (:mod:`ppfast.streaming`; automatic for very large runs)."""
        return self._prior_empirical(num_traces, prior_inflation, map_func, file_name, likelihood_importance,
                                     seed, observe, progress, results=True,
                                     streamed=dict(stream=stream, keep=keep, summarize=summarize, histograms=histograms))

    def posterior_batch(self, num_traces: int = 10,
                        inference_engine: InferenceEngine = InferenceEngine.IMPORTANCE_SAMPLING, *,
                        observe: Optional[Dict[str, Any]] = None, seed: Optional[int] = None,
                        progress: Optional[bool] = None, on_error: str = "raise", initial_trace: Any = None,
                        burn_in: Optional[int] = None, thinning: Optional[int] = None,
                        thinning_steps: Optional[int] = None, num_chains: Optional[int] = None,
                        network: Any = None, threads: Optional[int] = None, slots: Optional[int] = None,
                        **engine_options: Any) -> TraceBatch:
        """Posterior traces as a TraceBatch (log-weights in ``batch.log_weights``).

        ``observe``: {name: value} of observe sites, and of named samples (PyProb's
        observation style 2); ``seed``, ``progress`` as in :meth:`prior_batch`;
        ``on_error``: 'raise' or 'skip'.  Metropolis-Hastings engines take
        ``initial_trace``, ``burn_in``, ``thinning`` (steps per kept state, ``num_traces``
        kept), ``thinning_steps`` (PyProb's: ``num_traces`` steps, every
        ``thinning_steps``-th kept), ``num_chains`` and the options of
        :func:`ppfast.inference.mcmc.run`; IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK takes
        ``network``, ``threads``, ``slots`` and the options of
        :func:`ppfast.inference.guided.run`.  An option the engine does not take raises
        TypeError."""
        mcmc = dict(initial_trace=initial_trace, burn_in=burn_in, thinning=thinning, thinning_steps=thinning_steps,
                    num_chains=num_chains)
        guided = dict(network=network, threads=threads, slots=slots)
        given = {k: v for k, v in {**mcmc, **guided}.items() if v is not None}
        if inference_engine in _MCMC_ENGINES:
            wrong = sorted(set(given) & set(guided))
        elif inference_engine == InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK:
            wrong = sorted(set(given) & set(mcmc))
        elif inference_engine == InferenceEngine.IMPORTANCE_SAMPLING:
            wrong = sorted(set(given) | set(engine_options))
        else:
            raise ValueError(f"unknown inference engine {inference_engine!r}")
        if wrong:
            raise TypeError(f"{inference_engine.name} does not take the argument(s) {', '.join(wrong)}")
        if inference_engine == InferenceEngine.IMPORTANCE_SAMPLING:
            return self.simulate(num_traces, observe=observe, seed=seed, progress=progress, on_error=on_error,
                                 required=True, desc="Importance sampling")
        from . import inference

        return inference.run(self, inference_engine, num_traces, observe=observe, seed=seed, progress=progress,
                             on_error=on_error, **given, **engine_options)

    def _posterior_empirical(self, num_traces: Any, inference_engine: Any, map_func: Any, file_name: Any,
                             likelihood_importance: Any, distributed: bool, results: bool,
                             options: Dict[str, Any], streamed: Optional[Dict[str, Any]] = None) -> Optional[Empirical]:
        importance = _check_importance(likelihood_importance)
        if importance != 1.0 and inference_engine not in _IS_ENGINES:
            raise NotImplementedError("likelihood_importance with Metropolis-Hastings engines (their acceptance "
                                      "ratios use the plain likelihood); it works with importance sampling")
        retention = None if distributed else _retention(
            num_traces, streamed, inference_engine == InferenceEngine.IMPORTANCE_SAMPLING, map_func=map_func,
            file_name=file_name, likelihood_importance=None if importance == 1.0 else importance)
        if retention is not None:
            return streaming.run(self, num_traces, retention, options["observe"], options["seed"],  # type: ignore
                                 options["progress"], options["on_error"], prior=False)
        if distributed:
            from . import distributed as dist

            batch = dist.posterior_batch(self, num_traces, inference_engine,
                                         **{k: v for k, v in options.items() if v is not None})
            if batch is None:
                return None
        else:
            batch = self.posterior_batch(num_traces, inference_engine, **options)
        log_weights = batch.log_weights
        if importance != 1.0:  # PyProb scales every observation's log-likelihood
            log_weights = log_weights + (importance - 1.0) * batch.traces["log_likelihood"]
        return _empirical(batch, log_weights, "Posterior", map_func, file_name, results)

    def posterior(self, num_traces: int = 10,
                  inference_engine: InferenceEngine = InferenceEngine.IMPORTANCE_SAMPLING, *,
                  observe: Optional[Dict[str, Any]] = None, map_func: Optional[Any] = None,
                  file_name: Optional[str] = None, likelihood_importance: float = 1.0,
                  distributed: bool = False, seed: Optional[int] = None, progress: Optional[bool] = None,
                  on_error: str = "raise", initial_trace: Any = None, burn_in: Optional[int] = None,
                  thinning: Optional[int] = None, thinning_steps: Optional[int] = None,
                  num_chains: Optional[int] = None, network: Any = None, threads: Optional[int] = None,
                  slots: Optional[int] = None, **engine_options: Any) -> Empirical:
        """Posterior over traces (``posterior['mu']`` gives one variable).

        PyProb's options: ``map_func`` (values become ``map_func(trace)``), ``file_name``
        (the values are also appended to this folder of Arrow segments: a later run
        appends more, ``ppfast.empirical_file.read_empirical`` reads them all), ``likelihood_importance`` (observations'
        log-likelihoods are multiplied by it; importance sampling engines).
        ``distributed=True`` under ``mpiexec``: every rank runs its share and rank 0 gets
        the gathered Empirical (the others None), see :mod:`ppfast.distributed`.  The
        other options as in :meth:`posterior_batch`."""
        options = dict(observe=observe, seed=seed, progress=progress, on_error=on_error, initial_trace=initial_trace,
                       burn_in=burn_in, thinning=thinning, thinning_steps=thinning_steps, num_chains=num_chains,
                       network=network, threads=threads, slots=slots, **engine_options)
        return self._posterior_empirical(num_traces, inference_engine, map_func, file_name, likelihood_importance,
                                         distributed, False, options)  # type: ignore[return-value]

    def posterior_results(self, num_traces: int = 10,
                          inference_engine: InferenceEngine = InferenceEngine.IMPORTANCE_SAMPLING, *,
                          observe: Optional[Dict[str, Any]] = None, map_func: Optional[Any] = None,
                          file_name: Optional[str] = None, likelihood_importance: float = 1.0,
                          distributed: bool = False, seed: Optional[int] = None, progress: Optional[bool] = None,
                          on_error: str = "raise", initial_trace: Any = None, burn_in: Optional[int] = None,
                          thinning: Optional[int] = None, thinning_steps: Optional[int] = None,
                          num_chains: Optional[int] = None, network: Any = None, threads: Optional[int] = None,
                          slots: Optional[int] = None, stream: Optional[bool] = None, keep: Any = None,
                          summarize: Any = None, histograms: Optional[Dict[str, Any]] = None,
                          **engine_options: Any) -> Empirical:
        """Posterior over the model's results (importance sampling by default); options as
        in :meth:`posterior` (with ``distributed=True``, rank 0 gets the Empirical and the
        other ranks None).  ``stream=``, ``keep=``, ``summarize=``, ``histograms=``: a streamed
        importance-sampling run with bounded memory (:mod:`ppfast.streaming`; automatic
        for very large runs)."""
        options = dict(observe=observe, seed=seed, progress=progress, on_error=on_error, initial_trace=initial_trace,
                       burn_in=burn_in, thinning=thinning, thinning_steps=thinning_steps, num_chains=num_chains,
                       network=network, threads=threads, slots=slots, **engine_options)
        return self._posterior_empirical(num_traces, inference_engine, map_func, file_name, likelihood_importance,
                                         distributed, True, options,  # type: ignore[return-value]
                                         streamed=dict(stream=stream, keep=keep, summarize=summarize, histograms=histograms))

    def condition(self, predicate: Any, max_tries: int = 10**6) -> "BaseModel":
        """A model whose traces are this model's traces for which ``predicate(trace)`` is
        true (rejection; see :class:`ppfast.conditional.ConditionalModel`)."""
        from .conditional import ConditionalModel

        return ConditionalModel(self, predicate, max_tries=max_tries)

    # -- inference compilation (ppfast.nn) ------------------------------------------------
    def learn_inference_network(self, num_traces: Optional[int] = None, *, new_network: bool = False,
                                **options: Any) -> Any:
        """Trains (or, when the model has one, goes on training) the inference network
        used by ``IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK``.  ``new_network=True``
        starts from a fresh network.  ``options`` are the keyword arguments of
        :func:`ppfast.nn.learn_inference_network` (batch_size, learning_rate, optimizer,
        observe_embeddings, dataset, ...); it raises TypeError for any other name."""
        from .nn import learn_inference_network

        current = None if new_network else getattr(self, "inference_network", None)
        self.inference_network = learn_inference_network(self, num_traces, network=current, **options)
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
                     seed: Optional[int] = None, *, prior_inflation: Any = None, distributed: Optional[bool] = None,
                     on_error: str = "raise", overwrite: bool = False, progress: Optional[bool] = None,
                     num_traces_per_file: Optional[int] = None) -> Any:
        """Writes ``num_traces`` prior traces as a sharded Arrow dataset (every rank its
        share under ``mpiexec``); read it with ``ppfast.data.TraceDataset``.  See
        :func:`ppfast.data.save_dataset` for the options; ``num_traces_per_file`` is
        PyProb's name for ``traces_per_file``.  ``prior_inflation`` is not supported for
        datasets (NotImplementedError): train with ``learn_inference_network(...,
        prior_inflation=...)`` instead."""
        from .data import save_dataset

        if _inflation_factor(prior_inflation):
            raise NotImplementedError("save_dataset(prior_inflation=...): datasets hold prior traces; use "
                                      "learn_inference_network(prior_inflation=...) for inflated training data")
        return save_dataset(self, dataset_dir, num_traces, traces_per_file, seed=seed, distributed=distributed,
                            on_error=on_error, overwrite=overwrite, progress=progress,
                            num_traces_per_file=num_traces_per_file)


def _retention(num_traces: Any, streamed: Optional[Dict[str, Any]], streamable: bool,
               **in_memory_only: Any) -> Optional[Dict[str, List[str]]]:
    """The retention of a streamed run (ppfast.streaming), or None for an in-memory run."""
    if streamed is None:
        return None
    retention = streaming.options(check_num_traces(num_traces), dict(streamed), streamable)
    given = sorted(k for k, v in in_memory_only.items() if v is not None and v is not False)
    if retention is not None and given:
        raise ValueError(f"{', '.join(given)}: not with a streamed run (stream=False keeps every trace)")
    return retention


def _empirical(batch: TraceBatch, log_weights: np.ndarray, name: str, map_func: Any, file_name: Any,
               results: bool) -> Empirical:
    """The Empirical of a run: results, traces, or ``map_func(trace)`` per trace."""
    if map_func is not None:
        values: Any = [map_func(t) for t in TraceList(batch)]
    else:
        values = batch.results if results else TraceList(batch)
    emp = Empirical(values, log_weights=log_weights, name=name, batch=batch)
    if file_name is not None:  # appended as a new segment: runs can be resumed into one folder
        from .empirical_file import append_empirical

        append_empirical(file_name, emp.values, emp.log_weights)
    return emp


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

    __slots__ = ("rec", "_sample", "_observe", "_shapes", "_observations")

    def __init__(self, rec: "_core.Recorder", fast: tuple, observations: Optional[ObservationMap] = None):
        self.rec = rec
        self._sample, self._observe = fast[2], fast[3]
        self._observations = observations if observations is not None else {}
        # name id -> shape of its value in observe={...}
        self._shapes = getattr(observations, "shapes", {})

    def observed(self, name: int) -> Any:
        v = self._observations.get(name)
        if v is None:
            return None
        used = getattr(self._observations, "used", None)
        if used is not None:
            used.add(name)
        return v.reshape(self._shapes.get(name, v.shape))

    def _check_shape(self, dist: Distribution, value: Any, name: int) -> None:
        """Tensor sites: the observed value must have the site's shape, not only its size."""
        shape = self._shapes.get(name) if name else None
        if shape is None and value is not None:
            shape = np.shape(value)
        if shape is not None:
            from .trace import address_name

            check_observed_shape(dist._shape, tuple(shape), f"site {address_name(name)!r}" if name else "observe")

    def sample(self, dist: Distribution, address: int, name: int, control: bool, replace: bool) -> Any:
        flags = 1 if control else 0
        if replace:
            flags |= 2
        if dist._params is None:
            x = self._sample(dist.kind, dist._a, dist._b, address, name, flags)
            return int(x) if dist.discrete else x
        if dist._shape and name in self._shapes:
            self._check_shape(dist, None, name)
        return dist.value_from(self.rec.sample_array(dist.kind, dist._size, dist._params, address, name, flags))

    def observe(self, dist: Distribution, value: Any, address: int, name: int) -> None:
        if value is not None and type(value) is not float and type(value) is not int:
            value = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float64)
        if dist._params is None:
            self._observe(dist.kind, dist._a, dist._b, address, name, value)
        else:
            if dist._shape:
                self._check_shape(dist, value, name)
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

    def __init__(self, name: str = "Unnamed ppfast model", address_dict_file_name: Optional[str] = None):
        """``name``: shown in reprs and logs.  ``address_dict_file_name`` (PyProb's
        address dictionary) has no meaning here: ppfast interns addresses itself."""
        if address_dict_file_name is not None:
            raise NotImplementedError("Model(address_dict_file_name=...): ppfast interns addresses itself and "
                                      "keeps no address dictionary file")
        super().__init__(name)

    def forward(self) -> Any:
        raise NotImplementedError("subclasses of ppfast.Model implement forward()")

    def _simulate(self, seed: int, first: int, count: int, observations: Dict[int, np.ndarray],
                  required: bool, skip_errors: bool = False) -> TraceBatch:
        rec = _core.Recorder(seed, _core.Observations(observations, required))
        obs = observations if isinstance(observations, ObservationMap) else None
        return run_python(self.forward, rec, _Record(rec, rec.fast(), obs), first, count, skip_errors)


def run_python(forward: Any, rec: "_core.Recorder", handler: Handler, first: int, count: int,
               skip_errors: bool = False) -> TraceBatch:
    """Runs ``forward`` ``count`` times under ``handler`` and the recorder ``rec``."""
    results: List[Any] = []
    numeric = True
    begin, end = rec.fast()[:2]
    token = handler_stack.set(handler_stack.get() + (handler,))
    run_started()
    try:
        for i in range(first, first + count):
            begin(i)
            try:
                result = forward()
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
    except KeyboardInterrupt as e:
        # Ctrl-C (wherever it lands): drop the trace in progress, keep the finished ones.
        if rec.in_trace:
            rec.discard()
        finished = rec.take()
        e.partial = TraceBatch(finished, None if numeric else results[:finished.num_traces])  # type: ignore[attr-defined]
        raise
    finally:
        run_ended()
        handler_stack.reset(token)
    # Non-numeric results are kept as objects; numbers live in the batch's result column.
    return TraceBatch(rec.take(), None if numeric else results)


