"""An inference network that proposes at chosen addresses only (``propose_addresses``):
training leaves the other addresses out of its steps, and guided runs draw them from the
prior without a network step (one request per execution slot and address, answered
"prior at this address from now on").  Python, embedded and shared-memory models."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import GUM_OBS, assert_gum_posterior, branching_exact  # noqa: E402

import ppfast  # noqa: E402
import ppfast.examples  # noqa: E402
from ppfast import InferenceEngine  # noqa: E402
from ppfast.distributions import Normal  # noqa: E402
from ppfast.nn import TrainingError  # noqa: E402
from ppfast.nn.network import Stepper  # noqa: E402

IC = InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
IS = InferenceEngine.IMPORTANCE_SAMPLING
SMALL = {"lstm_dim": 64, "observe_embedding_dim": 32, "address_embedding_dim": 16, "proposal_dim": 32}
PROPOSED = 16  # record flag: the value came from a proposal


class GumWithNuisance(ppfast.Model):
    """GUM with an unobserved N(0, 1) drawn before mu: mu's posterior is GUM's."""

    def forward(self):
        ppfast.sample(Normal(0.0, 1.0), name="nuisance")
        mu = ppfast.sample(Normal(1.0, math.sqrt(5.0)), name="mu")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs0")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs1")
        return mu


def _records_of(batch, name):
    from ppfast.primitives import name_id

    return batch.records["flags"][batch.records["address"] == name_id(name)]


@pytest.fixture(scope="module")
def nuisance_net():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return GumWithNuisance().learn_inference_network(4000, batch_size=128, learning_rate=3e-3, seed=0,
                                                         propose_addresses="mu", **SMALL)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
def test_python_model_proposes_only_the_chosen_address(nuisance_net, monkeypatch, tmp_path):
    assert nuisance_net.config["propose_addresses"] == ["mu"]
    model = GumWithNuisance()
    asked, stepped = [], []
    call, step = Stepper.__call__, Stepper._step
    monkeypatch.setattr(Stepper, "__call__", lambda self, req: asked.append(len(req["slot"])) or call(self, req))
    monkeypatch.setattr(Stepper, "_step", lambda self, req: stepped.append(req) or step(self, req))
    batch = model.posterior_batch(400, IC, observe=GUM_OBS, seed=3, slots=8, network=nuisance_net)
    assert np.all(_records_of(batch, "mu") & PROPOSED)
    assert not np.any(_records_of(batch, "nuisance") & PROPOSED)
    # One network step per trace (mu, its first site: the nuisance is no step); the
    # nuisance was asked about once per slot at most.
    assert sum(len(r["slot"]) for r in stepped) == 400
    assert all(np.all(r["first"] == 1) for r in stepped)
    assert 400 < sum(asked) <= 400 + 8

    post = model.posterior_results(4000, IC, observe=GUM_OBS, seed=1, network=nuisance_net)
    assert_gum_posterior(post, "guided, mu proposed")
    nuisance = batch.values_of("nuisance")
    assert abs(nuisance.mean()) < 5 / math.sqrt(400) and abs(nuisance.std() - 1) < 5 / math.sqrt(800)

    model.inference_network = nuisance_net
    path = model.save_inference_network(tmp_path / "net.pt")
    again = GumWithNuisance()
    loaded = again.load_inference_network(path)
    assert loaded.config["propose_addresses"] == ["mu"]
    b = again.posterior_batch(400, IC, observe=GUM_OBS, seed=3, slots=8)
    np.testing.assert_array_equal(b.records["value"], batch.records["value"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="futex transport: Linux only")
@pytest.mark.usefixtures("one_torch_thread")
def test_embedded_and_shm_runs_draw_the_other_addresses_from_the_prior():
    """Branching: the network proposes "branch" only; "r" comes from its prior.  One thread
    and one process give the same traces; the posterior of r is the enumerated one."""
    obs = {"obs": 6}
    embedded = ppfast.examples.load("branching", threads=1)
    net = embedded.learn_inference_network(3000, batch_size=64, seed=0, propose_addresses=["branch"], lstm_dim=32,
                                           observe_embedding_dim=16, address_embedding_dim=8, proposal_dim=16)
    a = embedded.posterior_batch(300, IC, observe=obs, seed=2, slots=16, network=net)
    with ppfast.examples.load("branching", mode="shm", workers=1) as shm:
        b = shm.posterior_batch(300, IC, observe=obs, seed=2, slots=16, network=net)
    for k in ("address", "instance", "value", "flags", "log_prob"):
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    np.testing.assert_array_equal(a.log_weights, b.log_weights)
    assert not np.any(_records_of(a, "r") & PROPOSED)
    assert np.any(_records_of(a, "branch") & PROPOSED)

    post = embedded.posterior_results(20000, IC, observe=obs, seed=4, network=net)
    exact = branching_exact()
    est = np.bincount(post.values.astype(int), weights=post.weights, minlength=len(exact))[: len(exact)]
    ess = post.effective_sample_size
    assert ess > 1000
    for k in range(8):  # each within 5 standard errors of a weighted proportion
        se = math.sqrt(exact[k] * (1 - exact[k]) / ess) + 1e-3
        assert abs(est[k] - exact[k]) < 5 * se, (k, est[k], exact[k])


def test_bad_address_choices_are_clear_errors(nuisance_net):
    model = GumWithNuisance()
    for bad in ([], [""], [3]):
        with pytest.raises(TypeError, match="propose_addresses"):
            model.learn_inference_network(64, batch_size=32, propose_addresses=bad, **SMALL)
    with pytest.raises(TrainingError, match="no controlled scalar sample sites"):
        model.learn_inference_network(64, batch_size=32, propose_addresses=["no such address"], **SMALL)
    with pytest.raises(ValueError, match="propose_addresses"):
        model.inference_network = nuisance_net  # train it further: its architecture is fixed
        model.learn_inference_network(64, batch_size=32, propose_addresses=["nuisance"])
