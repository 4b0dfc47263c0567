"""Pythia 8.244, unchanged, as a ppfast simulator: every flat() it asks for is captured at
its random-number generator with a call-stack address (examples pythia_z, pythia_tau).
CI builds Pythia with scripts/build_pythia.sh (scripts/setup.sh runs it)."""

import ctypes
import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import ppfast
import ppfast.diagnostics
import ppfast.examples
from ppfast.trace import FLAG_CONTROL, RecordKind, address_name

ROOT = Path(__file__).resolve().parents[1]
GLUE = ROOT / "examples" / "cpp" / "pythia" / "ppfast_rndm.hpp"


def pythia_prefix() -> Path:
    sha = (ROOT / "cmake" / "pythia8" / "sdist.sha256").read_text().split()[0]
    cache = os.environ.get("PPFAST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ppfast")
    return Path(cache) / "pythia8244" / sha[:16]


@pytest.fixture(scope="module")
def z_lib():
    """pythia_z's library (the same module the embedded model loads) with its plain entry points."""
    lib = ctypes.CDLL(str(ppfast.examples.library_path("pythia_z")))
    u64, dp = ctypes.c_uint64, ctypes.POINTER(ctypes.c_double)
    lib.ppfast_pythia_plain_event.argtypes = [u64, u64, dp, u64, ctypes.POINTER(u64)]
    lib.ppfast_pythia_plain_event.restype = u64
    lib.ppfast_pythia_replay_event.argtypes = [dp, u64, dp, u64, ctypes.POINTER(u64)]
    lib.ppfast_pythia_replay_event.restype = u64
    return lib


def plain(lib, seed, trace):
    """flat() calls and particle list of an uninstrumented event on the trace's stream."""
    buf, n = (ctypes.c_double * 20000)(), ctypes.c_uint64()
    calls = lib.ppfast_pythia_plain_event(seed, trace, buf, 20000, ctypes.byref(n))
    return calls, np.array(buf[:n.value])


def replay(lib, values):
    values = np.ascontiguousarray(values, dtype=np.float64)
    buf, n = (ctypes.c_double * 20000)(), ctypes.c_uint64()
    calls = lib.ppfast_pythia_replay_event(values.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), len(values),
                                           buf, 20000, ctypes.byref(n))
    return calls, np.array(buf[:n.value])


def draws_and_particles(batch, i):
    """Values of trace i's controlled draws (in order) and its tagged particle list."""
    tr = batch.trace(i)
    draws = [v.value for v in tr.variables if v.kind == RecordKind.SAMPLE and v.control]
    particles = [v.value for v in tr.variables if v.kind == RecordKind.TAG and v.name == "particles"]
    assert len(particles) == 1
    return np.array(draws), np.asarray(particles[0])


def test_pythia_sources_are_the_sdists_unchanged():
    prefix = pythia_prefix()
    tarball = prefix / "numpythia-1.3.1.tar.gz"
    pinned = (ROOT / "cmake" / "pythia8" / "sdist.sha256").read_text().split()[0]
    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == pinned
    root = "numpythia-1.3.1/numpythia/src/extern/pythia8244/"
    # What was compiled (src/), and the installed headers and data (include/, xmldoc).
    installed = {"src/": prefix / "src" / "src", "include/": prefix / "include",
                 "share/Pythia8/xmldoc/": prefix / "share" / "Pythia8" / "xmldoc"}
    checked = total = 0
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(root):
                continue
            total += 1
            rel = member.name[len(root):]
            for part, where in installed.items():
                if rel.startswith(part):
                    expected = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
                    path = where / rel[len(part):]
                    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected, f"{path} differs from the sdist"
                    checked += 1
    assert checked == total > 300  # every file of Pythia's sources, headers and data
    # The glue: one RndmEngine subclass.
    assert len(GLUE.read_text().splitlines()) <= 50


def test_every_flat_call_is_recorded_and_recording_changes_nothing(z_lib):
    model = ppfast.examples.load("pythia_z")
    seed = 7
    batch = model.prior_batch(12, seed=seed)
    assert not batch.failed.any()
    for i in range(len(batch)):
        draws, particles = draws_and_particles(batch, i)
        calls, plain_particles = plain(z_lib, seed, int(batch.traces["index"][i]))
        assert len(draws) == calls > 300
        np.testing.assert_array_equal(particles, plain_particles)  # the whole event, bit for bit
        assert 20 < len(particles) / 6 < 400 and batch.traces["result"][i] == len(particles) / 6


def test_replaying_a_trace_reproduces_the_event(z_lib):
    model = ppfast.examples.load("pythia_z")
    batch = model.prior_batch(6, seed=11)
    for i in range(len(batch)):
        draws, particles = draws_and_particles(batch, i)
        calls, replayed = replay(z_lib, draws)
        assert calls == len(draws)
        np.testing.assert_array_equal(replayed, particles)


def test_mh_reexecutions_are_events_of_their_values(z_lib):
    """Every state of a random-walk MH chain over Pythia's draws is the event its draw values
    make: re-execution under the replay policy is exact, and Pythia keeps no hidden state."""
    model = ppfast.examples.load("pythia_z")
    post = model.posterior(12, inference_engine=ppfast.InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS,
                           seed=5, burn_in=0, num_chains=1)
    batch = post.batch
    assert batch.mcmc.accepted[0] > 0  # the chain moved
    distinct = set()
    for i in range(len(batch)):
        draws, particles = draws_and_particles(batch, i)
        calls, replayed = replay(z_lib, draws)
        assert calls == len(draws)
        np.testing.assert_array_equal(replayed, particles)
        distinct.add(particles.tobytes())
    assert len(distinct) > 1


def test_addresses_are_pythias_functions():
    model = ppfast.examples.load("pythia_z")
    post = model.prior_results(5, seed=3)
    report = str(ppfast.diagnostics.address_report(post))
    for name in ("Pythia8::Pythia::next()", "Pythia8::StringFragmentation::fragment", "Pythia8::HadronLevel::next"):
        assert name in report
    addresses = {address_name(int(a)) for a in post.batch.records["address"]}
    # Module-relative and symbolic: no raw program counters, no host frames.
    assert not any("0x7f" in a or "_core" in a for a in addresses)


ADDRESS_DUMP = """
import hashlib, ppfast, ppfast.examples
from ppfast.models.remote import ExampleServer
from ppfast.trace import address_name
if {mode!r} == "ppx":
    model = ppfast.RemoteModel(ExampleServer({name!r}, idle_timeout=60, quiet=True).address, timeout=60)
else:
    model = ppfast.examples.load({name!r}, mode={mode!r})
b = model.prior_batch(8, seed=3)
print("addresses", hashlib.sha256(repr([address_name(int(a)) for a in b.records["address"]]).encode()).hexdigest())
print("types", list(b.traces["trace_type"]))
"""


def dump_addresses(name, mode):
    code = ADDRESS_DUMP.format(name=name, mode=mode)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # (Pythia prints its warnings on stdout in this process.)
    return [line for line in done.stdout.splitlines() if line.startswith(("addresses", "types"))]


@pytest.mark.parametrize("name", ["pythia_z", "pythia_tau"])
def test_addresses_are_identical_in_separate_processes_and_modes(name):
    first = dump_addresses(name, "embedded")
    assert dump_addresses(name, "embedded") == first  # another process: other load addresses (ASLR)
    assert dump_addresses(name, "shm") == first  # another binary built from the same objects
    assert dump_addresses(name, "ppx") == first  # a PPX server: the host draws, the same streams


def test_rmh_chains_on_pythia_tau_are_identical_embedded_over_shm_and_over_ppx():
    from ppfast.models.remote import ExampleServer

    embedded = ppfast.examples.load("pythia_tau")
    truth = embedded.prior_batch(1, seed=42)
    rec = truth.records
    j = int(np.where(rec["kind"] == RecordKind.OBSERVE)[0][0])
    off, n = int(rec["value_offset"][j]), int(rec["value_len"][j])
    grid = np.array(truth.arenas["values"][off:off + n])
    kw = dict(inference_engine=ppfast.InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS, observe={"calorimeter": grid},
              seed=7, burn_in=0, num_chains=1)
    server = ExampleServer("pythia_tau", idle_timeout=60, quiet=True)
    try:
        remote = ppfast.RemoteModel(server.address, timeout=60)
        with ppfast.examples.load("pythia_tau", mode="shm", workers=1) as shm:
            chains = [m.posterior(25, **kw).batch for m in (embedded, remote, shm)]
    finally:
        server.close()
    a = chains[0]
    assert a.mcmc.accepted[0] > 0
    for b in chains[1:]:
        np.testing.assert_array_equal(a.values_of("momentum"), b.values_of("momentum"))
        np.testing.assert_array_equal(a.traces["trace_type"], b.traces["trace_type"])
        np.testing.assert_array_equal(a.records["value"], b.records["value"])
        np.testing.assert_array_equal(a.mcmc.accepted, b.mcmc.accepted)


def test_pythia_tau_observes_the_calorimeter():
    model = ppfast.examples.load("pythia_tau")
    batch = model.prior_batch(40, seed=2)
    assert not batch.failed.any()
    channels = batch.traces["result"]
    assert set(np.unique(channels)) >= {0, 1, 2, 3, 4}  # pi, pi+pi0, 3 prongs, e, mu in 40 decays
    momentum = batch.values_of("momentum")
    assert np.all((momentum >= 20) & (momentum <= 80))
    rec = batch.records
    observed = rec["kind"] == RecordKind.OBSERVE
    assert observed.sum() == 40 and np.all(rec["value_len"][observed] == 20 * 35 * 35)
    controlled = (rec["kind"] == RecordKind.SAMPLE) & ((rec["flags"] & FLAG_CONTROL) != 0)
    assert np.bincount(rec["trace"][controlled]).min() > 5  # Pythia's own draws, all captured


@pytest.mark.parametrize("name", ["pythia_z", "pythia_tau"])
def test_pythia_examples_run_one_execution_per_thread(name):
    """One Pythia per thread: guided runs must not interleave executions on a thread (with
    several fibers per thread they corrupted each other's events)."""
    assert ppfast.examples.load(name)._native.one_execution_per_thread


def test_guided_executions_each_decay_their_own_tau():
    """Guided importance sampling on Pythia: no execution disturbs another's event (fibers
    interleaved on one thread's Pythia made Pythia abort, or crash); each guided trace is
    the event its draw values make."""
    lib = ctypes.CDLL(str(ppfast.examples.library_path("pythia_tau")))
    u64, dp = ctypes.c_uint64, ctypes.POINTER(ctypes.c_double)
    lib.ppfast_pythia_replay_event.argtypes = [dp, u64, dp, u64, ctypes.POINTER(u64)]
    lib.ppfast_pythia_replay_event.restype = u64
    model = ppfast.examples.load("pythia_tau")
    tiny = dict(network_type="feedforward", lstm_dim=8, observe_embedding_dim=8, address_embedding_dim=4,
                proposal_dim=4, proposal_mixture_components=1, address_instances=False)
    model.learn_inference_network(32, batch_size=16, observe_embeddings={"calorimeter": {"dim": 8, "depth": 1}},
                                  seed=1, progress=False, **tiny)
    batch = model.posterior_batch(32, ppfast.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK,
                                  observe={"calorimeter": np.zeros(20 * 35 * 35)}, seed=4, slots=16, progress=False)
    assert not batch.failed.any()
    for i in range(len(batch)):
        tr = batch.trace(i)
        draws = np.array([v.value for v in tr.variables if v.kind == RecordKind.SAMPLE and v.control])
        draws[0] = (draws[0] - 20.0) / 60.0  # the plain event draws the momentum as 20 + 60 flat()
        calls, particles = replay(lib, draws)
        assert calls == len(draws) and len(particles) > 0


def test_missing_pythia_names_the_command_that_builds_it(monkeypatch, tmp_path):
    monkeypatch.setattr(ppfast.examples, "_LIB", tmp_path)
    for mode in ("embedded", "shm"):
        with pytest.raises(ValueError, match="bash scripts/build_pythia.sh"):
            ppfast.examples.load("pythia_tau", mode=mode)
    assert "pythia_z" not in ppfast.examples.available()
