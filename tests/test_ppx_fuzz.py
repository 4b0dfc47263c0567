"""Fuzzing the PPX decoding paths in a short CI mode.

1. The codec's standalone fuzz driver (csrc/transport/ppx/fuzz_decode.cpp), built here with
   AddressSanitizer + UndefinedBehaviorSanitizer, mutates real PPX messages for ~10 s:
   no crash, no sanitizer report, every invariant of the driver holds.
2. End to end: a PPX peer answers ppfast's client with mutated messages; every run ends
   either normally or with a typed ppfast error, and the client keeps working.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PPX_SRC = ROOT / "csrc" / "transport" / "ppx"
FUZZ_SECONDS = float(os.environ.get("PPFAST_FUZZ_SECONDS", "10"))
NO_TOOLS = shutil.which("g++") is None or shutil.which("flatc") is None


def _generate(gen: Path) -> None:
    """ppx_generated.h from the schema, as the build does."""
    subprocess.run(["flatc", "--cpp", "-o", str(gen), str(PPX_SRC / "ppx.fbs")], check=True,
                   capture_output=True)


def _vectors_dir() -> Path:
    env = os.environ.get("PPFAST_PPX_VECTORS")
    return Path(env) if env else ROOT.parent / "shared" / "ppx-vectors"


def _seed_messages() -> List[bytes]:
    """Well-formed messages of every body type and distribution (a corpus of our own, used
    besides the captured vectors when they are around)."""
    from ppfast.ppx import messages as M

    def t(x):
        return M.Tensor.from_array(x)

    dists = [
        M.Distribution(name, {p: t(v) for p, v in zip(params, values)})
        for name, params, values in [
            ("Normal", ("mean", "stddev"), (1.0, [2.0])),
            ("Uniform", ("low", "high"), ([0.0, 1.0], [2.0, 3.0])),
            ("Categorical", ("probs",), ([0.2, 0.3, 0.5],)),
            ("Poisson", ("rate",), (4.0,)),
            ("Bernoulli", ("probs",), (0.3,)),
            ("Beta", ("concentration1", "concentration0"), (2.0, 3.0)),
            ("Exponential", ("rate",), (1.5,)),
            ("Gamma", ("concentration", "rate"), (2.0, 1.0)),
            ("LogNormal", ("loc", "scale"), (0.0, 1.0)),
            ("Binomial", ("total_count", "probs"), (10.0, 0.4)),
            ("Weibull", ("scale", "concentration"), (1.0, 2.0)),
        ]
    ]
    msgs: List = [M.Handshake("engine"), M.HandshakeResult("sim (PPX 1.0.0)", "model"), M.Run(),
                  M.RunResult(t([1.0])), M.SampleResult(t([0.5])), M.ObserveResult(), M.TagResult(),
                  M.Reset(),
                  M.Tag("a", "b", t([1.0, 2.0]))]
    for i, d in enumerate(dists):
        msgs.append(M.Sample(f"[forward()+0x{i:x}]", "", d, control=bool(i % 2), replace=i == 3))
        msgs.append(M.Observe(f"obs{i}", f"obs{i}", d, t(1.0) if i % 2 else None))
    return [M.encode(m) for m in msgs]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    pytest.importorskip("flatbuffers", reason="the Python PPX codec needs flatbuffers (extra 'ppx')")
    out = tmp_path_factory.mktemp("ppx-corpus")
    for i, b in enumerate(_seed_messages()):
        (out / f"seed-{i:03d}.bin").write_bytes(b)
    vectors = _vectors_dir()
    if (vectors / "index.json").is_file():
        for f in sorted(vectors.rglob("*.bin")):
            (out / f"{f.parent.name}-{f.name}").write_bytes(f.read_bytes())
    return out


@pytest.mark.skipif(NO_TOOLS, reason="needs g++ and flatc")
def test_decoder_fuzz_under_sanitizers(tmp_path, corpus_dir):
    gen = tmp_path / "gen"
    _generate(gen)
    exe = tmp_path / "ppx_fuzz"
    build = subprocess.run(
        ["g++", "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
         "-fno-omit-frame-pointer", "-DPPFAST_FUZZ_STANDALONE", f"-I{PPX_SRC}", f"-I{gen}",
         str(PPX_SRC / "fuzz_decode.cpp"), str(PPX_SRC / "codec.cpp"), "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    deadline = time.monotonic() + FUZZ_SECONDS
    runs = mutations = 0
    for seed in itertools.count(1):
        n = 4000
        run = subprocess.run([str(exe), str(corpus_dir), str(n), str(seed)], capture_output=True, text=True,
                             env=env, timeout=300)
        assert run.returncode == 0, f"seed {seed}: {run.stdout[-2000:]}{run.stderr[-4000:]}"
        assert "runtime error" not in run.stderr and "AddressSanitizer" not in run.stderr, run.stderr[-4000:]
        assert "no crash" in run.stdout
        runs += 1
        mutations += n
        if time.monotonic() >= deadline:
            break
    assert mutations >= 4000


def test_client_survives_mutated_replies():
    zmq = pytest.importorskip("zmq", reason="needs pyzmq (extra 'ppx')")
    import ppfast
    from ppfast.errors import PpfastError, ProtocolError
    from ppfast.ppx import messages as M

    replies = [b for b in _seed_messages() if M.decode(b).BODY not in ("Handshake", "HandshakeResult", "Run")]
    rng = np.random.default_rng(1)

    def mutate(b: bytes) -> bytes:
        m = bytearray(b)
        for _ in range(int(rng.integers(1, 4))):
            op = int(rng.integers(0, 4))
            if op == 0 and m:
                m[int(rng.integers(len(m)))] ^= 1 << int(rng.integers(8))
            elif op == 1 and m:
                m[int(rng.integers(len(m)))] = int(rng.integers(256))
            elif op == 2:
                del m[int(rng.integers(len(m) + 1)):]
            else:
                at = int(rng.integers(0, max(1, len(m) // 4))) * 4
                m[at:at + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
        return bytes(m)

    address = f"ipc://@ppfast-test-{os.getpid()}-fuzz"
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.linger = 0
    sock.bind(address)
    stop = threading.Event()

    def serve() -> None:
        # Run -> a mutated message; any answer -> RunResult; Handshake -> HandshakeResult.
        while not stop.is_set():
            if not sock.poll(50):
                continue
            buf = sock.recv()
            try:
                body = M.decode(buf).BODY
            except ValueError:
                body = "?"
            if body == "Handshake":
                sock.send(M.encode(M.HandshakeResult("fuzz (PPX 1.0.0)", "fuzz")))
            elif body == "Run":
                sock.send(mutate(replies[int(rng.integers(len(replies)))]))
            else:
                sock.send(M.encode(M.RunResult(M.Tensor.from_array([0.0]))))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    outcomes = {"ok": 0, "protocol": 0, "trace": 0}
    try:
        model = ppfast.RemoteModel(address, timeout=5)
        last = "ok"
        for i in range(1500):
            try:
                model.simulate(1, seed=i, on_error="raise", progress=False)
                last = "ok"
            except ProtocolError:
                last = "protocol"
            except PpfastError:  # e.g. a mutated distribution parameter: the trace fails, in sync
                last = "trace"
            outcomes[last] += 1
        # A new socket and handshake after each protocol error (but the last), none after a
        # failed trace.
        reopened = outcomes["protocol"] - (last == "protocol")
        assert model.peers[0]["connects"] == 1 + reopened
    finally:
        stop.set()
        thread.join(timeout=10)
        sock.close()
        context.term()
    assert outcomes["ok"] > 0 and outcomes["protocol"] > 0, outcomes


# --------------------------------------------------------------------------- transport under sanitizers

_DRIVER = r"""
// Drives PPX servers with ppfast's C++ client: client_driver ADDRESS... TRACES
#include <cstdio>
#include <cstdlib>
#include "transport/ppx/client.hpp"
int main(int argc, char** argv) {
  std::vector<std::string> addresses(argv + 1, argv + argc - 1);
  ppfast::ppx::ClientOptions options;
  options.timeout_ms = 5000;
  ppfast::ppx::Client client(addresses, options);
  long traces = 0;
  for (int run = 0; run < 2; ++run) {
    ppfast::TraceBatch out;
    // A peer's error comes back with the traces finished before it in `out`.
    if (auto e = client.run(1, 0, std::atol(argv[argc - 1]), nullptr, out))
      std::printf("error %d: %s\n", static_cast<int>(e->kind), e->what());
    for (uint8_t status : out.status) traces += status == 0;  // finished traces only
  }
  std::printf("traces %ld\n", traces);
}
"""


@pytest.mark.slow  # compiles the core, the codec and both transport ends with sanitizers
@pytest.mark.skipif(NO_TOOLS, reason="needs g++ and flatc")
def test_client_and_server_under_sanitizers(tmp_path):
    """ASan + UBSan builds of the PPX server (two example simulators) and client: normal
    runs, malformed requests to the server, misbehaving peers for the client, a server
    killed mid-run.  No sanitizer report anywhere."""
    zmq = pytest.importorskip("zmq", reason="needs pyzmq (extra 'ppx')")
    from ppfast.ppx import messages as M

    gen = tmp_path / "gen"
    _generate(gen)
    (tmp_path / "driver.cpp").write_text(_DRIVER)
    flags = ["-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
             "-fno-omit-frame-pointer", f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}",
             f"-I{PPX_SRC}", f"-I{gen}"]
    core = [ROOT / "csrc" / "core" / f"{f}.cpp"
            for f in ("address_table", "api", "distributions", "recorder", "runner", "stack_address", "trace_batch")]
    sources = core + [PPX_SRC / "codec.cpp", PPX_SRC / "client.cpp", PPX_SRC / "server.cpp"]
    compiles = [subprocess.Popen(["g++", *flags, "-c", str(src), "-o", str(tmp_path / f"{src.stem}.o")],
                                 stderr=subprocess.PIPE, text=True) for src in sources]
    for p in compiles:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    objects = [str(tmp_path / f"{s.stem}.o") for s in core + [PPX_SRC / "codec.cpp"]]
    links = {
        "client_driver": [str(tmp_path / "driver.cpp"), str(tmp_path / "client.o")],
        "gum_ppx": [str(PPX_SRC / "server_main.cpp"), str(ROOT / "examples" / "cpp" / "gum.cpp"),
                    str(tmp_path / "server.o")],
        "tau_decay_ppx": [str(PPX_SRC / "server_main.cpp"), str(ROOT / "examples" / "cpp" / "tau_decay.cpp"),
                          str(tmp_path / "server.o")],
    }
    for exe, extra in links.items():
        done = subprocess.run(["g++", *flags, *extra, *objects, "-lzmq", "-pthread", "-ldl", "-o",
                               str(tmp_path / exe)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]

    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    procs: List[subprocess.Popen] = []
    logs: List[Path] = []

    def start(cmd: List[str]) -> str:
        address = f"ipc://@ppfast-test-{os.getpid()}-asan-{len(procs)}"
        log = tmp_path / f"proc-{len(procs)}.log"
        logs.append(log)
        with open(log, "w") as err:  # the child keeps its own descriptor
            procs.append(subprocess.Popen([*cmd, address, "--idle-timeout", "120"], stdout=subprocess.DEVNULL,
                                          stderr=err, env=env))
        time.sleep(0.3)
        return address

    def drive(*args: str) -> str:
        run = subprocess.run([str(tmp_path / "client_driver"), *args], capture_output=True, text=True,
                             env=env, timeout=300)
        assert run.returncode == 0 and "runtime error" not in run.stderr and "Sanitizer" not in run.stderr, \
            run.stdout[-2000:] + run.stderr[-4000:]
        return run.stdout

    try:
        gum = [start([str(tmp_path / "gum_ppx")]) for _ in range(2)]
        tau = [start([str(tmp_path / "tau_decay_ppx")]) for _ in range(2)]
        assert "traces 2000" in drive(*gum, "1000")
        assert "traces 200" in drive(*tau, "100")

        # Malformed and out-of-order requests to a sanitized server.
        context = zmq.Context()
        sock = context.socket(zmq.REQ)
        sock.linger = 0
        sock.rcvtimeo = 10000
        sock.connect(gum[0])
        for request in (b"\x00" * 3, M.encode(M.Run())[:12], M.encode(M.TagResult())):
            sock.send(request)
            assert isinstance(M.decode(sock.recv()), M.Reset)
        two_values = M.encode(M.SampleResult(M.Tensor.from_array([1.0, 2.0])))
        for bad in (b"garbage!", M.encode(M.Handshake("x")), two_values):
            sock.send(M.encode(M.Run()))
            assert isinstance(M.decode(sock.recv()), M.Sample)
            sock.send(bad)
            assert isinstance(M.decode(sock.recv()), (M.Reset, M.HandshakeResult))
        sock.close()
        context.term()

        # Misbehaving peers for a sanitized client.
        sim_peer = [sys.executable, str(ROOT / "tests" / "ppx_sim_peer.py")]
        for mode in ("truncated", "garbage", "unknown-body", "unknown-dist", "out-of-order", "version"):
            out = drive(start([*sim_peer, "--model", "gum", "--bad", mode]), "5")
            assert out.count("error") == 1 and "traces 5" in out, (mode, out)

        # A server killed mid-run.
        victim = start([str(tmp_path / "tau_decay_ppx")])
        driver = subprocess.Popen([str(tmp_path / "client_driver"), tau[0], victim, "100000"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(1.0)
        procs[-1].kill()
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 0 and "Sanitizer" not in err and "runtime error" not in err, err[-4000:]
        assert "error 3:" in out  # PeerGone
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=30)
    for log in logs:
        text = log.read_text()
        assert "Sanitizer" not in text and "runtime error" not in text, text[-4000:]
