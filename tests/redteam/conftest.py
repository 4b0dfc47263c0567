"""Bounds for the red-team probes: each test gets the ``redteam`` marker, a time limit
(``@pytest.mark.timeout_s(N)`` overrides the default) and a check that it left no child
process running."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
from pathlib import Path

import pytest

DEFAULT_TIMEOUT_S = 60


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(seconds): per-test time limit of a red-team probe")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.redteam)


def _children() -> set:
    """Live (not zombie) child processes of this process, from /proc."""
    found = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == me and state != "Z":
            found.add(int(entry))
    return found


class ProbeTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _bounded(request):
    marker = request.node.get_closest_marker("timeout_s")
    limit = int(marker.args[0]) if marker else DEFAULT_TIMEOUT_S
    before = _children()

    def expire(signum, frame):
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        raise ProbeTimeout(f"red-team probe ran past its {limit} s limit")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    # Children a probe started must be gone once it returns (a short grace for reaping).
    deadline = time.monotonic() + 5.0
    leaked = _children() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.05)
        leaked = _children() - before
    for pid in leaked:
        os.kill(pid, signal.SIGKILL)
    assert not leaked, f"probe left child processes running: {sorted(leaked)}"
