"""PyProb program: Gaussian with unknown mean, the prior drawn by Marsaglia's polar
method (a rejection loop of Uniform draws).  Runs with PyProb 1.5.0 as written, and
with ppfast after changing ``pyprob`` to ``ppfast.pyprob`` in the imports."""

import math

import torch

import pyprob
from pyprob import Model
from pyprob.distributions import Normal, Uniform


class GaussianWithUnknownMeanMarsaglia(Model):
    def __init__(self, prior_mean=1, prior_stddev=math.sqrt(5), likelihood_stddev=math.sqrt(2)):
        self.prior_mean = prior_mean
        self.prior_stddev = prior_stddev
        self.likelihood_stddev = likelihood_stddev
        super().__init__('Gaussian with unknown mean (Marsaglia)')

    def marsaglia(self, mean, stddev):
        uniform = Uniform(-1, 1)
        s = 1
        while float(s) >= 1:
            x = pyprob.sample(uniform)
            y = pyprob.sample(uniform)
            s = x * x + y * y
        return mean + stddev * (x * torch.sqrt(-2 * torch.log(s) / s))

    def forward(self):
        mu = self.marsaglia(self.prior_mean, self.prior_stddev)
        likelihood = Normal(mu, self.likelihood_stddev)
        pyprob.observe(likelihood, 0, name='obs0')
        pyprob.observe(likelihood, 0, name='obs1')
        return mu


model = GaussianWithUnknownMeanMarsaglia()
observe = {'obs0': 8, 'obs1': 9}
true_posterior = Normal(7.25, math.sqrt(1 / 1.2))


def run(num_traces):
    return model.posterior_results(num_traces, inference_engine=pyprob.InferenceEngine.IMPORTANCE_SAMPLING,
                                   observe=observe)


if __name__ == '__main__':
    posterior = run(10000)
    print('posterior mean', float(posterior.mean), 'stddev', float(posterior.stddev),
          'true', float(true_posterior.mean), float(true_posterior.stddev))
