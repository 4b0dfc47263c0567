"""Where the built parts live: next to the extension module (in editable installs the
build's files sit in site-packages, not in the source tree)."""

from __future__ import annotations

from pathlib import Path

from . import _core

NATIVE_ROOT = Path(_core.__file__).resolve().parent
EXAMPLES_LIB = NATIVE_ROOT / "examples" / "lib"
EXAMPLES_BIN = NATIVE_ROOT / "examples" / "bin"
CMAKE_DIR = NATIVE_ROOT / "cmake"
INCLUDE_DIR = NATIVE_ROOT / "include"
