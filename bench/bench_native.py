"""C++ simulators: embedded (a shared library in this process, C++ worker threads) and
shared-memory mode (the same source as executables, one process per core), on GUM (one
draw per trace) and the 100-draw model.

Baselines, each measured in the same run: the same C++ simulator with recording off (the
floor: what the simulator costs by itself), embedded mode (for shared-memory mode), and
PyProb 1.5.0's Python models.  Batch sizes are fixed per benchmark (``n`` is a multiple
of the batch), so a rate is for batches of that size.
"""

from __future__ import annotations

from typing import Any, Callable

from bench.harness import Case, Runner, Unavailable, benchmark

DRAWS = {"gum": 1, "hundred": 100}


def _embedded(name: str) -> Any:
    try:
        import ppfast.examples

        return ppfast.examples.load(name)
    except (ImportError, ValueError) as e:
        raise Unavailable(f"embedded example {name!r} not available: {e}") from e


def _shm(name: str) -> Any:
    try:
        from ppfast.models.shm import ShmModel

        return ShmModel.example(name)
    except (ImportError, ValueError) as e:
        raise Unavailable(f"shared-memory example {name!r} not available: {e}") from e


def _prior(model: Any, batch: int) -> Runner:
    """run(n): n traces from the prior as n / batch calls of prior_results(batch)."""

    def run(n: int) -> None:
        for _ in range(max(1, n // batch)):
            model.prior_results(num_traces=batch, progress=False)

    return run


def _floor(name: str, batch: int) -> Callable[[], Runner]:
    def setup() -> Runner:
        model = _embedded(name)

        def run(n: int) -> None:
            for _ in range(max(1, n // batch)):
                model.run_unrecorded(batch)

        return run

    return setup


def _pyprob(model_class: str) -> Callable[[], Runner]:
    def setup() -> Runner:
        import bench.pyprob_models as pm

        model = getattr(pm, model_class)()
        return lambda n: model.prior_results(num_traces=n)

    return setup


def _extra(name: str, batch: int, mode: str) -> Callable[[], dict]:
    return lambda: {"batch": batch, "draws/trace": DRAWS[name], "mode": mode}


# -- embedded mode against the recording-off floor -------------------------------------------
# Targets: GUM at >= 3M traces/s or within 3x of its floor (whichever is lower), the
# 100-draw model within 2x of its floor.

@benchmark("embedded_gum_prior_vs_floor", unit="traces/s", target=1 / 3, baseline="recording off")
def embedded_gum_prior_vs_floor() -> Case:
    batch = 100_000
    return Case(ppfast=lambda: _prior(_embedded("gum"), batch), baseline=_floor("gum", batch), n_ppfast=batch,
                n_baseline=batch, extra=_extra("gum", batch, "embedded"))


@benchmark("embedded_hundred_prior_vs_floor", unit="traces/s", target=1 / 2, baseline="recording off")
def embedded_hundred_prior_vs_floor() -> Case:
    batch = 10_000
    return Case(ppfast=lambda: _prior(_embedded("hundred"), batch), baseline=_floor("hundred", batch),
                n_ppfast=batch, n_baseline=batch, extra=_extra("hundred", batch, "embedded"))


# -- shared-memory mode against embedded mode: within 2x for batches >= 1000 traces --------

def _shm_vs_embedded(name: str, batch: int) -> Case:
    return Case(ppfast=lambda: _prior(_shm(name), batch), baseline=lambda: _prior(_embedded(name), batch),
                n_ppfast=batch, n_baseline=batch, extra=_extra(name, batch, "shm"))


@benchmark("shm_gum_prior_1k_vs_embedded", unit="traces/s", target=1 / 2, baseline="embedded")
def shm_gum_prior_1k_vs_embedded() -> Case:
    return _shm_vs_embedded("gum", 1000)


@benchmark("shm_gum_prior_100k_vs_embedded", unit="traces/s", target=1 / 2, baseline="embedded")
def shm_gum_prior_100k_vs_embedded() -> Case:
    return _shm_vs_embedded("gum", 100_000)


@benchmark("shm_hundred_prior_1k_vs_embedded", unit="traces/s", target=1 / 2, baseline="embedded")
def shm_hundred_prior_1k_vs_embedded() -> Case:
    return _shm_vs_embedded("hundred", 1000)


@benchmark("shm_hundred_prior_10k_vs_embedded", unit="traces/s", target=1 / 2, baseline="embedded")
def shm_hundred_prior_10k_vs_embedded() -> Case:
    return _shm_vs_embedded("hundred", 10_000)


# -- against PyProb 1.5.0's Python models ------------------------------------------------------

@benchmark("embedded_gum_prior", unit="traces/s", target=100.0)
def embedded_gum_prior() -> Case:
    batch = 100_000
    return Case(ppfast=lambda: _prior(_embedded("gum"), batch), baseline=_pyprob("GUM"), n_ppfast=batch,
                extra=_extra("gum", batch, "embedded"))


@benchmark("shm_gum_prior", unit="traces/s", target=100.0)
def shm_gum_prior() -> Case:
    batch = 100_000
    return Case(ppfast=lambda: _prior(_shm("gum"), batch), baseline=_pyprob("GUM"), n_ppfast=batch,
                extra=_extra("gum", batch, "shm"))


@benchmark("embedded_hundred_prior", unit="traces/s", target=100.0)
def embedded_hundred_prior() -> Case:
    batch = 10_000
    return Case(ppfast=lambda: _prior(_embedded("hundred"), batch), baseline=_pyprob("Hundred"),
                n_ppfast=batch, extra=_extra("hundred", batch, "embedded"))


@benchmark("shm_hundred_prior", unit="traces/s", target=100.0)
def shm_hundred_prior() -> Case:
    batch = 10_000
    return Case(ppfast=lambda: _prior(_shm("hundred"), batch), baseline=_pyprob("Hundred"), n_ppfast=batch,
                extra=_extra("hundred", batch, "shm"))
