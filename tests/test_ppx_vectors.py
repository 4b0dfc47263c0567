"""PPX conformance against messages captured between PyProb 1.5.0 and pyprob_cpp.

Every ``.bin`` under the vectors directory must decode to exactly the fields recorded in
its ``index.json``; encoding those fields must decode back to the same fields, through
ppfast's Python codec and through the independent reader of ``tests/ppx_sim_peer.py``
(written from PPX.md slot numbers, not from ppx.fbs).

The vectors live in ``<workspace>/shared/ppx-vectors``; ``PPFAST_PPX_VECTORS`` overrides.
These tests import only ``ppfast/ppx`` (loaded from the source tree by path), never the
compiled extension, so they run before and without a native build.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flatbuffers", reason="the PPX codec needs the 'flatbuffers' package (extra 'ppx')")

REPO = Path(__file__).resolve().parents[1]


def _load_by_path(name: str, path: Path, package_dir: Path | None = None) -> ModuleType:
    """Imports a module (or package) from a file without importing its parents."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(package_dir)] if package_dir else None
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ppfast/__init__.py imports the compiled core; ppfast/ppx must not need it, so load the
# subpackage on its own under a private name.
_load_by_path("_ppfast_ppx_src", REPO / "ppfast" / "ppx" / "__init__.py", REPO / "ppfast" / "ppx")
m = importlib.import_module("_ppfast_ppx_src.messages")
gen = importlib.import_module("_ppfast_ppx_src._generated.ppx_generated")
peer = _load_by_path("_ppx_sim_peer", REPO / "tests" / "ppx_sim_peer.py")


def _vectors_dir() -> Path:
    env = os.environ.get("PPFAST_PPX_VECTORS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "ppx-vectors"


VECTORS = _vectors_dir()
if not (VECTORS / "index.json").is_file():
    pytest.skip(
        f"PPX test vectors not found at {VECTORS} (set PPFAST_PPX_VECTORS to the ppx-vectors directory)",
        allow_module_level=True,
    )

INDEX: dict[str, Any] = json.loads((VECTORS / "index.json").read_text())
CASES: list[tuple[str, dict[str, Any]]] = [
    (model, entry) for model, info in INDEX.items() for entry in info["messages"]
]
IDS = [f"{model}/{entry['file']}" for model, entry in CASES]


def _raw(model: str, entry: dict[str, Any]) -> bytes:
    return (VECTORS / model / entry["file"]).read_bytes()


def test_vectors_cover_every_message_and_distribution() -> None:
    bodies = {entry["body"] for _, entry in CASES}
    # A normal PyProb run exchanges every message except the Tag pair and Reset.
    assert bodies == set(m.BODY_TYPES) - {"Tag", "TagResult", "Reset"}
    dists = {
        entry["fields"]["distribution"]["type"] for _, entry in CASES if "distribution" in entry["fields"]
    }
    assert dists == set(m.DISTRIBUTION_TYPES)
    assert len(CASES) == sum(1 for _ in VECTORS.glob("*/*.bin"))


@pytest.mark.parametrize(("model", "entry"), CASES, ids=IDS)
def test_decode_matches_index(model: str, entry: dict[str, Any]) -> None:
    raw = _raw(model, entry)
    assert len(raw) == entry["bytes"]
    assert entry["file"].split("-", 2)[2] == f"{entry['body']}.bin"
    msg = m.decode(raw)
    assert m.to_fields(msg) == (entry["body"], entry["fields"])
    # The independent reader agrees with the recording as well.
    assert peer.read_message(raw) == (entry["body"], entry["fields"])
    # Real peers do not write the file identifier.
    assert not gen.Message.MessageBufferHasIdentifier(raw, 0)


@pytest.mark.parametrize(("model", "entry"), CASES, ids=IDS)
def test_encode_from_fields_round_trips(model: str, entry: dict[str, Any]) -> None:
    msg = m.from_fields(entry["body"], entry["fields"])
    buf = m.encode(msg)
    assert m.decode(buf) == msg
    assert m.to_fields(m.decode(buf)) == (entry["body"], entry["fields"])
    # Readable by an implementation that does not share our schema file.
    assert peer.read_message(buf) == (entry["body"], entry["fields"])
    assert not gen.Message.MessageBufferHasIdentifier(buf, 0)


@pytest.mark.parametrize(("model", "entry"), CASES, ids=IDS)
def test_independent_writer_is_read_back(model: str, entry: dict[str, Any]) -> None:
    # The simulator peer writes by PPX.md slot numbers; our codec must read that.
    fields = dict(entry["fields"])
    kwargs: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "distribution":
            names = m.DISTRIBUTION_PARAMS[value["type"]]
            kwargs[key] = (value["type"], [(value[n]["data"], tuple(value[n]["shape"])) for n in names])
        elif key in ("result", "value"):
            kwargs[key] = None if value is None else (value["data"], tuple(value["shape"]))
        else:
            kwargs[key] = value
    buf = peer.write_message(entry["body"], **kwargs)
    assert m.to_fields(m.decode(buf)) == (entry["body"], entry["fields"])


def test_scalar_and_one_element_shapes_stay_distinct() -> None:
    # The vectors carry both: parameters as shape [] and sampled values as [1].
    shapes = set()
    for model, entry in CASES:
        msg = m.decode(_raw(model, entry))
        for t in getattr(getattr(msg, "distribution", None), "params", {}).values():
            shapes.add(t.shape)
        for attr in ("result", "value"):
            t = getattr(msg, attr, None)
            if t is not None:
                shapes.add(t.shape)
    assert {(), (1,), (3,)} <= shapes
    scalar = m.SampleResult(m.Tensor.from_array(2.5))
    one = m.SampleResult(m.Tensor.from_array([2.5]))
    assert m.decode(m.encode(scalar)).result.shape == ()
    assert m.decode(m.encode(one)).result.shape == (1,)
    assert scalar != one


def test_every_message_type_round_trips() -> None:
    t = m.Tensor.from_array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    normal = m.Distribution("Normal", {"stddev": m.Tensor.from_array(2.0), "mean": m.Tensor.from_array(0.0)})
    msgs = [
        m.Handshake("ppfast"),
        m.HandshakeResult("sim", "model"),
        m.Run(),
        m.RunResult(t),
        m.RunResult(None),
        m.Sample("a", "n", normal),
        m.Sample("a", "", normal, control=False, replace=True),
        m.SampleResult(t),
        m.Observe("o", "obs", normal, m.Tensor.from_array(1.5)),
        m.Observe("o", "obs", normal, None),
        m.ObserveResult(),
        m.Tag("t", "tagged", t),
        m.TagResult(),
        m.Reset(),
    ]
    for msg in msgs:
        buf = m.encode(msg)
        back = m.decode(buf)
        assert back == msg, msg
        assert peer.read_message(buf)[0] == msg.BODY
    assert m.decode(m.encode(msgs[3])).result.to_numpy().shape == (2, 3)
    # Parameters are held in slot order whatever order they were given in.
    assert list(normal.params) == ["mean", "stddev"]


def test_builder_is_reusable() -> None:
    import flatbuffers

    b = flatbuffers.Builder(64)
    first = m.encode(m.Handshake("x" * 300), builder=b)
    second = m.encode(m.Run(), builder=b)
    assert isinstance(m.decode(first), m.Handshake)
    assert isinstance(m.decode(second), m.Run)
    assert second == m.encode(m.Run())


def _message_with_body_type(type_byte: int) -> bytes:
    return peer.write_message("Run", type_byte=type_byte)


def test_unknown_body_type_is_a_decode_error() -> None:
    with pytest.raises(m.PpxDecodeError, match="unknown message body type 37"):
        m.decode(_message_with_body_type(37))
    with pytest.raises(m.PpxDecodeError, match="no body"):
        m.decode(_message_with_body_type(0))


def test_unknown_distribution_type_is_a_decode_error() -> None:
    buf = peer.write_message(
        "Sample",
        address="mu",
        name="",
        distribution=("Normal", [([0.0], ()), ([1.0], ())]),
        dist_type_byte=19,
    )
    with pytest.raises(m.PpxDecodeError, match="unknown distribution type 19 in Sample at address 'mu'"):
        m.decode(buf)


def test_missing_required_fields_are_named() -> None:
    buf = peer.write_message("Sample", name="n", distribution=("Normal", [([0.0], ()), ([1.0], ())]))
    with pytest.raises(m.PpxDecodeError, match="missing required field 'address' in Sample"):
        m.decode(buf)
    buf = peer.write_message("Sample", address="a", distribution=("Normal", [([0.0], ()), None]))
    with pytest.raises(m.PpxDecodeError, match="missing required parameter 'stddev' of Normal"):
        m.decode(buf)
    with pytest.raises(m.PpxDecodeError, match="missing required field 'result' in SampleResult"):
        m.decode(peer.write_message("SampleResult"))


def test_shape_data_mismatch_is_a_decode_error() -> None:
    buf = peer.write_message("SampleResult", result=([1.0, 2.0, 3.0, 4.0, 5.0], (2, 3)))
    with pytest.raises(m.PpxDecodeError, match=r"shape \[2, 3\] but 5 data values"):
        m.decode(buf)


def test_file_identifier_is_tolerated() -> None:
    import flatbuffers

    b = flatbuffers.Builder(64)
    s = b.CreateString("old")
    gen.HandshakeStart(b)
    gen.HandshakeAddSystemName(b, s)
    h = gen.HandshakeEnd(b)
    gen.MessageStart(b)
    gen.MessageAddBodyType(b, m.BODY_TYPES["Handshake"])
    gen.MessageAddBody(b, h)
    b.Finish(gen.MessageEnd(b), file_identifier=b"PPXF")
    buf = bytes(b.Output())
    assert gen.Message.MessageBufferHasIdentifier(buf, 0)
    assert m.decode(buf) == m.Handshake("old")


def test_malformed_bytes_raise_only_decode_errors() -> None:
    # The Python reader does not verify (the C++ codec does); it must still fail with
    # PpxDecodeError, never with another exception type, and never hang.
    rng = np.random.default_rng(0)
    raws = [_raw(model, entry) for model, entry in CASES]
    failures = 0
    for raw in raws:
        for n in range(0, len(raw), 3):
            try:
                m.decode(raw[:n])
            except m.PpxDecodeError as e:
                failures += 1
                assert str(e)
    for _ in range(3000):
        mutated = bytearray(raws[rng.integers(len(raws))])
        for _ in range(int(rng.integers(1, 4))):
            mutated[int(rng.integers(len(mutated)))] = int(rng.integers(256))
        try:
            m.decode(bytes(mutated))
        except m.PpxDecodeError as e:
            assert str(e)
    assert failures > 0
    with pytest.raises(m.PpxDecodeError):
        m.decode(b"")


def test_invalid_python_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="does not match"):
        m.Tensor(np.zeros(5), (2, 3))
    with pytest.raises(ValueError, match="unknown distribution"):
        m.Distribution("Cauchy", {})
    with pytest.raises(ValueError, match="takes parameters"):
        m.Distribution("Normal", {"mean": m.Tensor.from_array(0.0)})
    with pytest.raises(TypeError, match="not a PPX message"):
        m.encode("hello")  # type: ignore[arg-type]


# ---- the simulator peer over ZeroMQ ---------------------------------------------------


@pytest.fixture
def sim_peer(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Starts tests/ppx_sim_peer.py with the given arguments; yields a REQ round trip."""
    zmq = pytest.importorskip("zmq", reason="the PPX simulator peer needs pyzmq (extra 'ppx')")
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract ipc:// endpoints are Linux-only")
    import subprocess
    import uuid

    procs: list[subprocess.Popen[str]] = []
    contexts: list[Any] = []

    def start(*args: str, timeout_ms: int = 5000):  # type: ignore[no-untyped-def]
        endpoint = f"ipc://@ppfast-test-{uuid.uuid4().hex}"
        cmd = [
            sys.executable,
            str(REPO / "tests" / "ppx_sim_peer.py"),
            endpoint,
            "--idle-timeout",
            "30",
            *args,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"ready {endpoint}"
        ctx = zmq.Context()
        contexts.append(ctx)
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)

        def round_trip(msg: Any) -> bytes:
            sock.send(m.encode(msg))
            return sock.recv()

        return round_trip, proc

    yield start
    for ctx in contexts:
        ctx.destroy(linger=0)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.remote
def test_sim_peer_runs_the_gum_model(sim_peer) -> None:  # type: ignore[no-untyped-def]
    rt, _ = sim_peer("--model", "gum")
    hello = m.decode(rt(m.Handshake("test")))
    assert isinstance(hello, m.HandshakeResult) and "PPX 1.0.0" in hello.system_name
    for mu in (0.5, -2.0):
        sample = m.decode(rt(m.Run()))
        assert isinstance(sample, m.Sample)
        assert (sample.address, sample.distribution.type, sample.control) == ("mu", "Normal", True)
        assert sample.distribution.params["mean"] == m.Tensor.from_array(1.0)
        assert sample.distribution.params["stddev"] == m.Tensor.from_array(5.0**0.5)
        seen = []
        reply = m.decode(rt(m.SampleResult(m.Tensor.from_array([mu]))))
        while isinstance(reply, m.Observe):
            assert reply.value is None
            assert reply.distribution.params["mean"] == m.Tensor.from_array([mu])
            seen.append(reply.name)
            reply = m.decode(rt(m.ObserveResult()))
        assert seen == ["obs0", "obs1"]
        assert reply == m.RunResult(m.Tensor.from_array([mu]))
    # Out of order: pyprob_cpp's answer, Reset.
    assert isinstance(m.decode(rt(m.ObserveResult())), m.Reset)


@pytest.mark.remote
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("unknown-body", "unknown message body type 37"),
        ("unknown-dist", "unknown distribution type 19"),
        ("truncated", "cannot decode"),
    ],
)
def test_sim_peer_misbehaves_on_request(sim_peer, bad: str, error: str) -> None:  # type: ignore[no-untyped-def]
    rt, _ = sim_peer("--bad", bad)
    assert isinstance(m.decode(rt(m.Handshake("test"))), m.HandshakeResult)
    with pytest.raises(m.PpxDecodeError, match=error):
        m.decode(rt(m.Run()))
    # Once only: the next trace is well-formed.
    assert isinstance(m.decode(rt(m.Run())), m.Sample)


@pytest.mark.remote
def test_sim_peer_dies_mid_trace(sim_peer) -> None:  # type: ignore[no-untyped-def]
    rt, proc = sim_peer("--bad", "die-mid-trace", timeout_ms=500)
    rt(m.Handshake("test"))
    assert isinstance(m.decode(rt(m.Run())), m.Sample)
    zmq = pytest.importorskip("zmq")
    with pytest.raises(zmq.Again):
        rt(m.SampleResult(m.Tensor.from_array([0.0])))
    assert proc.wait(timeout=5) == 3
