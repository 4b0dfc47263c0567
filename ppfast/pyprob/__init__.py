"""PyProb's API on ppfast: ``import ppfast.pyprob as pyprob`` runs PyProb programs as
written.

What changes against ``import pyprob`` (see the README's porting section for the whole
list): draws, log-densities and Empirical statistics are float64 torch tensors
(PyProb: float32); sampling, densities and inference run in ppfast's C++ core; PyProb
options that have no meaning here raise NotImplementedError naming them, and options
that only tune PyProb's own machinery warn that they have no effect.

>>> import ppfast.pyprob as pyprob
>>> from ppfast.pyprob.distributions import Normal
>>> class GUM(pyprob.Model):
...     def forward(self):
...         mu = pyprob.sample(Normal(1, 5 ** 0.5))
...         likelihood = Normal(mu, 2 ** 0.5)
...         pyprob.observe(likelihood, name='obs0')
...         pyprob.observe(likelihood, name='obs1')
...         return mu
>>> post = GUM().posterior_results(20000, observe={'obs0': 8, 'obs1': 9})
>>> bool(abs(post.mean - 7.25) < 0.3)
True
"""

from __future__ import annotations

import enum
import random
import time
from typing import Any, Optional

import numpy as np

from .. import model as _native_model
from ..model import InferenceEngine
from ..runtime import set_progress
from . import diagnostics, distributions
from ._model import Model, RemoteModel
from ._state import factor, observe, sample, tag

__version__ = "1.5.0"  # the PyProb API this namespace follows

__all__ = [
    "InferenceEngine",
    "InferenceNetwork",
    "LearningRateScheduler",
    "Model",
    "ObserveEmbedding",
    "Optimizer",
    "PriorInflation",
    "RemoteModel",
    "TraceMode",
    "diagnostics",
    "distributions",
    "factor",
    "observe",
    "sample",
    "seed",
    "set_device",
    "set_random_seed",
    "set_verbosity",
    "tag",
]


class TraceMode(enum.Enum):
    PRIOR = 0
    POSTERIOR = 1
    PRIOR_FOR_INFERENCE_NETWORK = 2


class PriorInflation(enum.Enum):
    DISABLED = 0
    ENABLED = 1


class InferenceNetwork(enum.Enum):
    FEEDFORWARD = 0
    LSTM = 1


class Optimizer(enum.Enum):
    ADAM = 0
    SGD = 1
    ADAM_LARC = 2
    SGD_LARC = 3


class LearningRateScheduler(enum.Enum):
    NONE = 0
    POLY1 = 1
    POLY2 = 2


class ObserveEmbedding(enum.Enum):
    FEEDFORWARD = 0
    CNN2D5C = 1
    CNN3D4C = 2


def seed(seed: Optional[int] = None) -> None:
    """Seeds Python's ``random``, numpy, torch and ppfast (runs without ``seed=`` and
    standalone draws); None picks a seed from the clock, as PyProb does."""
    if seed is None:
        seed = int(time.time() * 1e6) % (2**32)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # torch is optional for ppfast; draws fall back to numpy then
        pass
    _native_model.set_random_seed(seed)


set_random_seed = seed


def set_verbosity(verbosity: int = 2) -> None:
    """PyProb's verbosity: 2 or more shows progress bars, less hides them."""
    set_progress(int(verbosity) >= 2)


class _Device:
    device: Any = None


def set_device(device: Any = None) -> None:
    """The torch device inference networks train on (default: CPU)."""
    _Device.device = device
