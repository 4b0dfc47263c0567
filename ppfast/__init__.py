"""ppfast: fast probabilistic programming for existing stochastic simulators.

Every random draw of a simulator is an addressed random variable of an execution trace,
recorded by a C++ core; observations condition it; inference runs on whole trace
batches.  The API follows PyProb's, so porting a model means changing imports.
"""

from . import distributions, errors
from .model import BaseModel, InferenceEngine, Model, set_progress, set_random_seed
from .models.native import NativeModel
from .models.remote import RemoteModel
from .models.shm import ShmModel
from .numba import jit  # numba-compiled models; numba loads on first use
from .posterior import Empirical
from .primitives import factor, observe, sample, tag
from .trace import Trace, TraceBatch

__version__ = "0.1.0"

__all__ = [
    "BaseModel",
    "Empirical",
    "InferenceEngine",
    "Model",
    "NativeModel",
    "RemoteModel",
    "ShmModel",
    "Trace",
    "TraceBatch",
    "distributions",
    "errors",
    "factor",
    "jit",
    "observe",
    "sample",
    "set_progress",
    "set_random_seed",
    "tag",
]
