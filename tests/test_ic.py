"""Inference compilation: the fused LSTM proposal network, its training, and guided
importance sampling for Python and embedded models.  Small networks, fixed seeds."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import GUM_OBS, assert_gum_posterior

import ppfast
import ppfast.examples
from ppfast import InferenceEngine
from ppfast.distributions import Normal
from ppfast.errors import MissingObservationError, PpfastError
from ppfast.examples.python_models import GUM, Geometric
from ppfast.nn import TrainingError, load_inference_network
from ppfast.nn import families as fam

IC = InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
IS = InferenceEngine.IMPORTANCE_SAMPLING
SMALL = {"lstm_dim": 64, "observe_embedding_dim": 32, "address_embedding_dim": 16, "proposal_dim": 32}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ess_fraction(emp) -> float:
    return emp.effective_sample_size / len(emp)


def _train(model, n, **kw):
    opts = dict(SMALL, batch_size=128, learning_rate=3e-3, seed=0)
    opts.update(kw)
    return model.learn_inference_network(n, **opts)


# --------------------------------------------------------------------------- families


def _family_cases():
    rng = np.random.default_rng(0)
    n = 50
    cases = []
    # (kind code, prior params [n, 4], sampler of prior values)
    cases.append((1, np.c_[rng.normal(0, 3, n), rng.uniform(0.1, 4, n)]))  # Normal
    lo = rng.normal(0, 2, n)
    cases.append((2, np.c_[lo, lo + rng.uniform(0.5, 3, n)]))  # Uniform
    cases.append((12, np.c_[rng.normal(0, 1, n), rng.uniform(0.3, 2, n), np.full(n, -1.0), np.full(n, np.inf)]))
    cases.append((4, np.c_[rng.uniform(0.5, 20, n)]))  # Poisson
    cases.append((5, np.c_[rng.uniform(0.05, 0.95, n)]))  # Bernoulli
    cases.append((6, np.c_[rng.uniform(0.5, 3, n), rng.uniform(0.5, 3, n)]))  # Beta
    cases.append((7, np.c_[rng.uniform(0.2, 3, n)]))  # Exponential
    cases.append((8, np.c_[rng.uniform(0.5, 5, n), rng.uniform(0.5, 2, n)]))  # Gamma
    cases.append((9, np.c_[rng.normal(0, 1, n), rng.uniform(0.2, 1, n)]))  # LogNormal
    cases.append((10, np.c_[rng.integers(1, 30, n).astype(float), rng.uniform(0.05, 0.95, n)]))  # Binomial
    cases.append((11, np.c_[rng.uniform(0.5, 3, n), rng.uniform(0.7, 3, n)]))  # Weibull
    return cases


@pytest.mark.parametrize("kind,params", _family_cases(), ids=lambda v: str(v) if isinstance(v, int) else "")
def test_family_log_q_in_torch_matches_the_core_proposal(kind, params):
    """The training loss's log q and the C++ proposal's log-density agree; proposals are
    valid distributions whose draws lie in the prior's support."""
    from ppfast import _core

    k = 4
    f = int(fam.FAMILY_OF_KIND[kind])
    n = len(params)
    p4 = np.zeros((n, 4))
    p4[:, : params.shape[1]] = params
    kinds = np.full(n, kind)
    rng = np.random.default_rng(1)
    out = rng.normal(0, 1.5, (n, fam.width(f, k))).astype(np.float32)
    prep0 = fam.prepare(f, kinds, p4)
    code, rows = fam.encode(f, out, prep0, k)
    values = np.empty(n)
    core_lq = np.empty(n)
    prior_lp = np.empty(n)
    for i in range(n):
        assert _core.dist_validate(code, 1, rows[i]) == ""
        x = _core.dist_sample(code, 1, rows[i], 1, i)[0, 0]
        values[i] = x
        core_lq[i] = _core.dist_log_prob(code, 1, rows[i], np.array([x]))[0]
        prior_lp[i] = _core.dist_log_prob(kind, 1, params[i], np.array([x]))[0]
    assert np.all(np.isfinite(prior_lp)), "proposal drew outside the prior's support"
    prep = fam.prepare(f, kinds, p4, values, prior_lp)
    tq = fam.log_q(f, torch.from_numpy(out), {a: torch.tensor(b, dtype=torch.float32) for a, b in prep.items()}, k)
    np.testing.assert_allclose(tq.numpy(), core_lq, rtol=2e-4, atol=2e-3)


def test_categorical_proposal_matches_core():
    from ppfast import _core

    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.0, 0.0]])
    k = np.array([4, 2])
    with np.errstate(divide="ignore"):
        logp = np.log(np.where(np.arange(4) < k[:, None], probs, 0.0))
    out = np.random.default_rng(2).normal(0, 2, (2, 6)).astype(np.float32)
    code, rows = fam.encode(fam.CATEGORICAL, out, {}, 10, logp)
    assert code == 3
    x = np.array([3.0, 1.0])
    for i in range(2):
        q = rows[i, : k[i]]
        assert _core.dist_validate(3, 1, q) == ""
        assert abs(q.sum() - 1) < 1e-12
    tq = fam.log_q(fam.CATEGORICAL, torch.from_numpy(out), {"x": torch.tensor(x)}, 10,
                   torch.tensor(logp, dtype=torch.float32))
    np.testing.assert_allclose(tq.numpy(), [math.log(rows[0, 3]), math.log(rows[1, 1])], rtol=1e-5)


# --------------------------------------------------------------------------- packing and tables


def test_packed_minibatch_mixes_trace_types_in_one_sequence():
    from ppfast.nn.data import StepData, pack

    batch = Geometric().prior_batch(300, seed=3)
    data = StepData(batch, [])
    ids = np.arange(300)
    pk = pack(data, ids)
    assert pk.batch_sizes.sum() == len(pk.step) == data.count.sum()
    assert len(np.unique(batch.traces["trace_type"])) > 5  # many trace types, one packed batch
    # Time-major, longest first: block t holds step t of the first batch_sizes[t] traces.
    start = 0
    for t, bs in enumerate(pk.batch_sizes):
        block = slice(start, start + bs)
        np.testing.assert_array_equal(pk.rank[block], np.arange(bs))
        np.testing.assert_array_equal(pk.step[block], data.start[pk.traces[:bs]] + t)
        start += bs


def test_tables_grow_and_the_optimizer_touches_only_the_minibatch_rows():
    from ppfast.nn.tables import AddressTables

    t = AddressTables({"a": (3,), "w": (2, 4)}, "cpu", capacity=2)
    rows = t.add(np.arange(10), np.zeros(10, dtype=np.int64), np.ones(10, dtype=np.int64))
    np.testing.assert_array_equal(rows, np.arange(10))
    assert t.capacity >= 10 and t.n == 10
    assert len(t.add(np.array([3, 11]), np.array([0, 0]), np.array([1, 1]))) == 1  # only the new key
    for k in t.data:
        t.data[k].normal_()
    before = {k: v.clone() for k, v in t.data.items()}
    touched = torch.tensor([2, 7])
    local = t.gather(touched)
    (local["a"].sum() + local["w"].pow(2).sum()).backward()
    t.adam(touched, local, lr=0.1)
    for k in t.data:
        changed = (t.data[k] != before[k]).reshape(t.capacity, -1).any(1)
        assert set(np.flatnonzero(changed.numpy())) == {2, 7}, k
    assert t.steps[2] == 1 and t.steps[0] == 0


# --------------------------------------------------------------------------- GUM


def test_gum_python_guided_posterior_is_exact_with_high_ess():
    model = GUM()
    net = _train(model, 20000)
    losses = np.array(net.history)[:, 1]
    assert losses[-20:].mean() < losses[:5].mean() - 0.5
    post = model.posterior_results(4000, IC, observe=GUM_OBS, seed=1)
    assert_gum_posterior(post, "python IC")
    assert ess_fraction(post) >= 0.5, ess_fraction(post)
    prior = model.posterior_results(4000, IS, observe=GUM_OBS, seed=1)
    assert ess_fraction(prior) < 0.05
    assert np.all(post.batch.records["flags"][post.batch.records["kind"] == 0] & 16)  # values came from q


def test_gum_embedded_guided_posterior_and_save_load_in_a_fresh_process(tmp_path):
    model = ppfast.examples.load("gum")
    _train(model, 20000)
    post = model.posterior_results(20000, IC, observe=GUM_OBS, seed=2, slots=128)
    assert_gum_posterior(post, "embedded IC")
    assert ess_fraction(post) >= 0.5
    assert ess_fraction(model.posterior_results(20000, IS, observe=GUM_OBS, seed=2)) < 0.05
    # Proposal weights are log p - log q: recompute from the records.
    b = post.batch
    assert np.all(np.isfinite(b.log_weights))
    np.testing.assert_array_equal(b.traces["index"], np.arange(20000))  # in trace order
    # log w = log p(x, y) - log q(x): the prior part is in the records
    lp = b.records["log_prob"][b.records["kind"] == 0]
    assert np.all(np.abs(b.log_weights - (b.traces["log_likelihood"] + lp)) > 0)

    path = tmp_path / "gum.pt"
    model.save_inference_network(path)
    meta = json.loads((tmp_path / "gum.pt.json").read_text())
    assert meta["rows"][0]["address"] == "mu" and meta["config"]["lstm_dim"] == 64
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"state_dict", "metadata"}
    here = model.posterior_batch(300, IC, observe=GUM_OBS, seed=5)
    script = textwrap.dedent(f"""
        import numpy as np, torch, ppfast, ppfast.examples
        torch.set_num_threads(1)
        ppfast.set_progress(False)
        m = ppfast.examples.load("gum")
        m.load_inference_network({str(path)!r})
        b = m.posterior_batch(300, ppfast.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK,
                              observe={{"obs0": 8.0, "obs1": 9.0}}, seed=5)
        np.save({str(tmp_path / "w.npy")!r}, np.c_[b.records["value"][b.records["kind"] == 0], b.log_weights])
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    there = np.load(tmp_path / "w.npy")
    mine = np.c_[here.records["value"][here.records["kind"] == 0], here.log_weights]
    np.testing.assert_allclose(there, mine, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- many trace types


def _branching_exact(obs: int, max_r: int = 40) -> np.ndarray:
    from scipy.stats import poisson

    from ppfast.examples.python_models import fib

    post = np.zeros(max_r)
    b = np.arange(0, 400)
    for r in range(max_r):
        lik = poisson.pmf(obs, 6.0) if r > 4 else float(np.sum(poisson.pmf(b, 4.0) * poisson.pmf(obs, 1.0 + fib(3 * r) + b)))
        post[r] = poisson.pmf(r, 4.0) * lik
    return post / post.sum()


def test_branching_embedded_guided_matches_enumeration_and_beats_prior():
    obs = {"obs": 0}
    model = ppfast.examples.load("branching")
    net = _train(model, 40000)
    losses = np.array(net.history)[:, 1]
    assert losses[-30:].mean() < losses[:5].mean() - 0.1
    post = model.posterior_results(40000, IC, observe=obs, seed=4)
    prior = model.posterior_results(40000, IS, observe=obs, seed=4)
    exact = _branching_exact(0)
    r = post.values.astype(int)
    est = np.bincount(r, weights=post.weights, minlength=len(exact))[: len(exact)]
    ess = post.effective_sample_size
    for k in range(8):
        se = math.sqrt(exact[k] * (1 - exact[k]) / ess) + 1e-3
        assert abs(est[k] - exact[k]) < 5 * se, (k, est[k], exact[k])
    gain = ess_fraction(post) / ess_fraction(prior)
    assert gain > 3, (ess_fraction(post), ess_fraction(prior))


def test_geometric_python_guided_beats_prior_by_a_large_factor():
    model = Geometric()
    net = _train(model, 20000)
    losses = np.array(net.history)[:, 1]
    assert losses[-30:].mean() < losses[:5].mean() - 0.2
    assert net.tables.n >= 15  # one row per loop iteration (address instance)
    obs = {"obs": 6.0}
    post = model.posterior_results(3000, IC, observe=obs, seed=6, slots=128)
    prior = model.posterior_results(3000, IS, observe=obs, seed=6)
    gain = ess_fraction(post) / ess_fraction(prior)
    assert gain > 8, (ess_fraction(post), ess_fraction(prior))
    # k | obs: p(k) ~ 2^-(k+1) N(6; k, 1), k = 0..20
    ks = np.arange(21)
    p = 0.5 ** (ks + 1) * np.exp(-0.5 * (6 - ks) ** 2)
    p[20] *= 2  # the loop stops at 20 ones
    p /= p.sum()
    exact_mean = float((ks * p).sum())
    se = math.sqrt(float(((ks - exact_mean) ** 2 * p).sum()) / post.effective_sample_size)
    assert abs(post.mean - exact_mean) < 5 * se


def _log_q_of_guided_traces(model, net, batch):
    """sum_t log q(x_t) per trace by the training forward pass (packed LSTM over the
    recorded values), to compare with what the guided run weighed them by."""
    from ppfast.nn.data import StepData
    from ppfast.primitives import name_id

    data = StepData(batch, [(name_id(n), s) for n, s in zip(net.observe_names, net.observe_sizes)])
    out = []
    with torch.no_grad():
        for i in range(len(batch)):  # one trace per minibatch: the loss is its -sum log q
            mb = net.minibatch(data, np.array([i]), grow=False)
            out.append(-float(net.loss(mb, net.tables.gather(mb.rows))))
    return np.array(out)


@pytest.mark.parametrize("make,network_type", [(Geometric, "lstm"), (lambda: HalfNormal(), "lstm"),
                                               (Geometric, "feedforward")],
                         ids=["geometric", "rejection-loop", "geometric-feedforward"])
def test_guided_step_by_step_network_equals_the_training_network(make, network_type):
    """The guided run's one-step-at-a-time network (folded observation term, shared first
    steps, cached retries) proposes exactly what the packed training forward computes:
    log q recovered from the trace weights (log p(x, y) - log w) equals the training
    network's log q of the same values."""
    model = make()
    net = _train(model, 3000, network_type=network_type)
    obs = {"obs": 4.0} if isinstance(model, Geometric) else {"y": 1.0}
    b = model.posterior_batch(60, IC, observe=obs, seed=10, slots=16)
    from_weights = b.traces["log_prior"] + b.traces["log_likelihood"] - b.log_weights
    rec = b.records
    tries = (rec["flags"] & 8) != 0  # discarded tries: their log p left log_prior, their log q stayed
    np.add.at(from_weights, rec["trace"][tries], rec["log_prob"][tries])
    np.testing.assert_allclose(_log_q_of_guided_traces(model, net, b), from_weights, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- rejection loops, fallbacks, errors


class HalfNormal(ppfast.Model):
    """x ~ Normal(0, 1) redrawn until x > 0 (replace=True); observe Normal(x, 0.5)."""

    def forward(self):
        while True:
            x = ppfast.sample(Normal(0.0, 1.0), address="x", replace=True)
            if x > 0:
                break
        ppfast.observe(Normal(x, 0.5), name="y")
        return x


def test_rejection_loop_guided_posterior_matches_quadrature():
    model = HalfNormal()
    _train(model, 15000)
    post = model.posterior_results(4000, IC, observe={"y": 1.5}, seed=7)
    xs = np.linspace(1e-6, 8, 20001)
    dens = np.exp(-0.5 * xs**2 - 0.5 * ((1.5 - xs) / 0.5) ** 2)
    mean = float((xs * dens).sum() / dens.sum())
    sd = math.sqrt(float(((xs - mean) ** 2 * dens).sum() / dens.sum()))
    ess = post.effective_sample_size
    assert ess > 500
    assert abs(post.mean - mean) < 5 * sd / math.sqrt(ess), (post.mean, mean)


class Renamed(ppfast.Model):
    def forward(self):
        mu = ppfast.sample(Normal(1.0, 5**0.5), address="not-mu")
        ppfast.observe(Normal(mu, 2**0.5), name="obs0")
        ppfast.observe(Normal(mu, 2**0.5), name="obs1")
        return mu


def test_unknown_addresses_fall_back_to_the_prior():
    net = _train(GUM(), 2000)
    other = Renamed()
    a = other.posterior_batch(200, IC, observe=GUM_OBS, seed=8, network=net)
    b = other.posterior_batch(200, IS, observe=GUM_OBS, seed=8)
    np.testing.assert_array_equal(a.records["value"], b.records["value"])
    np.testing.assert_allclose(a.log_weights, b.log_weights)
    assert not np.any(a.records["flags"] & 16)


def test_errors_are_typed_and_say_what_to_do():
    model = GUM()
    with pytest.raises(PpfastError, match="learn_inference_network"):
        model.posterior_batch(10, IC, observe=GUM_OBS)
    _train(model, 256)
    with pytest.raises(MissingObservationError, match="obs1"):
        model.posterior_batch(10, IC, observe={"obs0": 8.0})
    with pytest.raises(TypeError, match="unknown arguments"):
        model.posterior_batch(10, IC, observe=GUM_OBS, bogus=1)
    with pytest.raises(TrainingError, match="not observed"):
        GUM().learn_inference_network(256, observe_embeddings={"nope": {}}, **SMALL)
    with pytest.raises(TypeError, match="TraceBatch"):
        GUM().learn_inference_network(dataset=[1, 2], **SMALL)
    with pytest.raises(FileNotFoundError):
        load_inference_network("/nonexistent/net.pt")


def test_offline_training_from_saved_traces_and_prior_inflation():
    model = GUM()
    data = [model.prior_batch(4000, seed=s) for s in range(3)]
    net = model.learn_inference_network(dataset=data, num_traces=12000, **dict(SMALL, batch_size=128,
                                                                               learning_rate=3e-3, seed=0))
    losses = np.array(net.history)[:, 1]
    assert losses[-20:].mean() < losses[:5].mean() - 0.5
    inflated = GUM().learn_inference_network(2000, prior_inflation=True, **SMALL, progress=False)
    assert inflated.traces_trained >= 2000
    native = ppfast.examples.load("gum")
    native.learn_inference_network(2000, prior_inflation=3.0, **SMALL)
    assert native.inference_network.traces_trained >= 2000


def test_cnn_and_user_module_embeddings_train():
    class Image(ppfast.Model):
        def forward(self):
            mu = ppfast.sample(Normal(0.0, 1.0), address="mu")
            ppfast.observe(Normal(np.full(36, mu), 1.0), name="img")
            ppfast.observe(Normal(np.full(8, mu), 1.0), name="vox")
            ppfast.observe(Normal(np.full(3, mu), 1.0), name="vec")
            return mu

    user = torch.nn.Sequential(torch.nn.Linear(3, 8))
    specs = {"img": {"embedding": "cnn2d", "reshape": [6, 6], "dim": 8, "channels": [4]},
             "vox": {"embedding": "CNN3D4C", "reshape": [1, 2, 2, 2], "dim": 8, "channels": [2]},
             "vec": {"embedding": user, "dim": 8}}
    m = Image()
    net = m.learn_inference_network(512, batch_size=64, observe_embeddings=specs, **SMALL)
    assert net.observe_names == ["img", "vox", "vec"]
    post = m.posterior_batch(64, IC, observe={"img": np.zeros(36), "vox": np.zeros(8), "vec": np.zeros(3)})
    assert len(post) == 64 and np.all(np.isfinite(post.log_weights))


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_cuda_training_and_guided_inference():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch (torch.cuda.is_available() is False)")
    model = ppfast.examples.load("branching")  # Poisson proposals: PyProb's CUDA path fails on them
    net = _train(model, 20000, device="cuda")
    assert net.device.type == "cuda"
    post = model.posterior_results(20000, IC, observe={"obs": 0}, seed=9)
    exact = _branching_exact(0)
    est = np.bincount(post.values.astype(int), weights=post.weights, minlength=len(exact))[: len(exact)]
    assert abs(est[0] - exact[0]) < 0.05
    gum = ppfast.examples.load("gum")
    _train(gum, 20000, device="cuda")
    assert_gum_posterior(gum.posterior_results(20000, IC, observe=GUM_OBS, seed=9), "cuda IC")


# --------------------------------------------------------------------------- tau decay


def _calorimeter(model, seed):
    b = model.prior_batch(1, seed=seed)
    rec = b.records
    i = int(np.flatnonzero(rec["kind"] == 1)[0])
    off, n = int(rec["value_offset"][i]), int(rec["value_len"][i])
    return {"calorimeter": np.array(b.arenas["values"][off:off + n])}, int(b.traces["result"][0])


@pytest.mark.slow
def test_tau_decay_channel_posterior_concentrates_on_the_generating_channel():
    """Decay channels of observations simulated by the model itself.  pi and K deposit the
    same single hadronic shower (they differ only in prior probability), so they count as
    one group; rho (pi + pi0), e and mu are told apart by the shower topology.  The
    calorimeter noise (0.05 per voxel, 24,500 voxels) makes every importance sampler's
    weights degenerate: the question is which channel the best-fitting proposals carry."""
    if "tau_decay" not in ppfast.examples.available():
        pytest.skip("tau_decay example not built")
    model = ppfast.examples.load("tau_decay")
    # A cheap embedding for CI's CPU (the benchmark uses the full 3-D CNN): 5^3 average
    # pooling of the 20x35x35 grid, then a linear layer.
    embed = torch.nn.Sequential(torch.nn.AvgPool3d(5, ceil_mode=True), torch.nn.Flatten(), torch.nn.Linear(196, 64))
    net = model.learn_inference_network(
        12000, batch_size=64, learning_rate=3e-3, seed=0, lstm_dim=64, observe_embedding_dim=64,
        address_embedding_dim=16, proposal_dim=32,
        observe_embeddings={"calorimeter": {"embedding": embed, "reshape": [1, 20, 35, 35], "dim": 64}})
    losses = np.array(net.history)[:, 1]
    assert losses[-20:].mean() < losses[:5].mean() - 2
    group = {0: 0, 5: 0, 1: 1, 2: 2, 3: 3, 4: 4}  # pi and K share a group
    hits = []
    for s in range(8):
        obs, channel = _calorimeter(model, 100 + s)
        post = model.posterior_results(500, IC, observe=obs, seed=s)
        p = np.bincount(post.values.astype(int), weights=post.weights, minlength=6)
        mass = sum(p[c] for c in range(6) if group[c] == group[channel])
        hits.append(mass)
        if channel in (1, 3, 4):
            assert mass > 0.9, (channel, np.round(p, 3))
    assert np.mean(hits) > 0.7, np.round(hits, 3)
