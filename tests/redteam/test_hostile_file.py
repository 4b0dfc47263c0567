"""Hostile files: crafted result files and dataset folders must be refused with a clear
error, never run code, read outside their folder, or crash the host."""

from __future__ import annotations

import time

import pytest

from redteam.conftest import ProbeTimeout


@pytest.mark.timeout_s(2)
def test_time_limit_stops_a_hanging_probe():
    """The runner's own bound: a probe that hangs is stopped by its time limit."""
    start = time.monotonic()
    with pytest.raises(ProbeTimeout):
        time.sleep(10)
    assert time.monotonic() - start < 5
