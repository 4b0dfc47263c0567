"""The calls a numba-compiled model makes: distributions, ``sample``, ``observe``,
``tag`` and ``factor``.

Each is a plain Python function (so a model also runs uncompiled, through the Python
API) with a numba overload that, in nopython mode, calls the C++ recorder through the
C ABI directly: the parameters go into a ``ppfast_dist`` on the stack, the address is a
compile-time string whose id is interned once per process and kept in a global of the
compiled code (no hashing per draw, and cached code stays valid in another process).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, overload, register_model

from .. import distributions as _d
from .. import primitives as _p
from . import _abi

__all__ = [
    "Normal",
    "Uniform",
    "Categorical",
    "Poisson",
    "Bernoulli",
    "Beta",
    "Exponential",
    "Gamma",
    "LogNormal",
    "Binomial",
    "Weibull",
    "TruncatedNormal",
    "sample",
    "observe",
    "tag",
    "factor",
    "DISTRIBUTIONS",
]


class TraceFailed(Exception):
    """Raised inside compiled code when the recorder has failed the current trace
    (invalid parameters, missing observation, ...); the model stops at once."""


# ----------------------------------------------------------------------------- types

# name -> (kind code, parameter names, discrete); kind codes as in ppfast.h.
DISTRIBUTIONS: Dict[str, Tuple[int, Tuple[str, ...], bool]] = {
    "Normal": (1, ("mean", "stddev"), False),
    "Uniform": (2, ("low", "high"), False),
    "Categorical": (3, ("probs",), True),
    "Poisson": (4, ("rate",), True),
    "Bernoulli": (5, ("probs",), True),
    "Beta": (6, ("concentration1", "concentration0"), False),
    "Exponential": (7, ("rate",), False),
    "Gamma": (8, ("concentration", "rate"), False),
    "LogNormal": (9, ("loc", "scale"), False),
    "Binomial": (10, ("total_count", "probs"), True),
    "Weibull": (11, ("scale", "concentration"), False),
    "TruncatedNormal": (12, ("mean", "stddev", "low", "high"), False),
}
_NAMES = {kind: name for name, (kind, _, _) in DISTRIBUTIONS.items()}


class ScalarDistType(types.Type):
    """A scalar distribution whose parameters live in registers (no allocation)."""

    def __init__(self, kind: int, nparams: int):
        self.kind, self.nparams = kind, nparams
        self.discrete = DISTRIBUTIONS[_NAMES[kind]][2]
        super().__init__(name=f"ppfast.{_NAMES[kind]}")


class PackedDistType(types.Type):
    """A distribution with its parameters packed in one float64 array in the C layout
    (element-wise tensors: ``size`` values; Categorical: its probabilities)."""

    def __init__(self, kind: int):
        self.kind = kind
        self.discrete = DISTRIBUTIONS[_NAMES[kind]][2]
        super().__init__(name=f"ppfast.{_NAMES[kind]}[packed]")


_PARAMS_ARRAY = types.Array(types.float64, 1, "C")


@register_model(ScalarDistType)
class _ScalarDistModel(models.StructModel):
    def __init__(self, dmm: Any, fe_type: ScalarDistType):
        super().__init__(dmm, fe_type, [(f"p{i}", types.float64) for i in range(fe_type.nparams)])


@register_model(PackedDistType)
class _PackedDistModel(models.StructModel):
    def __init__(self, dmm: Any, fe_type: PackedDistType):
        super().__init__(dmm, fe_type, [("params", _PARAMS_ARRAY), ("size", types.intp)])


_I8, _I32, _F64 = ir.IntType(8), ir.IntType(32), ir.DoubleType()
_F64P = _F64.as_pointer()
# struct ppfast_dist {uint8_t kind; uint32_t size; uint32_t nparams; const double* params;}
_DIST_T = ir.LiteralStructType([_I8, _I32, _I32, _F64P])
_UNSET = 0xFFFFFFFF


def _is_scalar(t: types.Type) -> bool:
    return isinstance(t, (types.Number, types.Boolean))


def _is_vector(t: types.Type) -> bool:
    return isinstance(t, types.Array) and t.ndim == 1 and isinstance(t.dtype, (types.Number, types.Boolean))


# ------------------------------------------------------------------- code generation


def _fn(builder: ir.IRBuilder, entry: str, ret: ir.Type, args: list) -> ir.Function:
    """Declares (once per module) the recorder entry point ``entry`` by its symbol name."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), _abi.SYMBOLS[entry])


def _site_id(context: Any, builder: ir.IRBuilder, text: str) -> ir.Value:
    """The interned id of a constant string: looked up on first use in this process,
    then read from a global of the compiled module."""
    mod = builder.module
    gname = "ppfast.site." + text.encode().hex()
    gv = mod.globals.get(gname)
    if gv is None:
        gv = ir.GlobalVariable(mod, _I32, gname)
        gv.linkage = "internal"
        gv.initializer = _I32(_UNSET)
    cached = builder.load_atomic(gv, "monotonic", 4)
    with builder.if_then(builder.icmp_unsigned("==", cached, _I32(_UNSET)), likely=False):
        # Two threads may both intern here: same string, same id, so the race is benign.
        ident = builder.call(_fn(builder, "intern", _I32, [_I8.as_pointer()]),
                             [context.insert_const_string(mod, text)])
        builder.store_atomic(ident, gv, "monotonic", 4)
    return builder.load_atomic(gv, "monotonic", 4)


_site_ids: Dict[str, Any] = {}


def site(text: str) -> Any:
    """An intrinsic ``() -> uint32`` giving the id of the constant string ``text``.

    numba hands literal strings to overloads but not on to what their implementations
    call, so each constant gets its own tiny intrinsic, captured by the implementation."""
    fn = _site_ids.get(text)
    if fn is None:
        def typer(typingctx: Any) -> Any:
            def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> ir.Value:
                return _site_id(context, builder, text)

            return types.uint32(), codegen

        typer.__name__ = "site_" + "".join(c if c.isalnum() else "_" for c in text)[:40]
        fn = _site_ids[text] = intrinsic(typer)
    return fn


def _check_failed(context: Any, builder: ir.IRBuilder) -> None:
    """Stops the model (raises TraceFailed) once the recorder has failed the trace."""
    failed = builder.call(_fn(builder, "failed", _I32, []), [])
    with builder.if_then(builder.icmp_signed("!=", failed, _I32(0)), likely=False):
        context.call_conv.return_user_exc(builder, TraceFailed, ("trace failed",))


def _dist_ptr(context: Any, builder: ir.IRBuilder, ty: Any, val: ir.Value) -> ir.Value:
    """A ppfast_dist on the stack describing the distribution value ``val``."""
    d = cgutils.alloca_once(builder, _DIST_T)
    st = cgutils.create_struct_proxy(ty)(context, builder, value=val)
    if isinstance(ty, ScalarDistType):
        params = cgutils.alloca_once(builder, _F64, size=ty.nparams)
        for i in range(ty.nparams):
            builder.store(getattr(st, f"p{i}"), cgutils.gep(builder, params, i))
        size, nparams = _I32(1), _I32(ty.nparams)
    else:
        arr = context.make_array(_PARAMS_ARRAY)(context, builder, value=st.params)
        params = arr.data
        size = builder.trunc(st.size, _I32)
        nparams = builder.trunc(arr.nitems, _I32)
    for i, v in enumerate((_I8(ty.kind), size, nparams, params)):
        builder.store(v, cgutils.gep(builder, d, 0, i))
    return d


def _id(context: Any, builder: ir.IRBuilder, ty: types.Type, val: ir.Value) -> ir.Value:
    return context.cast(builder, val, ty, types.uint32)


_SAMPLE_T = ir.FunctionType(_F64, [_DIST_T.as_pointer(), _I32, _I32, _I32, _F64P])


@intrinsic
def _sample_scalar(typingctx: Any, dist: Any, address: types.Type, name: types.Type,
                   flags: types.Type) -> Any:
    """One scalar draw (ids as values): float64, or int64 for discrete distributions."""
    ret = types.int64 if dist.discrete else types.float64

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> ir.Value:
        out = cgutils.alloca_once(builder, _F64)
        d = _dist_ptr(context, builder, sig.args[0], args[0])
        fn = cgutils.get_or_insert_function(builder.module, _SAMPLE_T, _abi.SYMBOLS["sample"])
        x = builder.call(fn, [d, _id(context, builder, sig.args[1], args[1]),
                              _id(context, builder, sig.args[2], args[2]),
                              context.cast(builder, args[3], sig.args[3], types.int32), out])
        _check_failed(context, builder)
        return builder.fptosi(x, ir.IntType(64)) if dist.discrete else x

    return ret(dist, address, name, flags), codegen


@intrinsic
def _sample_into(typingctx: Any, dist: types.Type, address: types.Type, name: types.Type, flags: types.Type,
                 out: types.Type) -> Any:
    """A tensor draw written to the float64 array ``out``."""

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> ir.Value:
        d = _dist_ptr(context, builder, sig.args[0], args[0])
        data = context.make_array(sig.args[4])(context, builder, value=args[4]).data
        fn = cgutils.get_or_insert_function(builder.module, _SAMPLE_T, _abi.SYMBOLS["sample"])
        x = builder.call(fn, [d, _id(context, builder, sig.args[1], args[1]),
                              _id(context, builder, sig.args[2], args[2]),
                              context.cast(builder, args[3], sig.args[3], types.int32), data])
        _check_failed(context, builder)
        return x

    return types.float64(dist, address, name, flags, out), codegen


def _value_ptr(context: Any, builder: ir.IRBuilder, ty: types.Type,
               val: ir.Value) -> Tuple[ir.Value, ir.Value]:
    """(double*, count) for a value: none, a scalar or a float64 C array."""
    if _is_none(ty):
        return ir.Constant(_F64P, None), _I32(0)
    if isinstance(ty, types.Array):
        arr = context.make_array(ty)(context, builder, value=val)
        return arr.data, builder.trunc(arr.nitems, _I32)
    return cgutils.alloca_once_value(builder, context.cast(builder, val, ty, types.float64)), _I32(1)


@intrinsic
def _observe(typingctx: Any, dist: types.Type, name: types.Type, value: types.Type) -> Any:
    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> ir.Value:
        ident = _id(context, builder, sig.args[1], args[1])
        d = _dist_ptr(context, builder, sig.args[0], args[0])
        ptr, count = _value_ptr(context, builder, sig.args[2], args[2])
        builder.call(_fn(builder, "observe", _F64, [_DIST_T.as_pointer(), _I32, _I32, _F64P, _I32]),
                     [d, ident, ident, ptr, count])
        _check_failed(context, builder)
        return context.get_dummy_value()

    return types.none(dist, name, value), codegen


@intrinsic
def _tag(typingctx: Any, value: types.Type, name: types.Type) -> Any:
    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> ir.Value:
        ident = _id(context, builder, sig.args[1], args[1])
        ptr, count = _value_ptr(context, builder, sig.args[0], args[0])
        fn = _fn(builder, "tag", ir.VoidType(), [_I32, _I32, _F64P, _I32])
        builder.call(fn, [ident, ident, ptr, count])
        return context.get_dummy_value()

    return types.none(value, name), codegen


@intrinsic
def _factor(typingctx: Any, log_prob: types.Type) -> Any:
    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> ir.Value:
        lp = context.cast(builder, args[0], sig.args[0], types.float64)
        builder.call(_fn(builder, "factor", ir.VoidType(), [_F64]), [lp])
        _check_failed(context, builder)
        return context.get_dummy_value()

    return types.none(log_prob), codegen


_failers: Dict[str, Any] = {}


def failer(message: str) -> Any:
    """An intrinsic ``() -> None`` that fails the current trace with ``message`` (the
    recorder keeps the first cause, so a failure it recorded itself wins)."""
    fn = _failers.get(message)
    if fn is None:
        def typer(typingctx: Any) -> Any:
            def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> ir.Value:
                builder.call(_fn(builder, "fail", ir.VoidType(), [_I8.as_pointer()]),
                             [context.insert_const_string(builder.module, message)])
                return context.get_dummy_value()

            return types.none(), codegen

        fn = _failers[message] = intrinsic(typer)
    return fn


def _make_scalar_intrinsic(ty: ScalarDistType) -> Any:
    """An intrinsic building a scalar distribution value from its parameters."""

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, vals: Any) -> ir.Value:
        st = cgutils.create_struct_proxy(ty)(context, builder)
        for i, (t, v) in enumerate(zip(sig.args, vals)):
            setattr(st, f"p{i}", context.cast(builder, v, t, types.float64))
        return st._getvalue()

    # numba intrinsics take fixed positional arguments: one typer per arity.
    if ty.nparams == 1:
        def make1(typingctx: Any, a: Any) -> Any:
            return ty(a), codegen

        return intrinsic(make1)
    if ty.nparams == 2:
        def make2(typingctx: Any, a: Any, b: Any) -> Any:
            return ty(a, b), codegen

        return intrinsic(make2)

    def make4(typingctx: Any, a: Any, b: Any, c: Any, e: Any) -> Any:
        return ty(a, b, c, e), codegen

    return intrinsic(make4)


def _make_packed_intrinsic(ty: PackedDistType) -> Any:
    """An intrinsic building a packed distribution from (params array, size)."""

    def make(typingctx: Any, params: Any, size: Any) -> Any:
        def codegen(context: Any, builder: ir.IRBuilder, sig: Any, vals: Any) -> ir.Value:
            st = cgutils.create_struct_proxy(ty)(context, builder)
            # The struct keeps its own reference to the array.
            context.nrt.incref(builder, _PARAMS_ARRAY, vals[0])
            st.params = vals[0]
            st.size = context.cast(builder, vals[1], sig.args[1], types.intp)
            return st._getvalue()

        return ty(_PARAMS_ARRAY, size), codegen

    return intrinsic(make)


_makers: Dict[str, Any] = {}


def _maker(ty: Any) -> Any:
    if ty.name not in _makers:
        _makers[ty.name] = (_make_scalar_intrinsic(ty) if isinstance(ty, ScalarDistType)
                            else _make_packed_intrinsic(ty))
    return _makers[ty.name]


# ------------------------------------------------------------------ the public calls


def _define(name: str, body: str, env: Dict[str, Any], fname: Optional[str] = None) -> Any:
    """A function ``fname(<name's parameters>): return <body>`` (numba needs the
    parameter names of an overload and of its implementation to match)."""
    args = ", ".join(DISTRIBUTIONS[name][1])
    ns = dict(env)
    exec(f"def {fname or name}({args}):\n    return {body.format(args=args)}\n", ns)
    return ns[fname or name]


def _python_dist(name: str) -> Any:
    fn = _define(name, "_cls({args})", {"_cls": getattr(_d, name)})
    fn.__module__ = __name__
    params = ", ".join(DISTRIBUTIONS[name][1])
    fn.__doc__ = (f"``{name}({params})``: in a compiled model, a {name} distribution for ``sample`` / "
                  f"``observe``; called from Python, a ``ppfast.distributions.{name}``.")
    return fn


Normal = _python_dist("Normal")
Uniform = _python_dist("Uniform")
Categorical = _python_dist("Categorical")
Poisson = _python_dist("Poisson")
Bernoulli = _python_dist("Bernoulli")
Beta = _python_dist("Beta")
Exponential = _python_dist("Exponential")
Gamma = _python_dist("Gamma")
LogNormal = _python_dist("LogNormal")
Binomial = _python_dist("Binomial")
Weibull = _python_dist("Weibull")
TruncatedNormal = _python_dist("TruncatedNormal")


def _as_vector_impl(x: Any) -> Any:
    return np.ascontiguousarray(x, dtype=np.float64).reshape(-1)


@overload(_as_vector_impl)
def _ov_as_vector(x):  # unannotated: numba compares typer and impl signatures
    if _is_scalar(x):
        return lambda x: np.full(1, np.float64(x))
    if x == _PARAMS_ARRAY:
        return lambda x: x
    return lambda x: np.ascontiguousarray(x).astype(np.float64)


def _broadcast_impl(n: Any, m: Any) -> Any:
    return np.broadcast_shapes((n,), (m,))[0]


@overload(_broadcast_impl)
def _ov_broadcast(n, m):
    fail = failer("distribution parameters of different lengths do not broadcast")

    def impl(n, m):
        if n == m or m == 1:
            return n
        if n == 1:
            return m
        fail()
        raise TraceFailed("parameters do not broadcast")

    return impl


def _packed_impl(name: str, ty: PackedDistType) -> Any:
    make = _maker(ty)
    k = len(DISTRIBUTIONS[name][1])
    # Parameters as vectors, broadcast to one length n, packed as k arrays of n.
    lines = [f"def impl({', '.join(DISTRIBUTIONS[name][1])}):"]
    for i, p in enumerate(DISTRIBUTIONS[name][1]):
        lines.append(f"    v{i} = _vec({p})")
    lines.append("    n = v0.size")
    for i in range(1, k):
        lines.append(f"    n = _bcast(n, v{i}.size)")
    lines.append(f"    params = np.empty({k} * n)")
    for i in range(k):
        lines.append(f"    params[{i} * n:{i + 1} * n] = v{i}")
    lines.append("    return make(params, n)")
    ns = {"_vec": _as_vector_impl, "_bcast": _broadcast_impl, "np": np, "make": make}
    exec("\n".join(lines) + "\n", ns)
    return ns["impl"]


def _register_distribution(fn: Any) -> None:
    name = fn.__name__
    kind, pnames, _ = DISTRIBUTIONS[name]
    sig = f"{name}({', '.join(pnames)})"

    def typer(*args: types.Type) -> Any:
        if kind == 3:
            (p,) = args
            if not _is_vector(p):
                raise TypingError(f"{sig}: probs must be a 1-D array of numbers, got {p}")
            return _define(name, "make(_vec(probs), 1)", {"make": _maker(PackedDistType(kind)),
                                                          "_vec": _as_vector_impl}, "impl")
        bad = [str(t) for t in args if not (_is_scalar(t) or _is_vector(t))]
        if bad:
            raise TypingError(f"{sig}: parameters must be numbers or 1-D arrays of numbers, "
                              f"got {', '.join(bad)}")
        if all(_is_scalar(t) for t in args):
            return _define(name, "make({args})", {"make": _maker(ScalarDistType(kind, len(args)))}, "impl")
        return _packed_impl(name, PackedDistType(kind))

    # The typer must carry the distribution's parameter names (keyword calls).
    named = _define(name, "_typer({args})", {"_typer": typer}, "typer")
    overload(fn)(named)


for _fn_ in (Normal, Uniform, Categorical, Poisson, Bernoulli, Beta, Exponential, Gamma, LogNormal, Binomial,
             Weibull, TruncatedNormal):
    _register_distribution(_fn_)


def sample(distribution: Any, address: str, name: Optional[str] = None, control: bool = True,
           replace: bool = False) -> Any:
    """Draws a value at ``address`` (a constant string); ``name`` defaults to the address.

    Compiled: scalar distributions give a float (an int for discrete ones), element-wise
    tensors a float64 array.  ``control=False``: inference never steers this draw;
    ``replace=True``: a rejection-loop draw of which only the last one counts."""
    return _p.sample(distribution, name=address if name is None else name, address=address, control=control,
                     replace=replace)


def observe(distribution: Any, name: str, value: Any = None) -> None:
    """Conditions on the run's ``observe={name: value}`` (else on ``value``); ``name`` is a
    constant string and also the address of the site."""
    _p.observe(distribution, value, name=name, address=name)


def tag(value: Any, name: str) -> None:
    """Records a number or array in the trace under ``name`` (a constant string)."""
    _p.tag(value, name=name, address=name)


def factor(log_prob: float) -> None:
    """Adds ``log_prob`` to the trace's log-likelihood."""
    _p.factor(log_prob)


def _is_dist(t: types.Type) -> bool:
    return isinstance(t, (ScalarDistType, PackedDistType))


def _require_dist(call: str, t: types.Type) -> None:
    if not _is_dist(t):
        raise TypingError(f"{call}: the first argument must be a ppfast.numba distribution such as "
                          f"Normal(mean, stddev), got {t}")


def _is_none(t: Any) -> bool:
    return t is None or isinstance(t, (types.NoneType, types.Omitted))


def _require_constant(call: str, what: str, t: Any, optional: bool = False) -> None:
    if isinstance(t, types.StringLiteral):
        return
    if optional and _is_none(t):
        return
    raise TypingError(f"{call}: the {what} must be a constant string such as \"mu\" (compiled models name "
                      f"their random choices at compile time; repeated sites count instances), got {t}")


def _require_flag(call: str, what: str, t: Any) -> None:
    # An omitted argument arrives as its Python default.
    if not isinstance(t, (bool, types.Boolean, types.Omitted, types.Integer)):
        raise TypingError(f"{call}: {what} must be a bool, got {t}")


@overload(sample, prefer_literal=True)
def _ov_sample(distribution, address, name=None, control=True, replace=False):
    _require_dist("sample(distribution, address)", distribution)
    _require_constant("sample(distribution, address)", "address", address)
    _require_constant("sample(distribution, address, name)", "name", name, optional=True)
    _require_flag("sample", "control", control)
    _require_flag("sample", "replace", replace)
    address_id = site(address.literal_value)
    name_id = address_id if _is_none(name) else site(name.literal_value)

    # Scalars, and Categorical (one index; its params array holds the probabilities).
    if isinstance(distribution, ScalarDistType) or distribution.kind == 3:
        def impl(distribution, address, name=None, control=True, replace=False):  # type: ignore
            return _sample_scalar(distribution, address_id(), name_id(), _flags(control, replace))

        return impl

    if not distribution.discrete:
        def draw(distribution, address, name=None, control=True, replace=False):  # type: ignore
            out = np.empty(distribution_size(distribution))
            _sample_into(distribution, address_id(), name_id(), _flags(control, replace), out)
            return out

        return draw

    def draw_int(distribution, address, name=None, control=True, replace=False):  # type: ignore
        out = np.empty(distribution_size(distribution))
        _sample_into(distribution, address_id(), name_id(), _flags(control, replace), out)
        return out.astype(np.int64)

    return draw_int


def _flags(control: Any, replace: Any) -> int:
    return (1 if control else 0) | (2 if replace else 0)


@overload(_flags)
def _ov_flags(control, replace):
    return lambda control, replace: (1 if control else 0) | (2 if replace else 0)


def distribution_size(distribution: Any) -> int:
    """Number of value elements of a distribution (1 for scalars and Categorical)."""
    return int(getattr(distribution, "size", 1))


@intrinsic
def _packed_size(typingctx: Any, dist: types.Type) -> Any:
    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> ir.Value:
        return cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0]).size

    return types.intp(dist), codegen


@overload(distribution_size)
def _ov_size(distribution):
    if isinstance(distribution, ScalarDistType):
        return lambda distribution: 1
    if isinstance(distribution, PackedDistType):
        return lambda distribution: _packed_size(distribution)
    return None


@overload(observe, prefer_literal=True)
def _ov_observe(distribution, name, value=None):
    _require_dist("observe(distribution, name)", distribution)
    _require_constant("observe(distribution, name)", "name", name)
    ident = site(name.literal_value)
    if _is_none(value):
        return lambda distribution, name, value=None: _observe(distribution, ident(), None)
    if _is_scalar(value):
        return lambda distribution, name, value=None: _observe(distribution, ident(), value)
    if isinstance(value, types.Array) and isinstance(value.dtype, (types.Number, types.Boolean)):
        def impl(distribution, name, value=None):  # type: ignore
            _observe(distribution, ident(), np.ascontiguousarray(value.ravel()).astype(np.float64))

        return impl
    raise TypingError(f"observe(distribution, name, value): value must be a number or an array, got {value}")


@overload(tag, prefer_literal=True)
def _ov_tag(value, name):
    _require_constant("tag(value, name)", "name", name)
    ident = site(name.literal_value)
    if _is_scalar(value):
        return lambda value, name: _tag(value, ident())
    if isinstance(value, types.Array) and isinstance(value.dtype, (types.Number, types.Boolean)):
        return lambda value, name: _tag(np.ascontiguousarray(value.ravel()).astype(np.float64), ident())
    raise TypingError(f"tag(value, name): value must be a number or an array, got {value}")


@overload(factor)
def _ov_factor(log_prob):
    if not _is_scalar(log_prob):
        raise TypingError(f"factor(log_prob): log_prob must be a number, got {log_prob}")
    return lambda log_prob: _factor(log_prob)
