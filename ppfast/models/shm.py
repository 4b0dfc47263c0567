"""Shared-memory mode: the simulator runs in processes of its own (crash isolation, codes
that cannot be loaded as a library) and its trace batches reach Python through POSIX
shared memory, as numpy views on the shared blocks, without a copy (a run's batch is made
of the pieces its processes placed, one chunk each).

The simulator is the same source as in embedded mode, linked into an executable with
``ppfast::main`` (which serves ``--ppfast-shm``, or runs standalone without arguments).

>>> import ppfast.examples
>>> with ppfast.examples.load("gum", mode="shm", workers=2) as m:
...     len(m.prior_batch(1000, seed=0, progress=False))
1000

A process that crashes or hangs (no progress for ``timeout`` seconds) loses the trace it
was running: that trace comes back failed, with the reason as its error message, the
process is restarted, and the run goes on (a :class:`SimulatorWarning` says so).  Each
process works through its slice in pieces placed in shared memory as they finish, so a
restart re-runs at most the piece in flight; a run that fails anyway (``max_restarts``,
Ctrl-C, ``close()``) raises with the finished traces as ``err.partial``.

Metropolis-Hastings chains run inside the processes (:mod:`ppfast.inference.mcmc`), and
guided importance sampling keeps executions in flight in every process, answered by one
network step for all (:mod:`ppfast.inference.guided`); a crash or hang during either fails
that run with a :class:`ppfast.errors.SimulatorError` (the chains' or executions' state
lived in the process).
"""

from __future__ import annotations

import os
import warnings
import weakref
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .. import _core
from .._paths import EXAMPLES_BIN
from ..model import BaseModel, check_on_error
from ..trace import TraceBatch, address_name

__all__ = ["ShmModel", "SimulatorWarning"]


def default_max_workers() -> int:
    """The default bound on ShmModel(workers=...): 4 processes per CPU, at least 16."""
    return max(16, 4 * (os.cpu_count() or 1))


class SimulatorWarning(RuntimeWarning):
    """Traces were lost to a simulator process that crashed or hung; the run went on."""


class _OtherFailures:
    """A batch as ``BaseModel._raise_failed`` reads it, without the traces lost to crashed
    processes (those are reported by a warning, not raised)."""

    def __init__(self, batch: TraceBatch, failed: np.ndarray):
        self.failed = failed
        self.error = batch.error
        self.traces = batch.traces


def _lost(batch: TraceBatch) -> np.ndarray:
    """Positions in ``batch`` of the traces lost to crashed or hung processes (each piece
    counts its own)."""
    out, start = [np.zeros(0, np.int64)], 0
    for chunk in batch._chunks:
        out.append(np.asarray(getattr(chunk, "lost", ()), dtype=np.int64) + start)
        start += chunk.num_traces
    return np.concatenate(out)


class ShmModel(BaseModel):
    """A simulator executable run as ``workers`` processes over shared memory.

    ``command``: the executable and its arguments (``--ppfast-shm fd:3,4`` is appended).
    ``timeout``: seconds a process may go without progress (one trace, or one placement
    of its batch) before it counts as hung and is killed; ``None`` waits forever.
    ``env``: variables added to this process's environment for the simulators.
    ``max_restarts``: process restarts allowed within one run before it fails with
    :class:`ppfast.errors.SimulatorError`.
    ``max_workers``: the most processes ``workers`` may ask for (default
    :func:`default_max_workers`: 4 per CPU, at least 16), so that a typo cannot fork the
    machine to a standstill; raise it explicitly to run more.

    Trace ``i`` of a seed uses RNG stream ``i`` in every mode, so results equal the
    embedded model's trace for trace.  Close the model (or use ``with``) to stop the
    processes; they also stop when it is garbage collected, at interpreter exit, and
    on their own when this process dies.
    """

    # One run is one list of pieces in shared memory: TraceBatch.concat of several runs would copy.
    chunk_size = 1 << 62

    def __init__(self, command: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
                 workers: Optional[int] = None, timeout: Optional[float] = 60.0, name: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, startup_timeout: float = 30.0,
                 max_restarts: int = 100, max_workers: Optional[int] = None):
        if isinstance(command, (str, os.PathLike)):
            argv = [os.fspath(command)]
        else:
            argv = [os.fspath(c) for c in command]
        if not argv or not argv[0]:
            raise ValueError("command must name the simulator executable")
        workers = int(workers if workers is not None else (os.cpu_count() or 1))
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        limit = default_max_workers() if max_workers is None else int(max_workers)
        if workers > limit:
            raise ValueError(f"workers={workers} is more than max_workers={limit} simulator processes; "
                             f"pass max_workers={workers} if you mean it")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        if not startup_timeout > 0:
            raise ValueError(f"startup_timeout must be > 0 seconds, got {startup_timeout!r}")
        if int(max_restarts) < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts!r}")
        environ = dict(os.environ)
        environ.update({str(k): str(v) for k, v in (env or {}).items()})
        self.command: List[str] = argv
        self.timeout = timeout
        self._host = _core.ShmHost(argv, [f"{k}={v}" for k, v in environ.items()], workers,
                                   float(timeout or 0.0), float(startup_timeout), int(max_restarts))
        # Stops the processes when the model is collected, and at interpreter exit.
        self._finalizer = weakref.finalize(self, self._host.close)
        super().__init__(name or self._host.name)

    @classmethod
    def example(cls, name: str, **kwargs: Any) -> "ShmModel":
        """An example simulator built with the package (``ppfast.examples``), by name."""
        path = Path(EXAMPLES_BIN) / name
        if not path.is_file():
            found = sorted(p.name for p in Path(EXAMPLES_BIN).glob("*") if p.is_file())
            raise ValueError(f"no example simulator executable {name!r} in {EXAMPLES_BIN}; "
                             f"available: {', '.join(found) or 'none (package not built?)'}")
        return cls([str(path)], **kwargs)

    # -- processes ------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return int(self._host.workers)

    @property
    def pids(self) -> List[int]:
        """Process ids of the simulator processes (-1 for one being restarted)."""
        return list(self._host.pids)

    @property
    def restarts(self) -> int:
        """Processes restarted after a crash or hang, over the model's life."""
        return int(self._host.restarts)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Stops the simulator processes.  Batches already returned stay valid."""
        self._finalizer()

    def __enter__(self) -> "ShmModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- running --------------------------------------------------------------------------
    def _simulate(self, seed: int, first: int, count: int, observations: Dict[int, np.ndarray],
                  required: bool, skip_errors: bool = False) -> TraceBatch:
        if self.closed:
            from ..errors import SimulatorError

            raise SimulatorError(f"{self!r} is closed")
        obs = [(address_name(k), v) for k, v in observations.items()]
        try:
            # The pieces the processes placed are the batch's chunks, as they lie in shared memory.
            return TraceBatch(self._host.run(seed, first, count, obs, required))
        except (Exception, KeyboardInterrupt) as e:
            # A failed or interrupted run carries the pieces its processes finished.
            pieces = getattr(e, "partial", None)
            if isinstance(pieces, list) and all(isinstance(p, _core.ShmTraceBatch) for p in pieces):
                e.partial = TraceBatch(pieces)  # type: ignore[attr-defined]
            raise

    def simulate(self, num_traces: int, observe: Optional[Dict[str, Any]] = None, seed: Optional[int] = None,
                 first: int = 0, progress: Optional[bool] = None, on_error: str = "raise",
                 required: Optional[bool] = None, desc: str = "Simulating") -> TraceBatch:
        """As :meth:`BaseModel.simulate`; traces lost to a crashed or hung process never
        raise: they stay in the batch as failed traces and a SimulatorWarning names them."""
        check_on_error(on_error)
        batch = super().simulate(num_traces, observe=observe, seed=seed, first=first, progress=progress,
                                 on_error="skip", required=required, desc=desc)
        lost = _lost(batch)
        if lost.size:
            warnings.warn(SimulatorWarning(
                f"{lost.size} trace(s) lost to simulator processes that crashed or hung, kept as failed "
                f"traces with weight 0; the first: {batch.error(int(lost[0]))}"), stacklevel=2)
        if on_error == "raise":
            failed = np.setdiff1d(batch.failed, lost)
            if failed.size:
                self._raise_failed(_OtherFailures(batch, failed), [batch])  # type: ignore[arg-type]
        return batch

    def __repr__(self) -> str:
        return f"ShmModel({self.name!r}, command={self.command!r}, workers={self.workers})"
