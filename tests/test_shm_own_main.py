"""A simulator with its own main() serves shared memory through ppfast::serve_shm and keeps
its own command-line arguments."""

import shutil
import subprocess

import numpy as np
import pytest

import ppfast
from conftest import build_external

SIM = """
#include <cstdio>
#include <cstring>
#include <ppfast/ppfast.hpp>
#include <ppfast/shm_server.hpp>

static double scale = 1.0;
static double model() { return scale * ppfast::sample(ppfast::Normal(0.0, 1.0), "x"); }
PPFAST_MODEL(own_main, model)

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--scale")) scale = std::atof(argv[i + 1]);
  if (int status = ppfast::serve_shm(argc, argv); status >= 0) return status;
  std::printf("own main, scale %g\\n", scale);
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_own_main_serves_shared_memory_and_keeps_its_arguments(tmp_path):
    build = build_external(tmp_path, """
        add_executable(own_main sim.cpp)
        target_link_libraries(own_main PRIVATE ppfast::main ppfast::ppfast)
    """, SIM)
    exe = str(build / "own_main")
    assert subprocess.run([exe, "--scale", "3"], capture_output=True, text=True).stdout == "own main, scale 3\n"
    model = ppfast.ShmModel([exe, "--scale", "1000"], workers=1)
    batch = model.prior_batch(50, seed=4)
    x = batch.values_of("x")
    np.testing.assert_allclose(batch.traces["result"], 1000 * x)
    assert np.all(np.abs(x) < 10)
