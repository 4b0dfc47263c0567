"""
ppfast native core (private: use the ppfast package)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
import typing_extensions
__all__: list[str] = ['ErrorCode', 'GuidedNative', 'GuidedThreads', 'InflatedRunner', 'MHChain', 'MHNativeRunner', 'MH_ACCEPTED', 'MH_ERROR', 'MH_KEPT', 'MH_REJECTED_INVALID', 'NativeModel', 'Observations', 'Policy', 'PpxClient', 'Recorder', 'ShmGuidedRun', 'ShmHost', 'ShmTraceBatch', 'TraceBatch', 'address_location', 'address_name', 'address_names', 'api_table', 'dist_log_prob', 'dist_log_prob_elements', 'dist_moments', 'dist_name', 'dist_sample', 'dist_support', 'dist_validate', 'inflated_prior', 'intern', 'lazily_pooled_bytes', 'pooled_bytes', 'ppx_bind_zmq', 'ppx_ping', 'ppx_protocol_version', 'ppx_zmq_bound', 'set_address_location']
class ErrorCode:
    """
    Members:
    
      NONE
    
      INVALID_DISTRIBUTION
    
      MISSING_OBSERVATION
    
      OUT_OF_SUPPORT
    
      SIMULATOR
    
      PROPOSAL
    """
    INVALID_DISTRIBUTION: typing.ClassVar[ErrorCode]
    MISSING_OBSERVATION: typing.ClassVar[ErrorCode]
    NONE: typing.ClassVar[ErrorCode]
    OUT_OF_SUPPORT: typing.ClassVar[ErrorCode]
    PROPOSAL: typing.ClassVar[ErrorCode]
    SIMULATOR: typing.ClassVar[ErrorCode]
    __members__: typing.ClassVar[dict[str, ErrorCode]]
    @typing.overload
    def __eq__(self, other: ErrorCode) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: ErrorCode) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class TraceBatch:
    @staticmethod
    def concat(arg0: collections.abc.Sequence[TraceBatch]) -> TraceBatch:
        """
        Concatenates batches into a new one (one copy, sized once).
        """
    def __init__(self) -> None:
        ...
    def columns(self) -> dict[typing.Any, typing.Any]:
        ...
    @property
    def messages(self) -> list[str]:
        ...
    @property
    def num_records(self) -> int:
        ...
    @property
    def num_traces(self) -> int:
        ...
class Observations:
    def __init__(self, values: dict[typing.Any, typing.Any], required: bool) -> None:
        ...
class Recorder:
    def __init__(self, arg0: typing.SupportsInt | typing.SupportsIndex, arg1: Observations) -> None:
        ...
    def begin(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def discard(self) -> None:
        """
        Drops the trace in progress (interrupted part-way).
        """
    def end(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> bool:
        ...
    def factor(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def fail(self, arg0: str) -> None:
        ...
    def fast(self) -> tuple[typing.Any, ...]:
        """
        (begin, end, sample, observe) as fast builtins bound to this recorder
        """
    def observe(self, arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsFloat | typing.SupportsIndex, arg2: typing.SupportsFloat | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.Any) -> float:
        ...
    def observe_array(self, arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.Any) -> float:
        ...
    def sample(self, arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsFloat | typing.SupportsIndex, arg2: typing.SupportsFloat | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex) -> float:
        ...
    def sample_array(self, arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
        ...
    def set_policy(self, arg0: Policy) -> None:
        ...
    def tag(self, arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> None:
        ...
    def take(self) -> TraceBatch:
        ...
    @property
    def error(self) -> str:
        ...
    @property
    def failed(self) -> bool:
        ...
    @property
    def in_trace(self) -> bool:
        ...
class NativeModel:
    @staticmethod
    def from_function(function: typing.SupportsInt | typing.SupportsIndex, name: str, threads: typing.SupportsInt | typing.SupportsIndex) -> NativeModel:
        ...
    def __init__(self, path: str, threads: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def run(self, seed: typing.SupportsInt | typing.SupportsIndex, first: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, observations: Observations) -> list[TraceBatch]:
        ...
    def run_unrecorded(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def entry(self) -> int:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def one_execution_per_thread(self) -> bool:
        ...
    @property
    def threads(self) -> int:
        ...
class PpxClient:
    """
    PPX engine side: REQ connections to PPX simulators.
    """
    def __init__(self, addresses: collections.abc.Sequence[str], timeout_ms: typing.SupportsInt | typing.SupportsIndex, system_name: str = '', spin_us: typing.SupportsInt | typing.SupportsIndex = 0, max_message_bytes: typing.SupportsInt | typing.SupportsIndex = 268435456, max_trace_records: typing.SupportsInt | typing.SupportsIndex = 10000000) -> None:
        ...
    def __len__(self) -> int:
        ...
    def close(self) -> None:
        ...
    def connect(self) -> None:
        """
        Handshakes with every peer not yet connected.
        """
    def run(self, seed: typing.SupportsInt | typing.SupportsIndex, first: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, observations: Observations, policies: collections.abc.Sequence[Policy] = [], skip_errors: bool = False) -> tuple[typing.Any, ...]:
        """
        Traces [first, first + count): trace i uses RNG stream i of seed. Returns (batch, error): error is None or (class name in ppfast.errors, message), the batch then holding the traces finished.
        """
    @property
    def peers(self) -> list[typing.Any]:
        ...
class ShmTraceBatch:
    def columns(self) -> dict[typing.Any, typing.Any]:
        ...
    def to_batch(self) -> TraceBatch:
        """
        A copy as an ordinary TraceBatch.
        """
    @property
    def block(self) -> tuple[int, int]:
        ...
    @property
    def lost(self) -> numpy.typing.NDArray[numpy.uint64]:
        """
        Positions (in this batch) of the traces lost to a simulator process that crashed or hung.
        """
    @property
    def messages(self) -> list[str]:
        ...
    @property
    def num_records(self) -> int:
        ...
    @property
    def num_traces(self) -> int:
        ...
class ShmGuidedRun:
    def abort(self) -> None:
        """
        Gives the run up (the proposal server failed).
        """
    def advance(self) -> int:
        ...
    def answer(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg3: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> None:
        ...
    def requests(self) -> dict[typing.Any, typing.Any]:
        ...
    def take(self) -> ShmTraceBatch:
        ...
class ShmHost:
    def __init__(self, argv: collections.abc.Sequence[str], env: collections.abc.Sequence[str], workers: typing.SupportsInt | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex, startup_timeout: typing.SupportsFloat | typing.SupportsIndex, max_restarts: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def close(self) -> None:
        ...
    def guided(self, seed: typing.SupportsInt | typing.SupportsIndex, first: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, observations: collections.abc.Sequence[tuple[str, typing.Annotated[numpy.typing.ArrayLike, numpy.float64]]], required: bool, slots: typing.SupportsInt | typing.SupportsIndex, stack_bytes: typing.SupportsInt | typing.SupportsIndex) -> ShmGuidedRun:
        ...
    def run(self, seed: typing.SupportsInt | typing.SupportsIndex, first: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, observations: collections.abc.Sequence[tuple[str, typing.Annotated[numpy.typing.ArrayLike, numpy.float64]]], required: bool) -> list[typing.Any]:
        ...
    def run_chains(self, seed: typing.SupportsInt | typing.SupportsIndex, kernel: typing.SupportsInt | typing.SupportsIndex, scale: typing.SupportsFloat | typing.SupportsIndex, prior_mix: typing.SupportsFloat | typing.SupportsIndex, burn_in: typing.SupportsInt | typing.SupportsIndex, thinning: typing.SupportsInt | typing.SupportsIndex, max_attempts: typing.SupportsInt | typing.SupportsIndex, stop_on_error: bool, target_steps: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], observations: collections.abc.Sequence[tuple[str, typing.Annotated[numpy.typing.ArrayLike, numpy.float64]]], start: typing.Any, start_trace: typing.SupportsInt | typing.SupportsIndex, progress: typing.Any = None) -> tuple[typing.Any, ...]:
        ...
    @property
    def arena(self) -> tuple[int, int, int]:
        """
        (address, mapped bytes, file bytes) of the shared data arena.
        """
    @property
    def name(self) -> str:
        ...
    @property
    def pids(self) -> list[int]:
        ...
    @property
    def restarts(self) -> int:
        ...
    @property
    def workers(self) -> int:
        ...
class Policy:
    """
    An execution policy (set on a Recorder).
    """
class GuidedNative:
    def __init__(self, entry: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, first: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, observations: Observations, slots: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex, stack_bytes: typing.SupportsInt | typing.SupportsIndex, one_execution_per_thread: bool = False) -> None:
        ...
    def advance(self) -> int:
        ...
    def answer(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg3: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> None:
        ...
    def requests(self) -> dict[typing.Any, typing.Any]:
        ...
    def take(self) -> TraceBatch:
        ...
class GuidedThreads:
    def __init__(self, slots: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def abort(self) -> None:
        ...
    def advance(self) -> int:
        ...
    def answer(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg3: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> None:
        ...
    def finish(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def policy(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> Policy:
        ...
    def requests(self) -> dict[typing.Any, typing.Any]:
        ...
class InflatedRunner:
    def __init__(self, entry: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def run(self, arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.SupportsInt | typing.SupportsIndex, arg3: Observations, arg4: typing.SupportsFloat | typing.SupportsIndex) -> TraceBatch:
        ...
class MHChain:
    def __init__(self, kernel: typing.SupportsInt | typing.SupportsIndex, scale: typing.SupportsFloat | typing.SupportsIndex, prior_mix: typing.SupportsFloat | typing.SupportsIndex, burn_in: typing.SupportsInt | typing.SupportsIndex, thinning: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, chain: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def finish(self, arg0: TraceBatch, arg1: typing.SupportsInt | typing.SupportsIndex) -> int:
        """
        Takes the executed proposal (the batch's contents may be swapped with the state).
        """
    def initial_index(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def offer_initial(self, arg0: TraceBatch, arg1: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def prepare(self) -> int:
        ...
    def prepare_initial(self) -> None:
        ...
    def set_start(self, batch: TraceBatch, trace: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def take_output(self) -> TraceBatch:
        ...
    @property
    def accepted(self) -> int:
        ...
    @property
    def chain(self) -> int:
        ...
    @property
    def errors(self) -> int:
        ...
    @property
    def last_error(self) -> str:
        ...
    @property
    def last_error_code(self) -> int:
        ...
    @property
    def num_sites(self) -> int:
        ...
    @property
    def policy(self) -> Policy:
        """
        The replay policy to run executions under (keeps the chain alive).
        """
    @property
    def rejected_invalid(self) -> int:
        ...
    @property
    def started(self) -> bool:
        ...
    @property
    def steps(self) -> int:
        ...
    @property
    def target_steps(self) -> int:
        ...
    @target_steps.setter
    def target_steps(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MHNativeRunner:
    def __init__(self, entry: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex, observations: Observations, seed: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def initialize(self, chains: collections.abc.Sequence[MHChain], max_attempts: typing.SupportsInt | typing.SupportsIndex, stop_on_error: bool) -> None:
        ...
    def run(self, chains: collections.abc.Sequence[MHChain], steps: typing.SupportsInt | typing.SupportsIndex, stop_on_error: bool) -> None:
        ...
    @property
    def threads(self) -> int:
        ...
def address_location(arg0: typing.SupportsInt | typing.SupportsIndex) -> str:
    ...
def address_name(arg0: typing.SupportsInt | typing.SupportsIndex) -> str:
    ...
def address_names(from_id: typing.SupportsInt | typing.SupportsIndex = 0) -> list[str]:
    """
    Names of address ids from `from_id` on (index i is id from_id + i).
    """
def api_table() -> int:
    ...
def dist_log_prob(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg3: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def dist_log_prob_elements(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg3: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def dist_moments(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> tuple[numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64]]:
    ...
def dist_name(arg0: typing.SupportsInt | typing.SupportsIndex) -> str:
    ...
def dist_sample(kind: typing.SupportsInt | typing.SupportsIndex, size: typing.SupportsInt | typing.SupportsIndex, params: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], n: typing.SupportsInt | typing.SupportsIndex, seed: typing.Any = None) -> numpy.typing.NDArray[numpy.float64]:
    ...
def dist_support(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> tuple[numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64]]:
    ...
def dist_validate(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> str:
    ...
def inflated_prior(factor: typing.SupportsFloat | typing.SupportsIndex) -> Policy:
    """
    A policy drawing controlled sites from a widened prior.
    """
def intern(arg0: str) -> int:
    ...
def lazily_pooled_bytes() -> int:
    """
    Address space of the pool's larger spare batches, whose pages the kernel may take back.
    """
def pooled_bytes() -> int:
    """
    Bytes held by the pool of spare trace batches (at most 512 MiB).
    """
def ppx_bind_zmq(table: typing_extensions.CapsuleType) -> None:
    """
    Routes the PPX client's ZeroMQ calls to ppfast._zmq (which links libzmq).
    """
def ppx_ping(address: str, count: typing.SupportsInt | typing.SupportsIndex, payload: typing.SupportsInt | typing.SupportsIndex = 64, timeout_ms: typing.SupportsInt | typing.SupportsIndex = 10000) -> float:
    """
    Seconds for `count` bare ZeroMQ REQ/REP round trips against an echo server.
    """
def ppx_protocol_version() -> str:
    """
    The PPX protocol version ppfast speaks.
    """
def ppx_zmq_bound() -> bool:
    """
    True once ppx_bind_zmq has been called.
    """
def set_address_location(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: str) -> None:
    ...
MH_ACCEPTED: int = 1
MH_ERROR: int = 8
MH_KEPT: int = 2
MH_REJECTED_INVALID: int = 4
