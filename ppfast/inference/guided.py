"""Importance sampling with proposals from the inference network, in batches.

K executions run at once.  Each stops at its controlled sample sites with a pending
request (address, instance, prior parameters, previous value); the proposal server
gathers every pending request, runs one network step for all of them (one LSTM step
over a [K, input] batch, one batched head product) and answers with proposal
parameters in the core's distribution layout.  The executions draw from the proposals
in C++ and the recorder weighs each trace by log p - log q.

- Embedded C++ simulators: the K executions are fibers on the model's worker threads
  (``_core.GuidedNative``): a stop is a context switch, the GIL is released while they run.
- Shared-memory simulators: each process runs its share of the K executions as fibers
  and posts their requests together; the host gathers the requests of all processes
  into one network step (``_core.ShmGuidedRun``).
- Python models: K host threads, one per execution (``_core.GuidedThreads``), each
  running ``forward()`` over its share of the traces; a stop blocks the thread with the
  GIL released, so every network step still serves every waiting execution
  ("sequentially batched": the Python code itself runs one thread at a time).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from .. import _core
from ..errors import MissingObservationError, PpfastError
from ..model import check_num_traces, check_on_error
from ..trace import TraceBatch

__all__ = ["ProposalServer", "run"]


class ProposalServer:
    """The network's side of a guided run: per-slot LSTM states and the observation
    embedding of the run's ``observe`` values."""

    def __init__(self, net: Any, slots: int, observe: dict[str, Any]):
        values = []
        for name, size in zip(net.observe_names, net.observe_sizes):
            if name not in observe:
                raise MissingObservationError(
                    f"the inference network embeds observation {name!r}; pass observe={{{name!r}: ...}} "
                    f"(given: {sorted(observe)})")
            v = observe[name]
            if hasattr(v, "detach"):
                v = v.detach().cpu().numpy()
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            if v.size != size:
                raise ValueError(f"observe[{name!r}] has {v.size} elements, the inference network was trained on {size}")
            values.append(v)
        self.stepper = net.stepper(values, slots, autocast=net.device.type == "cuda")

    def answer(self, req: dict[str, np.ndarray]):
        return self.stepper(req)


def _serve(driver: Any, server: ProposalServer) -> None:
    while driver.advance():
        driver.answer(*server.answer(driver.requests()))


def _run_native(model: Any, server: ProposalServer, seed: int, first: int, count: int,
                obs: _core.Observations, slots: int, threads: int, stack_bytes: int) -> TraceBatch:
    driver = _core.GuidedNative(model._native.entry, seed, first, count, obs, slots, threads, stack_bytes,
                                 model._native.one_execution_per_thread)
    _serve(driver, server)
    return TraceBatch(driver.take())


def _run_shm(model: Any, server: ProposalServer, seed: int, first: int, count: int,
             observations: dict[int, np.ndarray], slots: int, stack_bytes: int) -> TraceBatch:
    from ..errors import SimulatorError
    from ..trace import address_name

    if model.closed:
        raise SimulatorError(f"{model!r} is closed")
    obs = [(address_name(k), v) for k, v in observations.items()]
    driver = model._host.guided(seed, first, count, obs, True, slots, stack_bytes)
    try:
        _serve(driver, server)
    except BaseException:
        driver.abort()  # now, not when the traceback lets go of it: the run holds the model
        raise
    return TraceBatch(driver.take())


def _run_python(model: Any, server: ProposalServer, seed: int, first: int, count: int,
                observations: dict[int, np.ndarray], slots: int, skip_errors: bool) -> TraceBatch:
    from ..model import _Record, run_python

    if count == 0:
        return TraceBatch(_core.TraceBatch())
    per = max(1, math.ceil(count / slots))
    ranges = [(first + s, min(per, count - s)) for s in range(0, count, per)]
    driver = _core.GuidedThreads(len(ranges))
    results: list[TraceBatch | None] = [None] * len(ranges)
    errors: list[BaseException | None] = [None] * len(ranges)

    def work(slot: int) -> None:
        try:
            rec = _core.Recorder(seed, _core.Observations(observations, True))
            rec.set_policy(driver.policy(slot))
            start, n = ranges[slot]
            results[slot] = run_python(model.forward, rec, _Record(rec, rec.fast(), observations), start, n,
                                       skip_errors)
        except BaseException as e:  # noqa: BLE001 -- handed to the calling thread
            errors[slot] = e
            driver.abort()  # the others finish on the prior; the run raises below
        finally:
            driver.finish(slot)

    workers = [threading.Thread(target=work, args=(s,), name=f"ppfast-guided-{s}", daemon=True)
               for s in range(len(ranges))]
    for w in workers:
        w.start()
    try:
        _serve(driver, server)
    except BaseException:
        driver.abort()
        raise
    finally:
        for w in workers:
            w.join()
    for e in errors:
        if e is not None:
            raise e
    return TraceBatch.concat([r for r in results if r is not None])


def run(model: Any, num_traces: int, observe: dict[str, Any] | None = None, seed: int | None = None,
        progress: bool | None = None, on_error: str = "raise", network: Any = None, slots: int | None = None,
        threads: int | None = None, stack_bytes: int = 1 << 20, first: int = 0, torch_threads: int | None = None,
        **kwargs: Any) -> TraceBatch:
    """Guided importance sampling: ``num_traces`` traces with log-weights log p - log q.

    ``first``: the number of the first trace (trace ``i`` draws from RNG stream ``i`` of
    the seed), so that ranks or jobs run disjoint ranges of one seed's traces;
    ``slots``: executions in flight (the batch of one network step; default 256);
    ``threads``: worker threads for embedded simulators (default: the model's; a
    shared-memory model runs one thread per process and splits the slots over them);
    ``stack_bytes``: stack reserved per embedded execution; ``network``: an
    InferenceNetwork (default: the model's).  The network runs on its own device;
    ``torch_threads``: torch's threads for its steps on CPU (default: one, unless the user
    chose a count; see :mod:`ppfast.nn.threads`)."""
    from ..model import Model, next_seed, observation_map, run_in_chunks
    from ..models.native import NativeModel
    from ..models.shm import ShmModel

    if kwargs:
        raise TypeError(f"importance sampling with an inference network: unknown arguments {sorted(kwargs)}")
    net = network if network is not None else getattr(model, "inference_network", None)
    if net is None:
        raise PpfastError("no inference network: call model.learn_inference_network(...) or "
                          "model.load_inference_network(path) first")
    num_traces = check_num_traces(num_traces)
    check_on_error(on_error)
    first = int(first)
    if first < 0:
        raise ValueError(f"first must be >= 0, got {first}")
    observe = dict(observe or {})
    seed = next_seed(seed)
    obs_map = observation_map(observe)
    native = isinstance(model, NativeModel)
    shm = isinstance(model, ShmModel)
    if not native and not shm and not isinstance(model, Model):
        raise PpfastError(f"guided inference runs embedded, shared-memory and Python models; "
                          f"{type(model).__name__} is not supported")
    k = int(slots or 256)
    if k < 1:
        raise ValueError(f"slots must be >= 1, got {k}")
    server = ProposalServer(net, k, observe)
    net.eval()

    def part(offset: int, n: int) -> TraceBatch:
        if shm:
            return _run_shm(model, server, seed, first + offset, n, obs_map, k, stack_bytes)
        if native:
            obs = _core.Observations(obs_map, True)
            return _run_native(model, server, seed, first + offset, n, obs, k, int(threads or model.threads),
                               stack_bytes)
        return _run_python(model, server, seed, first + offset, n, obs_map, k, on_error == "skip")

    from ..nn.threads import step_threads

    with step_threads(net.device, torch_threads):
        return run_in_chunks(part, num_traces, max(16 * k, 4096), "Guided importance sampling", progress, on_error)
