"""numba-compiled models (``ppfast.jit``) against the same models as embedded C++ examples, as
plain Python ppfast models and as PyProb 1.5.0 models.

Every side runs importance sampling (``posterior_results``) on one thread, so the ratios compare
engines per core; ``numba_hundred_all_threads_vs_python`` gives the compiled model one worker
thread per CPU (it runs without the GIL; a Python model cannot use more than one).
The models are the same program site for site: GUM (one latent, two observes) and the 100-draw
model (100 Normal latents at one address, one observe).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from bench.harness import Case, Runner, Unavailable, benchmark

GUM_OBSERVE = {"obs0": 8, "obs1": 9}
HUNDRED_OBSERVE = {"obs": 5.0}
OBSERVE = {"gum": GUM_OBSERVE, "hundred": HUNDRED_OBSERVE}


def _posterior(model: Any, observe: dict) -> Runner:
    return lambda n: model.posterior_results(num_traces=n, observe=observe, progress=False)


def _numba(name: str, threads: Optional[int] = 1) -> Callable[[], Runner]:
    def setup() -> Runner:
        try:
            from ppfast.examples import numba_models
        except ImportError as e:
            raise Unavailable(f"numba models unavailable: {e}") from e
        return _posterior(numba_models.load(name, threads=threads), OBSERVE[name])

    return setup


def _embedded(name: str) -> Callable[[], Runner]:
    def setup() -> Runner:
        import ppfast.examples

        return _posterior(ppfast.examples.load(name, threads=1), OBSERVE[name])

    return setup


def _python(name: str) -> Callable[[], Runner]:
    def setup() -> Runner:
        from ppfast.examples import python_models

        return _posterior(python_models.MODELS[name](), OBSERVE[name])

    return setup


def _pyprob(name: str) -> Callable[[], Runner]:
    def setup() -> Runner:
        import bench.pyprob_models as pm

        model = {"gum": pm.GUM, "hundred": pm.Hundred}[name]()
        observe = OBSERVE[name]
        return lambda n: model.posterior_results(num_traces=n, observe=observe)

    return setup


# Step sizes keep each timed call's n a multiple of a sensible batch.
_STEP = {"gum": 10_000, "hundred": 1_000}
_STEP_PYTHON = {"gum": 1_000, "hundred": 20}


def _register(name: str) -> None:
    @benchmark(f"numba_{name}_vs_embedded", unit="traces/s", target=0.5, baseline="embedded C++")
    def vs_embedded() -> Case:
        return Case(ppfast=_numba(name), baseline=_embedded(name), n_ppfast=_STEP[name],
                    n_baseline=_STEP[name])

    @benchmark(f"numba_{name}_vs_python", unit="traces/s", target=100.0, baseline="Python ppfast model")
    def vs_python() -> Case:
        return Case(ppfast=_numba(name), baseline=_python(name), n_ppfast=_STEP[name],
                    n_baseline=_STEP_PYTHON[name])

    @benchmark(f"numba_{name}_vs_pyprob", unit="traces/s", target=None)
    def vs_pyprob() -> Case:
        return Case(ppfast=_numba(name), baseline=_pyprob(name), n_ppfast=_STEP[name], n_baseline=1)


for _name in ("gum", "hundred"):
    _register(_name)


@benchmark("numba_hundred_all_threads_vs_python", unit="traces/s", target=100.0,
           baseline="Python ppfast model")
def numba_hundred_all_threads_vs_python() -> Case:
    """The whole machine: the compiled model on one worker thread per CPU (no GIL) against the
    Python model, which runs on one thread whatever the machine."""
    return Case(ppfast=_numba("hundred", threads=os.cpu_count() or 1), baseline=_python("hundred"),
                n_ppfast=_STEP["hundred"], n_baseline=_STEP_PYTHON["hundred"],
                extra=lambda: {"threads": os.cpu_count() or 1})
