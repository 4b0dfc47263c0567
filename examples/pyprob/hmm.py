"""PyProb program: a hidden Markov model with three states, Normal emissions and 16
observations; the result is the one-hot state sequence.  Runs with PyProb 1.5.0 as
written, and with ppfast after changing ``pyprob`` to ``ppfast.pyprob`` in the imports."""

import torch

import pyprob
from pyprob import Model
from pyprob.distributions import Categorical, Normal


class HiddenMarkovModel(Model):
    def __init__(self, init_dist, trans_dists, obs_dists, obs_length):
        self.init_dist = init_dist
        self.trans_dists = trans_dists
        self.obs_dists = obs_dists
        self.obs_length = obs_length
        super().__init__('Hidden Markov model')

    def forward(self):
        states = [pyprob.sample(self.init_dist)]
        for i in range(self.obs_length):
            state = pyprob.sample(self.trans_dists[int(states[-1])])
            pyprob.observe(self.obs_dists[int(state)], name='obs{}'.format(i))
            states.append(state)
        return torch.stack([torch.nn.functional.one_hot(torch.tensor(int(s)), 3) for s in states]).double()


init_dist = Categorical([1, 1, 1])
trans_dists = [Categorical([0.1, 0.5, 0.4]), Categorical([0.2, 0.2, 0.6]), Categorical([0.15, 0.15, 0.7])]
obs_dists = [Normal(-1, 1), Normal(1, 1), Normal(0, 1)]
observations = [0.9, 0.8, 0.7, 0.0, -0.025, -5.0, -2.0, -0.1, 0.0, 0.13, 0.45, 6, 0.2, 0.3, -1, -1]
model = HiddenMarkovModel(init_dist, trans_dists, obs_dists, len(observations))
observe = {'obs{}'.format(i): observations[i] for i in range(len(observations))}


def run(num_traces):
    return model.posterior_results(num_traces, inference_engine=pyprob.InferenceEngine.IMPORTANCE_SAMPLING,
                                   observe=observe)


if __name__ == '__main__':
    posterior = run(5000)
    print('posterior state probabilities\n', posterior.mean)
