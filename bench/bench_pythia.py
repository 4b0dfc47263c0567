"""Pythia 8.244, unchanged, with every draw captured at its generator (examples pythia_z and
pythia_tau; build Pythia first with ``bash scripts/build_pythia.sh``).

- ``pythia_z_capture_vs_plain`` / ``pythia_tau_capture_vs_plain``: events/s with recording
  and call-stack addresses, against the same Pythia with the same generator (ppfast's
  xoshiro stream, the same numbers) and nothing recorded.  One thread each.  Target: at
  most 1.5x the time (ratio >= 0.67).  The tau case times the decays alone (calorimeter
  off).  Extra columns: draws per event, distinct addresses and trace types in 10k events,
  and the socket-per-draw route: ppfast's own PPX round trip (timed here, on the 100-draw
  model served over ipc) times the draws per event, against the captured event.
- ``pythia_z_shm_vs_embedded``: the same workload in shared-memory processes against
  embedded threads (two each).  Target: at least 0.8x.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any, Dict

import numpy as np

from bench.harness import Case, Runner, Unavailable, benchmark

SEED = 17
HUNDRED_ROUND_TRIPS = 102  # Run, 100 SampleResults, 1 ObserveResult


def _library(name: str) -> Any:
    try:
        import ppfast.examples

        return ppfast.examples.library_path(name)
    except (ImportError, ValueError) as e:
        raise Unavailable(str(e)) from e


def _plain_lib(name: str) -> Any:
    lib = ctypes.CDLL(str(_library(name)))
    lib.ppfast_pythia_plain_events.argtypes = [ctypes.c_uint64] * 3
    lib.ppfast_pythia_plain_events.restype = ctypes.c_uint64
    if name == "pythia_tau":
        lib.ppfast_pythia_tau_calorimeter(0)
    return lib


def _captured(name: str, threads: int = 1) -> Runner:
    from ppfast.models.native import NativeModel

    _plain_lib(name)  # the calorimeter switch, for pythia_tau
    model = NativeModel(_library(name), threads=threads)
    model.prior_batch(threads, progress=False)  # initializes Pythia on the worker threads
    return lambda n: model.prior_batch(n, progress=False)


def _plain(name: str) -> Runner:
    lib = _plain_lib(name)
    lib.ppfast_pythia_plain_events(SEED, 0, 1)  # initializes Pythia on this thread
    first = [1]

    def run(n: int) -> None:
        lib.ppfast_pythia_plain_events(SEED, first[0], n)
        first[0] += n

    return run


def _ppx_round_trip_s() -> float:
    """Seconds per PPX round trip of ppfast's client and server (100-draw model, ipc)."""
    import ppfast
    from ppfast.models.remote import ExampleServer

    try:
        server = ExampleServer("hundred", idle_timeout=120, quiet=True)
    except (ValueError, RuntimeError) as e:
        raise Unavailable(f"PPX server not available: {e}") from e
    try:
        model = ppfast.RemoteModel(server.address, timeout=60)
        model.prior_batch(20, progress=False)
        n, times = 100, []
        for _ in range(5):  # the median of five: one timing on a busy machine can be off by several times
            t = time.perf_counter()
            model.prior_batch(n, progress=False)
            times.append((time.perf_counter() - t) / (n * HUNDRED_ROUND_TRIPS))
        return float(np.median(times))
    finally:
        server.close()


def _extra(name: str) -> Dict[str, Any]:
    from ppfast.trace import FLAG_CONTROL, RecordKind
    from ppfast.models.native import NativeModel

    model = NativeModel(_library(name))
    model.prior_batch(4, progress=False)
    t = time.perf_counter()
    batch = model.prior_batch(10_000, seed=SEED, progress=False)
    seconds = time.perf_counter() - t
    rec = batch.records
    draws = (rec["kind"] == RecordKind.SAMPLE) & ((rec["flags"] & FLAG_CONTROL) != 0)
    per_event = draws.sum() / len(batch)
    one = _captured(name)
    one(200)  # first-seen stacks symbolized, the batch's columns grown
    times = []
    for _ in range(5):
        t = time.perf_counter()
        one(100)
        times.append((time.perf_counter() - t) / 100)
    event_s = float(np.median(times))
    rt = _ppx_round_trip_s()
    return {"draws/event": round(float(per_event), 1),
            "addresses/10k events": int(len(np.unique(rec["address"][draws]))),
            "trace types/10k events": int(len(np.unique(batch.traces["trace_type"]))),
            "10k events (s, all cores)": round(seconds, 2),
            "captured ms/event": round(event_s * 1e3, 3),
            "ppx round trip us": round(rt * 1e6, 1),
            "socket-per-draw ms/event": round(rt * per_event * 1e3, 1),
            "socket route / captured": round(rt * per_event / event_s, 1)}


@benchmark("pythia_z_capture_vs_plain", unit="events/s", target=1 / 1.5, baseline="plain Pythia, same generator")
def pythia_z_capture_vs_plain() -> Case:
    return Case(ppfast=lambda: _captured("pythia_z"), baseline=lambda: _plain("pythia_z"), n_ppfast=50,
                n_baseline=50, extra=lambda: _extra("pythia_z"))


@benchmark("pythia_tau_capture_vs_plain", unit="decays/s", target=1 / 1.5, baseline="plain Pythia, same generator")
def pythia_tau_capture_vs_plain() -> Case:
    return Case(ppfast=lambda: _captured("pythia_tau"), baseline=lambda: _plain("pythia_tau"), n_ppfast=500,
                n_baseline=500, extra=lambda: _extra("pythia_tau"))


@benchmark("pythia_z_shm_vs_embedded", unit="events/s", target=0.8, baseline="embedded")
def pythia_z_shm_vs_embedded() -> Case:
    def shm() -> Runner:
        from ppfast.models.shm import ShmModel

        try:
            model = ShmModel.example("pythia_z", workers=2)
        except ValueError as e:
            raise Unavailable(str(e)) from e
        model.prior_batch(10, progress=False)
        return lambda n: model.prior_batch(n, progress=False)

    return Case(ppfast=shm, baseline=lambda: _captured("pythia_z", threads=2), n_ppfast=200, n_baseline=200)
