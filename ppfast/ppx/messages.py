"""PPX messages in Python: typed dataclasses, ``encode`` to bytes, ``decode`` from bytes.

For tests and tooling (conformance checks, simulators written in Python, debugging
captures). Tensors are written as whole numpy vectors, never element by element.

Example::

    from ppfast.ppx import messages as m

    mean = m.Tensor.from_array(1.0)          # scalar: shape ()
    sd = m.Tensor.from_array([2.0])          # shape (1,)
    buf = m.encode(m.Sample("mu", "mu", m.Distribution("Normal", {"mean": mean, "stddev": sd})))
    msg = m.decode(buf)                      # -> Sample(...)
    body, fields = m.to_fields(msg)          # the layout of ppx-vectors/index.json
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping
from typing import Any, ClassVar, Union

import numpy as np

try:
    import flatbuffers
except ImportError as e:  # ppfast.ppx imports nothing from ppfast, so not ppfast._optional
    raise ModuleNotFoundError("ppfast.ppx.messages needs flatbuffers, which is not installed: "
                              "pip install 'ppfast[ppx]'", name="flatbuffers") from e

from ._generated import ppx_generated as _g

__all__ = [
    "BODY_TYPES",
    "DISTRIBUTION_PARAMS",
    "DISTRIBUTION_TYPES",
    "Distribution",
    "Handshake",
    "HandshakeResult",
    "Message",
    "Observe",
    "ObserveResult",
    "PpxDecodeError",
    "Reset",
    "Run",
    "RunResult",
    "Sample",
    "SampleResult",
    "Tag",
    "TagResult",
    "Tensor",
    "decode",
    "encode",
    "from_fields",
    "to_fields",
]

#: Union type byte of each message body (PPX.md order).
BODY_TYPES: dict[str, int] = {
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

#: Union type byte of each distribution (PPX.md order).
DISTRIBUTION_TYPES: dict[str, int] = {
    "Normal": 1,
    "Uniform": 2,
    "Categorical": 3,
    "Poisson": 4,
    "Bernoulli": 5,
    "Beta": 6,
    "Exponential": 7,
    "Gamma": 8,
    "LogNormal": 9,
    "Binomial": 10,
    "Weibull": 11,
}

#: Parameter names of each distribution, in slot order.
DISTRIBUTION_PARAMS: dict[str, tuple[str, ...]] = {
    "Normal": ("mean", "stddev"),
    "Uniform": ("low", "high"),
    "Categorical": ("probs",),
    "Poisson": ("rate",),
    "Bernoulli": ("probs",),
    "Beta": ("concentration1", "concentration0"),
    "Exponential": ("rate",),
    "Gamma": ("concentration", "rate"),
    "LogNormal": ("loc", "scale"),
    "Binomial": ("total_count", "probs"),
    "Weibull": ("scale", "concentration"),
}

_BODY_NAMES = {v: k for k, v in BODY_TYPES.items()}
_DIST_NAMES = {v: k for k, v in DISTRIBUTION_TYPES.items()}


class PpxDecodeError(ValueError):
    """Bytes that are not a well-formed PPX message; the message says what was wrong."""


# ---- values ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Tensor:
    """A PPX tensor: float64 data (flat, row-major) and an int32 shape.

    The shape is kept as sent: real peers send scalars with shape ``()`` and sampled
    values with shape ``(1,)``, and the two differ to PyTorch.
    """

    data: np.ndarray
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        data = np.ascontiguousarray(self.data, dtype=np.float64).reshape(-1)
        shape = tuple(int(d) for d in self.shape)
        if int(np.prod(shape, dtype=np.int64)) != data.size:
            raise ValueError(f"tensor shape {list(shape)} does not match {data.size} data values")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "shape", shape)

    @classmethod
    def from_array(cls, x: Any) -> Tensor:
        """Tensor of any array-like (numpy array, list, float, 0-d torch tensor ...)."""
        a = np.asarray(x, dtype=np.float64)
        return cls(a.reshape(-1), a.shape)

    def to_numpy(self) -> np.ndarray:
        """The values with their shape."""
        return self.data.reshape(self.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tensor):
            return NotImplemented
        return self.shape == other.shape and np.array_equal(self.data, other.data, equal_nan=True)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Tensor(data={self.data.tolist()}, shape={list(self.shape)})"


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A distribution by PPX name (``"Normal"``) and parameters by field name."""

    type: str
    params: Mapping[str, Tensor]

    def __post_init__(self) -> None:
        names = DISTRIBUTION_PARAMS.get(self.type)
        if names is None:
            raise ValueError(f"unknown distribution {self.type!r}; PPX has {sorted(DISTRIBUTION_PARAMS)}")
        if set(self.params) != set(names):
            raise ValueError(f"{self.type} takes parameters {list(names)}, got {sorted(self.params)}")
        missing = [k for k in names if self.params[k] is None]
        if missing:
            raise ValueError(f"{self.type} parameters {missing} are None")
        # Slot order, so that equality and repr do not depend on the caller's order.
        object.__setattr__(self, "params", {k: self.params[k] for k in names})


# ---- messages ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Handshake:
    system_name: str = ""
    BODY: ClassVar[str] = "Handshake"


@dataclasses.dataclass(frozen=True)
class HandshakeResult:
    system_name: str = ""
    model_name: str = ""
    BODY: ClassVar[str] = "HandshakeResult"


@dataclasses.dataclass(frozen=True)
class Run:
    BODY: ClassVar[str] = "Run"


@dataclasses.dataclass(frozen=True)
class RunResult:
    result: Tensor | None = None
    BODY: ClassVar[str] = "RunResult"


@dataclasses.dataclass(frozen=True)
class Sample:
    address: str
    name: str
    distribution: Distribution
    control: bool = True
    replace: bool = False  # PPX 0.1.x only
    BODY: ClassVar[str] = "Sample"


@dataclasses.dataclass(frozen=True)
class SampleResult:
    result: Tensor
    BODY: ClassVar[str] = "SampleResult"


@dataclasses.dataclass(frozen=True)
class Observe:
    address: str
    name: str
    distribution: Distribution
    value: Tensor | None = None
    BODY: ClassVar[str] = "Observe"


@dataclasses.dataclass(frozen=True)
class ObserveResult:
    BODY: ClassVar[str] = "ObserveResult"


@dataclasses.dataclass(frozen=True)
class Tag:
    address: str
    name: str
    value: Tensor | None = None
    BODY: ClassVar[str] = "Tag"


@dataclasses.dataclass(frozen=True)
class TagResult:
    BODY: ClassVar[str] = "TagResult"


@dataclasses.dataclass(frozen=True)
class Reset:
    BODY: ClassVar[str] = "Reset"


Message = Union[
    Handshake,
    HandshakeResult,
    Run,
    RunResult,
    Sample,
    SampleResult,
    Observe,
    ObserveResult,
    Tag,
    TagResult,
    Reset,
]

_CLASSES: dict[str, Any] = {
    c.BODY: c
    for c in (
        Handshake,
        HandshakeResult,
        Run,
        RunResult,
        Sample,
        SampleResult,
        Observe,
        ObserveResult,
        Tag,
        TagResult,
        Reset,
    )
}


def _camel(field: str) -> str:
    # flatc's Python accessor names: total_count -> TotalCount
    return "".join(part[:1].upper() + part[1:] for part in field.split("_"))


# ---- encoding ----------------------------------------------------------------------------


def _put_tensor(b: flatbuffers.Builder, t: Tensor | None) -> int | None:
    if t is None or t.data.size == 0:
        return None  # "none": the field is left out, as pyprob_cpp does
    data = b.CreateNumpyVector(t.data.astype("<f8", copy=False))
    # Always written, also when empty (scalar): PyProb reshapes with it.
    shape = b.CreateNumpyVector(np.asarray(t.shape, dtype="<i4").reshape(-1))
    _g.TensorStart(b)
    _g.TensorAddData(b, data)
    _g.TensorAddShape(b, shape)
    return _g.TensorEnd(b)


def _put_distribution(b: flatbuffers.Builder, d: Distribution) -> int:
    names = DISTRIBUTION_PARAMS[d.type]
    offsets = [_put_tensor(b, d.params[n]) for n in names]  # before the table is opened
    getattr(_g, f"{d.type}Start")(b)
    for n, off in zip(names, offsets):
        if off is not None:
            getattr(_g, f"{d.type}Add{_camel(n)}")(b, off)
    return getattr(_g, f"{d.type}End")(b)


def encode(msg: Message, builder: flatbuffers.Builder | None = None) -> bytes:
    """Bytes of one PPX message (no file identifier, as the real peers write it).

    A ``builder`` may be passed to reuse its memory; it is cleared first.
    """
    cls = type(msg)
    body = getattr(cls, "BODY", "")
    if _CLASSES.get(body) is not cls:
        raise TypeError(f"not a PPX message: {msg!r}")
    b = builder if builder is not None else flatbuffers.Builder(256)
    b.Clear()

    # Children first: a FlatBuffers table cannot be built while another is open.
    children: dict[str, int] = {}
    for field in ("system_name", "model_name", "address", "name"):
        if hasattr(msg, field):
            children[field] = b.CreateString(getattr(msg, field))
    for field in ("result", "value"):
        off = _put_tensor(b, getattr(msg, field, None))
        if off is not None:
            children[field] = off
    dist: Distribution | None = getattr(msg, "distribution", None)
    dist_off = _put_distribution(b, dist) if dist is not None else None

    getattr(_g, f"{body}Start")(b)
    for field, off in children.items():
        getattr(_g, f"{body}Add{_camel(field)}")(b, off)
    if dist is not None:
        getattr(_g, f"{body}AddDistributionType")(b, DISTRIBUTION_TYPES[dist.type])
        getattr(_g, f"{body}AddDistribution")(b, dist_off)
    if isinstance(msg, Sample):
        _g.SampleAddControl(b, msg.control)
        _g.SampleAddReplace(b, msg.replace)
    body_off = getattr(_g, f"{body}End")(b)

    _g.MessageStart(b)
    _g.MessageAddBodyType(b, BODY_TYPES[body])
    _g.MessageAddBody(b, body_off)
    b.Finish(_g.MessageEnd(b))
    return bytes(b.Output())


# ---- decoding ----------------------------------------------------------------------------


def _where(body: str, address: str | None) -> str:
    return f"in {body}" + (f" at address {address!r}" if address else "")


def _get_tensor(t: Any, field: str, where: str) -> Tensor | None:
    if t is None or t.DataIsNone() or t.DataLength() == 0:
        return None
    data = np.array(t.DataAsNumpy(), dtype=np.float64)  # own copy, native byte order
    if t.ShapeIsNone():
        shape: tuple[int, ...] = (data.size,)
    else:
        shape = tuple(int(d) for d in t.ShapeAsNumpy())
    if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.int64)) != data.size:
        raise PpxDecodeError(f"tensor {field!r} {where} has shape {list(shape)} but {data.size} data values")
    return Tensor(data, shape)


def _get_string(s: bytes | None) -> str:
    return "" if s is None else s.decode("utf-8")


def _get_distribution(owner: Any, where: str) -> Distribution:
    type_byte = owner.DistributionType()
    if type_byte == 0:
        raise PpxDecodeError(f"missing required field 'distribution' {where}")
    name = _DIST_NAMES.get(type_byte)
    if name is None:
        raise PpxDecodeError(f"unknown distribution type {type_byte} {where}")
    table = owner.Distribution()
    if table is None:
        raise PpxDecodeError(f"missing table of distribution {name} {where}")
    d = getattr(_g, name)()
    d.Init(table.Bytes, table.Pos)
    params = {}
    for p in DISTRIBUTION_PARAMS[name]:
        t = _get_tensor(getattr(d, _camel(p))(), p, where)
        if t is None:
            raise PpxDecodeError(f"missing required parameter {p!r} of {name} {where}")
        params[p] = t
    return Distribution(name, params)


def _decode(buf: bytes) -> Message:
    root = _g.Message.GetRootAs(buf, 0)
    type_byte = root.BodyType()
    if type_byte == 0:
        raise PpxDecodeError("message has no body (union type NONE)")
    body = _BODY_NAMES.get(type_byte)
    if body is None:
        raise PpxDecodeError(f"unknown message body type {type_byte}")
    table = root.Body()
    if table is None:
        raise PpxDecodeError(f"message of type {body} has no body table")
    b = getattr(_g, body)()
    b.Init(table.Bytes, table.Pos)
    where = _where(body, None)

    if body == "Handshake":
        return Handshake(_get_string(b.SystemName()))
    if body == "HandshakeResult":
        return HandshakeResult(_get_string(b.SystemName()), _get_string(b.ModelName()))
    if body in ("RunResult", "SampleResult"):
        result = _get_tensor(b.Result(), "result", where)
        if body == "RunResult":
            return RunResult(result)
        if result is None:
            raise PpxDecodeError(f"missing required field 'result' {where}")
        return SampleResult(result)
    if body in ("Sample", "Observe", "Tag"):
        address = b.Address()
        if address is None:
            raise PpxDecodeError(f"missing required field 'address' {where}")
        addr = _get_string(address)
        name = _get_string(b.Name())
        where = _where(body, addr)
        if body == "Tag":
            return Tag(addr, name, _get_tensor(b.Value(), "value", where))
        dist = _get_distribution(b, where)
        if body == "Sample":
            return Sample(addr, name, dist, bool(b.Control()), bool(b.Replace()))
        return Observe(addr, name, dist, _get_tensor(b.Value(), "value", where))
    return _CLASSES[body]()  # Run, ObserveResult, TagResult, Reset


def decode(buf: bytes | bytearray | memoryview) -> Message:
    """The message in ``buf``; raises PpxDecodeError for anything malformed.

    The file identifier is not required (real peers do not write it). This reader does
    not run the FlatBuffers verifier (the C++ codec does); malformed input is caught as
    it is read and reported as PpxDecodeError.
    """
    data = bytes(buf)
    try:
        return _decode(data)
    except PpxDecodeError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, AttributeError, OverflowError) as e:
        raise PpxDecodeError(f"cannot decode PPX message ({len(data)} bytes): {type(e).__name__}: {e}") from e


# ---- the field layout of ppx-vectors/index.json -----------------------------------------


def _tensor_fields(t: Tensor | None) -> dict[str, Any] | None:
    return None if t is None else {"data": t.data.tolist(), "shape": list(t.shape)}


def _tensor_from_fields(f: Mapping[str, Any] | None) -> Tensor | None:
    if f is None:
        return None
    return Tensor(np.asarray(f["data"], dtype=np.float64), tuple(f["shape"]))


def to_fields(msg: Message) -> tuple[str, dict[str, Any]]:
    """``(body name, fields)`` with strings, booleans, tensors as ``{"data", "shape"}``
    (``None`` when absent) and the distribution as ``{"type": ..., <param>: tensor}``.
    ``replace`` appears only when set."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(msg):
        v = getattr(msg, f.name)
        if isinstance(v, Distribution):
            dist: dict[str, Any] = {"type": v.type}
            dist.update({k: _tensor_fields(t) for k, t in v.params.items()})
            fields[f.name] = dist
        elif f.name in ("result", "value"):
            fields[f.name] = _tensor_fields(v)
        elif f.name == "replace":
            if v:
                fields[f.name] = True
        else:
            fields[f.name] = v
    return type(msg).BODY, fields


def from_fields(body: str, fields: Mapping[str, Any]) -> Message:
    """Inverse of ``to_fields``; missing optional fields take their defaults."""
    cls = _CLASSES.get(body)
    if cls is None:
        raise ValueError(f"unknown PPX message body {body!r}; PPX has {list(BODY_TYPES)}")
    kwargs: dict[str, Any] = {}
    for key, v in fields.items():
        if key == "distribution":
            params = {k: _tensor_from_fields(t) for k, t in v.items() if k != "type"}
            kwargs[key] = Distribution(v["type"], params)  # type: ignore[arg-type]  # checks for None
        elif key in ("result", "value"):
            kwargs[key] = _tensor_from_fields(v)
        else:
            kwargs[key] = v
    return cls(**kwargs)
