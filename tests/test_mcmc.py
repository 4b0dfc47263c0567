"""Trace-space Metropolis-Hastings (LMH, RMH): posteriors against closed forms, exact
enumeration, forward-backward and importance sampling, with tolerances from the
autocorrelation-based effective sample size; chains, options and errors."""

import math

import numpy as np
import pytest
from conftest import GUM_OBS, GUM_POST_MEAN, GUM_POST_STD, assert_mean_close, branching_exact

import ppfast
import ppfast.examples
from ppfast import InferenceEngine, diagnostics
from ppfast.distributions import Bernoulli, Categorical, Normal, Poisson, Uniform
from ppfast.errors import ModelError, TraceError
from ppfast.examples.python_models import GUM, Geometric
from ppfast.inference.mcmc import MCMCInfo, run_chains

LMH = InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS
RMH = InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS
ENGINES = [pytest.param(LMH, id="lmh"), pytest.param(RMH, id="rmh")]


def _model(kind: str, name: str):
    return ppfast.examples.load(name) if kind == "embedded" else ppfast.examples.load(name, mode="python")


# --------------------------------------------------------------------------- GUM


# LMH proposes from the prior, which puts ~1% of its mass where the posterior is: it
# needs many more steps than RMH for the same ESS.
GUM_STEPS = {("embedded", LMH): 400_000, ("embedded", RMH): 40_000, ("python", LMH): 200_000,
             ("python", RMH): 40_000}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["python", "embedded"])
def test_gum_posterior_matches_closed_form(kind, engine):
    model = _model(kind, "gum")
    n = GUM_STEPS[(kind, engine)]
    thin = max(1, n // 40_000)
    post = model.posterior_results(n // thin, engine, observe=GUM_OBS, seed=2024, num_chains=4, thinning=thin,
                                   burn_in=500)
    assert len(post) == n // thin and np.all(post.weights == post.weights[0])
    x = diagnostics.chains(post)
    chains = np.stack([c.values for c in x])
    assert chains.shape == (4, n // thin // 4)
    assert_mean_close(chains, GUM_POST_MEAN, GUM_POST_STD, f"{kind} {engine.name} mean")
    # stddev: the standard error of a sample variance is sqrt(2) sigma^2 / sqrt(ESS of (x - mu)^2)
    dev2 = (chains - GUM_POST_MEAN) ** 2
    ess2 = diagnostics.ess(dev2)
    se_std = GUM_POST_STD / math.sqrt(2 * ess2)
    assert abs(chains.std() - GUM_POST_STD) < 5 * se_std, (chains.std(), se_std)
    assert diagnostics.rhat(post) < 1.01
    info = post.batch.mcmc
    assert info.num_chains == 4 and 0 < info.acceptance_rate < 1


def test_python_and_embedded_chains_are_identical():
    for name, obs, engine in (("gum", GUM_OBS, RMH), ("branching", {"obs": 6}, LMH)):
        a = _model("python", name).posterior_results(3000, engine, observe=obs, seed=5, num_chains=2)
        b = _model("embedded", name).posterior_results(3000, engine, observe=obs, seed=5, num_chains=2)
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.batch.mcmc.accepted, b.batch.mcmc.accepted)


def test_same_seed_same_chain_and_thread_count_does_not_matter():
    one = ppfast.examples.load("branching", threads=1)
    two = ppfast.examples.load("branching", threads=2)
    a = one.posterior_results(4000, RMH, observe={"obs": 6}, seed=9, num_chains=3)
    b = two.posterior_results(4000, RMH, observe={"obs": 6}, seed=9, num_chains=3)
    c = two.posterior_results(4000, RMH, observe={"obs": 6}, seed=10, num_chains=3)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


# --------------------------------------------------------------------------- Branching


def assert_discrete_posterior(post, exact: np.ndarray, what: str, slack: float = 0.0) -> None:
    """Each state's frequency within 5 standard errors, from the ESS of its indicator."""
    chains = np.stack([c.values for c in diagnostics.chains(post)]).astype(int)
    for k in np.flatnonzero(exact > 0.01):
        ind = (chains == k).astype(float)
        ess = diagnostics.ess(ind)
        assert ess > 200, (what, k, ess)
        se = math.sqrt(exact[k] * (1 - exact[k]) / ess)
        assert abs(ind.mean() - exact[k]) < 5 * se + slack, (what, k, ind.mean(), exact[k], se)


BRANCHING_STEPS = {"python": 120_000, "embedded": 1_000_000}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["python", "embedded"])
def test_branching_matches_enumeration(kind, engine):
    n = BRANCHING_STEPS[kind]
    thin = max(1, n // 100_000)
    post = _model(kind, "branching").posterior_results(n // thin, engine, observe={"obs": 6}, seed=77,
                                                       num_chains=4, thinning=thin)
    assert_discrete_posterior(post, branching_exact(), f"{kind} {engine.name}")


# --------------------------------------------------------------------------- HMM

HMM_INIT = np.array([0.5, 0.3, 0.2])
HMM_TRANS = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.15, 0.15, 0.7]])
HMM_MEANS = np.array([-1.0, 0.5, 2.0])
HMM_SD = 0.8


class HMM(ppfast.Model):
    """3-state hidden Markov model with Gaussian emissions, the observations in the code."""

    def __init__(self, ys):
        super().__init__("hmm")
        self.ys = [float(y) for y in ys]
        self.init = Categorical(HMM_INIT)
        self.trans = [Categorical(row) for row in HMM_TRANS]
        self.emit = [Normal(float(m), HMM_SD) for m in HMM_MEANS]
        self.names = [(f"z{t}", f"y{t}") for t in range(len(ys))]

    def forward(self):
        states = []
        dist = self.init
        for (zn, yn), y in zip(self.names, self.ys):
            z = ppfast.sample(dist, name=zn)
            ppfast.observe(self.emit[z], y, name=yn)
            states.append(z)
            dist = self.trans[z]
        return states


def forward_backward(ys: np.ndarray) -> np.ndarray:
    """p(z_t = k | y_1..T), by the forward-backward algorithm (normalized messages)."""
    lik = np.exp(-0.5 * ((ys[:, None] - HMM_MEANS[None]) / HMM_SD) ** 2)
    T = len(ys)
    alpha = np.zeros((T, 3))
    beta = np.ones((T, 3))
    a = HMM_INIT * lik[0]
    alpha[0] = a / a.sum()
    for t in range(1, T):
        a = (alpha[t - 1] @ HMM_TRANS) * lik[t]
        alpha[t] = a / a.sum()
    for t in range(T - 2, -1, -1):
        b = HMM_TRANS @ (lik[t + 1] * beta[t + 1])
        beta[t] = b / b.sum()
    post = alpha * beta
    return post / post.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_hmm_marginals_match_forward_backward(engine):
    rng = np.random.default_rng(3)
    z, ys = rng.choice(3, p=HMM_INIT), []
    for _ in range(16):
        ys.append(rng.normal(HMM_MEANS[z], HMM_SD))
        z = rng.choice(3, p=HMM_TRANS[z])
    ys = np.array(ys)
    exact = forward_backward(ys)
    post = HMM(ys).posterior(20_000, engine, seed=4, num_chains=4, thinning=4, burn_in=200)
    assert post.batch.objects is not None  # list results stay Python objects
    for t in range(16):
        zt = np.stack([c.values for c in diagnostics.chains(post[f"z{t}"])])
        for k in range(3):
            ind = (zt == k).astype(float)
            if not 0.01 < exact[t, k] < 0.99:  # (nearly) certain: no variance to scale by
                assert abs(ind.mean() - exact[t, k]) < 0.02, (t, k, ind.mean(), exact[t, k])
                continue
            ess = diagnostics.ess(ind)
            assert ess > 100, (t, k, ess)
            se = math.sqrt(exact[t, k] * (1 - exact[t, k]) / ess)
            assert abs(ind.mean() - exact[t, k]) < 5 * se, (t, k, ind.mean(), exact[t, k], ess)


# ---------------------------------------------------------------- changing structure vs IS


class HalfNormalSum(ppfast.Model):
    """n ~ Poisson(2) half-normal terms, each from a rejection loop (replace=True);
    observe Normal(sum, 1) = 1.5: the number of sites changes from trace to trace.  Each
    loop has its own address: replace draws at one address share one instance."""

    def forward(self):
        n = ppfast.sample(Poisson(2.0), name="n")
        s = 0.0
        for i in range(n):
            while True:
                x = ppfast.sample(Normal(0.0, 1.0), address=f"x{i}", replace=True)
                if x > 0:
                    break
            s += x
        ppfast.observe(Normal(s, 1.0), name="y")
        return n


def _is_reference(model, observe, n=200_000, seed=1):
    ref = model.posterior_results(n, observe=observe, seed=seed)
    return ref, ref.effective_sample_size


@pytest.mark.parametrize("engine", ENGINES)
def test_rejection_loop_model_matches_importance_sampling(engine):
    model = HalfNormalSum()
    ref, ref_ess = _is_reference(model, {"y": 1.5}, 100_000)
    post = model.posterior_results(20_000, engine, observe={"y": 1.5}, seed=8, num_chains=4, thinning=4)
    chains = np.stack([c.values for c in diagnostics.chains(post)])
    for k in range(5):
        p_ref = float(np.sum(ref.weights[ref.values == k]))
        ind = (chains == k).astype(float)
        se = math.sqrt(p_ref * (1 - p_ref) * (1 / diagnostics.ess(ind) + 1 / ref_ess))
        assert abs(ind.mean() - p_ref) < 5 * se, (k, ind.mean(), p_ref, se)
    # the number of x sites follows n: created and removed between steps
    sizes = np.array([len(t.variables_controlled) for t in post.batch]) - 1
    np.testing.assert_array_equal(sizes, post.values.astype(int))


@pytest.mark.parametrize("engine", ENGINES)
def test_geometric_loop_matches_importance_sampling(engine):
    model = Geometric()
    ref, ref_ess = _is_reference(model, {"obs": 3.0}, 100_000)
    post = model.posterior_results(20_000, engine, observe={"obs": 3.0}, seed=12, num_chains=4, thinning=3)
    chains = np.stack([c.values for c in diagnostics.chains(post)])
    sd = math.sqrt(float(np.sum(ref.weights * (ref.values - ref.mean) ** 2)))
    se = sd * math.sqrt(1 / diagnostics.ess(chains) + 1 / ref_ess)
    assert abs(chains.mean() - ref.mean) < 5 * se, (chains.mean(), ref.mean, se)


class NestedUniform(ppfast.Model):
    """b's support depends on a: a proposal of a below the replayed b gives b zero
    density, and the proposal must be rejected (not crash)."""

    def forward(self):
        a = ppfast.sample(Uniform(0.0, 10.0), name="a")
        b = ppfast.sample(Uniform(0.0, a), name="b")
        ppfast.observe(Normal(b, 0.5), name="y")
        return a


@pytest.mark.parametrize("engine", ENGINES)
def test_replayed_value_outside_new_support_is_rejected(engine):
    model = NestedUniform()
    ref, ref_ess = _is_reference(model, {"y": 2.0}, 100_000)
    post = model.posterior_results(20_000, engine, observe={"y": 2.0}, seed=21, num_chains=2, thinning=3)
    info = post.batch.mcmc
    assert info.rejected_invalid.sum() > 0 and info.errors.sum() == 0
    chains = np.stack([c.values for c in diagnostics.chains(post)])
    sd = math.sqrt(float(np.sum(ref.weights * (ref.values - ref.mean) ** 2)))
    se = sd * math.sqrt(1 / diagnostics.ess(chains) + 1 / ref_ess)
    assert abs(chains.mean() - ref.mean) < 5 * se, (chains.mean(), ref.mean, se)


class BernoulliSwitch(ppfast.Model):
    """b ~ Bernoulli(0.3) switches the mean of x ~ Normal(3b, 1); observe Normal(x, 1)."""

    def forward(self):
        b = ppfast.sample(Bernoulli(0.3), name="b")
        x = ppfast.sample(Normal(3.0 * b, 1.0), name="x")
        ppfast.observe(Normal(x, 1.0), name="y")
        return b


class VectorNormal(ppfast.Model):
    """A tensor-valued site: x ~ Normal(0, I_3); observe Normal(sum x, 1) = 3."""

    def forward(self):
        x = ppfast.sample(Normal(np.zeros(3), np.ones(3)), name="x")
        ppfast.observe(Normal(float(np.sum(x)), 1.0), name="y")
        return float(np.sum(x))


@pytest.mark.parametrize("engine", ENGINES)
def test_discrete_switch_and_tensor_site_match_closed_forms(engine):
    # p(b = 1 | y = 2.5): y | b ~ Normal(3b, sqrt 2)
    l1, l0 = 0.3 * math.exp(-((2.5 - 3) ** 2) / 4), 0.7 * math.exp(-(2.5 ** 2) / 4)
    p1 = l1 / (l1 + l0)
    post = BernoulliSwitch().posterior_results(20_000, engine, observe={"y": 2.5}, seed=31, num_chains=4)
    chains = np.stack([c.values for c in diagnostics.chains(post)])
    assert_mean_close(chains, p1, math.sqrt(p1 * (1 - p1)), "bernoulli switch")
    # sum of x: prior Normal(0, sqrt 3), likelihood Normal(s, 1) at 3 -> Normal(2.25, sqrt(3/4))
    post = VectorNormal().posterior_results(20_000, engine, observe={"y": 3.0}, seed=32, num_chains=4)
    chains = np.stack([c.values for c in diagnostics.chains(post)])
    assert_mean_close(chains, 2.25, math.sqrt(0.75), "tensor site")


# --------------------------------------------------------------------------- options


def test_burn_in_thinning_and_chain_bookkeeping():
    post = ppfast.examples.load("gum").posterior_results(10, RMH, observe=GUM_OBS, seed=1, num_chains=3,
                                                          burn_in=7, thinning=3)
    info = post.batch.mcmc
    assert isinstance(info, MCMCInfo) and len(post) == 10
    np.testing.assert_array_equal(info.chain, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(info.steps, [7 + 4 * 3, 7 + 3 * 3, 7 + 3 * 3])
    assert [len(c) for c in diagnostics.chains(post)] == [4, 3, 3]
    assert info.acceptance_rates.shape == (3,)
    assert str(info).startswith("RMH: 3 chain(s), 51 steps") and "10 kept" in str(info)
    # PyProb's thinning_steps: num_traces steps in all, every second state kept
    again = GUM().posterior_results(6, LMH, observe=GUM_OBS, seed=1, thinning_steps=2)
    assert len(again) == 3 and again.batch.mcmc.steps[0] == 6


def test_initial_trace_starts_the_chain():
    model = GUM()
    start = model.prior(20, seed=3)
    i = int(np.argmin(start["mu"].values))
    mu0 = start["mu"].values[i]
    assert mu0 < 0  # far from the posterior
    tiny = {"observe": GUM_OBS, "seed": 4, "scale": 1e-9, "prior_mix": 0.0}
    post = model.posterior(1, RMH, initial_trace=start.batch.trace(i), **tiny)
    assert abs(post["mu"].values[0] - mu0) < 1e-6
    fresh = model.posterior(1, RMH, **tiny)
    assert abs(fresh["mu"].values[0] - mu0) > 1e-3
    native = ppfast.examples.load("gum")  # its addresses differ from the Python model's
    start = native.prior(20, seed=3)
    i = int(np.argmin(start["mu"].values))
    post = native.posterior(1, RMH, initial_trace=start.batch.trace(i), **tiny)
    assert abs(post["mu"].values[0] - start["mu"].values[i]) < 1e-6


def test_run_chains_keeps_the_chains_and_variables():
    res = run_chains(ppfast.examples.load("branching"), 8000, observe={"obs": 6}, seed=3, num_chains=4)
    assert len(res.chains) == 4 and all(len(c) == 2000 for c in res.chains)
    assert len(res.chains_of("r")) == 4
    np.testing.assert_array_equal(res["r"].values, res.posterior.values)
    assert 0 < res.acceptance_rate < 1


def test_progress_bar_runs(capsys):
    post = GUM().posterior_results(3000, RMH, observe=GUM_OBS, seed=1, progress=True)
    assert len(post) == 3000
    post = ppfast.examples.load("gum").posterior_results(3000, RMH, observe=GUM_OBS, seed=1, progress=True)
    assert len(post) == 3000


# --------------------------------------------------------------------------- errors


def test_invalid_arguments_raise_typed_errors():
    model = GUM()
    with pytest.raises(ValueError, match="num_chains"):
        model.posterior_results(10, RMH, observe=GUM_OBS, num_chains=0)
    with pytest.raises(ValueError, match="thinning"):
        model.posterior_results(10, RMH, observe=GUM_OBS, thinning=0)
    with pytest.raises(ValueError, match="at least num_chains"):
        model.posterior_results(2, RMH, observe=GUM_OBS, num_chains=4)
    with pytest.raises(ValueError, match="on_error"):
        model.posterior_results(10, RMH, observe=GUM_OBS, on_error="ignore")
    with pytest.raises(NotImplementedError, match="likelihood_importance"):
        model.posterior_results(10, RMH, observe=GUM_OBS, likelihood_importance=0.5)
    with pytest.raises(TypeError, match="seeed"):
        model.posterior_results(10, RMH, observe=GUM_OBS, seeed=1)
    with pytest.raises(ValueError, match="scale"):
        model.posterior_results(10, RMH, observe=GUM_OBS, scale=-1.0)


class Flaky(ppfast.Model):
    """Raises when mu goes above 9 (a simulator bug in a region MH visits)."""

    def forward(self):
        mu = ppfast.sample(Normal(1.0, math.sqrt(5.0)), name="mu")
        if mu > 9:
            raise RuntimeError("mu out of range")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs0")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs1")
        return mu


def test_failing_proposal_raises_or_is_skipped():
    with pytest.raises(ModelError, match="mu out of range") as err:
        Flaky().posterior_results(5000, RMH, observe=GUM_OBS, seed=1)
    assert isinstance(err.value.__cause__, RuntimeError)
    post = Flaky().posterior_results(5000, RMH, observe=GUM_OBS, seed=1, on_error="skip")
    assert post.batch.mcmc.errors.sum() > 0 and post.values.max() <= 9


class NoLatents(ppfast.Model):
    def forward(self):
        ppfast.observe(Normal(0.0, 1.0), name="y")
        return 0.0


class Impossible(ppfast.Model):
    def forward(self):
        p = ppfast.sample(Uniform(0.0, 1.0), name="p")
        ppfast.observe(Bernoulli(p), name="y")  # observed 2: outside every support
        return p


def test_models_mh_cannot_run_give_clear_errors():
    with pytest.raises(TraceError, match="no controlled sample site"):
        NoLatents().posterior_results(10, LMH, observe={"y": 0.5}, seed=1)
    with pytest.raises(TraceError, match="no start trace"):
        Impossible().posterior_results(10, LMH, observe={"y": 2.0}, seed=1, max_init_attempts=20)
    with pytest.raises(ppfast.errors.MissingObservationError):
        GUM().posterior_results(10, LMH, observe={"obs0": 8.0}, seed=1)
    with pytest.raises(ppfast.errors.MissingObservationError):
        ppfast.examples.load("gum").posterior_results(10, LMH, observe={"obs0": 8.0}, seed=1)


# --------------------------------------------------------------------------- other model kinds


@pytest.mark.remote
def test_ppx_simulator_runs_the_same_chain_as_the_embedded_one():
    from ppfast.models.remote import ExampleServer

    with ExampleServer("gum") as server, ppfast.RemoteModel(server.address) as remote:
        a = remote.posterior_results(2000, RMH, observe=GUM_OBS, seed=5, num_chains=2)
    b = ppfast.examples.load("gum").posterior_results(2000, RMH, observe=GUM_OBS, seed=5, num_chains=2)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.batch.mcmc.accepted, b.batch.mcmc.accepted)


def test_model_kind_without_a_policy_channel_is_refused_clearly():
    class Opaque(ppfast.BaseModel):
        def _simulate(self, *args, **kwargs):
            raise AssertionError("not reached")

    with pytest.raises(ppfast.errors.PpfastError, match="replay policy"):
        Opaque().posterior_results(10, RMH, observe=GUM_OBS)


class Hooked(ppfast.BaseModel):
    """A model kind that can only run whole traces under a policy (the _mh_execute hook),
    here backed by the Python GUM."""

    def __init__(self):
        super().__init__("hooked")
        self.inner = GUM()

    def _mh_execute(self, seed, index, observations, required, policy):
        from ppfast import _core
        from ppfast.model import _Record, run_python

        rec = _core.Recorder(seed, _core.Observations(observations, required))
        rec.set_policy(policy)
        batch = run_python(self.inner.forward, rec, _Record(rec, rec.fast()), index, 1, skip_errors=True)
        return batch._native, 4 if len(batch.failed) else 0, batch.results[0], None


def test_model_kind_plugs_in_through_the_execute_hook():
    a = Hooked().posterior_results(2000, RMH, observe=GUM_OBS, seed=6, num_chains=2)
    b = GUM().posterior_results(2000, RMH, observe=GUM_OBS, seed=6, num_chains=2)
    np.testing.assert_array_equal(a.values, b.values)


# --------------------------------------------------------------------------- C++ core under sanitizers

SANITIZED_CHAINS = r"""
// MHChain / MHNativeRunner on several threads: GUM against its closed form, plus models
// that change structure, replay out-of-support values, retry rejection loops and carry
// tensor and discrete sites.  Exits non-zero on a failed check.
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "core/address_table.hpp"
#include "core/mcmc.hpp"
#include "ppfast/ppfast.hpp"

using namespace ppfast;
static int failures = 0;
static void check(bool ok, const char* what) {
  if (!ok) { std::fprintf(stderr, "FAILED: %s\n", what); ++failures; }
}

static double gum() {
  double mu = ppfast::sample(ppfast::Normal(1.0, std::sqrt(5.0)), "mu", "mu");
  ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs0");
  ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs1");
  return mu;
}

static double mixed() {
  const int n = static_cast<int>(ppfast::sample(ppfast::Poisson(2.0), "n"));
  double s = 0;
  for (int i = 0; i < n; ++i) {
    double x;
    do x = ppfast::sample(ppfast::Normal(0.0, 1.0), i % 2 ? "x1" : "x0", nullptr, true, true);
    while (x < 0);
    s += x;
  }
  const double a = ppfast::sample(ppfast::Uniform(0.0, 4.0), "a");
  const double b = ppfast::sample(ppfast::Uniform(0.0, a), "b");  // replays fail when a shrinks
  auto v = ppfast::sample_tensor(ppfast::Normal(ppfast::Vec{0, 1, 2}, ppfast::Vec{1}), "v");
  const double c = ppfast::sample(ppfast::Categorical({0.2, 0.3, 0.5}), "c");
  const double k = ppfast::sample(ppfast::Bernoulli(0.4), "k");
  const double g = ppfast::sample(ppfast::Gamma(2.0, 1.0), "g");
  ppfast::observe(ppfast::Normal(s + b + v[1] + c + k + g, 1.0), "y", 5.0);
  return s;
}

static void run(ppfast_model_fn fn, MHKernel kernel, std::shared_ptr<Observations> obs, double* mean) {
  MHOptions o;
  o.kernel = kernel;
  o.burn_in = 100;
  std::vector<std::unique_ptr<MHChain>> owned;
  std::vector<MHChain*> chains;
  for (uint32_t c = 0; c < 3; ++c) {
    owned.push_back(std::make_unique<MHChain>(o, 11, c));
    owned.back()->target_steps = 100 + 20000;
    chains.push_back(owned.back().get());
  }
  MHNativeRunner runner(fn, 2, obs, 11);
  runner.initialize(chains, 100, true);
  runner.run(chains, 7000, true);
  runner.run(chains, 1u << 30, true);
  double sum = 0;
  size_t n = 0;
  for (auto* c : chains) {
    check(c->started(), "chain started");
    check(c->steps() == 20100, "all steps ran");
    check(c->errors() == 0, "no execution errors");
    check(c->accepted() > 0 && c->accepted() < c->steps(), "some proposals accepted, some rejected");
    auto out = c->take_output();
    check(out->num_traces() == 20000, "kept every state after the burn-in");
    for (size_t t = 0; t < out->num_traces(); ++t) sum += out->result[t], ++n;
  }
  *mean = sum / n;
}

int main() {
  auto obs = std::make_shared<Observations>();
  obs->required = true;
  obs->set(AddressTable::global().intern("obs0"), {8.0});
  obs->set(AddressTable::global().intern("obs1"), {9.0});
  for (MHKernel k : {MHKernel::Prior, MHKernel::RandomWalk}) {
    double mean = 0;
    run(gum, k, obs, &mean);
    if (k == MHKernel::RandomWalk) check(std::fabs(mean - 7.25) < 0.15, "GUM posterior mean");
    run(mixed, k, std::make_shared<Observations>(), &mean);
    check(std::isfinite(mean), "mixed model ran");
  }
  return failures ? 1 : 0;
}
"""


@pytest.mark.slow
def test_chain_core_under_sanitizers(tmp_path):
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "mcmc_chains.cpp"
    src.write_text(SANITIZED_CHAINS)
    core = ["address_table", "api", "distributions", "recorder", "runner", "stack_address", "trace_batch", "mcmc"]
    exe = tmp_path / "mcmc_chains"
    cmd = ["g++", "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
           "-fno-sanitize-recover=undefined", f"-I{root / 'csrc'}", f"-I{root / 'csrc' / 'include'}",
           *[str(root / "csrc" / "core" / f"{f}.cpp") for f in core], str(src), "-o", str(exe), "-pthread", "-ldl"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600,
                         env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in run.stderr and "runtime error" not in run.stderr
