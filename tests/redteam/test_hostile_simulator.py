"""Hostile simulators: shared-memory simulator processes that scribble on their control
header, report impossible counts, spin, hang, exit, never start, or outlive their host;
embedded simulators that draw from threads of their own.  The host must neither crash,
hang, nor leave a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import ppfast
from ppfast.errors import ModelError, SimulatorError
from ppfast.models.shm import ShmModel, SimulatorWarning

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="shared memory: Linux only")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_host(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """A host in a child interpreter: if it crashed, pytest would not."""
    return subprocess.run([sys.executable, "-c", "import ppfast\nfrom ppfast.models.shm import ShmModel\n"
                           "ppfast.set_progress(False)\n" + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout_s(40)
def test_rewritten_layout_fields_do_not_crash_the_host():
    done = run_host("""
        with ShmModel.example("gum", workers=1, env={"PPFAST_SHM_FAULT": "layout@0"}) as m:
            print(len(m.prior_batch(50, seed=1).failed))
    """)
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr[-2000:]


@pytest.mark.timeout_s(30)
def test_impossible_counts_are_an_error_not_a_crash():
    with ShmModel.example("gum", workers=1, env={"PPFAST_SHM_FAULT": "counts@3"}) as m:
        with pytest.raises(SimulatorError, match="impossible counts"):
            m.prior_batch(10, seed=1)


@pytest.mark.timeout_s(30)
def test_a_spinning_simulator_is_killed_after_the_timeout():
    with ShmModel.example("gum", workers=1, timeout=0.5, env={"PPFAST_SHM_FAULT": "spin@4"}) as m:
        spinner = m.pids[0]
        with pytest.warns(SimulatorWarning):
            batch = m.prior_batch(10, seed=1)
        assert batch.failed.tolist() == [4] and "hung" in batch.error(4)
        assert not alive(spinner)


@pytest.mark.timeout_s(30)
def test_a_spinning_simulator_dies_with_its_killed_host(tmp_path):
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent("""
        import os, threading, time
        from ppfast.models.shm import ShmModel
        m = ShmModel.example("gum", workers=1, timeout=None, env={"PPFAST_SHM_FAULT": "spin@0"})
        print(m.pids[0], flush=True)
        threading.Thread(target=m.prior_batch, args=(10,), daemon=True).start()
        time.sleep(60)
    """))
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(host.stdout.readline())
        time.sleep(0.3)
    finally:
        host.kill()
        host.wait()
    deadline = time.monotonic() + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the simulator outlived its killed host")


@pytest.mark.timeout_s(30)
def test_close_from_another_thread_ends_a_spinning_run():
    m = ShmModel.example("gum", workers=1, timeout=None, env={"PPFAST_SHM_FAULT": "spin@2"})
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(SimulatorError, m.prior_batch, 10)))
    t.start()
    time.sleep(0.3)
    m.close()
    t.join(10)
    assert not t.is_alive() and errors and "closed" in str(errors[0].value)


@pytest.mark.timeout_s(30)
def test_a_simulator_that_exits_mid_run_costs_one_trace():
    with ShmModel.example("gum", workers=1, env={"PPFAST_SHM_FAULT": "exit@7"}) as m:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SimulatorWarning)
            batch = m.prior_batch(20, seed=1)
        assert batch.failed.tolist() == [7] and "exited with status 3" in batch.error(7)


@pytest.mark.timeout_s(30)
def test_a_simulator_that_never_reports_ready_times_out():
    start = time.monotonic()
    with pytest.raises(SimulatorError, match="did not report ready"):
        ShmModel(["sh", "-c", "sleep 30", "sim"], workers=2, startup_timeout=0.5)
    assert time.monotonic() - start < 10


@pytest.mark.timeout_s(10)
def test_a_million_workers_is_refused_before_any_process_starts():
    with pytest.raises(ValueError, match="max_workers"):
        ShmModel.example("gum", workers=10**6)


@pytest.mark.timeout_s(20)
def test_draws_from_a_thread_pool_inside_forward_are_refused():
    from concurrent.futures import ThreadPoolExecutor

    from ppfast.distributions import Normal

    class Pooled(ppfast.Model):
        def forward(self):
            with ThreadPoolExecutor(2) as pool:
                return sum(pool.map(lambda _: ppfast.sample(Normal(0.0, 1.0)), range(4)))

    with pytest.raises(ModelError, match="not running the model"):
        Pooled().prior_batch(2, seed=1)
