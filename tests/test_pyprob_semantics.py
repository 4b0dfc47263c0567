"""PyProb's documented semantics in the native API: observation style 2, PyProb's
argument names, seeding, distributions' batch semantics, and argument checks that name
the argument.  Closed forms: the GUM posterior given obs (8, 9) is N(7.25, 0.9129^2)."""

import math
import warnings

import numpy as np
import pytest

import ppfast
from ppfast import InferenceEngine
from ppfast.distributions import Categorical, Normal, Uniform
from ppfast.errors import DistributionError, SupportError

SQRT5, SQRT2 = math.sqrt(5), math.sqrt(2)
POST_MEAN, POST_SD = 7.25, math.sqrt(5 / 6)
OBS = {"obs0": 8.0, "obs1": 9.0}


class GUMStyle2(ppfast.Model):
    """PyProb's observation style 2: the observations are named samples."""

    def forward(self):
        mu = ppfast.sample(Normal(1.0, SQRT5), name="mu")
        ppfast.sample(Normal(mu, SQRT2), name="obs0")
        ppfast.sample(Normal(mu, SQRT2), name="obs1")
        return mu


class GUM(ppfast.Model):
    def forward(self):
        mu = ppfast.sample(Normal(1.0, SQRT5), name="mu")
        ppfast.observe(Normal(mu, SQRT2), name="obs0")
        ppfast.observe(Normal(mu, SQRT2), name="obs1")
        return mu


def _within(post, mean, sd, n_eff):
    # 5 standard errors of a weighted mean with effective sample size n_eff.
    assert abs(post.mean - mean) < 5 * sd / math.sqrt(n_eff)


def test_style2_named_samples_are_conditioned_on_observe():
    post = GUMStyle2().posterior_results(100000, observe=OBS, seed=1, progress=False)
    ess = post.effective_sample_size
    assert ess > 300  # prior proposals: under 1% of them land near the posterior
    _within(post, POST_MEAN, POST_SD, ess)
    assert post.stddev == pytest.approx(POST_SD, rel=0.15)
    # the same weights, trace for trace, as observe sites (style 1)
    style1 = GUM().posterior_results(100000, observe=OBS, seed=1, progress=False)
    np.testing.assert_array_equal(post.log_weights, style1.log_weights)


def test_style2_sample_returns_the_observed_value_and_records_an_observation():
    class Echo(ppfast.Model):
        def forward(self):
            return ppfast.sample(Normal(0.0, 1.0), name="x")

    post = Echo().posterior(5, observe={"x": 0.5}, seed=0, progress=False)
    assert np.all(post.batch.results == 0.5)
    assert np.allclose(post.batch.traces["log_likelihood"], Normal(0.0, 1.0).log_prob(0.5))
    assert post.batch.traces["log_prior"].tolist() == [0.0] * 5  # no sample recorded


# -- PyProb's argument names ---------------------------------------------------------------
def test_thinning_steps_keeps_every_kth_of_num_traces_states():
    lmh = InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS
    post = GUM().posterior_results(3000, lmh, observe=OBS, seed=1, thinning_steps=10, progress=False)
    assert len(post) == 300
    assert post.batch.mcmc.steps[0] == 3000


def test_options_an_engine_does_not_take_raise():
    with pytest.raises(TypeError, match="thinning_steps"):
        GUM().posterior_results(10, observe=OBS, thinning_steps=10)
    with pytest.raises(TypeError, match="burn_in"):
        GUM().posterior(10, observe=OBS, burn_in=3)


def test_likelihood_importance_scales_log_likelihoods():
    full = GUM().posterior_results(200, observe=OBS, seed=4, progress=False)
    half = GUM().posterior_results(200, observe=OBS, seed=4, progress=False, likelihood_importance=0.5)
    np.testing.assert_allclose(half.log_weights, 0.5 * full.batch.traces["log_likelihood"])
    flat = GUM().posterior_results(200, observe=OBS, seed=4, progress=False, likelihood_importance=0.0)
    assert np.all(flat.log_weights == 0.0)
    rmh = InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS
    with pytest.raises(NotImplementedError, match="likelihood_importance"):
        GUM().posterior_results(10, rmh, observe=OBS, likelihood_importance=0.5)


def test_map_func_and_file_name(tmp_path):
    post = GUM().posterior(50, observe=OBS, seed=3, progress=False, map_func=lambda t: 2 * t.result,
                           file_name=str(tmp_path / "post"))
    np.testing.assert_allclose(post.values, 2 * post.batch.results)
    from ppfast.empirical_file import read_empirical

    again = read_empirical(tmp_path / "post")
    np.testing.assert_allclose(again.values, post.values)
    np.testing.assert_allclose(again.log_weights, post.log_weights)
    # resumed: a second run appends to the same folder
    more = GUM().posterior_results(30, observe=OBS, seed=4, progress=False, file_name=str(tmp_path / "post"))
    both = read_empirical(tmp_path / "post")
    np.testing.assert_allclose(both.values, np.concatenate([post.values, more.values]))
    with pytest.raises(TypeError, match="map_func"):
        GUM().posterior(5, observe=OBS, seed=3, progress=False, file_name=str(tmp_path / "traces"))
    prior = GUM().prior_results(10, seed=1, map_func=lambda t: -1.0)
    assert np.all(prior.values == -1.0)


def test_prior_inflation_widens_the_prior():
    plain = GUM().prior_results(20000, seed=5, progress=False)
    wide = GUM().prior_results(20000, seed=5, progress=False, prior_inflation=True)
    # Normal scales x3: stddev 3 * sqrt(5); the sample sd's relative error is ~1/sqrt(2n).
    assert plain.stddev == pytest.approx(SQRT5, rel=0.03)
    assert wide.stddev == pytest.approx(3 * SQRT5, rel=0.03)
    assert np.all(wide.log_weights == 0.0)


def test_model_options_without_meaning_raise():
    with pytest.raises(NotImplementedError, match="address_dict_file_name"):
        GUM(address_dict_file_name="x.dict")
    with pytest.raises(NotImplementedError, match="prior_inflation"):
        GUM().save_dataset("unused", 10, prior_inflation=True)


# -- seeding ----------------------------------------------------------------------------
def test_set_random_seed_seeds_standalone_draws():
    ppfast.set_random_seed(7)
    a = [Normal(0.0, 1.0).sample(), Categorical([1, 2]).sample(), Uniform(0.0, 1.0).sample(3)]
    ppfast.set_random_seed(7)
    b = [Normal(0.0, 1.0).sample(), Categorical([1, 2]).sample(), Uniform(0.0, 1.0).sample(3)]
    assert a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2])
    assert Normal(0.0, 1.0).sample() != Normal(0.0, 1.0).sample()  # the stream moves on


# -- distributions -----------------------------------------------------------------------
def test_categorical_normalizes_like_pyprob():
    c = Categorical([1, 1, 2])
    np.testing.assert_allclose(c.probs, [0.25, 0.25, 0.5])
    assert c.log_prob(2) == pytest.approx(math.log(0.5))
    assert Categorical(logits=[0.0, 0.0]).log_prob(1) == pytest.approx(math.log(0.5))
    with pytest.raises(DistributionError, match="zero"):
        Categorical([0, 0])
    with pytest.raises(DistributionError, match=">= 0"):
        Categorical([1, -1])


def test_two_dimensional_categorical_is_a_batch():
    c = Categorical([[1, 0], [0, 1], [1, 1]])
    assert c.batch_shape == (3,)
    np.testing.assert_allclose(c.log_prob([0, 1, 1]), [0.0, 0.0, math.log(0.5)])
    assert c.sample().shape == (3,) and c.sample(5).shape == (5, 3)
    assert c.sample()[:2].tolist() == [0, 1]
    torch = pytest.importorskip("torch")
    ref = torch.distributions.Categorical(probs=torch.tensor([[0.2, 0.8], [0.6, 0.4]]))
    mine = Categorical([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(mine.log_prob([1, 0]), ref.log_prob(torch.tensor([1, 0])).numpy(), atol=1e-6)


def test_uniform_support_is_half_open():
    assert Uniform(0.0, 1.0).log_prob(1.0) == -math.inf
    assert Uniform(0.0, 1.0).log_prob(0.0) == 0.0

    class AtHigh(ppfast.Model):
        def forward(self):
            ppfast.observe(Uniform(0.0, 1.0), name="u")

    # possible under other parameters, impossible under these: weight zero
    post = AtHigh().posterior_results(2, observe={"u": 1.0}, seed=0, progress=False)
    assert np.all(post.log_weights == -math.inf)
    assert Uniform(0.0, 1.0).sample(100000, seed=1).max() < 1.0


def test_batched_normal_log_prob_is_per_element_like_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    mean, sd, x = rng.normal(size=(2, 3)), rng.uniform(0.5, 2, size=(2, 3)), rng.normal(size=(2, 3))
    d = Normal(mean, sd)
    ref = torch.distributions.Normal(torch.tensor(mean), torch.tensor(sd)).log_prob(torch.tensor(x)).numpy()
    lp = d.log_prob(x)
    assert lp.shape == (2, 3) and d.batch_shape == (2, 3) and d.event_shape == ()
    np.testing.assert_allclose(lp, ref, atol=1e-6)
    assert d.log_prob(x, sum=True) == pytest.approx(ref.sum())
    joint = d.to_event()
    assert joint.event_shape == (2, 3) and joint.batch_shape == ()
    assert joint.log_prob(x) == pytest.approx(ref.sum())


def test_parameter_attributes_and_repr_round_trip():
    from ppfast import distributions as D

    d = Normal([0.0, 1.0], [1.0, 2.0])
    np.testing.assert_array_equal(d.loc, [0.0, 1.0])
    np.testing.assert_array_equal(d.scale, [1.0, 2.0])
    assert Uniform(1.0, 3.0).low == 1.0 and D.Poisson(2.0).rate == 2.0
    for dist in (Normal(1.0, 2.0), d, Uniform(0.0, 3.0), Categorical([1, 3]), D.Gamma(2.0, 3.0),
                 D.TruncatedNormal(0.0, 1.0, -1.0, 2.0), D.Mixture([Normal(0.0, 1.0), Normal(2.0, 1.0)], [0.3, 0.7]),
                 d.to_event()):
        again = eval(repr(dist), vars(D))
        assert repr(again) == repr(dist)
    assert Normal(loc=0.0, scale=2.0).stddev == 2.0


# -- Empirical ---------------------------------------------------------------------------
def test_empirical_slice_is_an_empirical():
    e = ppfast.Empirical([1.0, 2.0, 3.0, 4.0], log_weights=[0.0, 0.0, math.log(3), 0.0])
    tail = e[2:]
    assert isinstance(tail, ppfast.Empirical) and len(tail) == 2
    assert tail.mean == pytest.approx((3 * 3 + 4) / 4)
    assert e[1] == 2.0


# -- argument checks ---------------------------------------------------------------------
@pytest.mark.parametrize("call", ["prior", "prior_results", "prior_batch", "posterior", "posterior_results",
                                  "posterior_batch"])
def test_misspelt_keyword_raises_type_error_naming_it(call):
    with pytest.raises(TypeError, match="seeed"):
        getattr(GUM(), call)(10, seeed=1)


@pytest.mark.parametrize("bad, error", [(2.7, ValueError), ("5", TypeError), (True, TypeError), (-1, ValueError),
                                        (10**30, ValueError)])
def test_num_traces_is_checked(bad, error):
    with pytest.raises(error, match="num_traces"):
        GUM().prior_results(bad)
    with pytest.raises(error, match="num_traces"):
        GUM().posterior_results(bad, observe=OBS)


def test_integral_float_num_traces_is_accepted():
    assert len(GUM().prior_results(1e2, seed=0)) == 100


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), ("3", TypeError)])
def test_seed_is_checked(bad, error):
    with pytest.raises(error, match="seed"):
        GUM().prior_results(5, seed=bad)
    with pytest.raises(error, match="seed"):
        ppfast.set_random_seed(bad)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), ("2", TypeError), (2.5, ValueError)])
def test_threads_are_checked(bad, error):
    import ppfast.examples

    with pytest.raises(error, match="threads"):
        ppfast.NativeModel(ppfast.examples.library_path("gum"), threads=bad)


def test_misspelt_observe_name_warns_with_a_suggestion():
    with pytest.warns(UserWarning, match="did you mean obs0"):
        GUM().posterior_results(5, observe={"obs1": 9.0, "obs0": 8.0, "ob0": 8.0}, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GUM().posterior_results(5, observe=OBS, seed=0)


def test_observed_shape_must_match_the_site():
    class Grid(ppfast.Model):
        def forward(self):
            ppfast.observe(Normal(np.zeros((2, 3)), 1.0), name="x")

    Grid().posterior_results(2, observe={"x": np.zeros((2, 3))}, seed=0)
    with pytest.raises(SupportError, match=r"shape \(3, 2\).*\(2, 3\)"):
        Grid().posterior_results(2, observe={"x": np.zeros((3, 2))}, seed=0)

    class Direct(ppfast.Model):
        def forward(self):
            ppfast.observe(Normal(np.zeros((2, 3)), 1.0), np.zeros((3, 2)), name="y")

    with pytest.raises(SupportError, match="shape"):
        Direct().prior_results(1, seed=0)


def test_empirical_pyprob_methods(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=20000)
    e = ppfast.Empirical(x)
    assert e.skewness == pytest.approx(0.0, abs=5 * math.sqrt(6 / len(x)))
    assert e.kurtosis == pytest.approx(3.0, abs=5 * math.sqrt(24 / len(x)))
    assert e.expectation(lambda v: v * v) == pytest.approx(np.mean(x * x))
    c = e.copy()
    c.values[0] = 99.0
    assert e.values[0] != 99.0
    assert len(e.thin(100)) == 100 and e.thin(100).values[1] == x[200]
    assert 0 <= e.sample(seed=1, min_index=5, max_index=6) - x[5] == 0
    np.testing.assert_array_equal(e.values_numpy(), x)
    fit = e.density_estimate()
    assert fit.components[0].mean == pytest.approx(2.0, abs=0.1)
    assert fit.components[0].stddev == pytest.approx(3.0, rel=0.05)
    two = ppfast.Empirical(np.concatenate([rng.normal(-5, 1, 5000), rng.normal(5, 1, 5000)]))
    means = sorted(d.mean for d in two.density_estimate(2).components)
    assert means == pytest.approx([-5.0, 5.0], abs=0.1)
    fig = e.plot_histogram(file_name=str(tmp_path / "h.png"))
    assert fig is not None and (tmp_path / "h.png").stat().st_size > 0


def test_condition_keeps_traces_that_satisfy_the_predicate():
    model = GUM().condition(lambda t: t.result > 3.0)
    prior = model.prior_results(500, seed=1, progress=False)
    assert len(prior) == 500 and np.all(prior.values > 3.0)
    again = model.prior_results(500, seed=1, progress=False)
    np.testing.assert_array_equal(prior.values, again.values)
    # P(mu > 3) for mu ~ N(1, sqrt 5); accepted / tried estimates it
    p = 0.5 * math.erfc((3.0 - 1.0) / math.sqrt(5) / math.sqrt(2))
    assert model.acceptance_ratio == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / model.tried))
    post = model.posterior_results(2000, observe=OBS, seed=2, progress=False)
    assert np.all(post.values > 3.0)
    with pytest.raises(ppfast.errors.ModelError, match="predicate"):
        GUM().condition(lambda t: False, max_tries=2).prior_results(3, seed=0, progress=False)


def test_dataset_save_sorted_reshards_by_trace_type(tmp_path):
    from ppfast.data import TraceDataset

    class Branch(ppfast.Model):
        def forward(self):
            if ppfast.sample(Uniform(0.0, 1.0), name="u") < 0.3:
                ppfast.sample(Normal(0.0, 1.0), name="x")
            return 0.0

    ds = TraceDataset(Branch().save_dataset(tmp_path / "ds", 200, traces_per_file=50, seed=1, progress=False))
    out = TraceDataset(ds.save_sorted(tmp_path / "sorted", traces_per_file=64))
    types = out.trace_types()
    assert len(out) == 200 and out.num_shards == 4 and len(ds.trace_type_counts()) == 2
    assert np.all(types[:-1] <= types[1:])
    assert out.trace_type_counts() == ds.trace_type_counts()
    assert sorted(out.to_batch().traces["index"].tolist()) == list(range(200))
    with pytest.raises(ValueError, match="another directory"):
        ds.save_sorted(tmp_path / "ds")
# -- von Mises and the full-covariance multivariate normal -----------------------------------
def test_von_mises_matches_torch():
    torch = pytest.importorskip("torch")
    from ppfast.distributions import VonMises

    x = np.linspace(-3.0, 3.0, 13)
    for k in (0.3, 4.0, 45.0, 400.0):
        ref = torch.distributions.VonMises(torch.tensor(0.7, dtype=torch.float64),
                                           torch.tensor(k, dtype=torch.float64))
        np.testing.assert_allclose(VonMises(0.7, k).log_prob(x), ref.log_prob(torch.tensor(x)).numpy(), atol=1e-6)
        # circular variance 1 - I1(k) / I0(k): Bessel series summed term by term here (torch's
        # own ratio is a polynomial approximation, off by 2e-4 relative at k = 400)
        def bessel(nu):
            return math.fsum(math.exp((2 * m + nu) * math.log(k / 2) - math.lgamma(m + 1) - math.lgamma(m + nu + 1))
                             for m in range(1500))

        assert VonMises(0.7, k).stddev == pytest.approx(math.sqrt(1 - bessel(1) / bessel(0)), rel=1e-9)
        assert VonMises(0.7, k).stddev == pytest.approx(float(ref.variance.sqrt()), rel=1e-3)
    draws = VonMises(0.7, 4.0).sample(100000, seed=3)
    assert draws.min() >= -math.pi and draws.max() < math.pi
    # E cos(x - loc) = I1(k) / I0(k) = 1 - variance; the sample mean's sd is below 1 / sqrt(n)
    target = 1.0 - VonMises(0.7, 4.0).stddev ** 2
    assert abs(np.mean(np.cos(draws - 0.7)) - target) < 5 / math.sqrt(len(draws))


COV = np.array([[1.0, 0.8], [0.8, 2.0]])


def test_multivariate_normal_density_and_draws():
    torch = pytest.importorskip("torch")
    from ppfast.distributions import MultivariateNormal

    d = MultivariateNormal([1.0, -1.0], COV)
    assert d.event_shape == (2,) and d.batch_shape == ()
    x = np.array([[0.0, 0.0], [1.5, -2.0], [3.0, 1.0]])
    ref = torch.distributions.MultivariateNormal(torch.tensor([1.0, -1.0], dtype=torch.float64),
                                                 torch.tensor(COV)).log_prob(torch.tensor(x)).numpy()
    np.testing.assert_allclose(d.log_prob(x), ref, atol=1e-9)
    assert d.log_prob(x[0]) == pytest.approx(ref[0])
    draws = d.sample(100000, seed=4)
    assert draws.shape == (100000, 2)
    # sample covariance entries have sd about sqrt((s_ij^2 + s_ii s_jj) / n)
    np.testing.assert_allclose(np.cov(draws.T), COV, atol=5 * math.sqrt(2 * 4.0 / len(draws)))
    assert eval(repr(d), {"MultivariateNormal": MultivariateNormal}).log_prob(x[1]) == pytest.approx(ref[1])
    with pytest.raises(DistributionError, match="positive definite"):
        MultivariateNormal([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(DistributionError, match="symmetric"):
        MultivariateNormal([0.0, 0.0], [[1.0, 0.5], [0.1, 1.0]])


def test_correlated_observation_gives_the_gaussian_posterior():
    from ppfast.distributions import MultivariateNormal

    class Correlated(ppfast.Model):
        def forward(self):
            mu = np.array([ppfast.sample(Normal(0.0, 1.0), name="a"), ppfast.sample(Normal(0.0, 1.0), name="b")])
            ppfast.observe(MultivariateNormal(mu, COV), name="x")
            return mu[0]

    x = np.array([1.0, 0.5])
    post_cov = np.linalg.inv(np.eye(2) + np.linalg.inv(COV))
    post_mean = post_cov @ np.linalg.inv(COV) @ x
    post = Correlated().posterior_results(20000, observe={"x": x}, seed=5, progress=False)
    ess = post.effective_sample_size
    assert abs(post.mean - post_mean[0]) < 5 * math.sqrt(post_cov[0, 0] / ess)
    with pytest.raises(SupportError):
        Correlated().posterior_results(2, observe={"x": np.zeros(3)}, seed=0)

    class Latent(ppfast.Model):
        def forward(self):
            z = ppfast.sample(MultivariateNormal([0.0, 0.0], COV), name="z")
            return float(z[1])

    prior = Latent().prior_results(20000, seed=6, progress=False)
    assert prior.stddev == pytest.approx(math.sqrt(2.0), rel=5 / math.sqrt(2 * 20000))
