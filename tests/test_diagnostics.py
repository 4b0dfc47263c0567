"""Diagnostics: ESS, R-hat, autocorrelation against known processes; plain Python numbers,
numpy and torch inputs alike; plots, ArviZ export, address report, trace types and the
latent-structure graph."""

import math
import shutil

import numpy as np
import pytest
from conftest import GUM_OBS, branching_exact

import ppfast
import ppfast.examples
from ppfast import InferenceEngine, diagnostics
from ppfast.examples.python_models import GUM, Branching

torch = pytest.importorskip("torch")

RMH = InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS
LMH = InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS


def ar1(phi: float, chains: int, n: int, seed: int) -> np.ndarray:
    """Stationary AR(1) chains x_t = phi x_{t-1} + e_t with unit marginal variance."""
    rng = np.random.default_rng(seed)
    x = np.empty((chains, n))
    x[:, 0] = rng.normal(size=chains)
    e = rng.normal(scale=math.sqrt(1 - phi * phi), size=(chains, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def test_ess_of_independent_and_ar1_chains_matches_theory():
    iid = np.random.default_rng(0).normal(size=(4, 5000))
    assert abs(diagnostics.ess(iid) / iid.size - 1) < 0.1
    phi = 0.8
    x = ar1(phi, 4, 20000, seed=1)
    expected = x.size * (1 - phi) / (1 + phi)  # integrated autocorrelation time (1 + phi) / (1 - phi)
    assert abs(diagnostics.ess(x) / expected - 1) < 0.15, (diagnostics.ess(x), expected)
    rho = diagnostics.autocorrelation(x, max_lag=5)
    np.testing.assert_allclose(rho, phi ** np.arange(6), atol=0.03)
    assert math.isnan(diagnostics.ess([1.0, 1.0, 1.0, 1.0, 1.0]))  # no variance
    assert math.isnan(diagnostics.ess([1.0, 2.0]))  # too short


def test_rhat_near_one_for_agreeing_chains_and_large_for_disagreeing():
    x = ar1(0.5, 4, 4000, seed=2)
    assert diagnostics.rhat(x) < 1.01
    shifted = x + np.array([0.0, 0.0, 0.0, 2.0])[:, None]
    assert diagnostics.rhat(shifted) > 1.1
    drift = np.linspace(0, 5, 4000)[None] + x  # one chain drifting: split R-hat sees it
    assert diagnostics.rhat(drift[:1]) > 1.1
    assert diagnostics.gelman_rubin is diagnostics.rhat
    assert math.isnan(diagnostics.rhat([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))


def test_plain_numbers_numpy_and_torch_inputs_agree():
    ints = [[1, 2, 3, 2, 1, 2, 3, 4, 3, 2, 1, 0], [2, 3, 4, 3, 2, 3, 4, 5, 4, 3, 2, 1]]
    as_float = np.array(ints, dtype=float)
    variants = [ints, np.array(ints), np.array(ints, dtype=np.int32), torch.tensor(ints),
                torch.tensor(ints, dtype=torch.float32), [torch.tensor(r) for r in ints],
                [np.array(r) for r in ints], tuple(tuple(r) for r in ints)]
    for v in variants:
        assert diagnostics.rhat(v) == pytest.approx(diagnostics.rhat(as_float)), type(v)
        assert diagnostics.ess(v) == pytest.approx(diagnostics.ess(as_float)), type(v)
        np.testing.assert_allclose(diagnostics.autocorrelation(v, max_lag=3),
                                   diagnostics.autocorrelation(as_float, max_lag=3))
    # one chain as a flat list of ints, a torch vector, a plain number
    assert diagnostics.ess(ints[0]) == pytest.approx(diagnostics.ess(torch.tensor(ints[0])))
    assert math.isnan(diagnostics.ess(3))
    assert diagnostics.ess_kish([1, 1, 1, 1]) == pytest.approx(4)
    assert diagnostics.ess_kish(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1)
    assert diagnostics.ess_kish(np.log([2.0, 2.0]), log_weights=True) == pytest.approx(2)
    # an Empirical of plain ints (PyProb's gelman_rubin fails on these)
    chains = [ppfast.Empirical(r) for r in ints]
    assert diagnostics.rhat(chains) == pytest.approx(diagnostics.rhat(as_float))
    # torch scalars as an Empirical's values
    scalars = ppfast.Empirical([torch.tensor(float(v)) for v in ints[0]])
    assert diagnostics.ess(scalars) == pytest.approx(diagnostics.ess(ints[0]))
    with pytest.raises(TypeError, match="numbers"):
        diagnostics.ess(["a", "b", "c", "d"])


def test_mcmc_posterior_diagnostics_use_its_chains():
    post = ppfast.examples.load("gum").posterior(8000, RMH, observe=GUM_OBS, seed=3, num_chains=4)
    mu = post["mu"]
    chains = np.stack([c.values for c in diagnostics.chains(mu)])
    assert chains.shape == (4, 2000)
    assert diagnostics.ess(mu) == pytest.approx(diagnostics.ess(chains))
    assert diagnostics.ess(post, "mu") == pytest.approx(diagnostics.ess(chains))
    assert diagnostics.rhat(mu) == pytest.approx(diagnostics.rhat(chains))
    assert diagnostics.effective_sample_size(mu) == pytest.approx(diagnostics.ess(chains))
    assert diagnostics.ess(mu) < len(mu)  # RMH draws are correlated
    lp = diagnostics.log_prob_trace(post)
    assert lp.shape == (4, 2000) and np.all(np.isfinite(lp))
    # importance sampling: Kish's ESS from the weights
    is_post = GUM().posterior_results(5000, observe=GUM_OBS, seed=1)
    assert diagnostics.effective_sample_size(is_post) == pytest.approx(is_post.effective_sample_size)
    with pytest.raises(TypeError, match="not numeric"):
        diagnostics.ess(post)  # values are traces: pick a variable


def test_plots_are_saved_with_one_call(tmp_path):
    post = ppfast.examples.load("gum").posterior(4000, RMH, observe=GUM_OBS, seed=3, num_chains=2)
    files = {
        "trace.png": lambda f: diagnostics.plot_trace(post, "mu", file_name=f),
        "acf.png": lambda f: diagnostics.plot_autocorrelation(post["mu"], file_name=f, max_lag=20),
        "lp.png": lambda f: diagnostics.plot_log_prob(post, file_name=f),
        "ints.png": lambda f: diagnostics.plot_trace([[1, 2, 3, 2, 1], [2, 2, 3, 1, 1]], file_name=f),
        "torch.png": lambda f: diagnostics.plot_autocorrelation(torch.randn(500), file_name=f),
    }
    for name, plot in files.items():
        fig = plot(str(tmp_path / name))
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name
        assert fig.axes
    with pytest.raises(ValueError, match="one element"):
        diagnostics.plot_trace(np.zeros((2, 10, 3)))


def test_to_arviz_keeps_chains_variables_and_observations():
    az = pytest.importorskip("arviz")
    post = ppfast.examples.load("gum").posterior(8000, RMH, observe=GUM_OBS, seed=3, num_chains=4)
    idata = diagnostics.to_arviz(post)
    mu = idata.posterior["mu"]
    assert mu.shape == (4, 2000)
    np.testing.assert_array_equal(mu.values, np.stack([c.values for c in diagnostics.chains(post["mu"])]))
    assert set(idata.log_likelihood.data_vars) == {"obs0", "obs1"}
    assert float(idata.observed_data["obs0"].values[0]) == 8.0
    assert idata.sample_stats["lp"].shape == (4, 2000)
    summary = az.summary(idata, var_names=["mu"])
    assert summary.loc["mu", "r_hat"] < 1.01
    assert abs(summary.loc["mu", "mean"] - 7.25) < 0.2

    # many instances of one address become a dimension; Python ints / lists / torch work
    hundred = ppfast.examples.load("hundred").posterior(400, LMH, observe={"obs": 5.0}, seed=1, num_chains=2)
    x = diagnostics.to_arviz(hundred).posterior["x"]
    assert x.shape == (2, 200, 100) and x.dims[-1] == "x_instance"
    assert diagnostics.to_arviz([[1, 2, 3], [3, 2, 1]]).posterior["x"].shape == (2, 3)
    assert diagnostics.to_arviz(torch.arange(10)).posterior["x"].shape == (1, 10)
    # a weighted posterior is resampled to equal weights
    is_post = Branching().posterior(3000, observe={"obs": 6}, seed=2)
    r = diagnostics.to_arviz(is_post).posterior["r"]
    assert r.shape == (1, 3000) and np.isnan(diagnostics.to_arviz(is_post).posterior["branch"]).any()


def test_address_report_trace_types_and_latent_graph_on_branching(tmp_path):
    exact = branching_exact()
    p_branch = float(exact[:5].sum())  # r <= 4 draws the second Poisson
    post = Branching().posterior(40000, LMH, observe={"obs": 6}, seed=5, num_chains=4)
    se = 5 * math.sqrt(p_branch * (1 - p_branch) / diagnostics.ess(post["r"])) + 0.005

    report = diagnostics.address_report(post)
    by_name = {a.name: a for a in report}
    r, branch, obs = by_name["r"], by_name["branch"], by_name["obs"]
    assert r.kind == "sample" and r.controlled and r.distributions == ("Poisson",)
    assert r.location.endswith(f"python_models.py:{r.address.split(':')[1]}")
    assert r.frequency == pytest.approx(1.0) and r.occurrences == pytest.approx(1.0)
    assert abs(branch.frequency - p_branch) < se
    assert abs(r.mean - float(np.sum(np.arange(len(exact)) * exact))) < 0.2
    assert obs.kind == "observe" and obs.mean == 6 and obs.stddev == 0
    assert "branch" in str(report) and report.to_dicts()[0]["name"] == "r"

    types = diagnostics.trace_types(post)
    assert len(types) == 2 and sum(t.frequency for t in types) == pytest.approx(1.0)
    two = next(t for t in types if t.length == 2)
    assert abs(two.frequency - p_branch) < se and two.count == round(two.frequency * len(post))

    g = diagnostics.latent_graph(post)
    edge = {(g.nodes[a].get("name", a), g.nodes[b].get("name", b)): e["weight"] for (a, b), e in g.edges.items()}
    assert edge[("START", "r")] == pytest.approx(1.0)
    assert edge[("r", "branch")] == pytest.approx(branch.frequency)
    assert edge[("r", "branch")] + edge[("r", "obs")] == pytest.approx(1.0)
    assert edge[("obs", "END")] == pytest.approx(1.0)
    nx_graph = g.to_networkx()
    assert set(nx_graph.nodes) == set(g.nodes) and nx_graph.number_of_edges() == len(g.edges)
    dot = g.to_dot()
    assert dot.startswith("digraph") and "->" in dot and '"branch' not in dot.split("label=")[0]
    out = g.render(str(tmp_path / "structure.png"))
    if shutil.which("dot"):
        assert out and (tmp_path / "structure.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert out is None
    g.save_dot(str(tmp_path / "structure.dot"))
    assert (tmp_path / "structure.dot").read_text() == dot


def test_structure_of_embedded_model_and_importance_weights():
    # the embedded C++ model: addresses located in its source file, weights from IS
    post = ppfast.examples.load("branching").posterior(20000, observe={"obs": 6}, seed=4)
    report = {a.name: a for a in diagnostics.address_report(post)}
    assert ".cpp:" in report["obs"].location  # the C++ source line of the observe
    exact = branching_exact()
    ess = post.effective_sample_size
    assert abs(report["branch"].frequency - exact[:5].sum()) < 5 * math.sqrt(0.25 / ess)
    with pytest.raises(TypeError, match="posterior over traces"):
        diagnostics.address_report([1, 2, 3])
