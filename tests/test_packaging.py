"""Packaging: optional dependencies fail with the pip command that installs them, and
ppfast works without libzmq except for PPX."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HIDE_LIBZMQ = ROOT / "scripts" / "hide_libzmq.sh"


def _python(code: str, *prefix: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PPFAST_PROGRESS="0")
    return subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=env, cwd="/")


# (module made unimportable, code that needs it, extra named in the error)
MISSING = [
    ("torch", "ppfast.examples.python_models.GUM().learn_inference_network(10, progress=False)", "torch"),
    ("torch", "ppfast.examples.python_models.GUM().prior_batch(2).to_torch()", "torch"),
    ("matplotlib", "import ppfast.diagnostics as d; d.plot_trace([1.0, 2.0])", "diagnostics"),
    ("arviz", "import ppfast.diagnostics as d; d.to_arviz([1.0, 2.0])", "diagnostics"),
    ("networkx", "import ppfast.diagnostics as d; d.latent_graph(ppfast.examples.python_models.GUM()"
                 ".prior_results(5)).to_networkx()", "diagnostics"),
    ("numba", "ppfast.examples.load('gum', mode='numba')", "numba"),
    ("pyarrow", "import ppfast.data", "data"),
    ("mpi4py", "ppfast.distributed.world(True)", "mpi"),
    ("flatbuffers", "import ppfast.ppx.messages", "ppx"),
]


@pytest.mark.parametrize("module,code,extra", MISSING, ids=[f"{m}:{e}" for m, _, e in MISSING])
def test_missing_optional_dependency_names_the_extra(module, code, extra):
    r = _python(f"""
        import sys
        sys.modules[{module!r}] = None  # importing it now raises ModuleNotFoundError
        import ppfast, ppfast.examples, ppfast.examples.python_models, ppfast.distributed
        try:
            {code}
        except ModuleNotFoundError as e:
            print("ERROR:", e)
        else:
            print("NO ERROR")
    """)
    assert r.returncode == 0, r.stderr
    assert f"pip install 'ppfast[{extra}]'" in r.stdout, r.stdout + r.stderr


def _can_hide_libzmq() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


@pytest.mark.skipif(not _can_hide_libzmq(), reason="hiding libzmq needs root and unshare (CI runs as root)")
def test_everything_but_ppx_works_without_libzmq():
    r = _python("""
        import ctypes
        try:
            ctypes.CDLL("libzmq.so.5")
            raise SystemExit("libzmq is still loadable: the test proves nothing")
        except OSError:
            pass
        import ppfast
        from ppfast.examples import load
        from ppfast.examples.python_models import GUM
        obs = {"obs0": 8, "obs1": 9}
        for model in (GUM(), load("gum", mode="embedded"), load("gum", mode="shm")):
            post = model.posterior_results(2000, observe=obs, seed=1)
            assert abs(post.mean - 7.25) < 0.5, post.mean
        try:
            ppfast.RemoteModel("ipc://@ppfast-no-zmq", connect=False)
        except ImportError as e:
            print("PPX:", e)
        maps = open("/proc/self/maps").read()
        print("libzmq mapped:", "libzmq" in maps)
    """, str(HIDE_LIBZMQ))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PPX: PPX needs ZeroMQ (libzmq.so.5)" in r.stdout, r.stdout
    assert "libzmq mapped: False" in r.stdout, r.stdout


def test_repository_folders_are_not_importable_outside_the_checkout():
    # The editable install must not put the repository root on sys.path.
    r = _python("""
        import importlib.util, sys
        for name in ("bench", "tests", "examples", "scripts"):
            spec = importlib.util.find_spec(name)
            where = list(spec.submodule_search_locations or [spec.origin]) if spec else []
            print(name, [str(w) for w in where])
    """)
    assert r.returncode == 0, r.stderr
    assert str(ROOT) + "/" not in r.stdout, r.stdout


def test_ppfast_bench_points_to_python_m_bench():
    r = subprocess.run([sys.executable, "-m", "ppfast", "bench"], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 2
    assert "python -m bench" in r.stderr
