"""numba-compiled models: posteriors, trace-for-trace equality with the Python and embedded
models, compile-time and run-time errors, caching."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

import ppfast  # noqa: E402
import ppfast.examples  # noqa: E402
from ppfast import numba as pn  # noqa: E402
from ppfast.errors import DistributionError, MissingObservationError, ModelError, PpfastError  # noqa: E402
from ppfast.examples import numba_models, python_models  # noqa: E402
from ppfast.numba import JitCompileError  # noqa: E402

from conftest import GUM_OBS, assert_gum_posterior, branching_exact  # noqa: E402

HERE = os.path.realpath(__file__)


@pytest.fixture(scope="module")
def compiled():
    return {name: numba_models.load(name) for name in numba_models.MODELS}


def _line_of(text: str) -> int:
    """Line number in this file of the first line containing ``text``."""
    with open(HERE) as f:
        for i, line in enumerate(f, 1):
            if text in line and "_line_of" not in line:
                return i
    raise AssertionError(text)


# ----------------------------------------------------------------------- posteriors


def test_gum_posterior_matches_closed_form(compiled):
    post = compiled["gum"].posterior_results(50000, observe=GUM_OBS, seed=123)
    assert_gum_posterior(post, "numba IS")


def test_branching_posterior_matches_enumeration(compiled):
    exact = branching_exact()
    post = compiled["branching"].posterior_results(50000, observe={"obs": 6}, seed=11)
    est = np.bincount(post.values.astype(int), weights=post.weights, minlength=len(exact))[: len(exact)]
    ess = post.effective_sample_size
    for k in range(8):
        se = math.sqrt(exact[k] * (1 - exact[k]) / ess) + 1e-3
        assert abs(est[k] - exact[k]) < 5 * se, (k, est[k], exact[k])


def test_hundred_posterior_matches_closed_form(compiled):
    # S = sum of 100 N(0, 1) ~ N(0, 100); obs ~ N(S, 1): S | obs ~ N(100/101 obs, sqrt(100/101)).
    obs = 5.0
    post = compiled["hundred"].posterior_results(20000, observe={"obs": obs}, seed=5)
    ess = post.effective_sample_size
    assert ess > 500, ess
    sd = math.sqrt(100 / 101)
    assert abs(post.mean - 100 / 101 * obs) < 5 * sd / math.sqrt(ess), (post.mean, ess)
    assert abs(post.stddev - sd) < 5 * sd / math.sqrt(2 * ess), (post.stddev, ess)


def test_prior_moments_of_scalar_distributions():
    @ppfast.jit
    def several():
        a = pn.sample(pn.Gamma(3.0, 2.0), "a")
        b = pn.sample(pn.Beta(2.0, 5.0), "b")
        c = pn.sample(pn.Binomial(10, 0.3), "c")
        d = pn.sample(pn.Uniform(-1.0, 3.0), "d")
        return a + b + c + d

    batch = several.prior_batch(20000, seed=3)
    n = len(batch)
    means = {"a": 1.5, "b": 2 / 7, "c": 3.0, "d": 1.0}
    sds = {"a": math.sqrt(3) / 2, "b": math.sqrt(10 / (49 * 8)), "c": math.sqrt(2.1), "d": 4 / math.sqrt(12)}
    for k in means:
        v = batch.values_of(k)
        assert abs(v.mean() - means[k]) < 5 * sds[k] / math.sqrt(n), (k, v.mean())
    c = batch.values_of("c")
    assert np.all(c == np.round(c))


# ----------------------------------------------------- same traces as the other models


@pytest.mark.parametrize("name", ["gum", "branching", "hundred", "geometric"])
def test_same_traces_as_python_model(compiled, name):
    observe = {"gum": GUM_OBS, "branching": {"obs": 6}, "hundred": {"obs": 5.0},
               "geometric": {"obs": 3.0}}[name]
    a = compiled[name].posterior_batch(500, observe=observe, seed=99)
    b = python_models.MODELS[name]().posterior_batch(500, observe=observe, seed=99)
    for k in ("value", "instance", "kind", "trace"):
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.results, b.results)


@pytest.mark.parametrize("name", ["gum", "branching", "hundred"])
def test_same_traces_as_embedded_model(compiled, name):
    observe = {"gum": GUM_OBS, "branching": {"obs": 6}, "hundred": {"obs": 5.0}}[name]
    a = compiled[name].posterior_batch(500, observe=observe, seed=7)
    b = ppfast.examples.load(name).posterior_batch(500, observe=observe, seed=7)
    # Same addresses too: the C++ examples use the same strings.
    for k in ("value", "address", "name", "instance", "kind", "flags", "dist"):
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    np.testing.assert_array_equal(a.traces["trace_type"], b.traces["trace_type"])
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=0, atol=1e-12)


def test_results_do_not_depend_on_thread_count():
    one = numba_models.load("branching", threads=1).prior_batch(5000, seed=3)
    two = numba_models.load("branching", threads=2).prior_batch(5000, seed=3)
    for k in ("value", "address", "instance", "trace"):
        np.testing.assert_array_equal(one.records[k], two.records[k])


@ppfast.jit
def everything():
    k = pn.sample(pn.Poisson(3.0), "k")
    c = pn.sample(pn.Categorical(np.array([0.2, 0.3, 0.5])), "c")
    v = pn.sample(pn.Normal(np.zeros(3), np.array([1.0, 2.0, 3.0])), "v")
    w = pn.sample(pn.Poisson(np.ones(2)), "w", name="counts", control=False)
    t = pn.sample(pn.TruncatedNormal(0.0, 1.0, -1.0, 1.0), "t", replace=True)
    pn.tag(v, "v_tag")
    pn.tag(1.5, "scalar_tag")
    pn.factor(-0.25)
    pn.observe(pn.Normal(v, 1.0), "ov", np.array([0.1, 0.2, 0.3]))
    pn.observe(pn.Exponential(1.0), "oe", 0.5)
    return k + c + v.sum() + w.sum() + t


def test_compiled_and_uncompiled_function_give_the_same_traces():
    a = everything.prior_batch(200, seed=8)
    b = everything.python_model().prior_batch(200, seed=8)
    for k in ("value", "address", "name", "instance", "kind", "flags", "dist", "log_prob"):
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.results, b.results, rtol=0, atol=1e-12)


def test_sites_are_recorded_as_written():
    trace = everything.prior(1, seed=2)[0]
    named = trace.named_variables
    assert set(named) >= {"k", "c", "v", "counts", "t", "v_tag", "scalar_tag", "ov", "oe"}
    assert named["counts"].address == "w"  # explicit name, address kept
    assert np.asarray(named["v"].value).shape == (3,)
    assert float(np.asarray(named["scalar_tag"].value).reshape(-1)[0]) == 1.5
    c = float(np.asarray(named["c"].value).reshape(-1)[0])
    assert c in (0.0, 1.0, 2.0)


def test_calls_outside_a_run_draw_from_the_prior(compiled):
    xs = np.array([compiled["gum"]() for _ in range(2000)])
    assert abs(xs.mean() - 1.0) < 5 * math.sqrt(5 / 2000)


# ------------------------------------------------------------------ compile errors


def _compile_error(fn):
    with pytest.raises(JitCompileError) as info:
        ppfast.jit(fn)
    return info.value


def test_unknown_distribution_names_the_line():
    def model():
        return pn.sample(pn.Cauchy(0.0, 1.0), "x")  # unknown-distribution

    err = _compile_error(model)
    assert "Cauchy" in str(err) and "unknown distribution" in str(err)
    assert (os.path.realpath(err.file), err.line) == (HERE, _line_of("# unknown-distribution"))
    assert isinstance(err, PpfastError) and isinstance(err, TypeError)


def test_non_constant_address_names_the_line():
    def model():
        s = 0.0
        for i in range(3):
            s += pn.sample(pn.Normal(0.0, 1.0), "x" + str(i))  # runtime-address
        return s

    err = _compile_error(model)
    assert "constant string" in str(err)
    assert (os.path.realpath(err.file), err.line) == (HERE, _line_of("# runtime-address"))


def test_other_unsupported_constructs_are_explained():
    def python_api():
        return ppfast.sample(ppfast.distributions.Normal(0.0, 1.0), name="x")

    assert "Python API" in str(_compile_error(python_api))

    def not_a_distribution():
        return pn.sample(3.0, "x")

    assert "distribution" in str(_compile_error(not_a_distribution))

    def wrong_arity():
        return pn.sample(pn.Normal(0.0), "x")

    assert "stddev" in str(_compile_error(wrong_arity))

    def returns_array():
        return np.zeros(3)

    assert "returns a number or None" in str(_compile_error(returns_array))

    def takes_arguments(a):
        return a

    assert "no arguments" in str(_compile_error(takes_arguments))


# ---------------------------------------------------------------------- run errors


def test_invalid_parameters_fail_the_trace_and_stop_the_model():
    @ppfast.jit
    def bad():
        x = pn.sample(pn.Normal(0.0, -1.0), "bad_sd")
        # With x = NaN this loop would never end if the model went on after the failure.
        while pn.sample(pn.Bernoulli(0.5), "loop") != 2:
            x += 1.0
        return x

    with pytest.raises(DistributionError, match="bad_sd"):
        bad.prior_batch(10, seed=1)
    skipped = bad.simulate(10, seed=1, on_error="skip")
    assert len(skipped.failed) == 10
    assert not np.any(skipped.records["address"] == ppfast.primitives.name_id("loop"))


def test_missing_observation_and_skip(compiled):
    with pytest.raises(MissingObservationError, match="obs1"):
        compiled["gum"].posterior_batch(10, observe={"obs0": 8.0}, seed=1)
    batch = compiled["gum"].posterior_batch(10, observe={"obs0": 8.0}, seed=1, on_error="skip")
    assert len(batch.failed) == 10 and np.all(batch.log_weights == -np.inf)


def test_exception_in_compiled_model_reports_its_message():
    @ppfast.jit
    def raises():
        x = pn.sample(pn.Normal(0.0, 1.0), "x")
        if x > 1.0:
            raise ValueError("x too large")
        return x

    with pytest.raises(ModelError, match="x too large"):
        raises.prior_batch(100, seed=1)
    skipped = raises.simulate(100, seed=1, on_error="skip")
    values = skipped.records["value"][skipped.records["trace"] == skipped.failed[0]]
    assert len(skipped.failed) > 0 and values[0] > 1.0


# ----------------------------------------------------------------------- engines


@pytest.mark.parametrize("engine", ["RANDOM_WALK_METROPOLIS_HASTINGS", "LIGHTWEIGHT_METROPOLIS_HASTINGS"])
def test_mcmc_runs_the_compiled_model_like_the_embedded_one(compiled, engine):
    pytest.importorskip("ppfast.inference.mcmc")
    engine = getattr(ppfast.InferenceEngine, engine)
    a = compiled["gum"].posterior_results(3000, inference_engine=engine, observe=GUM_OBS, seed=4)
    b = ppfast.examples.load("gum").posterior_results(3000, inference_engine=engine, observe=GUM_OBS, seed=4)
    # Same chain step for step: the engine replays and proposes through the same recorder.
    np.testing.assert_array_equal(a.values, b.values)
    assert len(np.unique(a.values)) > 10  # the chain moved


# ------------------------------------------------------------------------ caching


def test_cache_survives_a_new_process_with_other_address_ids(tmp_path):
    src = textwrap.dedent(
        """
        import sys
        import ppfast
        from ppfast import _core
        for i in range(int(sys.argv[1])):
            _core.intern(f"shift{i}")  # address ids differ between the two processes
        from ppfast import numba as pn

        @ppfast.jit(cache=True)
        def cached():
            mu = pn.sample(pn.Normal(1.0, 2.0), "cache_mu")
            pn.observe(pn.Normal(mu, 1.0), "cache_obs")
            return mu

        b = cached.posterior_batch(20, observe={"cache_obs": 2.0}, seed=1, progress=False)
        names = sorted({ppfast.trace.address_name(int(a)) for a in b.records["address"]})
        print(sum(cached.dispatcher.stats.cache_hits.values()), names, repr(float(b.log_weights.sum())))
        """
    )
    (tmp_path / "cached_model.py").write_text(src)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "cached_model.py", str(shift)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120) for shift in (0, 13)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (r.stdout.split(maxsplit=1) for r in runs)
    assert first[0] == "0" and second[0] == "1"  # compiled, then loaded from the cache
    assert first[1] == second[1]
    assert "'cache_mu', 'cache_obs'" in second[1]
