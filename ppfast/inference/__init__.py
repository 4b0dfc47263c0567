"""Inference engines beyond plain importance sampling (which lives in BaseModel)."""

from __future__ import annotations

from typing import Any

from ..errors import PpfastError

__all__ = ["run"]


def run(model: Any, engine: Any, num_traces: int, **kwargs: Any):
    from ..model import InferenceEngine

    if engine in (InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS, InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS):
        from . import mcmc

        return mcmc.run(model, engine, num_traces, **kwargs)
    if engine == InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK:
        from . import guided

        return guided.run(model, num_traces, **kwargs)
    raise PpfastError(f"unknown inference engine {engine!r}")
