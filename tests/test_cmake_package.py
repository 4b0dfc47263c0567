"""An out-of-tree simulator finds the pip-installed package with find_package(ppfast),
links ppfast::ppfast, and runs embedded."""

import shutil

import pytest

import ppfast
from conftest import EXTERNAL_GUM, GUM_OBS, assert_gum_posterior, build_external


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_find_package_builds_and_runs_an_external_simulator(tmp_path):
    build = build_external(tmp_path, """
        add_library(mysim MODULE sim.cpp)
        target_link_libraries(mysim PRIVATE ppfast::ppfast)
        set_target_properties(mysim PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
    """, EXTERNAL_GUM)
    model = ppfast.NativeModel(build / "mysim.so")
    assert model.name == "external_gum"
    post = model.posterior_results(100000, observe=GUM_OBS, seed=3)
    assert_gum_posterior(post, "external simulator")
    tr = model.prior(1, seed=0).values[0]
    assert tr.variables[0].address == "external/mu"


USER_SIMULATOR = """
    #include <cmath>
    #include <string>
    #include <vector>
    #include <ppfast/ppfast.hpp>
    #include <ppfast/ppx_server.hpp>
    static double sim() {
      double mu = ppfast::sample(ppfast::Normal(1.0, std::sqrt(5.0)), "mu", "mu");
      std::vector<double> t = ppfast::sample_tensor(ppfast::Normal(ppfast::Vec{0, 1}, ppfast::Vec{1, 1}), "t");
      int k = static_cast<int>(ppfast::sample(ppfast::Categorical({0.5, 0.5}), "k", nullptr, true, true));
      for (int i = 0; i < 2; ++i) ppfast::sample(ppfast::Uniform(0, 1), "u/" + std::to_string(i));
      ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs0");
      ppfast::observe(ppfast::Normal(mu, 1.0), "obs1", 3.0);
      ppfast::tag(mu + k + t[0], "tagged");
      ppfast::factor(0.0);
      return mu;
    }
    PPFAST_MODEL(user_sim, sim)
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_headers_compile_warning_free_and_the_target_requires_cxx17(tmp_path):
    # The project asks for C++14: ppfast::ppfast must raise it to 17 by itself.
    build = build_external(tmp_path, """
        set(CMAKE_CXX_STANDARD 14)
        add_library(mysim MODULE sim.cpp)
        target_link_libraries(mysim PRIVATE ppfast::ppfast)
        target_compile_options(mysim PRIVATE -Wall -Wextra -Wpedantic -Werror)
        set_target_properties(mysim PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
    """, USER_SIMULATOR)
    trace = ppfast.NativeModel(build / "mysim.so").prior(1, seed=0).values[0]
    assert [v.address for v in trace.variables][:3] == ["mu", "t", "k"]


LOOP_LOCAL_ADDRESSES = """
    #include <string>
    #include <ppfast/ppfast.hpp>
    static double sim() {
      double total = 0;
      for (int i = 0; i < 3; ++i) {
        std::string address = "step/" + std::to_string(i);
        total += ppfast::sample(ppfast::Normal(0.0, 1.0), address.c_str());  // the c_str() trap
      }
      return total;
    }
    PPFAST_MODEL(loop_local, sim)
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_debug_build_reports_an_address_pointer_whose_text_changed(tmp_path):
    build = build_external(tmp_path, """
        add_library(mysim MODULE sim.cpp)
        target_link_libraries(mysim PRIVATE ppfast::ppfast)
        set_target_properties(mysim PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
    """, LOOP_LOCAL_ADDRESSES, build_type="Debug")
    model = ppfast.NativeModel(build / "mysim.so")
    with pytest.raises(ppfast.errors.TraceError) as err:
        model.prior(1, seed=0)
    message = str(err.value)
    assert 'the text behind the const char* address "step/1"' in message, message
    assert "sim.cpp:8" in message, message
