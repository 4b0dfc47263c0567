"""Hostile PPX peers: a simulator or an engine that sends what it should not.  Each probe
must end in a clear, typed error or a Reset, never a crash, a hang or an exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

zmq = pytest.importorskip("zmq", reason="PPX probes need pyzmq (extra 'ppx')")

import ppfast  # noqa: E402
from ppfast.errors import PeerGoneError, ProtocolError  # noqa: E402
from ppfast.models.remote import ExampleServer  # noqa: E402
from ppfast.ppx import messages as M  # noqa: E402
from test_ppx_client import Peer  # noqa: E402
from test_ppx_server import Engine  # noqa: E402

pytestmark = pytest.mark.remote


@pytest.fixture
def peer():
    started = []

    def start(*args: str) -> Peer:
        started.append(Peer(*args))
        return started[-1]

    yield start
    for p in started:
        p.stop()


@pytest.mark.timeout_s(60)
def test_server_answers_a_multipart_request_with_reset_and_keeps_serving():
    """Bug 7: a two-frame request used to make the server exit (REP send before reading
    every frame fails)."""
    with ExampleServer("gum", quiet=True) as server:
        engine = Engine(server.address)
        try:
            handshake = M.encode(M.Handshake("probe"))
            assert isinstance(engine.ask(handshake, b"extra frame"), M.Reset)
            assert isinstance(engine.ask(handshake, b"a", b"b"), M.Reset)
            assert isinstance(engine.ask(handshake), M.HandshakeResult)
            # Mid-trace too: the trace is abandoned with Reset, the server goes on.
            assert isinstance(engine.ask(M.encode(M.Run())), M.Sample)
            two = M.encode(M.SampleResult(M.Tensor.from_array([1.0])))
            assert isinstance(engine.ask(two, two), M.Reset)
            assert isinstance(engine.ask(M.encode(M.Run())), M.Sample)
        finally:
            engine.close()
        assert server.process.poll() is None
        post = ppfast.RemoteModel(server.address, timeout=10).posterior_results(
            20, observe={"obs0": 8.0, "obs1": 9.0}, seed=1)
        assert len(post) == 20


@pytest.mark.timeout_s(60)
def test_oversized_reply_is_refused_with_a_clear_error(peer):
    p = peer("--model", "big")  # a 2.4 MB RunResult
    model = ppfast.RemoteModel(p.address, timeout=10, max_message_bytes=1_000_000)
    start = time.monotonic()
    with pytest.raises(PeerGoneError, match="max_message_bytes limit: .* this engine's of 1000000 bytes") as err:
        model.prior_batch(2, seed=1)
    assert time.monotonic() - start < 8 and len(err.value.partial.failed) == 1
    # Within the limit (the default is 256 MiB) the same simulator works.
    ok = ppfast.RemoteModel(p.address, timeout=10).prior_batch(2, seed=1)
    assert ok.results[0].shape == (300_000,)


@pytest.mark.timeout_s(60)
def test_runaway_simulator_hits_the_per_trace_record_limit(peer):
    p = peer("--model", "runaway")
    model = ppfast.RemoteModel(p.address, timeout=10, max_trace_records=2000)
    with pytest.raises(ProtocolError, match="more than 2000 Sample / Observe / Tag messages") as err:
        model.prior_batch(3, seed=1)
    assert len(err.value.partial) == 1 and len(err.value.partial.failed) == 1
    with pytest.raises(ValueError, match="max_trace_records"):
        ppfast.RemoteModel(p.address, max_trace_records=-1, connect=False)
    with pytest.raises(ValueError, match="max_message_bytes"):
        ppfast.RemoteModel(p.address, max_message_bytes=0, connect=False)


@pytest.mark.timeout_s(60)
def test_server_drops_an_engine_that_sends_an_oversized_request():
    # The example server with a 64 kB request limit: a 1 MB request is dropped by ZeroMQ
    # (no reply, nothing allocated); the server keeps serving other engines.
    exe = ppfast.models.remote.example_server_path("gum")
    address = f"ipc://@ppfast-redteam-{os.getpid()}-big"
    proc = subprocess.Popen([str(exe), address, "--idle-timeout", "60", "--quiet", "--max-message-bytes", "65536"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("ready ")
        engine = Engine(address)
        engine.socket.rcvtimeo = 1000
        try:
            with pytest.raises(zmq.Again):
                engine.ask(b"\0" * 1_000_000)
        finally:
            engine.close()
        assert proc.poll() is None
        post = ppfast.RemoteModel(address, timeout=10).prior_batch(5, seed=1)
        assert len(post) == 5 and len(post.failed) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.mark.timeout_s(30)
def test_nothing_listening_is_reported_early():
    address = f"ipc://@ppfast-redteam-{os.getpid()}-nobody"
    start = time.monotonic()
    with pytest.raises(PeerGoneError, match=f"no simulator at {address}"):
        ppfast.RemoteModel(address, timeout=60)
    assert time.monotonic() - start < 10
