"""``sample``, ``observe``, ``factor`` and ``tag``: the calls a model makes.

Each routes a small message to the innermost effect handler of the current context
(``contextvars``, so threads and async code are safe).  Handlers implement one inference
mode each; with no handler active, ``sample`` draws from the prior and the others do
nothing, so a model also runs as plain Python.

Addresses: an explicit ``address=`` always wins.  Otherwise the address is built from
the caller's qualified function name, its line and the distribution kind (plus the
name, if given) — stable across Python versions, independent of bytecode.  The
instance (how often the address occurred before in the trace) is counted by the
recorder.
"""

from __future__ import annotations

import sys
import threading
from contextvars import ContextVar
from typing import Any, Optional

import numpy as np

from . import _core
from .distributions import Distribution

__all__ = ["sample", "observe", "factor", "tag", "Handler", "handler_stack", "address_id", "name_id"]

handler_stack: ContextVar[tuple] = ContextVar("ppfast_handlers", default=())
_get_handlers = handler_stack.get

# Runs in progress in this process (run_python): a call with no handler meanwhile comes
# from a thread the model started itself (a thread pool inside forward()), whose draws
# cannot be recorded.  Raising beats silently returning unrecorded prior draws.
_active_runs = 0
_active_lock = threading.Lock()


def run_started() -> None:
    """Marks a recorded run in progress (paired with run_ended)."""
    global _active_runs
    with _active_lock:
        _active_runs += 1


def run_ended() -> None:
    global _active_runs
    with _active_lock:
        _active_runs -= 1


def _unhandled(what: str) -> None:
    """A call outside any handler: fine as plain Python, an error during a run."""
    if _active_runs:
        from .errors import ModelError

        raise ModelError(f"ppfast.{what}() called from a thread that is not running the model (for example a "
                         "thread pool inside forward()) while a run is in progress: ppfast records the calls made "
                         "on the thread that runs forward() only, so this one would be lost; make it there")
_getframe = sys._getframe

# (code object, line, kind, name) -> address id; code objects are long-lived and hashable.
_site_ids: dict = {}
_string_ids: dict = {}


def name_id(name: Optional[str]) -> int:
    """Interned id of a name or explicit address string (0 for None)."""
    if name is None:
        return 0
    i = _string_ids.get(name)
    if i is None:
        i = _string_ids[name] = _core.intern(name)
    return i


def _site_address(frame, kind: int, name: Optional[str]) -> int:
    code = frame.f_code
    line = frame.f_lineno
    key = (code, line, kind, name)
    i = _site_ids.get(key)
    if i is None:
        from .distributions import KIND_NAMES

        text = f"{code.co_qualname if hasattr(code, 'co_qualname') else code.co_name}:{line}:{KIND_NAMES.get(kind, kind)}"
        if name is not None:
            text += f":{name}"
        i = _site_ids[key] = _core.intern(text)
        _core.set_address_location(i, f"{code.co_filename}:{line}")
    return i


def address_id(address: Optional[str], kind: int, name: Optional[str], depth: int = 2) -> int:
    """The address id of a site: explicit, or from the caller ``depth`` frames up."""
    if address is not None:
        return name_id(address)
    return _site_address(sys._getframe(depth), kind, name)


class Handler:
    """An inference mode's view of the model's random choices.  Subclasses override the
    methods they change; ids are interned address / name ids."""

    def sample(self, dist: Distribution, address: int, name: int, control: bool, replace: bool) -> Any:
        return dist.sample()

    def observe(self, dist: Distribution, value: Any, address: int, name: int) -> None:
        return None

    def factor(self, log_prob: float) -> None:
        return None

    def tag(self, value: Any, address: int, name: int) -> None:
        return None

    def observed(self, name: int) -> Any:
        """The value of ``observe={name: ...}`` in this run, or None."""
        return None


def sample(distribution: Distribution, name: Optional[str] = None, address: Optional[str] = None,
           control: bool = True, replace: bool = False) -> Any:
    """Draws a value from ``distribution`` at a random-choice site of the model."""
    handlers = _get_handlers()
    if not handlers:
        _unhandled("sample")
        return distribution.sample()
    # Inlined cache lookups: this runs once per random draw of a Python model.
    if address is None:
        frame = _getframe(1)
        a = _site_ids.get((frame.f_code, frame.f_lineno, distribution.kind, name))
        if a is None:
            a = _site_address(frame, distribution.kind, name)
    else:
        a = name_id(address)
    n = 0 if name is None else (_string_ids.get(name) or name_id(name))
    return handlers[-1].sample(distribution, a, n, control, replace)


def observe(distribution: Distribution, value: Any = None, name: Optional[str] = None,
            address: Optional[str] = None) -> None:
    """Conditions the model on ``value`` (or on ``observe={name: value}`` of the run)."""
    handlers = _get_handlers()
    if not handlers:
        _unhandled("observe")
        return None
    if address is None:
        frame = _getframe(1)
        a = _site_ids.get((frame.f_code, frame.f_lineno, distribution.kind, name))
        if a is None:
            a = _site_address(frame, distribution.kind, name)
    else:
        a = name_id(address)
    n = 0 if name is None else (_string_ids.get(name) or name_id(name))
    if distribution.kind == 0:  # a Factor: its log-density of the observed value
        given = handlers[-1].observed(n) if n else None
        value = value if given is None else given
        return handlers[-1].factor(float(np.sum(distribution.log_prob(value))))
    return handlers[-1].observe(distribution, value, a, n)


def factor(log_prob: Any = None, log_prob_func: Any = None, name: Optional[str] = None,
           address: Optional[str] = None) -> None:
    """Adds ``log_prob`` to the trace's log-likelihood.  PyProb's form: with
    ``log_prob_func``, the term is ``log_prob_func(value)`` where ``value`` is
    ``observe={name: value}`` of the run (None when the run does not observe ``name``).
    ``address`` is accepted for PyProb's signature (factors have no address here)."""
    if (log_prob is None) == (log_prob_func is None):
        raise TypeError("factor: give exactly one of log_prob and log_prob_func")
    handlers = handler_stack.get()
    if not handlers:
        _unhandled("factor")
        return
    if log_prob_func is not None:
        value = handlers[-1].observed(name_id(name)) if name is not None else None
        log_prob = log_prob_func(value)
    if hasattr(log_prob, "detach"):
        log_prob = log_prob.detach().cpu().numpy()
    handlers[-1].factor(float(np.sum(log_prob)))


def tag(value: Any, name: Optional[str] = None, address: Optional[str] = None) -> None:
    """Records ``value`` in the trace, for analysis only."""
    handlers = handler_stack.get()
    if not handlers:
        _unhandled("tag")
        return
    if address is None:
        a = _site_address(sys._getframe(1), 0, name)
    else:
        a = name_id(address)
    handlers[-1].tag(value, a, name_id(name))


def as_float_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float64).reshape(-1)
