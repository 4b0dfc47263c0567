"""PyProb program: a branching model whose number of latent draws depends on a draw.
Runs with PyProb 1.5.0 as written, and with ppfast after changing ``pyprob`` to
``ppfast.pyprob`` in the imports."""

import pyprob
from pyprob import Model
from pyprob.distributions import Poisson


def fibonacci(n):
    if n < 2:
        return 1
    a, fib = 1, 1
    for _ in range(n - 2):
        a, fib = fib, a + fib
    return fib


class Branching(Model):
    def __init__(self):
        super().__init__('Branching')

    def forward(self):
        count_prior = Poisson(4)
        r = pyprob.sample(count_prior)
        if 4 < float(r):
            l = 6
        else:
            l = 1 + fibonacci(3 * int(r)) + pyprob.sample(count_prior)
        pyprob.observe(Poisson(l), name='obs')
        return r


model = Branching()
observe = {'obs': 6}


def true_posterior_probs(upper=40):
    """p(r | obs = 6) for r < upper, by enumeration."""
    import math

    def poisson(k, rate):
        return math.exp(k * math.log(rate) - rate - math.lgamma(k + 1))

    joint = []
    for r in range(upper):
        if r > 4:
            like = poisson(6, 6)
        else:
            like = sum(poisson(s, 4) * poisson(6, 1 + fibonacci(3 * r) + s) for s in range(60))
        joint.append(poisson(r, 4) * like)
    total = sum(joint)
    return [j / total for j in joint]


def run(num_traces):
    return model.posterior_results(num_traces, inference_engine=pyprob.InferenceEngine.IMPORTANCE_SAMPLING,
                                   observe=observe)


if __name__ == '__main__':
    posterior = run(10000)
    print('posterior mean of r', float(posterior.mean))
