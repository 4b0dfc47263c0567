"""``import ppfast.pyprob as pyprob``: PyProb programs as written.  Where PyProb 1.5.0 is
installed, the same small programs run through both and are compared (posteriors within
tolerance, shapes, return types, errors); the rest checks closed forms."""

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ppfast.pyprob as pp  # noqa: E402
from ppfast.pyprob import distributions as ppd  # noqa: E402
from ppfast.pyprob.programs import load_program  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "pyprob"


def _pyprob():
    """The installed PyProb 1.5.0 (quiet), or a skip saying it is not installed."""
    real = pytest.importorskip("pyprob")
    if real.__version__ != "1.5.0":
        pytest.skip(f"PyProb 1.5.0 needed for comparisons, found {real.__version__}")
    real.set_verbosity(0)
    return real


def _conjugate(lib):
    """mu ~ N(0, 1), obs ~ N(mu, 1): posterior given obs = 1 is N(0.5, 1/2); importance
    sampling from the prior keeps an ESS of about 80% of the traces."""
    Normal = lib.distributions.Normal

    class Conjugate(lib.Model):
        def forward(self):
            mu = lib.sample(Normal(0, 1), name="mu")
            lib.observe(Normal(mu, 1), name="obs")
            return mu

    return Conjugate()


def _style2(lib):
    Normal = lib.distributions.Normal

    class Style2(lib.Model):
        def forward(self):
            mu = lib.sample(Normal(0, 1), name="mu")
            lib.sample(Normal(mu, 1), name="obs")
            return mu

    return Style2()


@pytest.mark.parametrize("build", [_conjugate, _style2])
def test_same_posterior_as_pyprob(build):
    real = _pyprob()
    mine = build(pp).posterior_results(4000, observe={"obs": 1.0}, seed=1, progress=False)
    theirs = build(real).posterior_results(600, observe={"obs": 1.0})
    for post, n in ((mine, 4000), (theirs, 600)):
        ess = float(post.effective_sample_size)
        assert ess > 0.6 * n
        # 5 standard errors of each estimate against the closed form
        assert abs(float(post.mean) - 0.5) < 5 * math.sqrt(0.5 / ess)
        assert abs(float(post.stddev) - math.sqrt(0.5)) < 5 * math.sqrt(0.5) / math.sqrt(2 * ess)
    assert isinstance(mine.mean, torch.Tensor) and mine.mean.shape == theirs.mean.shape


def test_draws_and_densities_are_tensors_of_pyprob_shapes():
    real = _pyprob()
    for lib in (pp, real):
        lib.seed(0)
    cases = [
        lambda D: D.Normal(torch.zeros(2, 3), torch.ones(2, 3)),
        lambda D: D.Categorical(torch.tensor([[0.2, 0.8], [0.5, 0.5]])),
        lambda D: D.Uniform(torch.zeros(4), torch.ones(4)),
        lambda D: D.Poisson(3.0),
    ]
    for make in cases:
        mine, theirs = make(ppd), make(real.distributions)
        x = theirs.sample()
        assert isinstance(mine.sample(), torch.Tensor)
        assert tuple(mine.sample().shape) == tuple(x.shape)
        assert tuple(mine.log_prob(x).shape) == tuple(theirs.log_prob(x).shape)
        np.testing.assert_allclose(mine.log_prob(x).numpy(), theirs.log_prob(x).double().numpy(), atol=1e-5)
    assert float(ppd.Uniform(0, 1).log_prob(1.0)) == float(real.distributions.Uniform(0, 1).log_prob(1.0)) == -math.inf
    np.testing.assert_allclose(ppd.Categorical([1, 1, 2]).probs, real.distributions.Categorical([1, 1, 2]).probs)


def test_same_errors_as_pyprob():
    real = _pyprob()
    for lib in (pp, real):
        with pytest.raises(ValueError):
            lib.distributions.Normal(0.0, -1.0).sample()
        with pytest.raises(ValueError):
            lib.distributions.Categorical([0.5, -0.1])
        with pytest.raises(TypeError):
            _conjugate(lib).posterior_results(10, observe={"obs": 1.0}, seeed=1)


def test_empirical_statistics_match_pyprob():
    real = _pyprob()
    rng = np.random.default_rng(3)
    values, log_w = rng.normal(size=200), rng.normal(size=200)
    mine = ppd.Empirical(values.tolist(), log_weights=log_w)
    theirs = real.distributions.Empirical(values.tolist(), log_weights=torch.tensor(log_w))
    for stat in ("mean", "variance", "stddev", "skewness", "kurtosis", "effective_sample_size"):
        assert float(getattr(mine, stat)) == pytest.approx(float(getattr(theirs, stat)), rel=1e-5), stat
    assert float(mine.expectation(lambda x: x**2)) == pytest.approx(float(theirs.expectation(lambda x: x**2)),
                                                                    rel=1e-5)
    assert len(mine.thin(30)) == len(theirs.thin(30))
    sliced = mine[50:]
    assert isinstance(sliced, ppd.Empirical) and len(sliced) == len(theirs[50:]) == 150
    assert float(sliced.mean) == pytest.approx(float(theirs[50:].mean), rel=1e-5)


def test_empirical_pyprob_constructors():
    e = ppd.Empirical()
    for v, lw in ((1.0, 0.0), (2.0, math.log(3))):
        e.add(v, lw)
    e.finalize()
    assert float(e.mean) == pytest.approx(1.75)
    both = ppd.Empirical(concat_empiricals=[e, ppd.Empirical([4.0])])
    assert len(both) == 3 and float(both.mean) == pytest.approx((1 + 6 + 4) / 5)
    assert -1 <= float(e.sample(min_index=0, max_index=1)) <= 1.0


def test_file_backed_empirical_grows_and_concatenates(tmp_path):
    first = ppd.Empirical(file_name=str(tmp_path / "a"))
    first.add(1.0, 0.0)
    first.add(3.0, 0.0)
    first.finalize()
    reopened = ppd.Empirical(file_name=str(tmp_path / "a"))
    assert len(reopened) == 2 and float(reopened.mean) == pytest.approx(2.0)
    reopened.add(torch.tensor(5.0), math.log(2.0))
    reopened.finalize()
    assert len(ppd.Empirical(file_name=str(tmp_path / "a"))) == 3
    vectors = ppd.Empirical(file_name=str(tmp_path / "b"))
    vectors.add(np.array([1.0, 2.0]))
    vectors.finalize()
    assert tuple(ppd.Empirical(file_name=str(tmp_path / "b")).mean.shape) == (2,)
    both = ppd.Empirical(concat_empirical_file_names=[str(tmp_path / "a"), str(tmp_path / "a")])
    assert len(both) == 6 and float(both.mean) == pytest.approx((1 + 3 + 10) / 4)


def test_factor_with_log_prob_func_and_name():
    class Soft(pp.Model):
        def forward(self):
            mu = pp.sample(ppd.Normal(0, 1), name="mu")
            pp.factor(log_prob_func=lambda v: -0.5 * (float(v) - mu) ** 2, name="obs")
            return mu

    post = Soft().posterior_results(20000, observe={"obs": 1.0}, seed=2, progress=False)
    ess = float(post.effective_sample_size)
    assert abs(float(post.mean) - 0.5) < 5 * math.sqrt(0.5 / ess)

    class WithFactor(pp.Model):
        def forward(self):
            mu = pp.sample(ppd.Normal(0, 1), name="mu")
            pp.observe(ppd.Factor(log_prob=-0.5 * (1.0 - mu) ** 2))
            return mu

    again = WithFactor().posterior_results(20000, seed=2, progress=False)
    np.testing.assert_allclose(again.log_weights, post.log_weights)


def test_enums_and_settings():
    assert pp.InferenceNetwork.LSTM.name == "LSTM" and pp.Optimizer.ADAM_LARC.name == "ADAM_LARC"
    assert pp.LearningRateScheduler.POLY2.name == "POLY2" and pp.ObserveEmbedding.CNN2D5C
    pp.seed(5)
    a = float(ppd.Normal(0, 1).sample())
    pp.set_random_seed(5)
    assert float(ppd.Normal(0, 1).sample()) == a


def test_learn_options_map_pyprob_names():
    from ppfast.pyprob._model import learn_options

    opts = learn_options(inference_network=pp.InferenceNetwork.LSTM, optimizer_type=pp.Optimizer.ADAM_LARC,
                         learning_rate_init=0.01, learning_rate_end=1e-5,
                         learning_rate_scheduler_type=pp.LearningRateScheduler.POLY2, num_traces_end=5000,
                         valid_size=64, log_file_name="log.txt")
    assert opts["network_type"] == "lstm" and opts["optimizer"] == "adam_larc"
    assert opts["lr_schedule"] == "poly2" and opts["learning_rate_end"] == 1e-5
    assert opts["learning_rate"] == 0.01 and opts["num_traces_end"] == 5000 and opts["valid_size"] == 64
    assert learn_options()["network_type"] == "feedforward"  # PyProb's default network
    with pytest.raises(NotImplementedError, match="dataset_valid_dir"):
        learn_options(dataset_valid_dir="valid")


def test_features_without_meaning_say_so():
    with pytest.raises(NotImplementedError, match="address_dict_file_name"):
        pp.Model(address_dict_file_name="addresses")
    with pytest.raises(NotImplementedError, match="parallel"):
        _conjugate(pp).parallel()
    with pytest.raises(NotImplementedError, match="plot_trace"):
        pp.diagnostics.trace_plot(None)


# -- the three example programs -------------------------------------------------------------
def test_gum_marsaglia_program_unchanged():
    program = load_program(EXAMPLES / "gum_marsaglia.py")
    pp.seed(1)
    post = program.run(10000)
    ess = float(post.effective_sample_size)
    assert ess > 30  # prior proposals: under 1% land near the posterior
    assert abs(float(post.mean) - 7.25) < 5 * math.sqrt(1 / 1.2) / math.sqrt(ess)


def test_branching_program_unchanged():
    program = load_program(EXAMPLES / "branching.py")
    pp.seed(2)
    post = program.run(5000)
    probs = program.true_posterior_probs()
    exact = sum(r * p for r, p in enumerate(probs))
    sd = math.sqrt(sum((r - exact) ** 2 * p for r, p in enumerate(probs)))
    assert abs(float(post.mean) - exact) < 5 * sd / math.sqrt(float(post.effective_sample_size))


def test_hmm_program_unchanged():
    program = load_program(EXAMPLES / "hmm.py")
    pp.seed(3)
    post = program.run(500)
    mean = post.mean
    assert isinstance(mean, torch.Tensor) and tuple(mean.shape) == (17, 3)
    np.testing.assert_allclose(mean.sum(dim=1).numpy(), np.ones(17), atol=1e-9)  # one-hot rows


def test_programs_run_on_pyprob_too():
    real = _pyprob()  # noqa: F841 -- the programs import it themselves
    program = load_program(EXAMPLES / "branching.py", backend="pyprob")
    assert program.pyprob.__name__ == "pyprob"
    assert len(program.run(20)) == 20
