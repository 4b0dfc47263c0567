"""Embedded C++ simulators: a shared library loaded into this process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from .. import _core
from ..model import BaseModel
from ..runtime import check_threads
from ..trace import TraceBatch

__all__ = ["NativeModel"]


class NativeModel(BaseModel):
    """A simulator library built with ``PPFAST_MODEL(name, fn)`` and linked to
    ``ppfast::ppfast``; executions run on ``threads`` C++ worker threads without the GIL.

    >>> import ppfast.examples
    >>> m = ppfast.examples.load("gum")
    >>> len(m.prior_batch(1000, seed=0, progress=False))
    1000
    """

    chunk_size = 1 << 20

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None, name: Optional[str] = None):
        """``path``: the simulator library; ``threads``: worker threads, an int in
        [1, 4096] (default: one per core); ``name``: default the library's model name."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"simulator library not found: {path}")
        self.path = path
        threads = check_threads(threads)
        self._native = _core.NativeModel(str(path), threads or os.cpu_count() or 1)
        super().__init__(name or self._native.name)

    @property
    def threads(self) -> int:
        return self._native.threads

    def _simulate(self, seed: int, first: int, count: int, observations: Dict[int, np.ndarray],
                  required: bool, skip_errors: bool = False) -> TraceBatch:
        try:
            return TraceBatch(self._native.run(seed, first, count, _core.Observations(observations, required)))
        except BaseException as e:  # Ctrl-C: the traces finished so far come with it
            if getattr(e, "partial", None) is not None:
                e.partial = TraceBatch(e.partial)  # type: ignore[attr-defined]
            raise

    def run_unrecorded(self, num_traces: int) -> None:
        """Runs the simulator with recording off (the floor recording is measured against)."""
        self._native.run_unrecorded(int(num_traces))

    def __repr__(self) -> str:
        return f"NativeModel({self.name!r}, path={str(self.path)!r}, threads={self.threads})"
