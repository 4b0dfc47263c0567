"""PPX simulators over ZeroMQ as ppfast models (PPX.md: the protocol of PyProb and pyprob_cpp).

``RemoteModel`` drives any PPX simulator: pyprob_cpp-based codes, a ppfast simulator served
with ``<example>_ppx`` / ``ppfast::serve_ppx``, or a Python one.  The whole conversation
(decoding each Sample / Observe / Tag, drawing the value, answering, appending to the trace
batch) runs in C++ with the GIL released; Python sees finished trace batches.

>>> import ppfast
>>> from ppfast.models.remote import ExampleServer
>>> with ExampleServer("gum") as server:                      # doctest: +SKIP
...     model = ppfast.RemoteModel(server.address)
...     post = model.posterior_results(2000, observe={"obs0": 8, "obs1": 9}, seed=1)
"""

from __future__ import annotations

import math
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .. import _core
from ..model import BaseModel
from ..trace import TraceBatch

__all__ = ["RemoteModel", "ExampleServer", "example_server_path", "load_zmq", "PROTOCOL_VERSION"]

#: The PPX protocol version ppfast speaks (PyProb 1.5.0's).
PROTOCOL_VERSION: str = _core.ppx_protocol_version()


def load_zmq() -> None:
    """Loads ZeroMQ for PPX (first use only).  ``ppfast._core`` does not link libzmq, so the
    rest of ppfast works without it; ``ppfast._zmq`` does, and hands its functions over."""
    if _core.ppx_zmq_bound():
        return
    try:
        from .. import _zmq
    except ImportError as e:
        raise ImportError(
            f"PPX needs ZeroMQ (libzmq.so.5), which could not be loaded: {e}. The manylinux wheel of ppfast "
            "bundles it (pip install --force-reinstall ppfast); a build from source needs the system library "
            "(Debian/Ubuntu: apt-get install libzmq5). Models other than RemoteModel work without it."
        ) from e
    _core.ppx_bind_zmq(_zmq.table)


def _addresses(address: Union[str, Sequence[str]]) -> List[str]:
    items = [address] if isinstance(address, str) else list(address)
    if not items:
        raise ValueError("RemoteModel: expected an address like 'ipc://@name' or 'tcp://127.0.0.1:5555', "
                         "got none")
    for a in items:
        if not isinstance(a, str) or "://" not in a:
            raise ValueError(
                "RemoteModel: expected a ZeroMQ address like 'ipc://@name' or 'tcp://127.0.0.1:5555', "
                f"got {a!r}"
            )
    return items


def checked_run(run: Any) -> TraceBatch:
    """The batch of ``run()`` (a ``PpxClient.run``), or its error raised with the traces
    finished before it as ``err.partial`` (Ctrl-C too)."""
    try:
        native, error = run()
    except KeyboardInterrupt as e:
        if getattr(e, "partial", None) is not None:
            e.partial = TraceBatch(e.partial)  # type: ignore[attr-defined]
        raise
    batch = TraceBatch(native)
    if error is None:
        return batch
    from .. import errors

    kind, message = error
    err = getattr(errors, kind)(message)
    err.partial = batch  # type: ignore[attr-defined]
    raise err


class RemoteModel(BaseModel):
    """A PPX simulator driven over ZeroMQ (the simulator binds a REP socket, ppfast connects).

    ``address``: one address, or a list of addresses of identical simulators: one connection
    and one C++ thread each, the traces split between them (trace ``i`` always uses RNG
    stream ``i``, so results do not depend on how many there are).  ``timeout``: seconds to
    wait for any reply; a peer that does not answer raises ``PeerTimeoutError``, one that
    disconnects mid-trace ``PeerGoneError``, one that sends something malformed or out of
    order ``ProtocolError`` (``ProtocolVersionError`` for another PPX version).  After such
    an error the connection is re-established on the next run.  ``connect=False`` defers the
    handshake to the first run.

    ``spin_us``: poll this many microseconds for each reply before sleeping.  A fast
    simulator answers within tens of microseconds, and a thread that did not sleep needs no
    wake-up; leave it at 0 for slow simulators or when connections outnumber the cores.

    ``max_message_bytes``: the largest message accepted from a simulator (a bigger one drops
    the connection before it is allocated: ``PeerGoneError``); ``max_trace_records``: the
    most Sample / Observe / Tag messages in one trace (more: ``ProtocolError``, a runaway
    simulator), 0 for no limit.

    A simulator that fails mid-run does not lose the traces finished before: the error
    carries them as ``err.partial``.  With ``on_error='skip'`` the run goes on: the trace
    cut short is kept as failed, the connection is retried (for up to ``timeout``) and, if
    its simulator does not come back, the other connections run its remaining traces.
    When nothing listens at an address, connecting fails within about 2 s with
    ``PeerGoneError`` ("no simulator at ADDRESS").  A tensor-valued run result (PyProb
    keeps it whole) is a numpy array of its shape in the results.

    ``server_address`` is accepted as in PyProb's ``RemoteModel``.
    """

    # Traces per C++ call: a few seconds at most, so Ctrl-C and progress bars stay responsive.
    chunk_size = 1 << 12

    def __init__(
        self,
        address: Union[str, Sequence[str], None] = None,
        timeout: float = 30.0,
        name: Optional[str] = None,
        connect: bool = True,
        server_address: Union[str, Sequence[str], None] = None,
        spin_us: int = 0,
        max_message_bytes: int = 256 << 20,
        max_trace_records: int = 10_000_000,
    ):
        if address is None:
            address = server_address if server_address is not None else "tcp://127.0.0.1:5555"
        elif server_address is not None:
            raise ValueError("RemoteModel: give address or server_address, not both")
        timeout = float(timeout)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"RemoteModel: timeout must be a positive number of seconds, got {timeout!r}")
        self.addresses = _addresses(address)
        self.timeout = timeout
        if not (isinstance(spin_us, int) and 0 <= spin_us <= 1_000_000):
            raise ValueError(f"RemoteModel: spin_us must be an int in [0, 1e6] microseconds, got {spin_us!r}")
        self.spin_us = spin_us
        if not (isinstance(max_message_bytes, int) and 0 < max_message_bytes < 2**62):
            raise ValueError(f"RemoteModel: max_message_bytes must be a positive int, got {max_message_bytes!r}")
        if not (isinstance(max_trace_records, int) and 0 <= max_trace_records < 2**63):
            raise ValueError(f"RemoteModel: max_trace_records must be an int >= 0 (0: no limit), got "
                             f"{max_trace_records!r}")
        load_zmq()
        self._client = _core.PpxClient(self.addresses, max(1, int(round(timeout * 1000))), spin_us=spin_us,
                                       max_message_bytes=max_message_bytes, max_trace_records=max_trace_records)
        super().__init__(name)
        if connect:
            self.connect()
            if name is None:
                self.name = self.peers[0]["model_name"] or self.name

    def connect(self) -> None:
        """Handshakes with every simulator not yet connected (runs do it by themselves)."""
        self._client.connect()

    @property
    def peers(self) -> List[Dict[str, Any]]:
        """Per connection: address, connected, system_name, model_name, round_trips, traces,
        connects (how many times its socket was opened)."""
        return self._client.peers

    @property
    def system_name(self) -> str:
        """The first simulator's system name, from its HandshakeResult."""
        return self.peers[0]["system_name"]

    def _simulate(self, seed: int, first: int, count: int, observations: Dict[int, np.ndarray],
                  required: bool, skip_errors: bool = False) -> TraceBatch:
        return checked_run(lambda: self._client.run(seed, first, count, _core.Observations(observations, required),
                                                    skip_errors=skip_errors))

    def _simulate_policies(self, seed: int, first: int, count: int, observations: Dict[int, np.ndarray],
                           required: bool, policies: Sequence[Any]) -> TraceBatch:
        """Like ``_simulate``, with one ``_core.Policy`` per connection deciding the values of
        controlled sites (MH replay, IC proposals); for inference engines."""
        return checked_run(lambda: self._client.run(seed, first, count, _core.Observations(observations, required),
                                                    list(policies)))

    def close(self) -> None:
        """Closes the connections (a later run opens them again)."""
        self._client.close()

    def __enter__(self) -> "RemoteModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.addresses[0] if len(self.addresses) == 1 else self.addresses
        return f"RemoteModel({self.name!r}, address={where!r}, timeout={self.timeout:g})"


def example_server_path(name: str) -> Path:
    """The executable that serves example simulator ``name`` over PPX (``<name>_ppx``)."""
    from .._paths import EXAMPLES_BIN

    path = EXAMPLES_BIN / f"{name}_ppx"
    if not path.exists():
        found = sorted(p.name[: -len("_ppx")] for p in EXAMPLES_BIN.glob("*_ppx"))
        available = ", ".join(found) or "none"
        raise ValueError(f"no PPX server for example {name!r} at {path}; available: {available}")
    return path


class ExampleServer:
    """Runs ``<name>_ppx`` (an example simulator serving PPX) in a child process.

    ``address`` defaults to a fresh abstract ipc endpoint.  The process is started on
    construction, waited for until it reports it is bound, and terminated by ``close()`` or
    at the end of a ``with`` block.  ``echo=True`` serves a bare ZeroMQ echo instead (the
    benchmark floor).
    """

    _counter = 0

    def __init__(self, name: str, address: Optional[str] = None, echo: bool = False,
                 idle_timeout: float = 600.0, start_timeout: float = 30.0, quiet: bool = False,
                 spin_us: int = 0):
        if address is None:
            ExampleServer._counter += 1
            address = f"ipc://@ppfast-{name}-{os.getpid()}-{ExampleServer._counter}"
        self.name = name
        cmd = [str(example_server_path(name)), address, "--idle-timeout", f"{idle_timeout:g}"]
        if echo:
            cmd.append("--echo")
        if quiet:
            cmd.append("--quiet")
        if spin_us:
            cmd += ["--spin-us", str(int(spin_us))]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.address = self._wait_ready(start_timeout)

    def _wait_ready(self, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                self.close()
                raise RuntimeError(f"{self.name}_ppx did not start (exit status {self.process.returncode})")
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                line = self.process.stdout.readline()
                if line.startswith("ready "):
                    return line.split(None, 1)[1].strip()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> "ExampleServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
