"""Regression tests of issue 13 (hardening) that are not about PPX or datasets: factor(+inf),
impossible observations under importance sampling, statistics over skipped traces,
distributions with extreme parameters, and Empirical files that cannot run code."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import ppfast
import ppfast.numba as pn
from ppfast.distributions import Bernoulli, Exponential, Normal, Poisson, Uniform
from ppfast.errors import DistributionError, PpfastError, SupportError


# --- bug 12: factor(+inf) ----------------------------------------------------------------

class Factor(ppfast.Model):
    def __init__(self, value):
        super().__init__("factor")
        self.value = value

    def forward(self):
        x = ppfast.sample(Normal(0.0, 1.0), name="x")
        ppfast.factor(self.value)
        return x


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_factor_rejects_plus_inf_and_nan(value):
    with pytest.raises(PpfastError, match="factor: log-probability is"):
        Factor(value).posterior_results(5, seed=1)


def test_factor_minus_inf_is_weight_zero():
    post = Factor(-math.inf).prior_batch(3, seed=1)
    assert np.all(post.log_weights == -np.inf) and len(post.failed) == 0


@ppfast.jit
def numba_factor_inf():
    x = pn.sample(pn.Normal(0.0, 1.0), "x")
    pn.factor(np.inf)
    return x


def test_factor_plus_inf_rejected_in_compiled_models():
    with pytest.raises(PpfastError, match=r"\+inf"):
        numba_factor_inf.posterior_results(5, seed=1)


# --- bug 13: an observation impossible under one prior draw ------------------------------

class Window(ppfast.Model):
    """th ~ N(0, 1); x ~ Uniform(th - 0.5, th + 0.5): p(th | x) is N(0, 1) truncated to
    [x - 0.5, x + 0.5]; most prior draws make x impossible."""

    def __init__(self):
        super().__init__("window")

    def forward(self):
        th = ppfast.sample(Normal(0.0, 1.0), name="th")
        ppfast.observe(Uniform(th - 0.5, th + 0.5), name="x")
        return th


def test_impossible_observation_under_a_prior_draw_gets_weight_zero():
    from scipy.stats import truncnorm

    x = 1.2
    post = Window().posterior_results(4000, observe={"x": x}, seed=3)
    lw = post.log_weights
    impossible = lw == -np.inf
    th = np.asarray(post.values)
    # Exactly the draws farther than 0.5 from x are impossible; none failed.
    np.testing.assert_array_equal(impossible, np.abs(th - x) > 0.5)
    assert 0 < impossible.sum() < len(th) and len(post.batch.failed) == 0
    exact = truncnorm(x - 0.5, x + 0.5)
    ess = post.effective_sample_size
    assert ess > 500
    # 5 standard errors of the weighted mean (sd of the truncated posterior / sqrt(ESS)).
    assert abs(post.mean - exact.mean()) < 5 * exact.std() / math.sqrt(ess)


class BadCount(ppfast.Model):
    def __init__(self, dist):
        super().__init__("bad count")
        self.dist = dist

    def forward(self):
        lam = ppfast.sample(Exponential(1.0), name="lam")
        ppfast.observe(self.dist(lam), name="k")
        return lam


@pytest.mark.parametrize("dist, value", [(Poisson, -1.0), (Poisson, 2.5), (lambda p: Bernoulli(min(p, 1.0)), 3.0),
                                         (lambda p: Bernoulli(min(p, 1.0)), 0.5)])
def test_value_outside_the_support_for_every_parameter_raises(dist, value):
    with pytest.raises(SupportError, match="for any parameters"):
        BadCount(dist).posterior_results(5, observe={"k": value}, seed=1)


def test_all_weights_zero_is_a_clear_error():
    post = Window().posterior_results(20, observe={"x": 50.0}, seed=1)
    assert np.all(post.log_weights == -np.inf)
    with pytest.raises(ValueError, match="all weights are zero"):
        post.mean


class Flaky(ppfast.Model):
    """GUM whose forward() fails whenever mu > 3 (a third of the prior draws or so)."""

    def __init__(self):
        super().__init__("flaky")

    def forward(self):
        mu = ppfast.sample(Normal(1.0, math.sqrt(5.0)), name="mu")
        if mu > 3.0:
            raise RuntimeError("simulator crashed")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs0")
        return mu


def test_statistics_ignore_skipped_traces():
    post = Flaky().posterior_results(600, observe={"obs0": 2.0}, seed=2, on_error="skip")
    values, lw = np.asarray(post.values, dtype=float), post.log_weights
    skipped = np.isnan(values)
    assert skipped.any() and np.all(lw[skipped] == -np.inf)
    ok = ~skipped
    w = np.exp(lw[ok] - lw[ok].max())
    w /= w.sum()
    mean = float(np.sum(w * values[ok]))
    assert post.mean == pytest.approx(mean, rel=1e-12)
    assert post.stddev == pytest.approx(math.sqrt(np.sum(w * (values[ok] - mean) ** 2)), rel=1e-9)
    assert post.min == values[ok].min() and post.max == values[ok].max()
    assert np.isfinite(post.quantile(0.5)) and np.isfinite(post["mu"].mean)


# --- bug 15: draws outside their own support ---------------------------------------------

def test_poisson_rate_beyond_2_pow_52_is_rejected():
    with pytest.raises(DistributionError, match="2\\^52"):
        Poisson(2.0**60).sample(3, seed=1)


def test_uniform_over_the_whole_double_range():
    d = Uniform(-1e308, 1e308)
    x = d.sample(2000, seed=1)
    assert np.all(np.isfinite(x)) and x.min() >= -1e308 and x.max() <= 1e308
    assert x.min() < -1e307 and x.max() > 1e307
    assert d.log_prob(0.0) == pytest.approx(-math.log(1e308) - math.log(2))
    assert d.stddev == pytest.approx(1e308 / math.sqrt(3))
    # Inside a model too (the recorder's fused Uniform path must not overflow).
    draws = np.asarray(Extreme(d).prior_results(500, seed=2).values)
    assert np.all(np.isfinite(draws)) and draws.min() < -1e307 and draws.max() > 1e307


class Extreme(ppfast.Model):
    def __init__(self, dist):
        super().__init__("extreme")
        self.dist = dist

    def forward(self):
        return ppfast.sample(self.dist, name="x")


@pytest.mark.parametrize("dist", [Normal(0.0, 1e308), Exponential(1e-310)], ids=["Normal", "Exponential"])
def test_draws_that_overflow_are_rejected_not_recorded(dist):
    with pytest.raises(DistributionError, match="outside the support"):
        Extreme(dist).prior_results(200, seed=1)
    with pytest.raises(DistributionError, match="outside the support"):
        dist.sample(200, seed=1)


# Uniform(1e16, 1e16 + 2) is one ulp wide: low + 2u rounds up to high, outside the
# half-open support [low, high), for every u above 1/2.
ONE_ULP = (1e16, 1e16 + 2.0)


@ppfast.jit
def numba_one_ulp():
    return pn.sample(pn.Uniform(1e16, 1e16 + 2.0), "x")


def test_uniform_draws_stay_below_high_in_every_path():
    low, high = ONE_ULP
    d = Uniform(low, high)
    paths = {
        "standalone": np.asarray(d.sample(1000, seed=1)),
        "python model": np.asarray(Extreme(d).prior_results(1000, seed=1).values),
        "numba model": np.asarray(numba_one_ulp.prior_results(1000, seed=1).values),
    }
    for where, draws in paths.items():
        assert np.all((draws >= low) & (draws < high)), where
        assert np.all(np.isfinite(d.log_prob(draws))), where


# --- bug 3: Empirical files hold data only -----------------------------------------------

class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PPFAST_BOOM']).write_text('ran')",))


def test_empirical_load_does_not_unpickle(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("PPFAST_BOOM", str(marker))
    f = tmp_path / "crafted.pkl"
    f.write_bytes(pickle.dumps({"format": "ppfast.Empirical/1", "name": _Boom(), "values": [1.0],
                                "log_weights": [0.0]}))
    with pytest.raises(ValueError, match="allow_pickle=True"):
        ppfast.Empirical.load(str(f))
    assert not marker.exists()
    # The explicit opt-in reads files of the old format (and so runs the crafted code).
    old = tmp_path / "old.pkl"
    old.write_bytes(pickle.dumps({"format": "ppfast.Empirical/1", "name": "old", "values": np.array([1.0, 3.0]),
                                  "log_weights": np.zeros(2)}))
    assert ppfast.Empirical.load(str(old), allow_pickle=True).mean == 2.0


def test_empirical_round_trip_is_npz(tmp_path):
    e = ppfast.Empirical(np.arange(6.0).reshape(3, 2), log_weights=[0.0, -1.0, -2.0], name="tensors")
    f = tmp_path / "e.ppfast"
    e.save(str(f))
    assert f.read_bytes()[:2] == b"PK"  # a zip of .npy members
    back = ppfast.Empirical.load(str(f))
    np.testing.assert_array_equal(back.values, e.values)
    np.testing.assert_array_equal(back.log_weights, e.log_weights)
    assert back.name == "tensors"
    with pytest.raises(TypeError, match="numbers, equal-shape arrays and strings"):
        ppfast.Empirical([{"a": 1}, {"b": 2}]).save(str(tmp_path / "objects"))
