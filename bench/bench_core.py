"""Core throughput: Python models run by ppfast against the same models run by PyProb 1.5.0."""

from __future__ import annotations

from bench.harness import Case, Runner, benchmark

GUM_OBSERVE = {"obs0": 8, "obs1": 9}


@benchmark("gum_prior", unit="traces/s", target=30.0)
def gum_prior() -> Case:
    def ppfast() -> Runner:
        from bench.ppfast_models import GUM

        model = GUM()
        return lambda n: model.prior_results(num_traces=n, progress=False)

    def baseline() -> Runner:
        from bench.pyprob_models import GUM

        model = GUM()
        return lambda n: model.prior_results(num_traces=n)

    return Case(ppfast=ppfast, baseline=baseline)


@benchmark("gum_is", unit="traces/s", target=30.0)
def gum_is() -> Case:
    def ppfast() -> Runner:
        from bench.ppfast_models import GUM

        model = GUM()
        return lambda n: model.posterior_results(num_traces=n, observe=GUM_OBSERVE, progress=False)

    def baseline() -> Runner:
        from bench.pyprob_models import GUM

        model = GUM()
        return lambda n: model.posterior_results(num_traces=n, observe=GUM_OBSERVE)

    return Case(ppfast=ppfast, baseline=baseline)


@benchmark("gum_prior_floor", unit="traces/s", target=None, baseline="plain Python, no trace")
def gum_prior_floor() -> Case:
    """ppfast's GUM prior against what a prior run must compute, in plain Python with nothing
    recorded: the draw of mu and its log-density (observes without values are only recorded,
    as in PyProb). A ratio near 1 means recording costs little next to running Python at all."""

    def ppfast() -> Runner:
        from bench.ppfast_models import GUM

        model = GUM()
        return lambda n: model.prior_results(num_traces=n, progress=False)

    def baseline() -> Runner:
        import math
        import random

        gauss = random.gauss
        sd = 5**0.5
        norm = -math.log(sd) - 0.5 * math.log(2 * math.pi)

        def run(n: int) -> list[float]:
            results = [0.0] * n
            log_priors = [0.0] * n
            for i in range(n):
                mu = gauss(1.0, sd)
                log_priors[i] = norm - 0.5 * ((mu - 1.0) / sd) ** 2
                results[i] = mu
            return results

        return run

    return Case(ppfast=ppfast, baseline=baseline)
