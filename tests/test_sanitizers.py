"""The C++ core under AddressSanitizer + UndefinedBehaviorSanitizer (and the distribution
tests, built the same way): no use-after-free, no overflow, no UB on these paths."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ["address_table.cpp", "api.cpp", "distributions.cpp", "recorder.cpp", "runner.cpp", "stack_address.cpp",
        "trace_batch.cpp"]


def build_and_run(tmp_path: Path, test: str) -> subprocess.CompletedProcess:
    exe = tmp_path / Path(test).stem
    cmd = ["g++", "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
           "-fno-sanitize-recover=undefined", f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}",
           *[str(ROOT / "csrc" / "core" / f) for f in CORE], str(ROOT / "tests" / "cpp" / test), "-o", str(exe),
           "-pthread", "-ldl"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=300,
                          env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("test", ["test_recorder.cpp", "test_distributions.cpp"])
def test_core_under_sanitizers(tmp_path, test):
    run = build_and_run(tmp_path, test)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in run.stderr and "runtime error" not in run.stderr


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_concurrent_paths_under_thread_sanitizer(tmp_path):
    """tests/cpp/test_concurrency.cpp under ThreadSanitizer: one worker pool from two
    threads, guided fibers on pinned workers, a shared-memory host closed mid-run from
    another thread (its simulator is the package's GUM executable)."""
    from ppfast._paths import EXAMPLES_BIN

    exe = tmp_path / "test_concurrency"
    sources = [ROOT / "csrc" / "core" / f for f in CORE + ["guided.cpp"]]
    sources += [ROOT / "csrc" / "transport" / "shm" / "host.cpp", ROOT / "tests" / "cpp" / "test_concurrency.cpp"]
    cmd = ["g++", "-std=c++17", "-O1", "-g", "-fsanitize=thread", f"-I{ROOT / 'csrc'}",
           f"-I{ROOT / 'csrc' / 'include'}", *map(str, sources), "-o", str(exe), "-pthread", "-ldl", "-lrt"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe), str(EXAMPLES_BIN / "gum")], capture_output=True, text=True, timeout=300,
                         env={"TSAN_OPTIONS": "halt_on_error=1 second_deadlock_stack=1"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout[-3000:] + run.stderr[-5000:]
    assert "ThreadSanitizer" not in run.stderr, run.stderr[-5000:]
