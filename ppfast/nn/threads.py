"""torch's CPU threads during ppfast's network steps (training, validation, guided runs).

A training or proposal step of an inference network is a few hundred small operators.
Spread over several OpenMP threads, each operator ends in a barrier that waits for the
slowest thread; next to ppfast's own simulation threads (and anything else on the
machine) that wait dominates: on 2 cores, torch's default of 2 threads trained GUM at a
fraction of the rate of 1 thread (``bench/cpu_threads.py``).  So on CPU ppfast runs its
steps with one torch thread, and gives the user's thread count back afterwards.

A user's explicit choice wins: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in the
environment, a ``torch.set_num_threads`` count other than torch's default (the number of
usable cores), or ``torch_threads=`` given to ppfast.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["step_threads"]

# Threads per step that ppfast picks on CPU.
STEP_THREADS = 1


def _user_chose() -> bool:
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return True
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return torch.get_num_threads() != cores


@contextlib.contextmanager
def step_threads(device: torch.device, requested: int | None = None) -> Iterator[int]:
    """Runs the body with the torch thread count for ppfast's steps on ``device``
    (``requested``, else one on CPU unless the user chose a count), then restores it."""
    before = torch.get_num_threads()
    if requested is not None:
        requested = int(requested)
        if requested < 1:
            raise ValueError(f"torch_threads must be >= 1, got {requested}")
        want = requested
    elif device.type != "cpu" or _user_chose():
        want = before
    else:
        want = STEP_THREADS
    if want != before:
        torch.set_num_threads(want)
    try:
        yield want
    finally:
        if want != before:
            torch.set_num_threads(before)
