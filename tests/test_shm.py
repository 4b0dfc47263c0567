"""Shared-memory mode: simulator executables in their own processes, trace batches as
numpy views on POSIX shared memory."""

import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import EXTERNAL_GUM, GUM_OBS, assert_gum_posterior, build_external

import ppfast
import ppfast.examples
from ppfast import _core
from ppfast._paths import EXAMPLES_BIN
from ppfast.errors import MissingObservationError, SimulatorError
from ppfast.models.shm import ShmModel, SimulatorWarning

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="futex transport: Linux only")

RECORD_COLUMNS = ("trace", "address", "instance", "name", "kind", "flags", "dist", "value", "log_prob",
                  "value_len", "param_offset", "param_len")
TRACE_COLUMNS = ("index", "begin", "end", "log_prior", "log_likelihood", "log_weight", "result", "trace_type",
                 "status")


def shm_names(pid=None):
    prefix = f"ppfast-{pid or os.getpid()}-"
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def assert_same_traces(a, b, skip=()):
    """Column for column equality, except traces at positions `skip` (and the offsets and
    message ids that only mean something where they are used)."""
    keep = np.setdiff1d(np.arange(len(a)), skip)
    assert len(a) == len(b)
    for k in TRACE_COLUMNS:
        if not (len(skip) and k in ("begin", "end")):  # records of skipped traces shift the rest
            np.testing.assert_array_equal(a.traces[k][keep], b.traces[k][keep], err_msg=k)
    if len(skip):
        in_a, in_b = np.isin(a.records["trace"], keep), np.isin(b.records["trace"], keep)
        for k in RECORD_COLUMNS:
            if k != "param_offset":
                np.testing.assert_array_equal(a.records[k][in_a], b.records[k][in_b], err_msg=k)
        return
    for k in RECORD_COLUMNS:
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    tensor = a.records["value_len"] > 1
    np.testing.assert_array_equal(a.records["value_offset"][tensor], b.records["value_offset"][tensor])
    np.testing.assert_array_equal(a.arenas["values"], b.arenas["values"])
    np.testing.assert_array_equal(a.arenas["params"], b.arenas["params"])


@pytest.fixture(scope="module")
def gum_shm():
    with ppfast.examples.load("gum", mode="shm", workers=2) as m:
        yield m


@pytest.mark.parametrize("name", ["gum", "branching"])
def test_shm_equals_embedded_trace_for_trace(name):
    # Host-side ids differ from the simulator processes' own: the batch must use the host's.
    for i in range(5):
        _core.intern(f"test_shm/unrelated/{name}/{i}")
    embedded = ppfast.examples.load(name, threads=2)
    with ppfast.examples.load(name, mode="shm", workers=2) as shm:
        for n, seed in ((1, 4), (3000, 7)):
            assert_same_traces(shm.prior_batch(n, seed=seed), embedded.prior_batch(n, seed=seed))
        obs = GUM_OBS if name == "gum" else {"obs": 6}
        a = shm.posterior_batch(2000, observe=obs, seed=11)
        b = embedded.posterior_batch(2000, observe=obs, seed=11)
        assert_same_traces(a, b)
        first = a.trace(0).variables[0]
        assert first.address == ("mu" if name == "gum" else "r") and first.name == first.address


def test_tensor_observations_and_arenas_match_embedded():
    embedded = ppfast.examples.load("tau_decay", threads=1)
    grid = embedded.prior_batch(1, seed=5).trace(0).named_variables["calorimeter"].value
    assert grid.size > 1000  # a tensor: its values live in the value arena
    obs = {"calorimeter": np.array(grid)}
    with ppfast.examples.load("tau_decay", mode="shm", workers=2) as shm:
        a = shm.posterior_batch(600, observe=obs, seed=2)
        b = embedded.posterior_batch(600, observe=obs, seed=2)
    assert_same_traces(a, b)
    assert len(set(a.traces["trace_type"].tolist())) > 1  # channels give different trace types


def test_gum_posterior_over_shm(gum_shm):
    post = gum_shm.posterior_results(50000, observe=GUM_OBS, seed=21)
    assert_gum_posterior(post, "shm")


def test_columns_are_views_on_the_shared_arena_that_outlive_the_batch():
    m = ppfast.examples.load("gum", mode="shm", workers=2)
    base, mapped, _ = m._host.arena
    batch = m.prior_batch(2000, seed=1)
    for chunk in batch._chunks:  # the pieces the processes placed
        for group in chunk.columns().values():
            for k, v in group.items():
                assert base <= v.ctypes.data <= base + mapped, k  # inside the mapped segment: not a copy
                assert not v.flags.writeable
    piece = batch._chunks[-1]
    values = piece.columns()["records"]["value"]
    again = piece.columns()["records"]["value"]
    assert np.shares_memory(values, again)
    expected = values.copy()
    address = values.ctypes.data
    del batch, piece, again
    gc.collect()
    # New batches must not reuse the block a live view points into.
    others = [m.prior_batch(2000, seed=2) for _ in range(3)]
    assert all(not (start <= address < start + size) for o in others for start, size in (c.block for c in o._chunks))
    m.close()
    del others
    gc.collect()
    np.testing.assert_array_equal(values, expected)  # after the model and the batch are gone
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert torch.from_numpy(values).data_ptr() == address


def test_a_run_is_its_pieces_without_a_gathered_copy():
    # Each process places its slice in pieces; the batch is those pieces as they lie in
    # shared memory (one chunk each, in trace order), never gathered into one more block,
    # and it equals the embedded batch bit for bit.
    n = 200_000
    with ppfast.examples.load("gum", mode="shm", workers=2) as m:
        batch = m.prior_batch(n, seed=6)
        base, _, file_size = m._host.arena
        blocks = sorted(c.block for c in batch._chunks)
        assert len(blocks) > 2
        assert all(a + size <= b for (a, size), (b, _) in zip(blocks, blocks[1:]))  # distinct blocks
        for chunk in batch._chunks:
            start, size = chunk.block
            for group in chunk.columns().values():
                for v in group.values():
                    assert start <= v.ctypes.data and v.ctypes.data + v.nbytes <= start + size
        # The file holds the pieces (and their run requests), not a second copy of the batch.
        assert file_size < 1.1 * sum(size for _, size in blocks) + (1 << 20)
        assert [int(c.columns()["traces"]["index"][0]) for c in batch._chunks] == \
            np.cumsum([0] + [c.num_traces for c in batch._chunks[:-1]]).tolist()
        embedded = ppfast.examples.load("gum", threads=2).prior_batch(n, seed=6)
        for group in ("records", "traces", "arenas"):
            a, b = getattr(batch, group), getattr(embedded, group)
            assert sorted(a) == sorted(b)
            for k in a:
                assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), f"{group}.{k}"


def test_blocks_are_pooled_and_reused(gum_shm):
    # Runs of one size reuse the arena's pages: the file stops growing after the first,
    # and every piece lies in it.  (Where exactly depends on how many pieces the
    # processes made, which depends on their speed.)
    sizes = set()
    base = gum_shm._host.arena[0]
    for _ in range(6):
        batch = gum_shm.prior_batch(5000, seed=3)
        size = gum_shm._host.arena[2]
        assert all(base <= start and start + n <= base + size for start, n in (c.block for c in batch._chunks))
        del batch
        sizes.add(size)
    assert len(sizes) == 1


def test_large_runs_of_a_steady_size_keep_their_pages(gum_shm):
    # A run is many pieces, kept as the batch's chunks.  The arena keeps what the
    # recent runs reached, so the next run of that size faults in no new pages: shrunk
    # after every run (to the largest block), the file was faulted in again by every
    # process each time.  (Pieces fall a little differently from run to run, so a few
    # pages past this run's end may go.)
    for _ in range(3):
        batch = gum_shm.prior_batch(1_000_000, seed=3)
        alive = gum_shm._host.arena[2]
        del batch
        assert gum_shm._host.arena[2] > 0.95 * alive


def test_empty_and_tiny_runs(gum_shm):
    assert len(gum_shm.prior_batch(0, seed=1)) == 0
    one = gum_shm.prior_batch(1, seed=9)
    assert len(one) == 1 and one.num_records == 3
    assert one.traces["index"][0] == 0


def test_crash_mid_run_loses_only_that_trace():
    embedded = ppfast.examples.load("gum").prior_batch(1000, seed=3)
    with ppfast.examples.load("gum", mode="shm", workers=2, env={"PPFAST_SHM_FAULT": "segv@57"}) as m:
        before = m.pids
        with pytest.warns(SimulatorWarning, match="trace 57"):
            batch = m.prior_batch(1000, seed=3)  # on_error='raise': a crash still does not raise
        assert batch.failed.tolist() == [57]
        msg = batch.error(57)
        assert f"simulator process {before[0]} died with signal {int(signal.SIGSEGV)}" in msg
        assert msg.endswith("during trace 57")
        assert batch.log_weights[57] == -np.inf and np.isnan(batch.results[57])
        assert_same_traces(batch, embedded, skip=[57])
        assert m.restarts == 1 and m.pids[0] != before[0] and m.pids[1] == before[1]
        assert not alive(before[0])
        # The run is over; the next one works (its traces do not reach the fault).
        assert len(m.simulate(1000, seed=3, first=1000).failed) == 0
    assert shm_names() == []


def test_exit_and_repeated_crashes_in_one_run():
    with ShmModel.example("branching", workers=1, env={"PPFAST_SHM_FAULT": "exit@5"}) as m:
        with pytest.warns(SimulatorWarning):
            batch = m.simulate(300, seed=1, first=0)
        assert batch.failed.tolist() == [5]
        assert "exited with status 3 during trace 5" in batch.error(5)
    with ShmModel.example("gum", workers=1, env={"PPFAST_SHM_FAULT": "kill@0"}, max_restarts=0) as m:
        with pytest.raises(SimulatorError, match="max_restarts"):
            m.prior_batch(10, seed=1)
        assert len(m.simulate(10, seed=1, first=1).failed) == 0  # processes come back for the next run


def test_a_restart_runs_again_only_the_piece_in_flight(tmp_path):
    # One process crashes at 90% of its slice.  The pieces it placed before survive it:
    # the restarted process goes on from the piece that failed, and the batch is the one
    # a run without the crash gives (trace i always uses RNG stream i).
    n, crash = 100_000, 90_000
    log = tmp_path / "started"
    env = {"PPFAST_SHM_FAULT": f"segv@{crash}", "PPFAST_SHM_TRACE_LOG": str(log)}
    with ShmModel.example("gum", workers=1, env=env) as m:
        with pytest.warns(SimulatorWarning, match=f"trace {crash}"):
            batch = m.prior_batch(n, seed=3)
        assert m.restarts == 1
    assert batch.failed.tolist() == [crash]
    assert_same_traces(batch, ppfast.examples.load("gum").prior_batch(n, seed=3), skip=[crash])
    started = np.bincount(np.loadtxt(log, dtype=np.int64), minlength=n)
    assert started.min() == 1 and started.max() <= 2
    # A piece is 1/16 of the slice, or 5 ms of work on a fast machine: far less than the
    # 90,000 traces a restart from the start of the slice runs again.
    assert np.count_nonzero(started == 2) < n // 8
    assert started[crash] == 1  # the lost trace is not tried again


def test_a_run_past_max_restarts_keeps_its_finished_traces():
    n = 100_000
    with ShmModel.example("gum", workers=1, env={"PPFAST_SHM_FAULT": "kill@60000"}, max_restarts=0) as m:
        with pytest.raises(SimulatorError, match="max_restarts") as info:
            m.prior_batch(n, seed=4)
    partial = info.value.partial
    assert partial is not None and 0 < len(partial) <= 60_000 and len(partial.failed) == 0
    np.testing.assert_array_equal(partial.traces["index"], np.arange(len(partial)))
    embedded = ppfast.examples.load("gum").prior_batch(len(partial), seed=4)
    assert_same_traces(partial, embedded)


def test_ctrl_c_keeps_the_finished_traces_of_a_shm_run():
    import _thread

    with ShmModel.example("gum", workers=2, timeout=None, env={"PPFAST_SHM_FAULT": "hang@150000"}) as m:
        m.prior_batch(1000, seed=1)  # started
        timer = threading.Timer(1.0, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt) as info:
            m.prior_batch(200_000, seed=6)  # the second process parks at trace 150000
        timer.join()
        partial = info.value.partial
        assert partial is not None and len(partial) > 0 and len(partial.failed) == 0
        index = partial.traces["index"]
        assert len(np.unique(index)) == len(index) and 150_000 not in index
        embedded = ppfast.examples.load("gum").prior_batch(200_000, seed=6)
        for k in ("result", "log_prior", "trace_type"):
            np.testing.assert_array_equal(partial.traces[k], embedded.traces[k][index], err_msg=k)
        assert len(m.simulate(1000, seed=1, first=2000).failed) == 0  # and the model recovers
    assert shm_names() == []


def test_hang_is_detected_killed_and_reported():
    with ShmModel.example("gum", workers=2, timeout=0.5, env={"PPFAST_SHM_FAULT": "hang@700"}) as m:
        hung = m.pids[1]
        start = time.perf_counter()
        with pytest.warns(SimulatorWarning):
            post = m.posterior_results(1000, observe=GUM_OBS, seed=5)
        assert 0.5 < time.perf_counter() - start < 10
        batch = post.batch
        assert batch.failed.tolist() == [700]
        assert batch.error(700) == f"simulator process {hung} hung (no progress for 0.5 s) during trace 700"
        assert not alive(hung)


def test_killing_a_process_from_outside_mid_run():
    # hang@500 parks the second process at trace 500 (no timeout); then we kill it.
    m = ShmModel.example("gum", workers=2, timeout=None, env={"PPFAST_SHM_FAULT": "hang@500"})
    victim = m.pids[1]
    out = {}

    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out["batch"] = m.prior_batch(1000, seed=8)
        out["warnings"] = caught

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()  # waiting on the hung process
    os.kill(victim, signal.SIGKILL)
    t.join(10)
    assert not t.is_alive()
    batch = out["batch"]
    assert batch.failed.tolist() == [500]
    assert f"simulator process {victim} died with signal 9" in batch.error(500)
    assert any(issubclass(w.category, SimulatorWarning) for w in out["warnings"])
    assert_same_traces(batch, ppfast.examples.load("gum").prior_batch(1000, seed=8), skip=[500])
    m.close()
    assert shm_names() == []


def test_model_errors_from_the_simulator_are_typed(gum_shm):
    with pytest.raises(MissingObservationError, match="obs1"):
        gum_shm.posterior_batch(100, observe={"obs0": 8.0}, seed=1)
    batch = gum_shm.posterior_batch(100, observe={"obs0": 8.0}, seed=1, on_error="skip")
    assert len(batch.failed) == 100 and "has no value" in batch.error(0)
    assert len(gum_shm.prior_batch(100, seed=1).failed) == 0  # the model still works
    assert shm_names() == []


def test_close_stops_the_processes_and_later_runs_fail():
    m = ppfast.examples.load("hundred", mode="shm", workers=2)
    pids = m.pids
    batch = m.prior_batch(10, seed=1)
    m.close()
    assert m.closed and not any(alive(p) for p in pids)
    assert len(batch.records["value"]) == 1010
    with pytest.raises(SimulatorError, match="closed"):
        m.prior_batch(10, seed=1)
    m.close()  # twice is fine


def test_collected_model_stops_its_processes():
    m = ppfast.examples.load("gum", mode="shm", workers=1)
    pid = m.pids[0]
    del m
    gc.collect()
    assert not alive(pid)


def test_bad_commands_raise_clear_errors():
    with pytest.raises(SimulatorError, match="cannot start simulator '/nonexistent/sim'"):
        ShmModel(["/nonexistent/sim"], workers=1)
    with pytest.raises(SimulatorError, match="exited with status 0 before it was ready"):
        ShmModel(["/bin/true"], workers=1)
    with pytest.raises(ValueError, match="no example simulator executable"):
        ShmModel.example("no_such_model")
    with pytest.raises(ValueError, match="workers"):
        ShmModel.example("gum", workers=0)
    assert shm_names() == []


def test_ctrl_c_stops_the_run_and_the_model_recovers():
    import _thread

    with ShmModel.example("gum", workers=2, timeout=None, env={"PPFAST_SHM_FAULT": "hang@100"}) as m:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            m.prior_batch(1000, seed=1)
        timer.join()
        assert len(m.simulate(1000, seed=1, first=2000).failed) == 0
    assert shm_names() == []


def test_killed_host_leaves_nothing_behind(tmp_path):
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time, ppfast.examples
        m = ppfast.examples.load("gum", mode="shm", workers=2)
        m.prior_batch(1000, seed=1)
        print(" ".join(map(str, [os.getpid()] + m.pids)), flush=True)
        time.sleep(60)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        host, *workers = map(int, proc.stdout.readline().split())
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.05)
    assert not any(alive(p) for p in workers)  # they notice their host is gone
    assert shm_names(host) == []


def test_standalone_executable_draws_from_the_prior():
    exe = EXAMPLES_BIN / "gum"
    cmd = [str(exe), "-n", "5", "--seed", "3"]
    out1 = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    out2 = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    lines = [line for line in out1.splitlines() if line.startswith("trace ")]
    assert len(lines) == 5 and out1 == out2
    embedded = ppfast.examples.load("gum").prior_batch(5, seed=3)
    first = float(lines[0].split()[3])
    assert first == pytest.approx(embedded.results[0], rel=1e-9)
    bad = subprocess.run([str(exe), "--bogus"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_to_batch_copies_into_an_ordinary_batch(gum_shm):
    batch = gum_shm.prior_batch(100, seed=1)
    copies = [c.to_batch() for c in batch._chunks]
    assert all(isinstance(c, _core.TraceBatch) for c in copies)
    copy = ppfast.TraceBatch(copies)
    assert_same_traces(copy, batch)
    piece = batch._chunks[0].columns()["records"]["value"]
    assert not np.shares_memory(copies[0].columns()["records"]["value"], piece)
    both = ppfast.TraceBatch.concat([copy, batch])
    assert len(both) == 200 and all(isinstance(c, _core.TraceBatch) for c in both._chunks)
    assert_same_traces(ppfast.TraceBatch(both._native), ppfast.TraceBatch.concat([copy, copy]))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_host_and_simulator_under_sanitizers(tmp_path):
    """tests/cpp/test_shm.cpp and a GUM simulator, both under AddressSanitizer + UBSan:
    no use-after-free of a block that outlives its batch and host, no overflow, no UB,
    through a crash and restart."""
    root = Path(__file__).resolve().parents[1]
    names = ("address_table", "api", "distributions", "guided", "mcmc", "recorder", "runner", "stack_address",
             "trace_batch")
    core = [root / "csrc" / "core" / f"{f}.cpp" for f in names]
    shm = root / "csrc" / "transport" / "shm"
    flags = ["g++", "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined", f"-I{root / 'csrc'}", f"-I{root / 'csrc' / 'include'}",
             "-pthread"]
    sources = core + [shm / "server.cpp", shm / "main.cpp", root / "examples" / "cpp" / "gum.cpp",
                      shm / "host.cpp", root / "tests" / "cpp" / "test_shm.cpp"]
    objects = {s: tmp_path / f"{i}_{s.stem}.o" for i, s in enumerate(sources)}
    jobs = [subprocess.Popen(flags + ["-c", str(s), "-o", str(o)], stderr=subprocess.PIPE, text=True)
            for s, o in objects.items()]
    for job in jobs:
        assert job.wait() == 0, job.stderr.read()
    sim, test = tmp_path / "gum", tmp_path / "test_shm"
    link = [objects[s] for s in core]
    subprocess.run(flags + [*map(str, link + [objects[s] for s in sources[len(core):len(core) + 3]]), "-o", str(sim)], check=True)
    subprocess.run(flags + [*map(str, link + [objects[s] for s in sources[len(core) + 3:]]), "-o", str(test), "-lrt"],
                   check=True)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([str(test), str(sim)], capture_output=True, text=True, timeout=300, env=env,
                         check=False)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout[-3000:] + run.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in run.stderr and "runtime error" not in run.stderr


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_out_of_tree_simulator_executable_with_ppfast_main(tmp_path):
    """find_package(ppfast) + ppfast::main: an external simulator becomes an executable
    that serves shared-memory mode (and runs standalone)."""
    build = build_external(tmp_path, """
        add_executable(mysim sim.cpp)
        target_link_libraries(mysim PRIVATE ppfast::main ppfast::ppfast)
    """, EXTERNAL_GUM)
    exe = build / "mysim"
    assert "trace 0: result" in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    with ShmModel([exe], workers=2) as m:
        assert m.name == "external_gum"
        post = m.posterior_results(50000, observe=GUM_OBS, seed=3)
        assert_gum_posterior(post, "external shm simulator")
        assert m.prior(1, seed=0).values[0].variables[0].address == "external/mu"
    # Where each address lives in the simulator's source travels with it.
    assert "sim.cpp:" in _core.address_location(_core.intern("external/mu"))


def run_host_script(tmp_path, body, timeout=60):
    """Runs a host in a child Python process (a crash there must not take pytest down)."""
    script = tmp_path / "host.py"
    script.write_text("import os, sys, time, warnings, ppfast, ppfast.examples\n"
                      "from ppfast.models.shm import ShmModel\nppfast.set_progress(False)\n"
                      + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout)


def test_host_ignores_layout_fields_a_simulator_rewrites(tmp_path):
    # layout@2 rewrites map_offset, names_offset and the capacities in the simulator's
    # control header before it reports its address names: the host must use its own layout.
    done = run_host_script(tmp_path, """
        with ShmModel.example("gum", workers=1, env={"PPFAST_SHM_FAULT": "layout@2"}) as m:
            batch = m.prior_batch(10, seed=1)
            print(len(batch), len(batch.failed), batch.trace(0).variables[0].address)
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["10", "0", "mu"]


def test_impossible_counts_from_a_simulator_raise(tmp_path):
    with ShmModel.example("gum", workers=1, env={"PPFAST_SHM_FAULT": "counts@0"}) as m:
        with pytest.raises(SimulatorError, match="impossible counts"):
            m.prior_batch(10, seed=1)


def test_workers_are_bounded_unless_asked_for():
    from ppfast.models.shm import default_max_workers

    with pytest.raises(ValueError, match="max_workers"):
        ShmModel.example("gum", workers=10**6)
    assert shm_names() == []
    with pytest.raises(ValueError, match="max_workers=3"):
        ShmModel.example("gum", workers=3, max_workers=2)
    assert default_max_workers() >= 16
    with ShmModel.example("gum", workers=3, max_workers=3) as m:
        assert m.workers == 3


def test_close_from_another_thread_stops_the_run():
    # The process spins inside trace 300 (no timeout): only close() can end the run.
    before = set(child_pids())
    m = ShmModel.example("gum", workers=1, timeout=None, env={"PPFAST_SHM_FAULT": "spin@300"})
    pids = m.pids
    out = {}

    def run():
        try:
            m.prior_batch(1000, seed=1)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    m.close()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(out.get("error"), SimulatorError) and "closed" in str(out["error"])
    # The pieces placed before the spin are kept.
    partial = out["error"].partial
    assert partial is not None and 0 < len(partial) < 300 and len(partial.failed) == 0
    np.testing.assert_array_equal(partial.traces["index"], np.arange(len(partial)))
    assert m.restarts == 0 and not any(alive(p) for p in pids)
    assert not any(alive(p) for p in set(child_pids()) - before)  # nothing restarted
    assert shm_names() == []


def child_pids():
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == me:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def test_killed_host_stops_a_spinning_simulator(tmp_path):
    # The processes spin inside a trace (never back in the idle loop) when the host dies.
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent("""
        import os, threading, time, ppfast.examples
        from ppfast.models.shm import ShmModel
        m = ShmModel.example("gum", workers=2, timeout=None, env={"PPFAST_SHM_FAULT": "spin@10"})
        print(" ".join(map(str, [os.getpid()] + m.pids)), flush=True)
        threading.Thread(target=m.prior_batch, args=(1000,), kwargs={"seed": 1}, daemon=True).start()
        time.sleep(60)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        host, *workers = map(int, proc.stdout.readline().split())
        time.sleep(0.5)  # both are spinning now
        assert all(alive(p) for p in workers)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.05)
    leftover = [p for p in workers if alive(p)]
    for p in leftover:
        os.kill(p, signal.SIGKILL)
    assert not leftover
