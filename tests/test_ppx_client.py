"""ppfast.RemoteModel driving real PPX simulator processes over ZeroMQ.

The main peer is ``tests/ppx_sim_peer.py``, a simulator written from PPX.md alone with the
bare ``flatbuffers`` runtime (no code shared with ppfast).  A few cases that peer cannot
produce (invalid parameters, tensors, Reset mid-trace, silence) come from small scripted
peers below, real ZeroMQ REP sockets answering with bytes from ``ppfast.ppx.messages``.
"""

from __future__ import annotations

import itertools
import math
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np
import pytest

zmq = pytest.importorskip("zmq", reason="PPX tests need pyzmq (extra 'ppx')")
pytest.importorskip("flatbuffers", reason="PPX tests need flatbuffers (extra 'ppx')")

from conftest import GUM_OBS, assert_gum_posterior, branching_exact  # noqa: E402

import ppfast  # noqa: E402
from ppfast.errors import (  # noqa: E402
    DistributionError,
    MissingObservationError,
    PeerGoneError,
    PeerTimeoutError,
    PpfastError,
    ProtocolError,
    ProtocolVersionError,
)
from ppfast.ppx import messages as M  # noqa: E402

pytestmark = pytest.mark.remote

SIM_PEER = Path(__file__).resolve().parent / "ppx_sim_peer.py"
_ids = itertools.count()


def unique_address() -> str:
    return f"ipc://@ppfast-test-{os.getpid()}-{next(_ids)}"


class Peer:
    """A ppx_sim_peer.py process; killed by ``stop``."""

    def __init__(self, *args: str, address: Optional[str] = None):
        self.address = address or unique_address()
        self.process = subprocess.Popen(
            [sys.executable, str(SIM_PEER), self.address, "--idle-timeout", "120", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"ppx_sim_peer did not start: {line!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for f in (self.process.stdout, self.process.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    """Starts sim peers on demand; kills them all at teardown."""
    started: List[Peer] = []

    def start(*args: str, address: Optional[str] = None) -> Peer:
        p = Peer(*args, address=address)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


# --------------------------------------------------------------------------- inference


def test_handshake_names_the_peer(peers):
    p = peers("--model", "gum")
    model = ppfast.RemoteModel(p.address, timeout=10)
    assert "PPX 1.0.0" in model.system_name
    assert model.name == "Gaussian with unknown mean (ppx_sim_peer)"
    info = model.peers[0]
    assert info["address"] == p.address and info["connected"] and info["round_trips"] == 1
    assert "ipc://" in repr(model)


def test_prior_records_and_closed_form(peers):
    p = peers("--model", "gum", "--tag")
    model = ppfast.RemoteModel(p.address, timeout=10)
    n = 3000
    batch = model.prior_batch(n, seed=7)
    assert len(batch) == n and len(batch.failed) == 0
    rec = batch.records
    # Per trace: Sample mu, Tag mu_tag, Observe obs0, Observe obs1.
    assert batch.num_records == 4 * n
    assert list(rec["kind"][:4]) == [0, 2, 1, 1]
    mu = batch.values_of("mu")
    np.testing.assert_array_equal(batch.results, mu)
    np.testing.assert_array_equal(rec["value"][1::4], mu)  # the tag carries mu
    # The recorded log-prob is that of Normal(1, sqrt 5) at the value the peer received.
    lp = -0.5 * ((mu - 1.0) ** 2) / 5.0 - 0.5 * math.log(2 * math.pi * 5.0)
    np.testing.assert_allclose(rec["log_prob"][::4], lp, rtol=1e-12)
    # Prior mean and stddev of mu within 5 standard errors.
    assert abs(mu.mean() - 1.0) < 5 * math.sqrt(5.0 / n)
    assert abs(mu.std() - math.sqrt(5.0)) < 5 * math.sqrt(5.0 / (2 * n))
    assert model.peers[0]["traces"] == n


def test_gum_posterior(peers):
    # Two peers in parallel, one connection (and one C++ thread) each.
    a, b = peers("--model", "gum"), peers("--model", "gum")
    model = ppfast.RemoteModel([a.address, b.address], timeout=10)
    post = model.posterior_results(16000, observe=GUM_OBS, seed=11)
    assert_gum_posterior(post, "RemoteModel over ppx_sim_peer")
    both = model.peers
    assert both[0]["traces"] > 0 and both[1]["traces"] > 0
    assert both[0]["traces"] + both[1]["traces"] == 16000


def test_branching_posterior(peers):
    p = peers("--model", "branching")
    model = ppfast.RemoteModel(p.address, timeout=10)
    post = model.posterior_results(6000, observe={"obs": 6}, seed=5)
    exact = branching_exact()
    r = np.asarray(post.values, dtype=float)
    w = np.exp(post.log_weights - post.log_weights.max())
    w /= w.sum()
    ess = 1.0 / np.sum(w**2)
    assert ess > 500
    for k in range(9):
        est = w[r == k].sum()
        tol = 5 * math.sqrt(exact[k] * (1 - exact[k]) / ess) + 1e-3
        assert abs(est - exact[k]) < tol, (k, est, exact[k], tol)


def test_seed_gives_the_same_traces_whatever_the_connections(peers):
    a, b = peers("--model", "branching"), peers("--model", "branching")
    one = ppfast.RemoteModel(a.address, timeout=10).prior_batch(500, seed=3)
    two = ppfast.RemoteModel([a.address, b.address], timeout=10).prior_batch(500, seed=3)
    for key in ("address", "instance", "value", "log_prob", "flags"):
        np.testing.assert_array_equal(one.records[key], two.records[key])
    np.testing.assert_array_equal(one.traces["trace_type"], two.traces["trace_type"])
    assert len(set(one.traces["trace_type"].tolist())) > 1  # both branches occurred


def test_a_policy_decides_controlled_values(peers):
    from ppfast import _core

    if not hasattr(_core, "inflated_prior"):
        pytest.skip("no built-in policy to drive with in this build")
    a, b = peers("--model", "gum"), peers("--model", "gum")
    model = ppfast.RemoteModel([a.address, b.address], timeout=10)
    factor = 2.0
    batch = model._simulate_policies(5, 0, 400, {}, False, [_core.inflated_prior(factor) for _ in range(2)])
    rec = batch.records
    mu = rec["value"][rec["kind"] == 0]
    assert np.all(rec["flags"][rec["kind"] == 0] & ppfast.trace.FLAG_PROPOSED)
    # Proposal Normal(1, 2 sqrt 5): log weight = log p(mu) - log q(mu) (no observation given).
    var_p, var_q = 5.0, factor**2 * 5.0
    log_p = -0.5 * (mu - 1) ** 2 / var_p - 0.5 * np.log(2 * np.pi * var_p)
    log_q = -0.5 * (mu - 1) ** 2 / var_q - 0.5 * np.log(2 * np.pi * var_q)
    np.testing.assert_allclose(batch.log_weights, log_p - log_q, rtol=1e-9, atol=1e-9)
    assert abs(np.std(mu) - factor * math.sqrt(5.0)) < 5 * factor * math.sqrt(5.0 / (2 * 400))
    with pytest.raises(ValueError, match="one per connection"):
        model._simulate_policies(5, 0, 4, {}, False, [_core.inflated_prior(factor)])


def test_hundred_draws_one_address(peers):
    p = peers("--model", "hundred")
    batch = ppfast.RemoteModel(p.address, timeout=10).prior_batch(20, seed=1)
    rec = batch.records
    samples = rec["kind"] == 0
    assert samples.sum() == 20 * 100
    assert set(rec["instance"][samples][:100].tolist()) == set(range(100))
    assert len(set(rec["address"][samples].tolist())) == 1
    assert np.all(rec["name"][samples] == 0)  # the peer sends an empty name


def test_replace_flag_is_honoured(peers):
    p = peers("--model", "gum", "--replace")
    batch = ppfast.RemoteModel(p.address, timeout=10).prior_batch(10, seed=1)
    flags = batch.records["flags"][batch.records["kind"] == 0]
    assert np.all(flags & ppfast.trace.FLAG_REPLACE)


def test_missing_observation_fails_the_trace_not_the_connection(peers):
    p = peers("--model", "gum")
    model = ppfast.RemoteModel(p.address, timeout=10)
    with pytest.raises(MissingObservationError, match="obs1"):
        model.posterior_results(5, observe={"obs0": 8.0}, seed=1)
    assert len(model.prior_batch(5, seed=1)) == 5
    assert model.peers[0]["connects"] == 1  # the conversation stayed in sync


# --------------------------------------------------------------------------- misbehaving peers

BAD = {
    # mode: (error class, text the message must contain)
    "truncated": (ProtocolError, "malformed reply (verification_failed"),
    "garbage": (ProtocolError, "malformed reply (verification_failed"),
    "unknown-body": (ProtocolError, "unknown message body type 37"),
    "unknown-dist": (ProtocolError, "unknown distribution type 19"),
    "out-of-order": (ProtocolError, "expected HandshakeResult in reply to Handshake, got RunResult"),
    "version": (ProtocolVersionError, "speaks PPX 2.0.0"),
    "die-mid-trace": (PeerGoneError,
                      "disconnected: expected Sample, Observe, Tag or RunResult in reply to SampleResult"),
}


@pytest.mark.parametrize("mode", sorted(BAD))
def test_misbehaving_peer_gives_typed_error_and_next_run_works(peers, mode):
    cls, text = BAD[mode]
    p = peers("--model", "gum", "--bad", mode)
    model = ppfast.RemoteModel(p.address, timeout=10, connect=False)
    start = time.monotonic()
    with pytest.raises(cls) as info:
        model.prior_batch(3, seed=0)
    assert time.monotonic() - start < 5  # reported at once, not after the timeout
    message = str(info.value)
    assert text in message and p.address in message
    assert isinstance(info.value, PpfastError)
    if mode not in ("out-of-order", "version"):
        assert "expected Sample, Observe, Tag or RunResult in reply to" in message
    if mode == "die-mid-trace":
        assert p.process.wait(timeout=10) == 3
        p = peers("--model", "gum", address=p.address)  # the simulator is restarted
    # The same model reconnects (new socket, new handshake) and works.
    batch = model.prior_batch(20, seed=0)
    assert len(batch) == 20 and len(batch.failed) == 0
    assert model.peers[0]["connects"] == 2


def test_no_peer_is_reported_early():
    """Nothing listening: said at once ("no simulator at ADDRESS"), not after the whole
    30 s timeout."""
    address = unique_address()
    model = ppfast.RemoteModel(address, timeout=30, connect=False)
    start = time.monotonic()
    with pytest.raises(PeerGoneError, match=f"no simulator at {address}") as err:
        model.prior_batch(1)
    assert time.monotonic() - start < 10
    assert len(err.value.partial) == 1 and len(err.value.partial.failed) == 1
    with pytest.raises(ConnectionError, match="no simulator at"):  # the built-in it also is
        ppfast.RemoteModel(unique_address(), timeout=30)


@pytest.mark.parametrize("bad", ["no-address", "", "x", 5])
def test_bad_arguments(bad):
    with pytest.raises(ValueError, match="ZeroMQ address|address"):
        ppfast.RemoteModel([] if bad == "" else [bad], connect=False)


def test_bad_timeout():
    with pytest.raises(ValueError, match="timeout"):
        ppfast.RemoteModel("ipc://@x", timeout=-1, connect=False)
    with pytest.raises(ValueError, match="timeout"):
        ppfast.RemoteModel("ipc://@x", timeout=float("nan"), connect=False)
    with pytest.raises(ValueError, match="spin_us"):
        ppfast.RemoteModel("ipc://@x", spin_us=-5, connect=False)


# --------------------------------------------------------------------------- scripted peers


class ScriptedPeer:
    """A REP socket on a thread: answers the Handshake, then each Run with ``trace(send)``,
    where ``send(bytes) -> request bytes`` replies and returns the engine's next request."""

    def __init__(self, trace: Callable[[Callable[[bytes], bytes]], bytes]):
        self.address = unique_address()
        self.trace = trace
        self.requests: List[M.Message] = []
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(self.address)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _recv(self) -> Optional[bytes]:
        while not self.stop.is_set():
            if self.socket.poll(50):
                buf = self.socket.recv()
                self.requests.append(M.decode(buf))
                return buf
        return None

    def _serve(self) -> None:
        buf = self._recv()
        while buf is not None:
            msg = self.requests[-1]
            if isinstance(msg, M.Handshake):
                self.socket.send(M.encode(M.HandshakeResult("scripted (PPX 1.0.0)", "scripted")))
                buf = self._recv()
                continue
            assert isinstance(msg, M.Run), msg

            def send(reply: bytes) -> bytes:
                self.socket.send(reply)
                got = self._recv()
                if got is None:
                    raise SystemExit
                return got

            try:
                final = self.trace(send)
            except SystemExit:
                return
            self.socket.send(final)
            buf = self._recv()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.socket.close()
        self.context.term()


def T(x, shape=None) -> M.Tensor:
    a = np.asarray(x, dtype=np.float64)
    return M.Tensor.from_array(a if shape is None else a.reshape(shape))


def normal(mean, sd) -> M.Distribution:
    return M.Distribution("Normal", {"mean": T(mean), "stddev": T(sd)})


@pytest.fixture
def scripted():
    made: List[ScriptedPeer] = []

    def make(trace):
        p = ScriptedPeer(trace)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def test_tensor_sample_keeps_its_shape(scripted):
    def trace(send):
        reply = M.decode(send(M.encode(M.Sample("x", "x", normal([0.0, 10.0, 20.0], 1.0)))))
        assert isinstance(reply, M.SampleResult)
        categorical = M.Distribution("Categorical", {"probs": T([1, 1, 2])})
        reply2 = M.decode(send(M.encode(M.Sample("c", "c", categorical))))
        return M.encode(M.RunResult(T(float(reply.result.data.sum() + reply2.result.data[0]))))

    p = scripted(trace)
    batch = ppfast.RemoteModel(p.address, timeout=10).prior_batch(200, seed=2)
    results = [r for r in p.requests if isinstance(r, M.SampleResult)]
    assert results[0].result.shape == (3,) and results[1].result.shape == ()
    rec = batch.records
    x = rec["kind"] == 0
    assert np.all(rec["value_len"][x][::2] == 3)
    # Unnormalized Categorical probs are normalized, as torch does: p = (.25, .25, .5).
    cats = rec["value"][x][1::2]
    assert set(cats.tolist()) <= {0.0, 1.0, 2.0}
    assert abs(np.mean(cats == 2.0) - 0.5) < 5 * math.sqrt(0.25 / 200)
    params = batch.arenas["params"]
    first_cat = rec["param_offset"][x][1]
    np.testing.assert_allclose(params[first_cat:first_cat + 3], [0.25, 0.25, 0.5])


def test_invalid_distribution_fails_the_trace_and_stays_in_sync(scripted):
    def trace(send):
        reply = M.decode(send(M.encode(M.Sample("s", "s", normal(0.0, -1.0)))))
        assert isinstance(reply, M.SampleResult) and np.isnan(reply.result.data[0])
        return M.encode(M.RunResult(T(0.0)))

    p = scripted(trace)
    model = ppfast.RemoteModel(p.address, timeout=10)
    with pytest.raises(DistributionError, match="stddev"):
        model.prior_batch(2, seed=0)
    batch = model.simulate(2, seed=0, on_error="skip")
    assert len(batch.failed) == 2 and "stddev" in batch.error(0)
    assert model.peers[0]["connects"] == 1


def test_reset_mid_trace_is_a_protocol_error(scripted):
    def trace(send):
        send(M.encode(M.Sample("mu", "mu", normal(0.0, 1.0))))
        return M.encode(M.Reset())

    p = scripted(trace)
    model = ppfast.RemoteModel(p.address, timeout=10)
    expected = ("answered Reset; expected Sample, Observe, Tag or RunResult in reply to SampleResult "
                "for address 'mu'")
    with pytest.raises(ProtocolError, match=expected):
        model.prior_batch(1)


def test_silent_peer_times_out_mid_trace(scripted):
    def trace(send):
        send(M.encode(M.Sample("mu", "mu", normal(0.0, 1.0))))
        time.sleep(1.0)  # never answers this trace: the reply below goes to a closed socket
        raise SystemExit

    p = scripted(trace)
    model = ppfast.RemoteModel(p.address, timeout=0.4)
    start = time.monotonic()
    with pytest.raises(PeerTimeoutError, match="no reply within 400 ms: expected Sample, Observe, Tag or "
                                               "RunResult in reply to SampleResult for address 'mu'"):
        model.prior_batch(1)
    assert time.monotonic() - start < 3


# --------------------------------------------------------------------------- issue 13


def test_tensor_run_results_are_kept_whole(peers, tmp_path):
    """A 17 x 3 run result (pyprob_cpp's HMM simulator returns one) keeps its values and
    shape in the Empirical and in a saved dataset, not just its first element."""
    p = peers("--model", "tensor")
    model = ppfast.RemoteModel(p.address, timeout=10)
    post = model.posterior_results(30, observe=GUM_OBS, seed=4)
    mu = post["mu"].values
    assert np.asarray(post.values).shape == (30, 17, 3)
    expected = mu[:, None, None] + np.arange(51.0).reshape(17, 3)
    np.testing.assert_array_equal(np.asarray(post.values), expected)
    assert np.asarray(post.mean).shape == (17, 3)
    path = model.save_dataset(tmp_path / "tensor", 12, traces_per_file=5, seed=2)
    saved = ppfast.data.TraceDataset(path).to_batch().results
    prior = model.prior_batch(12, seed=2).results
    assert len(saved) == 12
    for a, b in zip(saved, prior):
        assert a.shape == (17, 3)
        np.testing.assert_array_equal(a, b)


def test_finished_traces_survive_a_simulator_dying_mid_run(peers):
    p = peers("--model", "gum", "--bad", "die-mid-trace", "--bad-at", "5")
    model = ppfast.RemoteModel(p.address, timeout=10)
    with pytest.raises(PeerGoneError) as err:
        model.posterior_results(10, observe=GUM_OBS, seed=1)
    partial = err.value.partial
    assert len(partial) == 5 and list(partial.failed) == [4]
    np.testing.assert_array_equal(partial.traces["index"], np.arange(5))
    assert np.all(np.isfinite(partial.results[:4]))


def test_one_dead_simulator_among_several_keeps_the_others_traces(peers):
    good = [peers("--model", "gum") for _ in range(2)]
    bad = peers("--model", "gum", "--bad", "die-mid-trace", "--bad-at", "3")
    model = ppfast.RemoteModel([good[0].address, bad.address, good[1].address], timeout=10)
    with pytest.raises(PeerGoneError) as err:
        model.prior_batch(600, seed=1)
    partial = err.value.partial
    assert len(partial.failed) == 1 and len(partial) > 10
    index = partial.traces["index"]
    assert np.all(np.diff(index.astype(np.int64)) > 0)  # in trace order


def test_skip_goes_on_with_the_live_simulators(peers):
    """on_error='skip': the trace cut short is kept as failed, the dead connection is
    retried for `timeout`, then its remaining traces run on the live ones."""
    good = peers("--model", "gum")
    bad = peers("--model", "gum", "--bad", "die-mid-trace", "--bad-at", "3")
    model = ppfast.RemoteModel([bad.address, good.address], timeout=1.5)
    batch = model.simulate(200, seed=3, on_error="skip", required=False)
    assert len(batch) == 200 and len(batch.failed) == 1
    np.testing.assert_array_equal(batch.traces["index"], np.arange(200))
    assert "disconnected" in batch.error(int(batch.failed[0]))
    # Every trace but the failed one ran; the same seed over the healthy peer alone agrees.
    alone = ppfast.RemoteModel(good.address, timeout=10).prior_batch(200, seed=3)
    ok = np.setdiff1d(np.arange(200), batch.failed)
    np.testing.assert_array_equal(batch.results[ok], alone.results[ok])


def test_skip_waits_for_a_restarted_simulator(peers):
    """A single simulator that dies and is restarted within `timeout`: the run goes on."""
    p = peers("--model", "gum", "--bad", "die-mid-trace", "--bad-at", "4")
    model = ppfast.RemoteModel(p.address, timeout=20)
    restarted = []

    def restart():
        p.process.wait(timeout=30)
        time.sleep(0.5)
        restarted.append(peers("--model", "gum", address=p.address))

    t = threading.Thread(target=restart)
    t.start()
    try:
        batch = model.simulate(10, seed=1, on_error="skip", required=False)
    finally:
        t.join()
    assert len(batch) == 10 and list(batch.failed) == [3] and restarted


def test_ctrl_c_stops_a_ppx_run_and_keeps_finished_traces(scripted):
    import _thread

    def trace(send):  # a slow simulator: 20 ms per trace
        request = M.decode(send(M.encode(M.Sample("mu", "mu", normal(0.0, 1.0)))))
        time.sleep(0.02)
        return M.encode(M.RunResult(request.result))

    p = scripted(trace)
    model = ppfast.RemoteModel(p.address, timeout=30)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt) as info:
        model.prior_batch(200, seed=1)
    timer.cancel()
    partial = info.value.partial
    assert 0 < len(partial) < 200 and len(partial.failed) == 0
    np.testing.assert_array_equal(partial.traces["index"], np.arange(len(partial)))
    np.testing.assert_array_equal(partial.results, partial.values_of("mu"))
    assert len(model.prior_batch(3, seed=2).failed) == 0  # usable again
