"""Inference compilation: an LSTM proposal network trained on simulated traces, fused
over addresses and trace types (DESIGN.md §4).

>>> import ppfast
>>> from ppfast.examples.python_models import GUM
>>> model = GUM()
>>> net = model.learn_inference_network(2000, batch_size=100, lstm_dim=32, observe_embedding_dim=16,
...                                      address_embedding_dim=8, progress=False, seed=0)
>>> post = model.posterior_results(500, ppfast.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK,
...                                observe={'obs0': 8, 'obs1': 9}, seed=1, progress=False)
>>> len(post)
500

Requires torch (``pip install ppfast[torch]``).
"""

from __future__ import annotations

from .._optional import require

require("torch", "inference compilation (ppfast.nn)")

from .embeddings import ObservationEmbedding, ObserveEmbedding
from .families import FAMILY_NAMES
from .network import DEFAULTS, InferenceNetwork
from .train import TrainingError, learn_inference_network, load_inference_network, save_inference_network

__all__ = [
    "DEFAULTS",
    "FAMILY_NAMES",
    "InferenceNetwork",
    "ObservationEmbedding",
    "ObserveEmbedding",
    "TrainingError",
    "learn_inference_network",
    "load_inference_network",
    "save_inference_network",
]
