"""Typed errors.  Each inherits from PpfastError and from the matching built-in, so
``except ValueError`` keeps working.  Messages say what was expected, what came, and
where (address, trace number, message type)."""

from __future__ import annotations

__all__ = [
    "PpfastError",
    "DistributionError",
    "MissingObservationError",
    "SupportError",
    "TraceError",
    "ModelError",
    "SimulatorError",
    "ProtocolError",
    "ProtocolVersionError",
    "PeerTimeoutError",
    "PeerGoneError",
    "DatasetError",
    "RankError",
]


class PpfastError(Exception):
    """Base class of every ppfast error."""


class DistributionError(PpfastError, ValueError):
    """Invalid distribution parameters (negative stddev, probs not summing to 1, NaN, ...)."""


class MissingObservationError(PpfastError, KeyError):
    """An observe site has no value: its name is missing from ``observe={...}``."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SupportError(PpfastError, ValueError):
    """An observed value lies outside the support of its distribution."""


class TraceError(PpfastError, RuntimeError):
    """A trace failed.  ``trace`` is its number; ``partial`` holds the traces completed so
    far (nothing is lost), when the run collected them."""

    def __init__(self, message: str, trace: int | None = None, partial=None):
        super().__init__(message)
        self.trace = trace
        self.partial = partial


class ModelError(TraceError):
    """A model's ``forward()`` raised; the original exception is the ``__cause__``."""


class SimulatorError(TraceError):
    """A simulator process crashed, hung or reported an error."""


class ProtocolError(PpfastError, RuntimeError):
    """A PPX peer sent something unexpected: names what was expected and what came."""


class ProtocolVersionError(ProtocolError):
    """The peer speaks another PPX protocol version."""


class PeerTimeoutError(ProtocolError, TimeoutError):
    """A peer did not answer within the timeout."""


class PeerGoneError(ProtocolError, ConnectionError):
    """A peer disappeared mid-conversation."""


class DatasetError(PpfastError, IOError):
    """A trace dataset on disk is missing, truncated, corrupted or inconsistent with its
    manifest; ``file`` names the offending file."""

    def __init__(self, message: str, file: str | None = None):
        super().__init__(message)
        self.file = file


class RankError(PpfastError, RuntimeError):
    """Another MPI rank failed during a collective operation (its error is in the message)."""
