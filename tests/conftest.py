import math

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
def gum_python():
    from ppfast.examples.python_models import GUM

    return GUM()
