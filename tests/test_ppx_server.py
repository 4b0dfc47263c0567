"""ppfast C++ simulators serving PPX: driven by PyProb 1.5.0's RemoteModel, by ppfast's own
RemoteModel (trace for trace equal to embedded mode), and by raw ZeroMQ requests that
misbehave on purpose (the server answers Reset, logs, and keeps serving)."""

from __future__ import annotations

import itertools
import math
import os
import select
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np
import pytest

zmq = pytest.importorskip("zmq", reason="PPX tests need pyzmq (extra 'ppx')")
pytest.importorskip("flatbuffers", reason="PPX tests need flatbuffers (extra 'ppx')")

from conftest import GUM_OBS, GUM_POST_MEAN, GUM_POST_STD, assert_gum_posterior, build_external  # noqa: E402

import ppfast  # noqa: E402
import ppfast.examples  # noqa: E402
from ppfast.models.remote import example_server_path  # noqa: E402
from ppfast.ppx import messages as M  # noqa: E402

pytestmark = pytest.mark.remote

_ids = itertools.count()


def unique_address() -> str:
    return f"ipc://@ppfast-test-{os.getpid()}-srv-{next(_ids)}"


class Server:
    """``<example>_ppx`` (or any executable taking the same arguments) in a child process."""

    def __init__(self, exe: Path, *args: str, address: Optional[str] = None):
        self.address = address or unique_address()
        self.log = open(_log_path(), "w+")  # noqa: SIM115 -- closed by stop()
        self.process = subprocess.Popen([str(exe), self.address, "--idle-timeout", "120", *args],
                                        stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"{exe.name} did not start: {line!r} {self.stderr()}")
        endpoint = line.split()[1]
        assert endpoint == self.address or "*" in self.address  # tcp://host:* gets its port
        self.address = endpoint

    def stderr(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


_log_counter = itertools.count()
_LOG_DIR: List[Path] = []


def _log_path() -> str:
    return str(_LOG_DIR[0] / f"server-{next(_log_counter)}.log")


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """serve(example_name or executable path, *args) -> a running Server; all killed at teardown."""
    _LOG_DIR[:] = [tmp_path]
    started: List[Server] = []

    def start(what, *args: str, address: Optional[str] = None) -> Server:
        exe = what if isinstance(what, Path) else example_server_path(what)
        s = Server(exe, *args, address=address)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def same_batches(a, b) -> List[str]:
    """Names of the columns that differ (NaN equal to NaN)."""
    bad = []
    for group in ("records", "traces", "arenas"):
        x, y = getattr(a, group), getattr(b, group)
        for k in x:
            if not np.array_equal(x[k], y[k], equal_nan=True):
                bad.append(f"{group}.{k}")
    return bad


# --------------------------------------------------------------------------- PyProb drives ppfast


@pytest.mark.slow  # PyProb needs ~15k traces (ESS > 100) at a few hundred traces/s
@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")
def test_pyprob_remote_model_reproduces_the_gum_posterior(serve):
    try:
        import pyprob
    except ImportError:
        pytest.skip("pyprob 1.5.0 is not importable (install with: bash bench/requirements-baseline.sh)")
    assert pyprob.__version__ == "1.5.0"
    pyprob.set_verbosity(0)
    server = serve("gum")
    model = pyprob.RemoteModel(server_address=server.address)
    try:
        post = model.posterior_results(num_traces=15000, observe=GUM_OBS)
    finally:
        model._model_server.close()

    class AsFloats:  # PyProb answers with 0-d tensors
        mean = float(post.mean)
        stddev = float(post.stddev)
        effective_sample_size = float(post.effective_sample_size)

    assert_gum_posterior(AsFloats, "PyProb RemoteModel over a ppfast-served C++ simulator")
    assert abs(AsFloats.mean - GUM_POST_MEAN) < 0.5 and abs(AsFloats.stddev - GUM_POST_STD) < 0.5
    assert server.alive()


# --------------------------------------------------------------------------- ppfast drives ppfast


@pytest.mark.parametrize("name,n", [("gum", 2000), ("branching", 2000), ("hundred", 100), ("tau_decay", 100)])
def test_remote_equals_embedded_trace_for_trace(serve, name, n):
    server = serve(name)
    remote = ppfast.RemoteModel(server.address, timeout=20)
    assert remote.name == name and remote.system_name == "ppfast (PPX 1.0.0)"
    embedded = ppfast.examples.load(name, threads=1)
    a, b = remote.prior_batch(n, seed=9), embedded.prior_batch(n, seed=9)
    assert len(a) == n and a.num_records == b.num_records
    assert same_batches(a, b) == []


def test_remote_posterior_and_parallel_connections(serve):
    servers = [serve("gum"), serve("gum")]
    remote = ppfast.RemoteModel([s.address for s in servers], timeout=20)
    embedded = ppfast.examples.load("gum", threads=2)
    a = remote.posterior_batch(16000, observe=GUM_OBS, seed=4)
    b = embedded.posterior_batch(16000, observe=GUM_OBS, seed=4)
    assert same_batches(a, b) == []
    assert all(p["traces"] > 0 for p in remote.peers)
    assert_gum_posterior(ppfast.Empirical(a.results, log_weights=a.log_weights), "ppfast over ppfast PPX")


def test_over_tcp(serve):
    server = serve("gum", address="tcp://127.0.0.1:*")
    assert server.address.startswith("tcp://127.0.0.1:") and not server.address.endswith("*")
    a = ppfast.RemoteModel(server.address, timeout=10).prior_batch(500, seed=1)
    assert same_batches(a, ppfast.examples.load("gum").prior_batch(500, seed=1)) == []
    # Polling before sleeping changes nothing but the latency.
    spun = ppfast.RemoteModel(server.address, timeout=10, spin_us=200).prior_batch(500, seed=1)
    assert same_batches(a, spun) == []


def test_branching_posterior_matches_embedded(serve):
    server = serve("branching")
    a = ppfast.RemoteModel(server.address).posterior_batch(3000, observe={"obs": 6}, seed=2)
    b = ppfast.examples.load("branching").posterior_batch(3000, observe={"obs": 6}, seed=2)
    assert same_batches(a, b) == []


# --------------------------------------------------------------------------- a misbehaving engine


class Engine:
    """A raw REQ socket speaking (or not) PPX to a server."""

    def __init__(self, address: str):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.REQ)
        self.socket.linger = 0
        self.socket.rcvtimeo = 5000
        self.socket.connect(address)

    def ask(self, *frames) -> M.Message:
        """Sends one request (a message or raw bytes); more than one frame: a multipart request."""
        self.socket.send_multipart([f if isinstance(f, bytes) else M.encode(f) for f in frames])
        return M.decode(self.socket.recv())

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def complete_gum_trace(engine: Engine, mu: float) -> M.Message:
    s = engine.ask(M.Run())
    assert isinstance(s, M.Sample) and s.address == "mu" and s.name == "mu" and s.control
    assert s.distribution.type == "Normal"
    assert s.distribution.params["mean"] == M.Tensor.from_array(1.0)  # scalars: shape ()
    assert s.distribution.params["stddev"] == M.Tensor.from_array(math.sqrt(5.0))
    o = engine.ask(M.SampleResult(M.Tensor.from_array([mu])))
    assert isinstance(o, M.Observe) and o.name == "obs0" and o.value is None
    assert float(o.distribution.params["mean"].data[0]) == mu
    o = engine.ask(M.ObserveResult())
    assert isinstance(o, M.Observe) and o.name == "obs1"
    return engine.ask(M.ObserveResult())


def garbage() -> bytes:
    return bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8))


def unknown_body() -> bytes:
    b = bytearray(M.encode(M.Run()))
    # The union type byte: the first (and only) scalar of the root table.
    root = int.from_bytes(b[0:4], "little")
    vtable = root - int.from_bytes(b[root:root + 4], "little", signed=True)
    type_at = root + int.from_bytes(b[vtable + 4:vtable + 6], "little")
    assert b[type_at] == 3
    b[type_at] = 37
    return bytes(b)


def test_server_answers_bad_requests_with_reset_and_keeps_serving(serve):
    server = serve("gum")
    engine = Engine(server.address)
    try:
        # Outside a trace.
        assert isinstance(engine.ask(garbage()), M.Reset)
        assert isinstance(engine.ask(M.encode(M.Run())[:10]), M.Reset)
        assert isinstance(engine.ask(unknown_body()), M.Reset)
        assert isinstance(engine.ask(M.SampleResult(M.Tensor.from_array(1.0))), M.Reset)
        hs = engine.ask(M.Handshake("test engine"))
        assert isinstance(hs, M.HandshakeResult) and hs.model_name == "gum" and "PPX 1.0.0" in hs.system_name
        # A whole trace by hand.
        rr = complete_gum_trace(engine, 7.5)
        assert isinstance(rr, M.RunResult) and rr.result == M.Tensor.from_array(7.5)
        # Mid-trace: garbage, a wrong answer, a wrong number of values -> Reset, trace abandoned.
        two_values = M.encode(M.SampleResult(M.Tensor.from_array([1.0, 2.0])))
        for bad in (garbage(), M.encode(M.ObserveResult()), two_values):
            assert isinstance(engine.ask(M.Run()), M.Sample)
            assert isinstance(engine.ask(bad), M.Reset)
        # Mid-trace Handshake (an engine starting over): answered, the trace abandoned.
        assert isinstance(engine.ask(M.Run()), M.Sample)
        assert isinstance(engine.ask(M.Handshake("again")), M.HandshakeResult)
        assert isinstance(complete_gum_trace(engine, -1.0), M.RunResult)
    finally:
        engine.close()
    assert server.alive()
    log = server.stderr()
    assert "malformed request (verification_failed" in log
    assert "unknown message body type 37" in log
    assert "unexpected SampleResult outside a trace (expected Handshake or Run)" in log
    assert "out of order: expected SampleResult for address 'mu', got ObserveResult" in log
    assert "SampleResult for address 'mu' has 2 values, its Normal has 1" in log
    assert "got Handshake while expecting SampleResult" in log


def test_engine_gone_mid_trace_then_another_engine_is_served(serve):
    server = serve("gum")
    first = Engine(server.address)
    assert isinstance(first.ask(M.Run()), M.Sample)
    first.close()  # gone without answering the Sample
    model = ppfast.RemoteModel(server.address, timeout=10)
    assert len(model.prior_batch(50, seed=1)) == 50
    assert server.alive()


def test_sigterm_stops_the_server_mid_trace(serve):
    server = serve("gum")
    engine = Engine(server.address)
    try:
        assert isinstance(engine.ask(M.Run()), M.Sample)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=5) == 0
    finally:
        engine.close()


def test_command_line(serve):
    exe = example_server_path("gum")
    usage = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    bad = subprocess.run([str(exe), "ipc://@x", "--max-traces", "lots"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2
    server = serve("gum", "--max-traces", "3", "--model-name", "GUM over PPX")
    busy = subprocess.run([str(exe), server.address], capture_output=True, text=True, timeout=30)
    assert busy.returncode == 2 and "cannot bind" in busy.stderr
    model = ppfast.RemoteModel(server.address, timeout=10)
    assert model.name == "GUM over PPX"
    assert len(model.prior_batch(3, seed=0)) == 3
    assert server.process.wait(timeout=10) == 0  # exits after its 3 traces


def test_idle_timeout(serve):
    server = serve("gum", "--idle-timeout", "0.3")
    assert server.process.wait(timeout=10) == 0


# --------------------------------------------------------------------------- an out-of-tree simulator


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_external_simulator_serves_ppx_with_factor_and_tag(tmp_path, serve):
    build = build_external(tmp_path, """
        add_executable(mysim_ppx sim.cpp)
        target_link_libraries(mysim_ppx PRIVATE ppfast::ppx_server)
    """, """
        #include <cmath>
        #include <ppfast/ppfast.hpp>
        #include <ppfast/ppx_server.hpp>
        static double sim() {
          double x = ppfast::sample(ppfast::Normal(0.0, 1.0), "x", "x");
          ppfast::tag(2 * x, "twice");
          ppfast::factor(-0.5 * x * x);  // tempers the prior: x ~ N(0, 1/sqrt 2) a posteriori
          double c = ppfast::sample(ppfast::Categorical({0.2, 0.3, 0.5}), "c", "c");
          ppfast::observe(ppfast::Normal(c, 1.0), "y");
          return x;
        }
        PPFAST_MODEL(external, sim)
        int main(int argc, char** argv) { return ppfast::ppx_server_main(argc, argv, ppfast_model_entry()); }
    """)
    server = serve(build / "mysim_ppx")
    model = ppfast.RemoteModel(server.address, timeout=10)
    assert model.name == "external"
    n = 4000
    batch = model.posterior_batch(n, observe={"y": 2.0}, seed=1)
    rec = batch.records
    x = batch.values_of("x")
    np.testing.assert_array_equal(batch.values_of("twice"), 2 * x)
    # The factor travels as an observe of Exponential(e^lp) at 0: log-density exactly lp.
    factor_rows = rec["address"] == ppfast._core.intern("ppfast_factor")
    np.testing.assert_allclose(rec["log_prob"][factor_rows], -0.5 * x * x, rtol=1e-12, atol=1e-12)
    c = batch.values_of("c")
    y_lp = -0.5 * (2.0 - c) ** 2 - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(batch.traces["log_likelihood"], -0.5 * x * x + y_lp, rtol=1e-9)
    # Self-normalized estimate of E[x^2] under the tempered prior: 1/2.
    w = np.exp(batch.log_weights - batch.log_weights.max())
    w /= w.sum()
    ess = 1 / np.sum(w**2)
    est = float(np.sum(w * x * x))
    assert abs(est - 0.5) < 5 * math.sqrt(2 * 0.25 / ess), (est, ess)
