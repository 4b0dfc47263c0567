"""Metropolis-Hastings steps per second: ppfast's RMH and LMH against PyProb 1.5.0's on the same
model, for the Python model and for the embedded C++ model (one chain, one thread on both sides).

Both sides run ``posterior_results(n, engine, observe=..., thinning=k)``: n steps, keeping every
k-th state (k = 1 on GUM; k = 10 on the 100-draw model, whose kept traces would otherwise fill
memory: ppfast keeps whole traces, PyProb only results).
"""

from __future__ import annotations

from typing import Any

from bench.harness import Case, Runner, benchmark

GUM_OBSERVE = {"obs0": 8, "obs1": 9}
HUNDRED_OBSERVE = {"obs": 5.0}
MODELS = {"gum": ("GUM", GUM_OBSERVE, 1), "hundred": ("Hundred", HUNDRED_OBSERVE, 10)}


def _case(model: str, engine: str, embedded: bool) -> Case:
    cls, observe, thin = MODELS[model]
    last: dict[str, Any] = {}

    def ppfast() -> Runner:
        import ppfast as pf

        if embedded:
            import ppfast.examples

            m = ppfast.examples.load(model, threads=1)
        else:
            import bench.ppfast_models as models

            m = getattr(models, cls)()
        eng = getattr(pf.InferenceEngine, engine)

        def run(n: int) -> None:
            post = m.posterior_results(num_traces=n // thin, inference_engine=eng, observe=observe, thinning=thin,
                                       progress=False)
            last["acceptance"] = post.batch.mcmc.acceptance_rate

        return run

    def baseline() -> Runner:
        import bench.pyprob_models as models

        pyprob = models.load_pyprob()
        m = getattr(models, cls)()
        eng = getattr(pyprob.InferenceEngine, engine)
        return lambda n: m.posterior_results(num_traces=n, inference_engine=eng, observe=observe, thinning_steps=thin)

    return Case(ppfast=ppfast, baseline=baseline, n_ppfast=thin, n_baseline=thin,
                extra=lambda: {"accept": last.get("acceptance", float("nan")), "thinning": thin})


def _register(model: str, engine: str, short: str, embedded: bool) -> None:
    name = f"{model}_{short}_{'embedded' if embedded else 'python'}"
    target = 300.0 if embedded else 20.0

    @benchmark(name, unit="steps/s", target=target)
    def make() -> Case:
        return _case(model, engine, embedded)

    make.__name__ = name


for _model in MODELS:
    for _engine, _short in (("RANDOM_WALK_METROPOLIS_HASTINGS", "rmh"), ("LIGHTWEIGHT_METROPOLIS_HASTINGS", "lmh")):
        for _embedded in (False, True):
            _register(_model, _engine, _short, _embedded)
