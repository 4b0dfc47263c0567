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
