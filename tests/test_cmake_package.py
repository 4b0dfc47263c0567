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
