"""A small user script that uses ppfast's public API; `mypy --strict` must pass on it
(tests/test_typing.py)."""

from __future__ import annotations

import numpy as np

import ppfast
from ppfast.distributions import Categorical, Normal
from ppfast.examples import load


class GUM(ppfast.Model):
    def forward(self) -> float:
        mu = ppfast.sample(Normal(1.0, 5**0.5), name="mu")
        ppfast.observe(Normal(mu, 2**0.5), name="obs0")
        ppfast.observe(Normal(mu, 2**0.5), name="obs1")
        k = ppfast.sample(Categorical(probs=[0.5, 0.5]), name="k")
        ppfast.tag(mu + k, name="shifted")
        return float(mu)


def summary(post: ppfast.Empirical) -> str:
    mean: float = post.mean
    ess: float = post.effective_sample_size
    return f"mean {mean:.3f} stddev {post.stddev:.3f} ESS {ess:.1f}"


def main() -> None:
    observe = {"obs0": 8.0, "obs1": 9.0}
    model = GUM()
    post = model.posterior_results(1000, observe=observe, seed=1, progress=False)
    print(summary(post))
    embedded = load("gum")
    batch: ppfast.TraceBatch = embedded.prior_batch(100, seed=1)
    weights: np.ndarray = batch.traces["log_weight"]
    print(len(batch), weights.shape)
    mh = embedded.posterior_results(1000, inference_engine=ppfast.InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS,
                                    observe=observe, seed=2, progress=False)
    print(summary(mh))


if __name__ == "__main__":
    main()
