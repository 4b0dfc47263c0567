"""Single-site Metropolis-Hastings in trace space: lightweight (LMH) and random-walk (RMH).

A chain's state is a whole trace.  Each step picks one controlled sample site of the
current trace, re-executes the model with every other site replayed from it (the C++
recorder's replay policy), proposes at the chosen site (LMH: a fresh draw from its
distribution; RMH: a local move around the current value mixed with the prior), draws
fresh values at sites the current trace does not have, and accepts with the standard
single-site ratio for programs whose structure changes (sites created and removed, the
number of sites).  The chain logic is C++ (``csrc/core/mcmc.*``) for every model kind:

- embedded C++ simulators (:class:`ppfast.NativeModel`) run whole chains on worker
  threads without the GIL, one chain per thread;
- shared-memory simulators (:class:`ppfast.ShmModel`) run whole chains inside their
  processes (a contiguous range of chains per process), with the same chain code, and
  send the kept states back as one batch;
- Python models run ``forward()`` once per step through the recorder (chains one after
  the other: the GIL); PPX simulators (:class:`ppfast.RemoteModel`) run one trace per
  step with the policy on the engine-side recorder;
- any other model kind plugs in by defining
  ``_mh_execute(seed, index, observations, required, policy) -> (batch, code, result, exc)``:
  run one execution with trace index ``index`` under ``policy`` (a ``_core.Policy`` to set
  on its recorder) and return the ``_core.TraceBatch`` holding that one trace, the
  ``_core.ErrorCode`` value of its failure (0 if none), its result and the exception it
  raised (or None).

>>> import ppfast
>>> from ppfast.examples.python_models import GUM
>>> post = GUM().posterior_results(2000, ppfast.InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS,
...                                observe={"obs0": 8, "obs1": 9}, seed=1, progress=False)
>>> round(post.batch.mcmc.acceptance_rate, 1) > 0.2
True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import numpy as np

from .. import _core
from ..errors import (
    DistributionError,
    MissingObservationError,
    ModelError,
    PpfastError,
    SupportError,
    TraceError,
)
from ..model import check_on_error
from ..posterior import Empirical
from ..trace import Trace, TraceBatch

__all__ = ["MCMCInfo", "MCMCResult", "chains", "run", "run_chains"]

_ACCEPTED, _KEPT, _INVALID, _ERROR = _core.MH_ACCEPTED, _core.MH_KEPT, _core.MH_REJECTED_INVALID, _core.MH_ERROR

# _core.ErrorCode values (ints cross the boundary faster than the enum).
_NONE, _INVALID_DISTRIBUTION, _MISSING_OBSERVATION, _OUT_OF_SUPPORT, _SIMULATOR, _PROPOSAL = range(6)

Execute = Callable[[int, Any], tuple[Any, int, Any, Optional[BaseException]]]


@dataclasses.dataclass
class MCMCInfo:
    """What a Metropolis-Hastings run did; attached to its TraceBatch as ``batch.mcmc``
    (so ``posterior.batch.mcmc`` on the Empirical)."""

    engine: str
    chain: np.ndarray  # the chain of each kept trace, in batch order
    burn_in: int
    thinning: int
    steps: np.ndarray  # per chain
    accepted: np.ndarray
    rejected_invalid: np.ndarray  # proposals with zero density (value or observation outside a support)
    errors: np.ndarray  # failed executions skipped with on_error='skip'

    @property
    def num_chains(self) -> int:
        return len(self.steps)

    @property
    def acceptance_rate(self) -> float:
        """Accepted proposals over all steps, all chains together."""
        total = int(self.steps.sum())
        return float(self.accepted.sum() / total) if total else math.nan

    @property
    def acceptance_rates(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.accepted / np.maximum(self.steps, 1)

    def __str__(self) -> str:
        rates = ", ".join(f"{r:.3f}" for r in self.acceptance_rates)
        return (f"{self.engine}: {self.num_chains} chain(s), {int(self.steps.sum()):,} steps "
                f"(burn-in {self.burn_in}, thinning {self.thinning}), {len(self.chain):,} kept, "
                f"acceptance {self.acceptance_rate:.3f} (per chain {rates}), "
                f"{int(self.rejected_invalid.sum()):,} zero-density proposals, {int(self.errors.sum()):,} errors")

    def split(self, values: Any) -> list[Any]:
        """Per-chain parts of per-trace ``values`` (arrays stay arrays)."""
        out = []
        for c in range(self.num_chains):
            idx = np.flatnonzero(self.chain == c)
            out.append(values[idx] if isinstance(values, np.ndarray) else [values[i] for i in idx])
        return out


def _engine_kernel(engine: Any) -> tuple[str, int]:
    from ..model import InferenceEngine

    if engine == InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS:
        return "LMH", 0
    if engine == InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS:
        return "RMH", 1
    raise PpfastError(f"not a Metropolis-Hastings engine: {engine!r}")


def _error_code(e: BaseException) -> int:
    """The recorder's error code of an exception raised out of forward()."""
    if isinstance(e, SupportError):
        return _OUT_OF_SUPPORT
    if isinstance(e, DistributionError):
        return _INVALID_DISTRIBUTION
    if isinstance(e, MissingObservationError):
        return _MISSING_OBSERVATION
    if type(e) is TraceError and str(e).startswith("proposal at sample"):
        return _PROPOSAL
    return _SIMULATOR


_ERROR_TYPES = {_INVALID_DISTRIBUTION: DistributionError, _MISSING_OBSERVATION: MissingObservationError,
                _OUT_OF_SUPPORT: SupportError}


def _raise_chain_error(chain: Any, what: str, exc: BaseException | None = None) -> None:
    msg = f"{what} (chain {chain.chain}): {chain.last_error}"
    if exc is not None and not (isinstance(exc, TraceError) or type(exc).__module__ == "ppfast.errors"):
        raise ModelError(f"{what} (chain {chain.chain}): forward() raised {type(exc).__name__}: {exc}") from exc
    raise _ERROR_TYPES.get(chain.last_error_code, TraceError)(msg) from exc


def _python_executor(model: Any, seed: int, observations: dict[int, np.ndarray]) -> tuple[Execute, Callable[[], None]]:
    """Runs a Python model's forward() once per call under the given policy."""
    from ..model import _as_result, _Record
    from ..primitives import handler_stack

    rec = _core.Recorder(seed, _core.Observations(observations, True))
    forward = model.forward
    current: list[Any] = [None]
    fast = rec.fast()
    begin, end, take = fast[0], fast[1], rec.take
    token = handler_stack.set(handler_stack.get() + (_Record(rec, fast, observations),))
    nan = math.nan

    def execute(index: int, policy: Any) -> tuple[Any, int, Any, BaseException | None]:
        if policy is not current[0]:
            rec.set_policy(policy)
            current[0] = policy
        begin(index)
        try:
            result = forward()
        except Exception as e:  # noqa: BLE001 -- the chain decides: a rejection or an error
            rec.fail(f"{type(e).__name__}: {e}")
            end(nan)
            return take(), _error_code(e), None, e
        t = type(result)
        end(result if t is float or t is int else _as_result(result))
        return take(), _NONE, result, None

    def close() -> None:
        handler_stack.reset(token)

    return execute, close


def _code_from_message(message: str) -> int:
    """The recorder's error code of a failed trace, from its message (for transports that
    report only the message)."""
    if message.startswith("proposal at sample"):
        return _PROPOSAL
    if message.startswith("invalid distribution"):
        return _INVALID_DISTRIBUTION
    if "has no value" in message:
        return _MISSING_OBSERVATION
    if "outside the support" in message:
        return _OUT_OF_SUPPORT
    return _SIMULATOR


def _ppx_executor(model: Any, seed: int, observations: dict[int, np.ndarray]) -> tuple[Execute, Callable[[], None]]:
    """One trace per call over PPX; the engine-side recorder runs under the policy."""
    from ..models.remote import checked_run

    client = model._client
    obs = _core.Observations(observations, True)
    connections = len(client)

    def execute(index: int, policy: Any) -> tuple[Any, int, Any, BaseException | None]:
        # count 1: the first connection; a peer's error is raised (with the failed trace).
        batch = checked_run(lambda: client.run(seed, index, 1, obs, [policy] * connections))._native
        messages = batch.messages
        return batch, (_code_from_message(messages[0]) if messages else _NONE), None, None

    return execute, lambda: None


def _generic_executor(model: Any, seed: int, observations: dict[int, np.ndarray]) -> tuple[Execute, Callable[[], None]]:
    hook = model._mh_execute

    def execute(index: int, policy: Any) -> tuple[Any, int, Any, BaseException | None]:
        return hook(seed, index, observations, True, policy)

    return execute, lambda: None


def _start_of(initial_trace: Any) -> tuple[Any, int] | None:
    if initial_trace is None:
        return None
    if isinstance(initial_trace, Trace):
        return initial_trace.batch._native, int(initial_trace.index)
    if isinstance(initial_trace, TraceBatch):
        if len(initial_trace) == 0:
            raise ValueError("initial_trace: the batch holds no trace")
        return initial_trace._native, 0
    batch = getattr(initial_trace, "batch", None)  # an Empirical over traces: its first one
    if isinstance(batch, TraceBatch) and len(batch):
        return batch._native, 0
    raise TypeError(f"initial_trace must be a ppfast Trace or TraceBatch, got {type(initial_trace).__name__}")


def run(model: Any, engine: Any, num_traces: int, observe: dict[str, Any] | None = None,
        seed: int | None = None, progress: bool | None = None, on_error: str = "raise", burn_in: int = 0,
        thinning: int = 1, thinning_steps: int | None = None, initial_trace: Any = None, num_chains: int = 1,
        scale: float = 1.0, prior_mix: float = 0.1, max_init_attempts: int = 1000, **kwargs: Any) -> TraceBatch:
    """Runs ``num_chains`` chains and returns the kept states as one TraceBatch (equal
    weights), chain 0's first; ``batch.mcmc`` is the :class:`MCMCInfo`.

    num_traces: states kept in total, split evenly over the chains; each chain runs
        ``burn_in + kept * thinning`` steps and keeps the state after every
        ``thinning``-th step past the burn-in.  ``thinning_steps`` is PyProb's option:
        ``num_traces`` steps in all, every ``thinning_steps``-th state kept.
    initial_trace: a Trace (or TraceBatch: its first trace) whose values start every
        chain (replayed under ``observe``); default: a prior execution with nonzero
        likelihood, found in at most ``max_init_attempts`` tries per chain.
    scale, prior_mix: RMH's step (in units of each site distribution's stddev) and the
        probability of a prior draw instead of a local move.
    on_error: 'raise' (an execution failing for a reason other than zero density raises
        its typed error) or 'skip' (it counts as a rejected proposal).
    """
    if kwargs:
        raise TypeError(f"Metropolis-Hastings got unexpected arguments: {', '.join(sorted(kwargs))}")
    name, kernel = _engine_kernel(engine)
    from .._progress import Progress
    from ..model import Model, next_seed, observation_map

    from ..runtime import check_count

    num_traces = check_count(num_traces, "num_traces")
    if thinning_steps is not None:
        # PyProb's meaning: num_traces steps, every thinning_steps-th state kept.
        if thinning != 1:
            raise ValueError("give thinning or thinning_steps, not both")
        thinning = check_count(thinning_steps, "thinning_steps", 1)
        num_traces = -(-num_traces // thinning)
    num_chains, burn_in, thinning = int(num_chains), int(burn_in), int(thinning)
    if num_chains < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    if num_traces < num_chains:
        raise ValueError(f"num_traces ({num_traces}) must be at least num_chains ({num_chains})")
    if burn_in < 0:
        raise ValueError(f"burn_in must be >= 0, got {burn_in}")
    if thinning < 1:
        raise ValueError(f"thinning must be >= 1, got {thinning}")
    check_on_error(on_error)
    if int(max_init_attempts) < 1:
        raise ValueError(f"max_init_attempts must be >= 1, got {max_init_attempts}")
    seed = next_seed(seed)
    obs = observation_map(observe)
    start = _start_of(initial_trace)
    raise_errors = on_error == "raise"

    kept = [num_traces // num_chains + (1 if c < num_traces % num_chains else 0) for c in range(num_chains)]
    chains_ = []
    for c in range(num_chains):
        chain = _core.MHChain(kernel, float(scale), float(prior_mix), burn_in, thinning, seed, c)
        chain.target_steps = burn_in + kept[c] * thinning
        if start is not None:
            chain.set_start(*start)
        chains_.append(chain)
    total = sum(ch.target_steps for ch in chains_)
    bar = Progress(total, f"{name} ({num_chains} chain{'s' if num_chains > 1 else ''})", progress, unit="step")
    try:
        native = getattr(model, "_native", None)
        if isinstance(native, _core.NativeModel):
            batches = _run_native(native, chains_, obs, seed, int(max_init_attempts), raise_errors, bar)
        elif isinstance(getattr(model, "_host", None), _core.ShmHost):
            batches, chains_ = _run_shm(model, chains_, kernel, float(scale), float(prior_mix), burn_in, thinning,
                                        obs, seed, start, int(max_init_attempts), raise_errors, bar)
        else:
            if hasattr(model, "_mh_execute"):
                execute, close = _generic_executor(model, seed, obs)
            elif isinstance(model, Model):
                execute, close = _python_executor(model, seed, obs)
            elif hasattr(_core, "PpxClient") and isinstance(getattr(model, "_client", None), _core.PpxClient):
                execute, close = _ppx_executor(model, seed, obs)
            else:
                raise PpfastError(f"{type(model).__name__} cannot run Metropolis-Hastings: each step re-executes "
                                  "the model under a replay policy, and this model kind has no way to take one "
                                  "(it defines no _mh_execute)")
            try:
                batches = [_run_stepwise(ch, execute, int(max_init_attempts), raise_errors, bar) for ch in chains_]
            finally:
                close()
    finally:
        bar.close()
    kept_per_chain = getattr(batches, "kept", None)
    if kept_per_chain is None:
        kept_per_chain = [len(b) for b in batches]
    batch = TraceBatch.concat(batches)
    batch.mcmc = MCMCInfo(  # type: ignore[attr-defined]
        engine=name, chain=np.repeat(np.arange(num_chains), kept_per_chain), burn_in=burn_in,
        thinning=thinning, steps=np.array([ch.steps for ch in chains_]),
        accepted=np.array([ch.accepted for ch in chains_]),
        rejected_invalid=np.array([ch.rejected_invalid for ch in chains_]),
        errors=np.array([ch.errors for ch in chains_]))
    return batch


def _check_started(chain: Any, attempts: int, raise_errors: bool) -> None:
    if chain.started:
        if chain.num_sites == 0:
            raise TraceError(f"Metropolis-Hastings (chain {chain.chain}): the start trace has no controlled sample "
                             "site, so there is nothing to change")
        return
    if raise_errors and chain.last_error_code not in (_NONE, _OUT_OF_SUPPORT, _PROPOSAL):
        _raise_chain_error(chain, "Metropolis-Hastings start trace failed")
    raise TraceError(f"Metropolis-Hastings (chain {chain.chain}): no start trace with nonzero likelihood in "
                     f"{attempts} executions; the last one: {chain.last_error or 'failed'}")


def _run_native(native: Any, chains_: list[Any], obs: dict[int, np.ndarray], seed: int, attempts: int,
                raise_errors: bool, bar: Any) -> list[TraceBatch]:
    threads = max(1, min(int(native.threads), len(chains_)))
    runner = _core.MHNativeRunner(native.entry, threads, _core.Observations(obs, True), seed)
    runner.initialize(chains_, attempts, raise_errors)
    for ch in chains_:
        _check_started(ch, attempts, raise_errors)
    longest = max(ch.target_steps for ch in chains_)
    # Steps per call: short enough for a live progress bar and Ctrl-C between calls.
    chunk = max(20000, -(-longest // 100))
    while True:
        before = sum(ch.steps for ch in chains_)
        runner.run(chains_, chunk, raise_errors)
        done = sum(ch.steps for ch in chains_)
        bar.update(done - before)
        if raise_errors:
            for ch in chains_:
                if ch.errors:
                    _raise_chain_error(ch, "Metropolis-Hastings proposal failed")
        if done == before or all(ch.steps >= ch.target_steps for ch in chains_):
            break
    return [TraceBatch(ch.take_output()) for ch in chains_]


class _ShmChain:
    """A chain that ran in a simulator process: its stats, read as MHChain's."""

    def __init__(self, chain: int, stats: dict[str, Any]):
        self.chain = chain
        self.started = bool(stats["started"][chain])
        self.num_sites = int(stats["num_sites"][chain])
        self.steps = int(stats["steps"][chain])
        self.accepted = int(stats["accepted"][chain])
        self.rejected_invalid = int(stats["rejected_invalid"][chain])
        self.errors = int(stats["errors"][chain])
        self.last_error_code = int(stats["error_code"][chain])
        self.last_error = str(stats["last_error"][chain])


class _OneBatch(list):  # type: ignore[type-arg]
    """The kept states of all chains as one batch, with each chain's count."""

    kept: list[int]


def _run_shm(model: Any, chains_: list[Any], kernel: int, scale: float, prior_mix: float, burn_in: int,
             thinning: int, obs: dict[int, np.ndarray], seed: int, start: tuple[Any, int] | None, attempts: int,
             raise_errors: bool, bar: Any) -> tuple[list[TraceBatch], list[Any]]:
    """Whole chains inside the simulator processes of a ShmModel (the same chain code and
    streams as embedded runs, so the same states); one request, kept states in one batch."""
    from ..trace import address_name

    if model.closed:
        from ..errors import SimulatorError

        raise SimulatorError(f"{model!r} is closed")
    observations = [(address_name(k), v) for k, v in obs.items()]
    total = sum(int(ch.target_steps) for ch in chains_)
    shown = [0]

    def progress(executions: int) -> None:  # the simulators' count: shown, never trusted
        n = min(int(executions), total)
        if n > shown[0]:
            bar.update(n - shown[0])
            shown[0] = n

    native, stats = model._host.run_chains(
        seed, kernel, scale, prior_mix, burn_in, thinning, attempts, raise_errors,
        [int(ch.target_steps) for ch in chains_], observations, None if start is None else start[0],
        0 if start is None else int(start[1]), progress)
    done = [_ShmChain(c, stats) for c in range(len(chains_))]
    bar.update(max(0, sum(ch.steps for ch in done) - shown[0]))
    for ch in done:
        _check_started(ch, attempts, raise_errors)
    if raise_errors:
        for ch in done:
            if ch.errors:
                _raise_chain_error(ch, "Metropolis-Hastings proposal failed")
    out = _OneBatch([TraceBatch(native)])
    out.kept = [int(k) for k in stats["kept"]]
    return out, done


def _run_stepwise(chain: Any, execute: Execute, attempts: int, raise_errors: bool, bar: Any) -> TraceBatch:
    """One chain, one model execution per step (Python models and the generic hook)."""
    policy = chain.policy
    current = None
    for attempt in range(attempts):
        chain.prepare_initial()
        batch, code, result, exc = execute(chain.initial_index(attempt), policy)
        flags = chain.offer_initial(batch, code)
        if flags & _ACCEPTED:
            current = result
            break
        if flags & _ERROR and raise_errors:
            _raise_chain_error(chain, "Metropolis-Hastings start trace failed", exc)
    _check_started(chain, attempts, raise_errors)

    prepare, finish = chain.prepare, chain.finish
    kept: list[Any] = []
    remaining = chain.target_steps - chain.steps
    while remaining > 0:
        n = min(remaining, 1024)
        for _ in range(n):
            batch, code, result, exc = execute(prepare(), policy)
            flags = finish(batch, code)
            if flags & _ACCEPTED:
                current = result
            elif flags & _ERROR and raise_errors:
                _raise_chain_error(chain, "Metropolis-Hastings proposal failed", exc)
            if flags & _KEPT:
                kept.append(current)
        remaining -= n
        bar.update(n)
    numeric = all(type(r) is float or type(r) is int for r in kept)
    if not numeric:
        from ..model import _as_result

        numeric = all(r is None or _as_result(r) == _as_result(r) for r in kept)
    return TraceBatch(chain.take_output(), None if numeric else kept)


# ------------------------------------------------------------------------------ results


def chains(posterior: Empirical) -> list[Empirical]:
    """The per-chain parts of an MCMC posterior (or of one of its variables,
    ``posterior['mu']``), each with equal weights."""
    info = getattr(getattr(posterior, "batch", None), "mcmc", None)
    if info is None:
        return [posterior]
    parts = info.split(posterior.values)
    return [Empirical(p, name=f"{posterior.name}, chain {c}") for c, p in enumerate(parts)]


@dataclasses.dataclass
class MCMCResult:
    """A Metropolis-Hastings run: the posterior over results, its traces and its chains."""

    posterior: Empirical
    batch: TraceBatch
    info: MCMCInfo

    @property
    def chains(self) -> list[Empirical]:
        """Per-chain posteriors over results."""
        return chains(self.posterior)

    def __getitem__(self, name: str) -> Empirical:
        """The posterior of one variable (all chains)."""
        return self.posterior[name]

    def chains_of(self, name: str) -> list[Empirical]:
        """Per-chain posteriors of one variable."""
        return chains(self.posterior[name])

    @property
    def acceptance_rate(self) -> float:
        return self.info.acceptance_rate


def run_chains(model: Any, num_traces: int, inference_engine: Any = None, observe: dict[str, Any] | None = None,
               **kwargs: Any) -> MCMCResult:
    """Like ``model.posterior_results(num_traces, inference_engine, observe=..., ...)`` with
    RMH by default, keeping the per-chain view: ``run_chains(m, 4000, num_chains=4).chains``."""
    from ..model import InferenceEngine

    engine = inference_engine or InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS
    batch = run(model, engine, num_traces, observe=observe, **kwargs)
    info: MCMCInfo = getattr(batch, "mcmc")  # noqa: B009 -- set by run(), unknown to TraceBatch's type
    post = Empirical(batch.results, log_weights=batch.log_weights, name=f"Posterior ({info.engine})",
                     batch=batch)
    return MCMCResult(post, batch, info)
