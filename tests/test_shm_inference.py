"""Inference on shared-memory models: Metropolis-Hastings chains run inside the simulator
processes, guided importance sampling (inference compilation) with the executions' proposal
requests gathered from every process into one network step.  The same seed gives the same
chains and guided traces as embedded runs (and, for chains, as PPX runs)."""

import sys
import threading

import numpy as np
import pytest
from conftest import GUM_OBS, GUM_POST_MEAN, GUM_POST_STD, assert_gum_posterior, assert_mean_close

import ppfast
import ppfast.examples
from ppfast import InferenceEngine, diagnostics
from ppfast.errors import MissingObservationError, SimulatorError
from ppfast.models.shm import ShmModel
from ppfast.trace import RecordKind

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="futex transport: Linux only")

LMH = InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS
RMH = InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS
IC = InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
SMALL = {"lstm_dim": 64, "observe_embedding_dim": 32, "address_embedding_dim": 16, "proposal_dim": 32}


def assert_identical(a, b):
    """Every kept trace the same, bit for bit (values, densities, addresses, types)."""
    assert len(a) == len(b)
    for k in ("address", "instance", "kind", "flags", "dist", "value", "log_prob", "value_len"):
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    for k in ("index", "log_prior", "log_likelihood", "log_weight", "result", "trace_type", "status"):
        np.testing.assert_array_equal(a.traces[k], b.traces[k], err_msg=k)
    np.testing.assert_array_equal(a.arenas["values"], b.arenas["values"])


def assert_same_chains(a, b):
    assert_identical(a, b)
    for k in ("chain", "steps", "accepted", "rejected_invalid", "errors"):
        np.testing.assert_array_equal(getattr(a.mcmc, k), getattr(b.mcmc, k), err_msg=k)


def calorimeter_of(batch):
    """The observed calorimeter grid of a trace (tau examples): synthetic data."""
    rec = batch.records
    j = int(np.where(rec["kind"] == RecordKind.OBSERVE)[0][0])
    off, n = int(rec["value_offset"][j]), int(rec["value_len"][j])
    return np.array(batch.arenas["values"][off:off + n])


@pytest.fixture(scope="module")
def gum_shm():
    with ppfast.examples.load("gum", mode="shm", workers=2) as m:
        yield m


# --------------------------------------------------------------------------- Metropolis-Hastings


@pytest.mark.remote
@pytest.mark.parametrize("name", ["gum", "tau_decay"])
def test_chains_are_identical_embedded_over_shm_and_over_ppx(name):
    from ppfast.models.remote import ExampleServer

    embedded = ppfast.examples.load(name)
    if name == "gum":
        obs, n, engines = GUM_OBS, 1000, (RMH, LMH)
    else:
        obs, n, engines = {"calorimeter": calorimeter_of(embedded.prior_batch(1, seed=3))}, 60, (RMH,)
    with ppfast.examples.load(name, mode="shm", workers=2) as shm, ExampleServer(name, quiet=True) as server, \
            ppfast.RemoteModel(server.address, timeout=60) as remote:
        for engine in engines:
            kw = dict(observe=obs, seed=11, num_chains=3, burn_in=5, thinning=2)
            a, b, c = (m.posterior_batch(n, engine, **kw) for m in (embedded, shm, remote))
            assert a.mcmc.accepted.min() > 0
            assert_same_chains(a, b)
            assert_same_chains(a, c)


def test_chains_from_an_initial_trace_and_with_fewer_processes_than_chains(gum_shm):
    embedded = ppfast.examples.load("gum")
    prior = embedded.prior_batch(3, seed=1)
    kw = dict(observe=GUM_OBS, seed=4, num_chains=5, initial_trace=prior.trace(2))
    a = embedded.posterior_batch(500, RMH, **kw)
    b = gum_shm.posterior_batch(500, RMH, **kw)
    assert_same_chains(a, b)
    # Chains start from the start trace's mu: a chain whose first proposal was rejected keeps it.
    firsts = b.values_of("mu")[np.searchsorted(b.mcmc.chain, np.arange(5))]
    assert np.any(firsts == prior.values_of("mu")[2])


def test_chains_from_an_initial_trace_of_a_shm_batch(gum_shm):
    # A shm batch is its pieces in shared memory: the start trace reaches the chains as an
    # ordinary native batch, from a one-piece batch (one trace) as from a many-piece one.
    embedded = ppfast.examples.load("gum")
    for n, i in ((1, 0), (3000, 2500)):
        start = gum_shm.prior_batch(n, seed=1)
        assert (len(start._chunks) == 1) == (n == 1)
        kw = dict(observe=GUM_OBS, seed=4, num_chains=3)
        a = embedded.posterior_batch(300, RMH, initial_trace=embedded.prior_batch(n, seed=1).trace(i), **kw)
        b = gum_shm.posterior_batch(300, RMH, initial_trace=start.trace(i), **kw)
        assert_same_chains(a, b)


def test_rmh_on_shm_gum_matches_the_closed_form(gum_shm):
    n = 40_000
    post = gum_shm.posterior_results(n, RMH, observe=GUM_OBS, seed=2024, num_chains=4, burn_in=500)
    chains = np.stack([c.values for c in diagnostics.chains(post)])
    assert chains.shape == (4, n // 4)
    assert_mean_close(chains, GUM_POST_MEAN, GUM_POST_STD, "shm RMH mean")
    assert diagnostics.rhat(post) < 1.01
    assert 0 < post.batch.mcmc.acceptance_rate < 1


def test_chain_progress_is_reported_while_the_chains_run(gum_shm):
    seen = []
    steps = [150_000, 150_000]
    _, stats = gum_shm._host.run_chains(1, 1, 1.0, 0.1, 0, 1, 10, True, steps, [("obs0", np.array([8.0])),
                                        ("obs1", np.array([9.0]))], None, 0, seen.append)
    assert list(stats["steps"]) == steps
    assert len(seen) > 1 and seen == sorted(seen) and 0 < seen[0] < seen[-1] <= sum(steps) + 2


def test_chain_errors_are_the_embedded_ones(gum_shm):
    with pytest.raises(MissingObservationError):
        gum_shm.posterior_results(10, LMH, observe={"obs0": 8.0}, seed=1)
    # The processes are still serving.
    assert len(gum_shm.posterior_batch(20, RMH, observe=GUM_OBS, seed=1)) == 20


def test_a_crash_or_hang_during_chains_is_a_clear_error_and_the_model_recovers():
    with ShmModel.example("gum", workers=2, env={"PPFAST_SHM_FAULT": "segv@40"}) as m:
        with pytest.raises(SimulatorError, match=r"died with signal 11.* during Metropolis-Hastings chains (0-1|2-3) \(their states are lost"):
            m.posterior_batch(400, RMH, observe=GUM_OBS, seed=1, num_chains=4)
        assert len(m.prior_batch(10, seed=1)) == 10  # restarted for the next run
    with ShmModel.example("gum", workers=1, timeout=1, env={"PPFAST_SHM_FAULT": "hang@40"}) as m:
        with pytest.raises(SimulatorError, match=r"hung \(no progress for 1 s\) during Metropolis-Hastings chain 0"):
            m.posterior_batch(100, LMH, observe=GUM_OBS, seed=1)


def test_ctrl_c_stops_chains_and_the_model_recovers():
    import _thread

    with ShmModel.example("gum", workers=2, timeout=None, env={"PPFAST_SHM_FAULT": "hang@30"}) as m:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            m.posterior_batch(1000, RMH, observe=GUM_OBS, seed=1, num_chains=2)
        timer.join()
        assert len(m.posterior_batch(20, RMH, observe=GUM_OBS, seed=1, num_chains=2)) == 20


# --------------------------------------------------------------------------- guided importance sampling


@pytest.fixture(scope="module")
def gum_net(gum_shm):
    """A small network trained on the shared-memory GUM (training reads its prior traces)."""
    import torch

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = gum_shm.learn_inference_network(6000, batch_size=128, learning_rate=3e-3, seed=0, **SMALL)
    finally:
        torch.set_num_threads(threads)
    losses = np.array(net.history)[:, 1]
    assert losses[-10:].mean() < losses[:5].mean()
    return net


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("slots", [5, 64])
def test_guided_traces_equal_the_embedded_ones(gum_shm, gum_net, slots):
    embedded = ppfast.examples.load("gum")
    a = embedded.posterior_batch(300, IC, observe=GUM_OBS, seed=8, slots=slots, network=gum_net)
    b = gum_shm.posterior_batch(300, IC, observe=GUM_OBS, seed=8, slots=slots, network=gum_net)
    assert_identical(a, b)
    assert np.all(b.records["flags"][b.records["kind"] == 0] & 16)  # values came from the proposals
    np.testing.assert_array_equal(b.traces["index"], np.arange(300))


@pytest.mark.usefixtures("one_torch_thread")
def test_guided_traces_with_changing_structure_equal_the_embedded_ones():
    """Branching: addresses that appear mid-run (names reported with the requests).  One
    process against one thread: the network steps see the same requests, and the traces
    are bit-identical.  Two processes hold other traces in flight than two threads do; the
    network's float32 step then rounds differently in the last bits (its batched products
    depend on the batch's makeup), so the values agree and the log-weights to 1e-6."""
    obs = {"obs": 6}
    with ppfast.examples.load("branching", mode="shm", workers=2) as shm:
        net = shm.learn_inference_network(1500, batch_size=64, seed=0, lstm_dim=32, observe_embedding_dim=16,
                                          address_embedding_dim=8, proposal_dim=16)
        a = ppfast.examples.load("branching", threads=2).posterior_batch(300, IC, observe=obs, seed=2, slots=16,
                                                                          network=net)
        b = shm.posterior_batch(300, IC, observe=obs, seed=2, slots=16, network=net)
    for k in ("address", "instance", "value", "flags"):
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=1e-6)
    assert len(np.unique(b.records["address"])) > 2
    with ppfast.examples.load("branching", mode="shm", workers=1) as shm1:
        c = ppfast.examples.load("branching", threads=1).posterior_batch(300, IC, observe=obs, seed=2, slots=16,
                                                                          network=net)
        assert_identical(c, shm1.posterior_batch(300, IC, observe=obs, seed=2, slots=16, network=net))


@pytest.mark.usefixtures("one_torch_thread")
def test_guided_posterior_on_shm_gum_matches_the_closed_form(gum_shm, gum_net):
    gum_shm.inference_network = gum_net
    post = gum_shm.posterior_results(4000, IC, observe=GUM_OBS, seed=1)
    assert_gum_posterior(post, "shm IC")
    prior = gum_shm.posterior_results(4000, observe=GUM_OBS, seed=1)
    assert post.effective_sample_size > 5 * prior.effective_sample_size


@pytest.mark.usefixtures("one_torch_thread")
def test_a_failing_network_step_frees_the_model(gum_shm, gum_net, monkeypatch):
    from ppfast.inference import guided

    def broken(self, requests):
        raise RuntimeError("network step failed")

    with monkeypatch.context() as patch:
        patch.setattr(guided.ProposalServer, "answer", broken)
        with pytest.raises(RuntimeError, match="network step failed") as failed:
            gum_shm.posterior_batch(100, IC, observe=GUM_OBS, seed=1, network=gum_net)
    # The traceback (kept in `failed`) still holds the run's frames: the run must not.
    done = []
    worker = threading.Thread(target=lambda: done.append(len(gum_shm.prior_batch(10, seed=1))), daemon=True)
    worker.start()
    worker.join(30)
    assert done == [10] and failed.value is not None


@pytest.mark.usefixtures("one_torch_thread")
def test_guided_runs_fail_clearly(gum_net):
    with ShmModel.example("gum", workers=2, env={"PPFAST_SHM_FAULT": "segv@2"}) as m:
        with pytest.raises(SimulatorError, match=r"died with signal 11.* during guided importance sampling of traces"):
            m.posterior_batch(200, IC, observe=GUM_OBS, seed=1, network=gum_net)
        assert len(m.simulate(10, seed=1, first=100)) == 10  # restarted for the next run
    with pytest.raises(MissingObservationError):
        with ShmModel.example("gum", workers=1) as m:
            m.posterior_batch(20, IC, observe={"obs0": 8.0}, seed=1, network=gum_net)
    m = ShmModel.example("gum", workers=1)
    m.close()
    with pytest.raises(SimulatorError, match="closed"):
        m.posterior_batch(20, IC, observe=GUM_OBS, seed=1, network=gum_net)
    with pytest.raises(SimulatorError, match="closed"):
        m.posterior_batch(20, RMH, observe=GUM_OBS, seed=1)
