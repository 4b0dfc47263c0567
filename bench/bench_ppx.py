"""PPX over ZeroMQ: ppfast's client against the ZeroMQ floor and against PyProb 1.5.0.

Every simulator here is a ppfast C++ example served over PPX by its ``<name>_ppx``
executable (one process per engine, abstract ipc endpoints), so both engines drive the
same C++ code:

- ``ppx_round_trip``: round trips per second of ppfast's client driving the 100-draw
  model (102 PPX round trips per trace: Run, 100 Samples, 1 Observe) against a bare
  ZeroMQ REQ/REP ping (C++ both ends, no PPX) on the same transport.  Target: within 1.5x,
  i.e. ratio >= 0.67.
- ``ppx_gum`` / ``ppx_hundred``: traces/s of ``ppfast.RemoteModel`` (defaults: one
  connection, no spinning) against PyProb's ``RemoteModel`` (importance sampling of GUM;
  prior of the 100-draw model).  Extra columns: ppfast with two simulator processes (two
  connections in parallel) and, for GUM, with ``spin_us=50`` (polls before sleeping), and
  ``zmq_floor_1conn``: the bare ping rate / 4, the most any one-connection PPX engine can
  reach on GUM (4 round trips per trace).
- ``ppx_gum_vs_shm`` / ``ppx_gum_vs_embedded``: what switching transport buys (information).
"""

from __future__ import annotations

import atexit
from typing import Any, Callable, Dict, List

from bench.harness import Case, Runner, Unavailable, benchmark

GUM_OBSERVE = {"obs0": 8, "obs1": 9}
HUNDRED_ROUND_TRIPS = 102  # Run, 100 SampleResults, 1 ObserveResult
GUM_ROUND_TRIPS = 4  # Run, 1 SampleResult, 2 ObserveResults

_servers: List[Any] = []


def _close_servers() -> None:
    for s in _servers:
        s.close()
    _servers.clear()


atexit.register(_close_servers)


def _server(name: str, echo: bool = False, spin_us: int = 0) -> Any:
    """A fresh ``<name>_ppx`` process (closed at exit; it also exits when idle)."""
    try:
        from ppfast.models.remote import ExampleServer

        server = ExampleServer(name, echo=echo, idle_timeout=300, quiet=True, spin_us=spin_us)
    except (ImportError, ValueError, RuntimeError) as e:
        raise Unavailable(f"PPX server for {name!r} not available: {e}") from e
    _servers.append(server)
    return server


def _remote(name: str, servers: int = 1, spin_us: int = 0, server_spin_us: int = 0) -> Any:
    import ppfast

    return ppfast.RemoteModel([_server(name, spin_us=server_spin_us).address for _ in range(servers)], timeout=60,
                              spin_us=spin_us)


def _pyprob_remote(name: str, server_spin_us: int = 0) -> Any:
    from bench.pyprob_models import load_pyprob

    pyprob = load_pyprob()
    return pyprob.RemoteModel(server_address=_server(name, spin_us=server_spin_us).address)


def _gum_ppfast(servers: int = 1, spin_us: int = 0) -> Runner:
    model = _remote("gum", servers, spin_us)
    return lambda n: model.posterior_results(num_traces=n, observe=GUM_OBSERVE, progress=False)


def _ping() -> Runner:
    """n bare ZeroMQ REQ/REP round trips (C++ both ends, 80 bytes: about a SampleResult)."""
    from ppfast import _core
    from ppfast.models.remote import load_zmq

    load_zmq()
    address = _server("gum", echo=True).address
    return lambda n: _core.ppx_ping(address, n, 80)


def _rate(setup: Callable[[], Runner], n: int, repeats: int = 3) -> float:
    """Median rate of a runner outside the harness (for extra columns)."""
    import statistics
    import time

    run = setup()
    run(max(1, n // 10))
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(n)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


@benchmark("ppx_round_trip", unit="round trips/s", target=1 / 1.5, baseline="bare ZeroMQ REQ/REP ping")
def ppx_round_trip() -> Case:
    def ppfast() -> Runner:
        model = _remote("hundred")

        def run(n: int) -> None:
            model.prior_batch(max(1, n // HUNDRED_ROUND_TRIPS), progress=False)

        return run

    def extra() -> Dict[str, Any]:
        return {"transport": "ipc", "model": "hundred_ppx", "round_trips/trace": HUNDRED_ROUND_TRIPS}

    return Case(ppfast=ppfast, baseline=_ping, n_ppfast=HUNDRED_ROUND_TRIPS,
                n_baseline=HUNDRED_ROUND_TRIPS, extra=extra)


@benchmark("ppx_gum", unit="traces/s", target=10.0, baseline="pyprob 1.5.0 RemoteModel")
def ppx_gum() -> Case:
    def baseline() -> Runner:
        model = _pyprob_remote("gum")
        return lambda n: model.posterior_results(num_traces=n, observe=GUM_OBSERVE)

    def extra() -> Dict[str, Any]:
        return {"ppfast_2_servers": _rate(lambda: _gum_ppfast(2), 4000),
                "ppfast_spin50us": _rate(lambda: _gum_ppfast(1, 50), 4000),
                "zmq_floor_1conn": _rate(_ping, 20000) / GUM_ROUND_TRIPS, "transport": "ipc", "mode": "IS"}

    return Case(ppfast=_gum_ppfast, baseline=baseline, extra=extra)


@benchmark("ppx_gum_polling", unit="traces/s", target=10.0, baseline="pyprob 1.5.0 RemoteModel")
def ppx_gum_polling() -> Case:
    """GUM with the server polling 200 µs for the next request before it sleeps (both
    engines drive such a server), and ppfast's client polling as well: on an idle core a
    blocking wake-up costs most of a round trip."""

    def ppfast() -> Runner:
        model = _remote("gum", spin_us=200, server_spin_us=200)
        return lambda n: model.posterior_results(num_traces=n, observe=GUM_OBSERVE, progress=False)

    def baseline() -> Runner:
        model = _pyprob_remote("gum", server_spin_us=200)
        return lambda n: model.posterior_results(num_traces=n, observe=GUM_OBSERVE)

    return Case(ppfast=ppfast, baseline=baseline, extra=lambda: {"transport": "ipc", "spin_us": 200})


@benchmark("ppx_hundred", unit="traces/s", target=None, baseline="pyprob 1.5.0 RemoteModel")
def ppx_hundred() -> Case:
    def ppfast() -> Runner:
        model = _remote("hundred")
        return lambda n: model.prior_results(num_traces=n, progress=False)

    def baseline() -> Runner:
        model = _pyprob_remote("hundred")
        return lambda n: model.prior_results(num_traces=n)

    def extra() -> Dict[str, Any]:
        def two() -> Runner:
            model = _remote("hundred", 2)
            return lambda n: model.prior_results(num_traces=n, progress=False)

        return {"ppfast_2_servers": _rate(two, 100), "transport": "ipc", "mode": "prior"}

    return Case(ppfast=ppfast, baseline=baseline, extra=extra)


@benchmark("ppx_gum_vs_shm", unit="traces/s", target=None, baseline="ppfast shared memory")
def ppx_gum_vs_shm() -> Case:
    def baseline() -> Runner:
        try:
            import ppfast.examples

            model = ppfast.examples.load("gum", mode="shm")
        except (ImportError, ValueError, AttributeError) as e:
            raise Unavailable(f"shared-memory mode not available: {e}") from e
        return lambda n: model.posterior_results(num_traces=n, observe=GUM_OBSERVE, progress=False)

    return Case(ppfast=_gum_ppfast, baseline=baseline, extra=lambda: {"ppfast side": "PPX, 1 server"})


@benchmark("ppx_gum_vs_embedded", unit="traces/s", target=None, baseline="ppfast embedded")
def ppx_gum_vs_embedded() -> Case:
    def baseline() -> Runner:
        import ppfast.examples

        model = ppfast.examples.load("gum")
        return lambda n: model.posterior_results(num_traces=n, observe=GUM_OBSERVE, progress=False)

    return Case(ppfast=_gum_ppfast, baseline=baseline, extra=lambda: {"ppfast side": "PPX, 1 server"})
