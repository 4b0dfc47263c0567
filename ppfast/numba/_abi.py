"""This process's recorder entry points as named symbols for numba-compiled code.

The C ABI table (``ppfast_api`` in ``ppfast.h``) is read once with ctypes and each entry
point is registered with llvmlite under a stable name.  Compiled code refers to the
names, not to raw pointers, so numba can cache it (``cache=True``): a cached function
is linked against whatever address the name has in the process that loads it.
"""

from __future__ import annotations

import ctypes
from typing import Dict

from llvmlite import binding as llvm

from .. import _core

__all__ = ["SYMBOLS", "ABI_VERSION", "intern", "locate", "register"]

# Must match PPFAST_ABI_VERSION in csrc/include/ppfast/ppfast.h.
ABI_VERSION = 2


class _Api(ctypes.Structure):
    # The leading fields of struct ppfast_api; later ABI versions may only append.
    _fields_ = [
        ("abi_version", ctypes.c_uint32),
        ("intern", ctypes.c_void_p),
        ("sample", ctypes.c_void_p),
        ("observe", ctypes.c_void_p),
        ("tag", ctypes.c_void_p),
        ("factor", ctypes.c_void_p),
        ("failed", ctypes.c_void_p),
        ("fail", ctypes.c_void_p),
        ("locate", ctypes.c_void_p),
    ]


# Entry point -> symbol name seen by compiled code.
SYMBOLS: Dict[str, str] = {
    f[0]: f"ppfast_numba_{f[0]}" for f in _Api._fields_ if f[0] != "abi_version"
}

_api = _Api.from_address(_core.api_table())
if _api.abi_version != ABI_VERSION:
    raise ImportError(f"ppfast.numba speaks C ABI {ABI_VERSION}, the core was built with {_api.abi_version}")


def register() -> None:
    """Makes every entry point resolvable by name in code numba compiles or loads."""
    for field, symbol in SYMBOLS.items():
        llvm.add_symbol(symbol, getattr(_api, field))


def intern(text: str) -> int:
    """The address id of ``text`` in this process (the same id compiled code gets)."""
    return int(_core.intern(text))


def locate(text: str, where: str) -> None:
    """Records where the address ``text`` lives in the model's source."""
    _core.set_address_location(intern(text), where)


register()
