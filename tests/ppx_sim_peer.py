#!/usr/bin/env python3
"""A PPX simulator written from PPX.md alone, to test PPX engines (ppfast's client) against.

It shares no code with ppfast: messages are written and read with the bare
``flatbuffers`` runtime, by the slot numbers of PPX.md, not through ppx.fbs. A slot
mistake in either implementation therefore shows up as a disagreement.

    python tests/ppx_sim_peer.py ipc://@name [--model gum|branching|hundred] [--bad MODE]

The simulator binds a ZeroMQ REP socket, answers Handshake with HandshakeResult, and on
each Run executes its model: one Sample / Observe / Tag reply per random call (reading
the engine's SampleResult / ObserveResult / TagResult), then RunResult. Anything
unexpected is answered with Reset, as pyprob_cpp does. It prints ``ready <endpoint>``
once bound.

Models:
  gum        mu ~ Normal(1, sqrt 5) at address "mu"; obs0, obs1 ~ Normal(mu, sqrt 2)
             (names "obs0", "obs1"); returns mu. Posterior given obs0=8, obs1=9:
             Normal(7.25, sqrt(5/6)).
  branching  r ~ Poisson(4) at "r"; if r > 4: l = 6, else extra ~ Poisson(4) at
             "extra" and l = 1 + fib(3 r) + extra; obs ~ Poisson(l) (name "obs");
             returns r. The address sequence depends on r.
  hundred    100 draws x ~ Normal(0, 1) at the same address "x" (a loop, as
             pyprob_cpp addresses it), then obs ~ Normal(mean(x), 1) (name "obs");
             returns mean(x).
  tensor     gum, returning the 17 x 3 tensor mu + [0, 1, ..., 50] (as pyprob_cpp's HMM
             test simulator returns a 17 x 3 tensor).
  big        gum, returning a tensor of 300,000 values (2.4 MB): a message-size probe.
  runaway    draws x ~ Normal(0, 1) at "x" forever: a per-trace record limit probe.

Misbehaviour for robustness tests (``--bad``, once, on the ``--bad-at``-th Run unless
said otherwise):
  truncated      the first Sample reply cut to half its bytes
  garbage        random bytes instead of the first reply
  unknown-body   a well-formed Message whose body union type byte is 37
  unknown-dist   a Sample whose distribution union type byte is 19
  out-of-order   a RunResult in answer to the Handshake (before any Run)
  version        HandshakeResult whose system_name announces "PPX 2.0.0" instead of
                 "PPX 1.0.0"
  die-mid-trace  the first Sample is sent, then the process exits (status 3) on
                 receiving its SampleResult, without replying
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Generator, Sequence
from typing import Any

import flatbuffers
import numpy as np
from flatbuffers import encode as fb_encode
from flatbuffers import number_types as N
from flatbuffers.table import Table

PROTOCOL_VERSION = "1.0.0"
SYSTEM_NAME = f"ppx_sim_peer 0.1 (PPX {PROTOCOL_VERSION})"
BAD_VERSION_SYSTEM_NAME = "ppx_sim_peer 0.1 (PPX 2.0.0)"

# ---- PPX.md, transcribed: union type bytes and slot layouts -----------------------------

BODY = {
    "Handshake": 1,
    "HandshakeResult": 2,
    "Run": 3,
    "RunResult": 4,
    "Sample": 5,
    "SampleResult": 6,
    "Observe": 7,
    "ObserveResult": 8,
    "Tag": 9,
    "TagResult": 10,
    "Reset": 11,
}
BODY_NAME = {v: k for k, v in BODY.items()}

# name -> (type byte, parameter names in slot order)
DIST: dict[str, tuple[int, tuple[str, ...]]] = {
    "Normal": (1, ("mean", "stddev")),
    "Uniform": (2, ("low", "high")),
    "Categorical": (3, ("probs",)),
    "Poisson": (4, ("rate",)),
    "Bernoulli": (5, ("probs",)),
    "Beta": (6, ("concentration1", "concentration0")),
    "Exponential": (7, ("rate",)),
    "Gamma": (8, ("concentration", "rate")),
    "LogNormal": (9, ("loc", "scale")),
    "Binomial": (10, ("total_count", "probs")),
    "Weibull": (11, ("scale", "concentration")),
}
DIST_NAME = {v[0]: k for k, v in DIST.items()}

# Slot numbers of each table's fields (a union takes two: type byte, then offset).
SLOTS: dict[str, dict[str, int]] = {
    "Message": {"body_type": 0, "body": 1},
    "Tensor": {"data": 0, "shape": 1},
    "Handshake": {"system_name": 0},
    "HandshakeResult": {"system_name": 0, "model_name": 1},
    "Run": {},
    "RunResult": {"result": 0},
    "Sample": {
        "address": 0,
        "name": 1,
        "distribution_type": 2,
        "distribution": 3,
        "control": 4,
        "replace": 5,
    },
    "SampleResult": {"result": 0},
    "Observe": {"address": 0, "name": 1, "distribution_type": 2, "distribution": 3, "value": 4},
    "ObserveResult": {},
    "Tag": {"address": 0, "name": 1, "value": 2},
    "TagResult": {},
    "Reset": {},
}

# A tensor on the way out: (values, shape); shape () is a scalar.
TensorArg = tuple[Sequence[float], tuple[int, ...]]


# ---- writing ----------------------------------------------------------------------------


def _voffset(slot: int) -> int:
    return 4 + 2 * slot


def _write_tensor(b: flatbuffers.Builder, t: TensorArg | None) -> int | None:
    if t is None:
        return None
    values, shape = t
    data = b.CreateNumpyVector(np.asarray(values, dtype="<f8").reshape(-1))
    shp = b.CreateNumpyVector(np.asarray(shape, dtype="<i4").reshape(-1))
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(SLOTS["Tensor"]["data"], data, 0)
    b.PrependUOffsetTRelativeSlot(SLOTS["Tensor"]["shape"], shp, 0)
    return b.EndObject()


def _write_dist(b: flatbuffers.Builder, name: str, params: Sequence[TensorArg | None]) -> int:
    _, names = DIST[name]
    offsets = [_write_tensor(b, p) for p in params]
    b.StartObject(len(names))
    for slot, off in enumerate(offsets):
        if off is not None:  # a missing parameter, on purpose
            b.PrependUOffsetTRelativeSlot(slot, off, 0)
    return b.EndObject()


def write_message(body: str, type_byte: int | None = None, **fields: Any) -> bytes:
    """One PPX message. ``fields`` by PPX.md name; tensors as ``(values, shape)``;
    ``distribution`` as ``(name, [param tensors in slot order])``. ``type_byte``
    overrides the body's union type byte (and ``dist_type_byte`` the distribution's),
    to produce unknown types on purpose."""
    b = flatbuffers.Builder(256)
    slots = SLOTS[body]
    # Children first: a FlatBuffers table cannot be built while another is open.
    offsets: dict[str, int] = {}
    for key in ("system_name", "model_name", "address", "name"):
        if key in fields:
            offsets[key] = b.CreateString(fields[key])
    dist_type = None
    if "distribution" in fields:
        dname, params = fields["distribution"]
        offsets["distribution"] = _write_dist(b, dname, params)
        dist_type = fields.get("dist_type_byte", DIST[dname][0])
    for key in ("result", "value"):
        if fields.get(key) is not None:
            off = _write_tensor(b, fields[key])
            assert off is not None
            offsets[key] = off

    b.StartObject(len(slots))
    for key, off in offsets.items():
        b.PrependUOffsetTRelativeSlot(slots[key], off, 0)
    if dist_type is not None:
        b.PrependUint8Slot(slots["distribution_type"], dist_type, 0)
    if body == "Sample":
        b.PrependBoolSlot(slots["control"], fields.get("control", True), True)
        b.PrependBoolSlot(slots["replace"], fields.get("replace", False), False)
    body_off = b.EndObject()

    b.StartObject(2)
    b.PrependUint8Slot(SLOTS["Message"]["body_type"], BODY[body] if type_byte is None else type_byte, 0)
    b.PrependUOffsetTRelativeSlot(SLOTS["Message"]["body"], body_off, 0)
    b.Finish(b.EndObject())  # no file identifier, like the real peers
    return bytes(b.Output())


# ---- reading ----------------------------------------------------------------------------


class WireError(ValueError):
    """A request that is not a PPX message this simulator understands."""


def _field(tab: Table, slot: int) -> int:
    return tab.Offset(_voffset(slot))


def _read_table(tab: Table, slot: int) -> Table | None:
    o = _field(tab, slot)
    return Table(tab.Bytes, tab.Indirect(o + tab.Pos)) if o else None


def _read_string(tab: Table, slot: int) -> str | None:
    o = _field(tab, slot)
    return tab.String(o + tab.Pos).decode("utf-8") if o else None


def _read_u8(tab: Table, slot: int, default: int) -> int:
    o = _field(tab, slot)
    return int(tab.Get(N.Uint8Flags, o + tab.Pos)) if o else default


def _read_tensor(tab: Table, slot: int) -> dict[str, Any] | None:
    t = _read_table(tab, slot)
    if t is None:
        return None
    od = _field(t, SLOTS["Tensor"]["data"])
    data = t.GetVectorAsNumpy(N.Float64Flags, od) if od else np.zeros(0)
    if data.size == 0:
        return None  # no data means "none"
    os_ = _field(t, SLOTS["Tensor"]["shape"])
    shape = t.GetVectorAsNumpy(N.Int32Flags, os_).tolist() if os_ else [int(data.size)]
    return {"data": data.astype(np.float64).tolist(), "shape": [int(d) for d in shape]}


def read_message(buf: bytes) -> tuple[str, dict[str, Any]]:
    """``(body name, fields)`` in the layout of ppx-vectors/index.json."""
    try:
        root = Table(buf, fb_encode.Get(N.UOffsetTFlags.packer_type, buf, 0))
        type_byte = _read_u8(root, SLOTS["Message"]["body_type"], 0)
        body = BODY_NAME.get(type_byte)
        if body is None:
            raise WireError(f"unknown message body type {type_byte}")
        tab = _read_table(root, SLOTS["Message"]["body"])
        if tab is None:
            raise WireError(f"{body} message without body table")
        slots = SLOTS[body]
        fields: dict[str, Any] = {}
        for key in ("system_name", "model_name", "address", "name"):
            if key in slots:
                fields[key] = _read_string(tab, slots[key]) or ""
        if "distribution" in slots:
            dt = _read_u8(tab, slots["distribution_type"], 0)
            if dt not in DIST_NAME:
                raise WireError(f"unknown distribution type {dt}")
            dname = DIST_NAME[dt]
            dtab = _read_table(tab, slots["distribution"])
            if dtab is None:
                raise WireError(f"{body} without distribution table")
            dist: dict[str, Any] = {"type": dname}
            for slot, pname in enumerate(DIST[dname][1]):
                dist[pname] = _read_tensor(dtab, slot)
            fields["distribution"] = dist
        if body == "Sample":
            fields["control"] = bool(_read_u8(tab, slots["control"], 1))
            if _read_u8(tab, slots["replace"], 0):
                fields["replace"] = True
        for key in ("result", "value"):
            if key in slots:
                fields[key] = _read_tensor(tab, slots[key])
        return body, fields
    except WireError:
        raise
    except Exception as e:  # whatever untrusted bytes make the bare runtime raise
        raise WireError(f"unreadable PPX message ({len(buf)} bytes): {type(e).__name__}: {e}") from e


# ---- models -----------------------------------------------------------------------------

# A model is a generator yielding requests and receiving, for a sample, the value the
# engine chose as (data list, shape list); it returns the result tensor.
Request = tuple[str, dict[str, Any]]
Model = Generator[Request, Any, TensorArg]


def _scalar(x: float) -> TensorArg:
    return ([float(x)], ())


def _like(value: dict[str, Any]) -> TensorArg:
    # Values the engine sent keep their shape, as pyprob_cpp passes them on.
    return (value["data"], tuple(value["shape"]))


def _sample(address: str, name: str, dist: str, params: list[TensorArg], **kw: Any) -> Request:
    return ("Sample", dict(address=address, name=name, distribution=(dist, params), **kw))


def _observe(address: str, name: str, dist: str, params: list[TensorArg]) -> Request:
    return ("Observe", {"address": address, "name": name, "distribution": (dist, params), "value": None})


def model_gum(opts: argparse.Namespace) -> Model:
    mu = yield _sample("mu", "mu", "Normal", [_scalar(1.0), _scalar(math.sqrt(5.0))], replace=opts.replace)
    if opts.tag:
        yield ("Tag", {"address": "mu_tag", "name": "mu", "value": _like(mu)})
    for name in ("obs0", "obs1"):
        yield _observe(name, name, "Normal", [_like(mu), _scalar(math.sqrt(2.0))])
    return _like(mu)


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def model_branching(opts: argparse.Namespace) -> Model:
    r = yield _sample("r", "r", "Poisson", [_scalar(4.0)], replace=opts.replace)
    rv = round(r["data"][0])
    if rv > 4:
        rate = 6.0
    else:
        extra = yield _sample("extra", "extra", "Poisson", [_scalar(4.0)], replace=opts.replace)
        rate = 1.0 + _fib(3 * max(rv, 0)) + float(extra["data"][0])
    yield _observe("obs", "obs", "Poisson", [_scalar(rate)])
    return _like(r)


def model_hundred(opts: argparse.Namespace) -> Model:
    total = 0.0
    for _ in range(100):
        x = yield _sample("x", "", "Normal", [_scalar(0.0), _scalar(1.0)], replace=opts.replace)
        total += float(x["data"][0])
    mean = total / 100.0
    yield _observe("obs", "obs", "Normal", [([mean], (1,)), _scalar(1.0)])
    return ([mean], (1,))


def model_tensor(opts: argparse.Namespace) -> Model:
    mu = yield from model_gum(opts)
    return ([float(mu[0][0]) + k for k in range(51)], (17, 3))


def model_big(opts: argparse.Namespace) -> Model:
    mu = yield from model_gum(opts)
    return ([float(mu[0][0])] * 300_000, (300_000,))


def model_runaway(opts: argparse.Namespace) -> Model:
    while True:
        yield _sample("x", "x", "Normal", [_scalar(0.0), _scalar(1.0)])


MODELS = {
    "gum": (model_gum, "Gaussian with unknown mean (ppx_sim_peer)"),
    "branching": (model_branching, "Branching (ppx_sim_peer)"),
    "hundred": (model_hundred, "Hundred samples (ppx_sim_peer)"),
    "tensor": (model_tensor, "Tensor result (ppx_sim_peer)"),
    "big": (model_big, "Big result (ppx_sim_peer)"),
    "runaway": (model_runaway, "Runaway (ppx_sim_peer)"),
}

EXPECTED_ANSWER = {"Sample": "SampleResult", "Observe": "ObserveResult", "Tag": "TagResult"}


# ---- the server -------------------------------------------------------------------------


class Simulator:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.model_fn, self.model_name = MODELS[opts.model]
        self.trace: Model | None = None
        self.expecting: str | None = None  # answer the current trace waits for
        self.runs = 0
        self.traces_done = 0
        self.bad_pending = opts.bad is not None
        self.die_on_next_answer = False
        self.rng = np.random.default_rng(opts.seed)

    def log(self, text: str) -> None:
        print(f"ppx_sim_peer: {text}", file=sys.stderr, flush=True)

    def reset(self) -> bytes:
        self.trace = None
        self.expecting = None
        return write_message("Reset")

    def _emit(self, request: Request) -> bytes:
        body, fields = request
        self.expecting = EXPECTED_ANSWER[body]
        return write_message(body, **fields)

    def _step(self, answer: Any) -> bytes:
        assert self.trace is not None
        try:
            request = self.trace.send(answer)
        except StopIteration as stop:
            self.trace = None
            self.expecting = None
            self.traces_done += 1
            return write_message("RunResult", result=stop.value)
        return self._emit(request)

    def _misbehave_now(self, mode: str) -> bool:
        return self.bad_pending and self.opts.bad == mode

    def handle(self, buf: bytes) -> bytes | None:
        """The reply to one request; None means: exit without replying."""
        if self.die_on_next_answer:
            self.log("dying mid-trace on purpose (--bad die-mid-trace)")
            return None
        try:
            body, fields = read_message(buf)
        except WireError as e:
            self.log(f"bad request: {e}; answering Reset")
            return self.reset()

        if body == "Handshake":
            self.trace = None
            self.expecting = None
            if self._misbehave_now("out-of-order"):
                self.bad_pending = False
                return write_message("RunResult", result=_scalar(0.0))
            system_name = SYSTEM_NAME
            if self._misbehave_now("version"):
                self.bad_pending = False
                system_name = BAD_VERSION_SYSTEM_NAME
            return write_message("HandshakeResult", system_name=system_name, model_name=self.model_name)

        if body == "Run":
            self.runs += 1
            self.trace = self.model_fn(self.opts)
            self.expecting = None
            first = next(self.trace)
            if self.bad_pending and self.runs >= self.opts.bad_at:
                bad = self._bad_first_reply(first)
                if bad is not None:
                    return bad
            return self._emit(first)

        if body == "Reset":
            return self.reset()

        if self.trace is not None and body == self.expecting:
            if body == "SampleResult":
                value = fields.get("result")
                if value is None:
                    self.log("SampleResult without result; answering Reset")
                    return self.reset()
                return self._step(value)
            return self._step(None)

        self.log(f"unexpected {body} (expecting {self.expecting or 'Handshake or Run'}); answering Reset")
        return self.reset()

    def _bad_first_reply(self, first: Request) -> bytes | None:
        mode = self.opts.bad
        if mode in ("out-of-order", "version"):
            return None  # those misbehave at the handshake
        self.bad_pending = False
        body, fields = first
        good = write_message(body, **fields)
        if mode == "die-mid-trace":
            self.die_on_next_answer = True
            self.expecting = EXPECTED_ANSWER[body]
            return good
        self.trace = None
        self.expecting = None
        if mode == "truncated":
            return good[: len(good) // 2]
        if mode == "garbage":
            return self.rng.integers(0, 256, size=64, dtype=np.uint8).tobytes()
        if mode == "unknown-body":
            return write_message("Run", type_byte=37)
        if mode == "unknown-dist":
            return write_message(
                "Sample",
                address="bad",
                name="bad",
                distribution=("Normal", [_scalar(0.0), _scalar(1.0)]),
                dist_type_byte=19,
            )
        raise AssertionError(mode)


def main(argv: Sequence[str] | None = None) -> int:
    import zmq

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("endpoint", help="where to bind the REP socket, e.g. ipc://@name or tcp://*:5555")
    p.add_argument("--model", choices=sorted(MODELS), default="gum")
    p.add_argument(
        "--bad",
        choices=[
            "truncated",
            "garbage",
            "unknown-body",
            "unknown-dist",
            "out-of-order",
            "version",
            "die-mid-trace",
        ],
        help="misbehave once, on purpose",
    )
    p.add_argument("--bad-at", type=int, default=1, help="misbehave on this Run (1-based; default 1)")
    p.add_argument("--tag", action="store_true", help="gum: send a Tag of mu after sampling it")
    p.add_argument("--replace", action="store_true", help="set the PPX 0.1.x 'replace' flag on samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the garbage bytes")
    p.add_argument("--max-traces", type=int, default=0, help="exit after this many RunResults (0: never)")
    p.add_argument("--idle-timeout", type=float, default=600.0, help="exit after this many idle seconds")
    opts = p.parse_args(argv)

    sim = Simulator(opts)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(opts.endpoint)
    print(f"ready {opts.endpoint}", flush=True)
    try:
        while True:
            if not sock.poll(int(opts.idle_timeout * 1000)):
                sim.log(f"idle for {opts.idle_timeout:g} s; exiting")
                return 0
            reply = sim.handle(sock.recv())
            if reply is None:
                sys.stdout.flush()
                os._exit(3)  # a crash, as far as the engine can tell
            sock.send(reply)
            if opts.max_traces and sim.traces_done >= opts.max_traces:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close(linger=1000)  # let the last reply leave
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
