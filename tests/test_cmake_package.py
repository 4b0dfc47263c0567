"""An out-of-tree simulator finds the pip-installed package with find_package(ppfast),
links ppfast::ppfast, and runs embedded."""

import shutil
import subprocess
import sys
import textwrap

import pytest

import ppfast
from conftest import GUM_OBS, assert_gum_posterior


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_find_package_builds_and_runs_an_external_simulator(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(textwrap.dedent("""
        cmake_minimum_required(VERSION 3.18)
        project(mysim CXX)
        find_package(ppfast CONFIG REQUIRED)
        add_library(mysim MODULE sim.cpp)
        target_link_libraries(mysim PRIVATE ppfast::ppfast)
        set_target_properties(mysim PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
    """))
    (src / "sim.cpp").write_text(textwrap.dedent("""
        #include <cmath>
        #include <ppfast/ppfast.hpp>
        static double sim() {
          double mu = ppfast::sample(ppfast::Normal(1.0, std::sqrt(5.0)), "external/mu", "mu");
          ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs0");
          ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs1");
          return mu;
        }
        PPFAST_MODEL(external_gum, sim)
    """))
    cmake_dir = subprocess.run([sys.executable, "-m", "ppfast", "--cmake-dir"], check=True, capture_output=True,
                               text=True).stdout.strip()
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), f"-Dppfast_DIR={cmake_dir}",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    model = ppfast.NativeModel(build / "mysim.so")
    assert model.name == "external_gum"
    post = model.posterior_results(100000, observe=GUM_OBS, seed=3)
    assert_gum_posterior(post, "external simulator")
    tr = model.prior(1, seed=0).values[0]
    assert tr.variables[0].address == "external/mu"
