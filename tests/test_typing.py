"""Typing: the package ships py.typed and stubs for its compiled modules, the stubs name
every binding, and mypy --strict passes on a user script (and sees ppfast's types)."""

import ast
import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import ppfast
from ppfast import _core

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(ppfast.__file__).parent
USER_SCRIPT = ROOT / "tests" / "typing" / "user_script.py"


def _public(names):
    return {n for n in names if not n.startswith("_")}


def test_package_ships_py_typed_and_stubs():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_core.pyi").is_file() and (PACKAGE / "_zmq.pyi").is_file()


def test_core_stubs_match_the_bindings():
    tree = ast.parse((PACKAGE / "_core.pyi").read_text())
    stub = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            stub[node.name] = _public(
                n.name if isinstance(n, (ast.FunctionDef, ast.ClassDef)) else n.target.id
                for n in node.body
                if isinstance(n, (ast.FunctionDef, ast.ClassDef)) or
                (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)))
        elif isinstance(node, ast.FunctionDef):
            stub[node.name] = set()
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub[node.target.id] = set()
    # A stale entry would let a type checker accept a call that fails: an error.  A binding
    # the stubs do not list yet is only untyped (ppfast._core is private): a warning.
    hint = "regenerate the stubs: bash scripts/stubs.sh"
    missing = set()
    assert _public(stub) <= _public(dir(_core)), (_public(stub) - _public(dir(_core)), hint)
    missing |= _public(dir(_core)) - _public(stub)
    for name in _public(stub):
        obj = getattr(_core, name)
        if isinstance(obj, type):
            members = _public(dir(obj)) - _public(dir(object))
            assert stub[name] <= members, (name, stub[name] - members, hint)
            missing |= {f"{name}.{m}" for m in members - stub[name]}
    if missing:
        warnings.warn(f"ppfast/_core.pyi lacks {sorted(missing)}: {hint}", stacklevel=1)


def _mypy(*files: Path) -> subprocess.CompletedProcess:
    # Run outside the checkout, as a user would: ppfast is then the installed package, whose
    # own code mypy does not report on, only how the script uses it.
    cache = ROOT / "build" / "mypy-cache"  # reused between runs (build/ is not tracked)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), *map(str, files)],
                          capture_output=True, text=True, timeout=600, cwd="/")


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed (scripts/setup.sh installs it)")
def test_user_script_passes_mypy_strict_and_runs(tmp_path):
    r = _mypy(USER_SCRIPT)
    assert r.returncode == 0, r.stdout + r.stderr
    # mypy sees ppfast's real signatures (not Any): a wrong argument type is reported.
    bad = tmp_path / "bad.py"
    bad.write_text("import ppfast\nfrom ppfast.distributions import Normal\n"
                   "x = ppfast.sample(Normal(0.0, 1.0), name=3)\n")
    r = _mypy(bad)
    assert r.returncode == 1 and 'bad.py:3: error: Argument "name" to "sample"' in r.stdout, r.stdout
    run = subprocess.run([sys.executable, str(USER_SCRIPT)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PPFAST_PROGRESS="0"))
    assert run.returncode == 0, run.stderr
    assert "ESS" in run.stdout
