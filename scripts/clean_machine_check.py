"""Checks run by scripts/clean_machine_test.sh inside the fresh virtual environment, with
the system libzmq hidden.  Usage: clean_machine_check.py WORK_DIR"""

from __future__ import annotations

import ctypes
import math
import subprocess
import sys
import textwrap
from pathlib import Path

OBS = {"obs0": 8.0, "obs1": 9.0}
EXACT_MEAN, EXACT_STD = 7.25, math.sqrt(1 / 1.2)

SIMULATOR = (Path(__file__).resolve().parents[1] / "tests" / "data" / "external_gum.cpp").read_text()

CMAKE = """
cmake_minimum_required(VERSION 3.18)
project(external_gum CXX)
find_package(ppfast CONFIG REQUIRED)
add_library(external_gum MODULE sim.cpp)
target_link_libraries(external_gum PRIVATE ppfast::ppfast)
target_compile_options(external_gum PRIVATE -Wall -Wextra -Wpedantic -Werror)
set_target_properties(external_gum PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
"""


def check(label: str, post) -> None:
    se = EXACT_STD / math.sqrt(post.effective_sample_size)
    ok = abs(post.mean - EXACT_MEAN) < 5 * se
    print(f"{label:28s} mean {post.mean:.4f} (exact {EXACT_MEAN}, 5 s.e. {5 * se:.4f})  {'ok' if ok else 'FAIL'}")
    if not ok:
        raise SystemExit(f"{label}: posterior mean {post.mean} is off")


def main() -> None:
    work = Path(sys.argv[1])
    try:
        ctypes.CDLL("libzmq.so.5")
        raise SystemExit("the system libzmq is still loadable: the check would prove nothing")
    except OSError as e:
        print(f"system libzmq hidden: {e}")

    import ppfast
    from ppfast.examples import load
    from ppfast.examples.python_models import GUM
    from ppfast.models.remote import ExampleServer

    assert "site-packages" in ppfast.__file__, ppfast.__file__
    for typed in ("py.typed", "_core.pyi", "_zmq.pyi"):
        assert (Path(ppfast.__file__).parent / typed).is_file(), f"the wheel lacks {typed}"
    demo = subprocess.run([sys.executable, "-m", "ppfast", "demo", "--traces", "20000"], capture_output=True,
                          text=True, timeout=600)
    print(textwrap.indent(demo.stdout.strip(), "  demo | "))
    if demo.returncode != 0:
        raise SystemExit(f"ppfast demo failed:\n{demo.stderr}")

    check("Python model", GUM().posterior_results(5000, observe=OBS, seed=1))
    check("embedded example", load("gum", mode="embedded").posterior_results(50000, observe=OBS, seed=1))
    check("shared-memory example", load("gum", mode="shm").posterior_results(20000, observe=OBS, seed=1))
    with ExampleServer("gum") as server:
        check("PPX round trip", ppfast.RemoteModel(server.address).posterior_results(5000, observe=OBS, seed=1))

    src, build = work / "src", work / "build"
    src.mkdir(parents=True)
    (src / "sim.cpp").write_text(SIMULATOR)
    (src / "CMakeLists.txt").write_text(CMAKE)
    cmake_dir = subprocess.run([sys.executable, "-m", "ppfast", "--cmake-dir"], capture_output=True, text=True,
                               check=True).stdout.strip()
    for cmd in (["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja", f"-Dppfast_DIR={cmake_dir}"],
                ["cmake", "--build", str(build)]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    check("out-of-tree CMake simulator", ppfast.NativeModel(build / "external_gum.so")
          .posterior_results(50000, observe=OBS, seed=1))

    maps = Path("/proc/self/maps").read_text()
    zmq = sorted({line.split()[-1] for line in maps.splitlines() if "libzmq" in line})
    print(f"libzmq in this process: {zmq}")
    if not zmq or any(not p.split("/")[-2].endswith("ppfast.libs") for p in zmq):
        raise SystemExit("PPX did not use the libzmq bundled in the wheel")


if __name__ == "__main__":
    main()
