"""``ppfast.jit``: a Python function compiled by numba, run like an embedded C++ model.

The function is compiled in nopython mode, wrapped in a C callback ``double run(void)``
(a numba ``cfunc``) and handed to the core as a native model: executions run on the C++
worker threads with the GIL released, and every ``sample`` / ``observe`` goes straight
to the recorder of the thread.  Prior, importance sampling and the other engines of
native models apply unchanged.
"""

from __future__ import annotations

import ast
import inspect
import math
import os
import re
import textwrap
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numba
import numpy as np
from numba import types
from numba.core import errors as nberrors

from .. import _core
from ..errors import PpfastError
from ..model import BaseModel, Model
from ..models.native import NativeModel
from ..trace import TraceBatch
from . import _abi, _dsl

__all__ = ["JitModel", "JitCompileError", "model"]


class JitCompileError(PpfastError, TypeError):
    """A model cannot be compiled (unsupported construct, unknown distribution, address
    that is not a constant string, ...).  ``file`` and ``line`` locate the user's code."""

    def __init__(self, message: str, file: Optional[str] = None, line: Optional[int] = None):
        super().__init__(message)
        self.file = file
        self.line = line


# "raised" means the model itself raised (not a recorder failure, which came first and wins).
_RAISED = ("the compiled model raised an exception (numba keeps no message in compiled callbacks: "
           "call model.py_func() in Python to see it)")


def _make_runner(dispatcher: Any, result: types.Type) -> Any:
    """The C callback the core runs per execution: the model, with any exception turned
    into a failed trace (nothing may unwind through the C++ worker)."""
    fail = _dsl.failer(_RAISED)
    if isinstance(result, (types.NoneType, types.Omitted)):
        def run_none() -> float:
            try:
                dispatcher()
            except Exception:  # noqa: BLE001 -- numba can only catch Exception here
                fail()
            return math.nan

        return numba.cfunc(types.float64())(run_none)

    def run() -> float:
        try:
            return float(dispatcher())
        except Exception:  # noqa: BLE001
            fail()
            return math.nan

    return numba.cfunc(types.float64())(run)


_LOCATION = re.compile(r'File "([^"]+)", line (\d+)')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _user_location(text: str, fn: Callable[..., Any]) -> Tuple[Optional[str], Optional[int]]:
    """The innermost place in the user's source that a numba error names."""
    try:
        source = os.path.realpath(inspect.getsourcefile(fn) or "")
    except TypeError:
        source = ""
    here = os.path.dirname(os.path.realpath(__file__))
    fallback = None
    for file, line in reversed(_LOCATION.findall(text)):
        path = os.path.realpath(os.path.join(os.getcwd(), file)) if not os.path.isabs(file) else file
        same_name = os.path.basename(path) == os.path.basename(source)
        if same_name and (path == source or not os.path.exists(path)):
            return source, int(line)
        if fallback is None and not path.startswith(here) and "site-packages" not in path:
            fallback = (path, int(line))
    return fallback if fallback else (None, None)


def _reason(text: str) -> str:
    """The most specific cause in a numba error message."""
    if re.search(r"Module\(<module 'ppfast' |ppfast\.distributions\.|ppfast\.primitives\.", text):
        return ("ppfast.sample / ppfast.observe / ppfast.distributions are the Python API; compiled models "
                "use ppfast.numba: pn.sample(pn.Normal(...), \"address\"), pn.observe(pn.Normal(...), "
                "\"name\"), ...")
    specific = [s.strip() for s in re.findall(r"TypingError: (.+?)(?:\n|$)", text)
                if not s.startswith("Failed in")]
    calls = ("sample", "observe", "tag", "factor") + tuple(_dsl.DISTRIBUTIONS)
    ours = [s for s in specific if s.startswith(calls)]
    if ours:
        return ours[0]
    m = re.search(r"No implementation of function Function\(<function (\w+) .*?>>> ([^\n]+)", text, re.S)
    if m:
        fn, call = m.group(1), m.group(2).strip()
        if fn in _dsl.DISTRIBUTIONS:
            fn = f"{fn}({', '.join(_dsl.DISTRIBUTIONS[fn][1])})"
        return f"{fn} cannot be called as {call}" + (f": {specific[0]}" if specific else "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    head = [ln for ln in lines if not ln.startswith(("Failed in", "During:", "File"))]
    return head[0] if head else (lines[0] if lines else "numba could not compile the model")


def _unknown_name(e: AttributeError, fn: Callable[..., Any], name: str) -> Optional[JitCompileError]:
    """``pn.Foo`` in a model: numba lets the module's AttributeError through."""
    m = re.search(r"module 'ppfast\.numba' has no attribute '(\w+)'", str(e))
    if not m:
        return None
    attr = m.group(1)
    file, line = None, None
    try:
        lines, first = inspect.getsourcelines(fn)
        file = inspect.getsourcefile(fn)
        for node in ast.walk(ast.parse(textwrap.dedent("".join(lines)))):
            if isinstance(node, ast.Attribute) and node.attr == attr:
                line = first + node.lineno - 1
                break
    except (OSError, TypeError, SyntaxError):
        pass
    where = f" at {file}:{line}" if line else ""
    offered = ", ".join(sorted(_dsl.DISTRIBUTIONS))
    return JitCompileError(f"cannot compile model {name!r}{where}: ppfast.numba has no {attr!r} (unknown "
                           f"distribution or call). Distributions: {offered}; calls: sample, observe, tag, "
                           "factor", file, line)


def _compile_error(e: Exception, fn: Callable[..., Any], name: str) -> JitCompileError:
    text = _ANSI.sub("", str(e))
    file, line = _user_location(text, fn)
    where = f" at {file}:{line}" if file else ""
    return JitCompileError(f"cannot compile model {name!r}{where}: {_reason(text)}\n\n"
                           f"numba says:\n{text.strip()}", file, line)


_SITE_CALLS = {"sample": 1, "observe": 1, "tag": 1}


def _locate_sites(fn: Callable[..., Any]) -> None:
    """Records file:line of each constant address of the model (shown in errors and
    diagnostics), read from its source; a model without source just goes without."""
    try:
        lines, first = inspect.getsourcelines(fn)
        file = inspect.getsourcefile(fn) or "<unknown>"
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        pos = _SITE_CALLS.get(called or "")
        if pos is None or len(node.args) <= pos:
            continue
        arg = node.args[pos]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            _abi.locate(arg.value, f"{file}:{first + node.lineno - 1}")


class JitModel(NativeModel):
    """A model written as a Python function and compiled by numba; see :func:`model`."""

    def __init__(self, fn: Callable[[], Any], name: Optional[str] = None, threads: Optional[int] = None,
                 cache: bool = False):
        if not callable(fn):
            raise TypeError(f"ppfast.jit expects a function, got {type(fn).__name__}")
        name = str(name or getattr(fn, "__name__", "model"))
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.default is inspect.Parameter.empty]
        if params:
            raise JitCompileError(
                f"model {name!r} takes arguments ({', '.join(p.name for p in params)}): a compiled model is "
                "a function of no arguments (use constants from globals or closures, frozen at compile time, "
                "and observe={...} for data)")
        BaseModel.__init__(self, name)
        self.py_func = fn
        self.path = None  # type: ignore[assignment]  # not a library: a function of this process
        self.dispatcher = numba.njit(cache=cache)(fn)
        try:
            self.dispatcher.compile(())
            result = self.dispatcher.nopython_signatures[0].return_type
            if not isinstance(result, (types.Number, types.Boolean, types.NoneType)):
                raise JitCompileError(f"model {name!r} returns {result}: a compiled model returns a number "
                                      "or None (record other values with tag(value, name))",
                                      inspect.getsourcefile(fn), fn.__code__.co_firstlineno)
            self._runner = _make_runner(self.dispatcher, result)
        except nberrors.NumbaError as e:
            raise _compile_error(e, fn, name) from None
        except AttributeError as e:
            err = _unknown_name(e, fn, name)
            if err is None:
                raise
            raise err from None
        _locate_sites(fn)
        self._native = _core.NativeModel.from_function(self._runner.address, name,
                                                       int(threads or os.cpu_count() or 1))

    def _simulate(self, seed: int, first: int, count: int, observations: Dict[int, np.ndarray],
                  required: bool, skip_errors: bool = False) -> TraceBatch:
        batch = super()._simulate(seed, first, count, observations, required, skip_errors)
        if not skip_errors and len(batch.failed):
            i = int(batch.failed[0])
            if batch.error(i) == _RAISED:
                # Compiled code drops exception messages: the same trace run uncompiled
                # (same RNG stream, same draws) raises the model's own exception.
                self.python_model()._simulate(seed, int(batch.traces["index"][i]), 1, observations, required)
        return batch

    def python_model(self) -> Model:
        """The same function run uncompiled through the Python API (same traces for the
        same seed, at Python speed): for debugging and for comparisons."""
        fn = self.py_func

        class Uncompiled(Model):
            def forward(self) -> Any:
                return fn()

        return Uncompiled(f"{self.name} (uncompiled)")

    def __call__(self) -> Any:
        """One execution in this thread: draws from the prior (outside any run)."""
        return self.dispatcher()

    def __repr__(self) -> str:
        return f"JitModel({self.name!r}, threads={self.threads})"


def model(fn: Optional[Callable[[], Any]] = None, *, name: Optional[str] = None,
          threads: Optional[int] = None,
          cache: bool = False) -> Union[JitModel, Callable[[Callable[[], Any]], JitModel]]:
    """Compiles a model function with numba; the result is a ppfast model.

    >>> import ppfast
    >>> from ppfast import numba as pn
    >>> @ppfast.jit
    ... def gum():
    ...     mu = pn.sample(pn.Normal(1.0, 5 ** 0.5), "mu")
    ...     pn.observe(pn.Normal(mu, 2 ** 0.5), "obs0")
    ...     pn.observe(pn.Normal(mu, 2 ** 0.5), "obs1")
    ...     return mu
    >>> post = gum.posterior_results(10000, observe={"obs0": 8, "obs1": 9}, seed=1, progress=False)
    >>> abs(post.mean - 7.25) < 0.1
    True

    ``threads``: C++ worker threads (default: one per CPU).  ``cache``: numba's on-disk
    cache of the compiled model.  Compile errors raise :class:`JitCompileError` naming
    the file and line.
    """
    if fn is None:
        return lambda f: JitModel(f, name=name, threads=threads, cache=cache)
    return JitModel(fn, name=name, threads=threads, cache=cache)
