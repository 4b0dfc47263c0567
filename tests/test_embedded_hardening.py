"""Embedded models under stress: a library for another ABI, failed thread creation, one
model shared by several Python threads."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
needs_cc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs ``code`` in a child interpreter: a crash or hang there must not take pytest down."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


@needs_cc
def test_library_for_another_abi_raises_the_intended_error(tmp_path):
    src = tmp_path / "other_abi.c"
    src.write_text(textwrap.dedent("""
        #include <ppfast/ppfast.h>
        static double run(void) { return 0.0; }
        static const ppfast_model_info info = {PPFAST_ABI_VERSION + 1000, "other", run, 0};
        const ppfast_model_info* ppfast_model_entry(void) { return &info; }
    """))
    lib = tmp_path / "other_abi.so"
    subprocess.run(["gcc", "-shared", "-fPIC", f"-I{ROOT / 'csrc' / 'include'}", str(src), "-o", str(lib)],
                   check=True)
    done = run_python(f"""
        import ppfast
        try:
            ppfast.NativeModel({str(lib)!r})
        except ValueError as e:
            print(e)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "was built for ppfast ABI" in done.stdout and "this ppfast speaks" in done.stdout


def test_failed_thread_creation_raises_instead_of_hanging():
    # Address space for a few thread stacks only: creating the 64th worker fails part-way.
    done = run_python("""
        import resource, ppfast.examples
        path = ppfast.examples.load("gum").path
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (96 << 20), resource.RLIM_INFINITY))
        try:
            ppfast.NativeModel(path, threads=64)
        except RuntimeError as e:
            print("raised:", e)
    """, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "raised: cannot start worker thread" in done.stdout


def test_one_model_from_several_python_threads():
    # Many small runs from four threads at once on one model (its worker pool): runs take
    # turns, every result is the single-threaded one, nothing crashes (in a child process:
    # before the fix this crashed the interpreter).
    done = run_python("""
        import threading, numpy as np, ppfast, ppfast.examples
        ppfast.set_progress(False)
        model = ppfast.examples.load("gum", threads=2)
        expected = model.prior_batch(3000, seed=5).results
        bad = []
        def work():
            for _ in range(300):
                if not np.array_equal(model.prior_batch(3000, seed=5).results, expected):
                    bad.append(1)
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        print("alive", sum(t.is_alive() for t in threads), "bad", len(bad))
    """, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["alive", "0", "bad", "0"]


THREADED = """
    #include <thread>
    #include <ppfast/ppfast.hpp>
    // Draws on a thread of its own: ppfast cannot record those.
    static double threaded() {
      double x = 0;
      std::thread t([&] { x = ppfast::sample(ppfast::Normal(0.0, 1.0), "x"); });
      t.join();
      return x;
    }
    PPFAST_MODEL(threaded, threaded)
"""

EXITS = """
    #include <cstdlib>
    #include <ppfast/ppfast.hpp>
    static double exits() {
      double x = ppfast::sample(ppfast::Normal(0.0, 1.0), "x");
      if (x > 1.5) std::exit(0);
      return x;
    }
    PPFAST_MODEL(exits, exits)
"""


def build_library(tmp_path, source: str) -> Path:
    from ppfast._paths import INCLUDE_DIR, NATIVE_ROOT

    src, lib = tmp_path / "sim.cpp", tmp_path / "sim.so"
    src.write_text(textwrap.dedent(source))
    subprocess.run(["g++", "-std=c++17", "-O1", "-shared", "-fPIC", f"-I{INCLUDE_DIR}", str(src),
                    str(NATIVE_ROOT / "lib" / "libppfast.a"), "-o", str(lib), "-pthread"], check=True)
    return lib


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_draws_from_a_simulators_own_threads_raise(tmp_path):
    import ppfast

    model = ppfast.NativeModel(build_library(tmp_path, THREADED), threads=2)
    with pytest.raises(RuntimeError, match="threads the simulator started itself"):
        model.prior_batch(100, seed=1)


def test_draws_from_a_thread_pool_inside_forward_raise():
    from concurrent.futures import ThreadPoolExecutor

    import ppfast
    from ppfast.distributions import Normal
    from ppfast.errors import ModelError

    class Pooled(ppfast.Model):
        def forward(self):
            with ThreadPoolExecutor(2) as pool:
                return sum(pool.map(lambda _: ppfast.sample(Normal(0.0, 1.0)), range(2)))

    with pytest.raises(ModelError, match="thread that is not running the model"):
        Pooled().prior_batch(3, seed=1)
    assert isinstance(ppfast.sample(Normal(0.0, 1.0)), float)  # outside a run: plain Python


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_simulator_calling_exit_says_why_the_host_ended(tmp_path):
    lib = build_library(tmp_path, EXITS)
    done = run_python(f"""
        import ppfast
        ppfast.NativeModel({str(lib)!r}, threads=2).prior_batch(1000, seed=1)
    """)
    assert "in the middle of a simulation run (did the simulator call exit()?)" in done.stderr
    assert "ShmModel" in done.stderr
