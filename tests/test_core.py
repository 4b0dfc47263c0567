"""Core engine: Python models, the C++ recorder, importance sampling, Empirical, errors."""

import math

import numpy as np
import pytest

import ppfast
import ppfast.examples
from ppfast.distributions import Categorical, Normal, Poisson, Uniform
from ppfast.errors import DistributionError, MissingObservationError, ModelError, SupportError
from ppfast.examples.python_models import Branching

from conftest import GUM_OBS, assert_gum_posterior, branching_exact


def test_gum_importance_sampling_matches_closed_form(gum_python):
    post = gum_python.posterior_results(20000, observe=GUM_OBS, seed=123)
    assert_gum_posterior(post, "python IS")


def test_gum_prior_moments(gum_python):
    prior = gum_python.prior_results(20000, seed=7)
    n = len(prior)
    assert abs(prior.mean - 1.0) < 5 * math.sqrt(5 / n)
    assert abs(prior.stddev - math.sqrt(5)) < 5 * math.sqrt(5 / (2 * n))


def test_branching_posterior_matches_enumeration():
    exact = branching_exact()
    post = Branching().posterior_results(50000, observe={"obs": 6}, seed=11)
    r = post.values.astype(int)
    est = np.bincount(r, weights=post.weights, minlength=len(exact))[: len(exact)]
    m = est > 0
    kl = float(np.sum(est[m] * np.log(est[m] / exact[m])))
    assert kl < 0.01, (kl, est[:8], exact[:8])
    # the bulk of the mass, each within 5 standard errors of a weighted proportion
    ess = post.effective_sample_size
    for k in range(8):
        se = math.sqrt(exact[k] * (1 - exact[k]) / ess) + 1e-3
        assert abs(est[k] - exact[k]) < 5 * se, (k, est[k], exact[k])


def test_same_seed_same_traces_and_different_seed_differs(gum_python):
    a = gum_python.prior_batch(100, seed=5)
    b = gum_python.prior_batch(100, seed=5)
    c = gum_python.prior_batch(100, seed=6)
    assert np.array_equal(a.records["value"], b.records["value"])
    assert not np.array_equal(a.records["value"], c.records["value"])


def test_python_and_embedded_traces_equal_trace_for_trace(gum_python):
    native = ppfast.examples.load("gum")
    a = gum_python.posterior_batch(500, observe=GUM_OBS, seed=99)
    b = native.posterior_batch(500, observe=GUM_OBS, seed=99)
    np.testing.assert_array_equal(a.records["value"], b.records["value"])
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=0, atol=1e-12)


def test_embedded_results_do_not_depend_on_thread_count():
    one = ppfast.examples.load("branching", threads=1).prior_batch(20000, seed=3)
    two = ppfast.examples.load("branching", threads=2).prior_batch(20000, seed=3)
    for k in ("value", "address", "instance", "trace"):
        np.testing.assert_array_equal(one.records[k], two.records[k])
    np.testing.assert_array_equal(one.traces["trace_type"], two.traces["trace_type"])


def test_trace_batch_columns_are_zero_copy_views_that_outlive_the_batch(gum_python):
    batch = ppfast.examples.load("gum").prior_batch(1000, seed=1)
    values = batch.records["value"]
    again = batch._native.columns()["records"]["value"]  # a second view of the same C++ column
    assert np.shares_memory(values, again)
    expected = values.copy()
    del batch, again
    import gc

    gc.collect()
    # allocate more batches so a freed buffer would be reused and overwritten
    for _ in range(5):
        ppfast.examples.load("gum").prior_batch(1000, seed=2)
    np.testing.assert_array_equal(values, expected)
    assert not values.flags.writeable


def test_to_torch_shares_memory():
    torch = pytest.importorskip("torch")
    batch = ppfast.examples.load("gum").prior_batch(100, seed=1)
    t = batch.to_torch()
    assert t["value"].data_ptr() == batch.records["value"].ctypes.data
    assert t["log_weight"].dtype == torch.float64


def test_trace_views_and_named_variables(gum_python):
    post = gum_python.posterior(200, observe=GUM_OBS, seed=4)
    tr = post.values[0]
    names = [v.name for v in tr.variables]
    assert names == ["mu", "obs0", "obs1"]
    assert tr.named_variables["obs0"].observed and tr.named_variables["obs0"].value == 8.0
    mu = post["mu"]
    assert isinstance(mu.values, np.ndarray) and len(mu) == 200
    np.testing.assert_array_equal(mu.values, post.batch.results)


# --- errors -------------------------------------------------------------------------

class BadStd(ppfast.Model):
    def forward(self):
        return ppfast.sample(Normal(0.0, -1.0), name="x")


class RaisesAt(ppfast.Model):
    def __init__(self, when):
        super().__init__("raises")
        self.calls = 0
        self.when = when

    def forward(self):
        self.calls += 1
        x = ppfast.sample(Uniform(0.0, 1.0), name="u")
        if self.calls == self.when:
            raise RuntimeError("boom")
        return x


def test_invalid_parameters_raise_typed_error_naming_the_site():
    with pytest.raises(DistributionError, match=r"trace 0: .*'x'.*stddev"):
        BadStd().prior_results(3, seed=0)
    with pytest.raises(DistributionError, match=">= 0"):
        Categorical([0.5, -0.6]).sample()
    with pytest.raises(ValueError, match="NaN|finite"):
        Normal(float("nan"), 1.0).sample()


def test_missing_observation_is_named(gum_python):
    with pytest.raises(MissingObservationError, match="obs1"):
        gum_python.posterior_results(10, observe={"obs0": 8.0}, seed=0)


def test_observed_value_outside_support():
    with pytest.raises(SupportError, match="outside the support"):
        Branching().posterior_results(10, observe={"obs": 2.5}, seed=0)
    with pytest.raises(SupportError):
        Branching().posterior_results(10, observe={"obs": -1}, seed=0)


def test_model_exception_surfaces_with_trace_number_and_keeps_completed_traces():
    m = RaisesAt(when=6)
    with pytest.raises(ModelError, match="trace 5: forward\\(\\) raised RuntimeError: boom") as info:
        m.prior_results(10, seed=0)
    assert isinstance(info.value.__cause__, RuntimeError)
    partial = info.value.partial
    assert len(partial) == 6 and list(partial.failed) == [5]
    assert np.all(np.isfinite(partial.results[:5]))


def test_on_error_skip_keeps_failed_traces_with_zero_weight():
    m = RaisesAt(when=3)
    post = m.posterior_results(10, observe={}, seed=0, on_error="skip")
    assert len(post) == 10
    assert post.log_weights[2] == -np.inf and np.isfinite(post.log_weights[3])


def test_embedded_invalid_parameters_are_reported():
    # obs as a negative rate is impossible, but an out-of-support observation is checked
    with pytest.raises(SupportError, match="trace 0: .*obs"):
        ppfast.examples.load("branching").posterior_results(10, observe={"obs": 0.5}, seed=0)


# --- explicit addresses, replace, factor, tag ---------------------------------------

class Rejection(ppfast.Model):
    """u ~ Uniform(0,1) until u < 0.3 (a rejection loop); observe Normal(u, 0.1)."""

    def forward(self):
        while True:
            u = ppfast.sample(Uniform(0.0, 1.0), address="u", replace=True)
            if u < 0.3:
                break
        ppfast.tag(u * 2, name="twice")
        ppfast.factor(-0.5)
        return u


def test_rejection_loop_keeps_only_last_draw_and_explicit_address():
    batch = Rejection().prior_batch(200, seed=2)
    rec = batch.records
    from ppfast.trace import FLAG_DISCARDED, RecordKind

    samples = rec["kind"] == RecordKind.SAMPLE
    kept = samples & ((rec["flags"] & FLAG_DISCARDED) == 0)
    assert np.bincount(rec["trace"][kept], minlength=200).tolist() == [1] * 200
    assert np.all(rec["instance"][samples] == 0)
    assert np.all(rec["value"][kept] < 0.3)
    # log_prior counts only the kept draw: Uniform(0,1) has log density 0 anyway; factor adds -0.5
    np.testing.assert_allclose(batch.traces["log_likelihood"], -0.5)
    tr = batch.trace(0)
    assert tr.variables_controlled[0].address == "u"
    assert tr.named_variables["twice"].value == pytest.approx(2 * tr.result)


def test_addresses_are_stable_and_explicit_address_wins(gum_python):
    tr = gum_python.prior(1, seed=0).values[0]
    assert tr.variables[0].address.startswith("GUM.forward:") and tr.variables[0].address.endswith(":Normal:mu")


# --- Empirical ----------------------------------------------------------------------

def test_empirical_statistics_and_io(tmp_path):
    e = ppfast.Empirical([1.0, 2.0, 3.0, 4.0], log_weights=np.log([0.1, 0.2, 0.3, 0.4]))
    assert e.mean == pytest.approx(3.0)
    assert e.variance == pytest.approx(1.0)
    assert e.effective_sample_size == pytest.approx(1 / 0.3)
    np.testing.assert_allclose(e.weights, [0.1, 0.2, 0.3, 0.4])
    assert e.unweighted().mean == pytest.approx(2.5)
    r = e.resample(40000, seed=1)
    assert abs(r.mean - 3.0) < 0.05
    assert e.quantile(0.5) == 3.0
    both = ppfast.Empirical.combine([e, e])
    assert len(both) == 8 and both.mean == pytest.approx(3.0)
    f = tmp_path / "e.pkl"
    e.save(str(f))
    back = ppfast.Empirical.load(str(f))
    np.testing.assert_array_equal(back.values, e.values)
    assert back.mean == pytest.approx(e.mean)
    assert e.sample(seed=0) in (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError):
        ppfast.Empirical([1.0], log_weights=[-np.inf]).mean


def test_empirical_of_objects_and_plain_ints():
    e = ppfast.Empirical([1, 2, 3])
    assert e.mean == 2.0
    objs = ppfast.Empirical([{"a": 1}, {"a": 2}])
    with pytest.raises(TypeError):
        objs.mean
    assert objs.map(lambda v: v["a"]).mean == 1.5


def test_standalone_distributions_match_closed_forms():
    x = Normal(2.0, 3.0).sample(200000, seed=1)
    assert abs(x.mean() - 2.0) < 5 * 3 / math.sqrt(len(x))
    assert Normal(0.0, 1.0).log_prob(0.0) == pytest.approx(-0.5 * math.log(2 * math.pi))
    assert Poisson(4.0).log_prob(2) == pytest.approx(2 * math.log(4) - 4 - math.log(2))
    v = Normal([0.0, 1.0], 1.0)
    assert v.shape == (2,) and v.sample().shape == (2,)
    assert ppfast.sample(Poisson(3.0)) >= 0  # outside a run: a prior draw


def test_sample_outside_a_run_and_in_a_thread_is_isolated():
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(ppfast.sample(Uniform(0.0, 1.0))))
    t.start()
    t.join()
    assert 0 <= out[0] <= 1
