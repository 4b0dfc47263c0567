import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ppfast

ppfast.set_progress(False)

GUM_OBS = {"obs0": 8.0, "obs1": 9.0}
GUM_POST_MEAN = 7.25
GUM_POST_STD = math.sqrt(1 / 1.2)


def branching_exact(max_r: int = 60) -> np.ndarray:
    """p(r | obs = 6) for the Branching model, by enumeration."""
    from scipy.stats import poisson

    from ppfast.examples.python_models import fib

    post = np.zeros(max_r)
    b = np.arange(0, 200)
    for r in range(max_r):
        if r > 4:
            lik = poisson.pmf(6, 6.0)
        else:
            lik = float(np.sum(poisson.pmf(b, 4.0) * poisson.pmf(6, 1.0 + fib(3 * r) + b)))
        post[r] = poisson.pmf(r, 4.0) * lik
    return post / post.sum()


def assert_mean_close(chains: np.ndarray, expected: float, sd: float, what: str, k: float = 5.0) -> float:
    """|mean - expected| < k standard errors, the standard error from the chains' ESS."""
    from ppfast import diagnostics

    ess = diagnostics.ess(chains)
    assert ess > 300, f"{what}: ESS {ess:.0f} too small for a meaningful check"
    se = sd / math.sqrt(ess)
    assert abs(chains.mean() - expected) < k * se, (what, chains.mean(), expected, se)
    return ess


def assert_gum_posterior(emp, what: str = "") -> None:
    """Mean and stddev within 5 standard errors given the effective sample size."""
    ess = emp.effective_sample_size
    assert ess > 100, f"{what}: ESS {ess} too small for a meaningful check"
    se_mean = GUM_POST_STD / math.sqrt(ess)
    assert abs(emp.mean - GUM_POST_MEAN) < 5 * se_mean, (what, emp.mean, se_mean)
    # sd of the sample stddev of a Gaussian ~ sigma / sqrt(2 n)
    se_std = GUM_POST_STD / math.sqrt(2 * ess)
    assert abs(emp.stddev - GUM_POST_STD) < 5 * se_std, (what, emp.stddev, se_std)


@pytest.fixture
def one_torch_thread():
    """One torch thread and a fixed torch seed for a test (training tests: steady and reproducible)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gum_python():
    from ppfast.examples.python_models import GUM

    return GUM()


EXTERNAL_GUM = (Path(__file__).parent / "data" / "external_gum.cpp").read_text()


def build_external(tmp_path: Path, target: str, source: str, build_type: str = "Release") -> Path:
    """Builds an out-of-tree simulator against the installed package, the way a user
    would (find_package(ppfast) with -Dppfast_DIR=$(python -m ppfast --cmake-dir));
    ``target`` is the CMake lines after find_package, ``source`` is sim.cpp."""
    src, build = tmp_path / "src", tmp_path / "build"
    src.mkdir()
    (src / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.18)\nproject(mysim CXX)\n"
                                        "find_package(ppfast CONFIG REQUIRED)\n" + textwrap.dedent(target))
    (src / "sim.cpp").write_text(textwrap.dedent(source))
    cmake_dir = subprocess.run([sys.executable, "-m", "ppfast", "--cmake-dir"], check=True, capture_output=True,
                               text=True).stdout.strip()
    for cmd in (["cmake", "-S", str(src), "-B", str(build), f"-Dppfast_DIR={cmake_dir}", f"-DCMAKE_BUILD_TYPE={build_type}"],
                ["cmake", "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return build
