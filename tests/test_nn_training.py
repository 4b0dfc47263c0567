"""Training that can be watched, and PyProb's training options: validation loss,
learning-rate schedules, early stopping, TensorBoard and CSV logs, the feed-forward
network, LARC, and saving all of it.  Small networks, fixed seeds."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import GUM_OBS, assert_gum_posterior

import ppfast
import ppfast.diagnostics
from ppfast import InferenceEngine
from ppfast.examples.python_models import GUM
from ppfast.nn import load_inference_network
from ppfast.nn.optim import SGD_MOMENTUM, NetworkOptimizer
from ppfast.nn.tables import LARC_TRUST, AddressTables
from ppfast.nn.watch import Schedule

IC = InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
SMALL = {"lstm_dim": 64, "observe_embedding_dim": 32, "address_embedding_dim": 16, "proposal_dim": 32,
         "batch_size": 128, "seed": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tensorboard_event_file_holds_training_and_validation_loss(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    model = GUM()
    log_dir, csv = tmp_path / "tb", tmp_path / "train.csv"
    net = model.learn_inference_network(4096, learning_rate=3e-3, valid_size=200, valid_every=1024,
                                        log_dir=log_dir, log_file_name=csv, **SMALL)
    assert [t for t, _ in net.valid_history] == [1024, 2048, 3072, 4096]
    assert list(log_dir.glob("events.out.tfevents.*")), "no event file under log_dir"
    acc = event_accumulator.EventAccumulator(str(log_dir))
    acc.Reload()
    assert {"loss/train", "loss/valid", "learning_rate"} <= set(acc.Tags()["scalars"])
    train = [(e.step, e.value) for e in acc.Scalars("loss/train")]
    valid = [(e.step, e.value) for e in acc.Scalars("loss/valid")]
    assert [s for s, _ in train] == [t for t, _ in net.history]  # one point per step
    np.testing.assert_allclose([v for _, v in train], [v for _, v in net.history], rtol=1e-6)
    assert [s for s, _ in valid] == [t for t, _ in net.valid_history]
    np.testing.assert_allclose([v for _, v in valid], [v for _, v in net.valid_history], rtol=1e-6)
    # Learning on GUM: the validation loss goes down from the untrained value (about 2.2).
    assert net.valid_history[-1][1] < net.valid_history[0][1] - 0.3, net.valid_history
    lines = csv.read_text().splitlines()
    assert lines[0] == "traces,seconds,train_loss,valid_loss,learning_rate"
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1024, 2048, 3072, 4096]
    assert float(lines[-1].split(",")[3]) == pytest.approx(net.valid_history[-1][1], rel=1e-5)


def test_validation_loss_is_the_mean_negative_log_q_of_held_out_traces():
    """The validation set is the same every validation (prior traces 2^47, ... of the
    seed), so a network that does not change gives the same validation loss."""
    model = GUM()
    net = model.learn_inference_network(1024, learning_rate=1e-12, valid_size=100, valid_every=256, **SMALL)
    values = [v for _, v in net.valid_history]
    np.testing.assert_allclose(values, values[0], rtol=1e-5)
    assert 1.5 < values[0] < 4  # -log q of two N(1, sqrt 5)-ish latents under a near-initial network


def test_plateau_schedule_lowers_the_learning_rate_after_patience_validations(tmp_path):
    """With a learning rate too small to move the network, the validation loss stays flat:
    'plateau' must cut the rate by lr_decay after every lr_patience validations without
    improvement (the first validation sets the best)."""
    model = GUM()
    lr0 = 1e-9
    net = model.learn_inference_network(8 * 256, learning_rate=lr0, lr_schedule="plateau", lr_patience=2,
                                        lr_decay=0.5, valid_size=100, valid_every=256, **SMALL)
    rates = [r for _, r in net.lr_history]
    # validations 1..8: best at 1; no improvement at 2, 3 -> cut after 3; at 4, 5 -> cut after 5; ...
    expect = [lr0, lr0, lr0, lr0 / 2, lr0 / 2, lr0 / 4, lr0 / 4, lr0 / 8]
    np.testing.assert_allclose(rates, expect, rtol=1e-12)
    assert net._optimizer.dense.param_groups[0]["lr"] == pytest.approx(lr0 / 8)
    assert net.schedule_state["scale"] == pytest.approx(1 / 8)


def test_plateau_without_a_validation_set_watches_the_training_loss():
    model = GUM()
    net = model.learn_inference_network(6 * 256, learning_rate=1e-9, lr_schedule="plateau", lr_patience=1,
                                        valid_every=256, **SMALL)
    assert net.valid_history == []
    rates = [r for _, r in net.lr_history]
    # Minibatch noise moves the training loss up and down; every validation that is not a
    # new best cuts the rate.
    assert rates[-1] < rates[0]


def test_early_stopping_stops_when_the_validation_loss_stops_improving():
    model = GUM()
    net = model.learn_inference_network(100 * 256, learning_rate=1e-12, valid_size=100, valid_every=256,
                                        early_stopping=3, **SMALL)
    assert net.traces_trained == 4 * 256  # best at the first validation, then three without improvement


@pytest.mark.parametrize("kind", ["poly1", "poly2", "cosine", "step"])
def test_schedules_follow_their_closed_forms(kind):
    s = Schedule(kind, 1e-2, 1e-4, 1000, decay=0.1, patience=3)
    f = {"poly1": lambda x: (1e-2 - 1e-4) * (1 - x) + 1e-4, "poly2": lambda x: (1e-2 - 1e-4) * (1 - x) ** 2 + 1e-4,
         "cosine": lambda x: 1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + math.cos(math.pi * x)),
         "step": lambda x: 1e-2 * 0.1 ** ((x >= 0.5) + (x >= 0.75))}[kind]
    for t in (0, 100, 499, 500, 600, 750, 999, 1000, 5000):
        assert s.lr(t) == pytest.approx(f(min(t / 1000, 1.0)), rel=1e-12), t


def test_poly_schedule_ends_at_learning_rate_end_after_num_traces_end():
    model = GUM()
    net = model.learn_inference_network(1024, learning_rate=1e-3, lr_schedule="poly2", learning_rate_end=1e-5,
                                        num_traces_end=512, **SMALL)
    assert net._optimizer.lr == pytest.approx(1e-5)
    rates = dict(net.lr_history)
    assert rates[1024] == pytest.approx(1e-5)


def test_training_arguments_are_checked():
    model = GUM()
    for bad, match in [({"lr_schedule": "linear"}, "lr_schedule"), ({"optimizer": "adamw"}, "optimizer"),
                       ({"network_type": "gru"}, "network_type"), ({"early_stopping": 2}, "valid_size"),
                       ({"valid_every": 0}, "valid_every"), ({"lr_decay": 1.5}, "lr_decay"),
                       ({"learning_rate_end": 1.0}, "learning_rate_end"), ({"valid_size": -1}, "valid_size")]:
        with pytest.raises(ValueError, match=match):
            model.learn_inference_network(128, **SMALL, **bad)


# --------------------------------------------------------------------------- optimizers


def test_larc_clips_each_layers_gradient_by_its_trust_ratio():
    """sgd_larc's first step on a dense layer and on one table row is
    lr (1 + momentum) min(trust ||w|| / (||g|| + wd ||w||) / lr, 1) (g + wd w), per layer."""
    torch.manual_seed(1)
    tables = AddressTables({"a": (3,), "b": (2,)}, torch.device("cpu"))
    tables.add(np.array([7, 8]), np.array([0, 0]), np.array([1, 1]))
    with torch.no_grad():
        tables.storage[:2] = torch.randn(2, 5)
    layer = torch.nn.Linear(4, 3)
    fake = SimpleNamespace(parameters=layer.parameters, tables=tables)
    lr, wd = 0.5, 0.01
    opt = NetworkOptimizer(fake, "sgd_larc", lr, wd)  # type: ignore[arg-type]

    rows = torch.tensor([0, 1])
    local = tables.gather(rows)
    local.flat.grad = torch.randn(2, 5) * torch.tensor([[100.0], [1e-4]])  # one row clipped, one not
    for p in layer.parameters():
        p.grad = torch.randn_like(p)

    scales = []

    def expected(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        wn, gn = float(w.norm()), float(g.norm())
        scales.append(min(LARC_TRUST * wn / (gn + wd * wn + 1e-8) / lr, 1.0))
        # first step of Nesterov momentum SGD: buffer = g, update = g + momentum * buffer
        return w - lr * (1 + SGD_MOMENTUM) * scales[-1] * (g + wd * w)

    want_dense = [expected(p.detach().clone(), p.grad.clone()) for p in layer.parameters()]
    w0, g0 = local.flat.detach().clone(), local.flat.grad.clone()
    want_rows = torch.cat([torch.cat([expected(w0[r, :3], g0[r, :3]), expected(w0[r, 3:], g0[r, 3:])])[None]
                           for r in range(2)])
    opt.step(rows, local)
    for p, want in zip(layer.parameters(), want_dense):
        torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(tables.storage[:2], want_rows, rtol=1e-5, atol=1e-7)
    assert min(scales) < 0.01 and max(scales) == 1.0  # both regimes were exercised


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lamb", "adam_larc", "sgd_larc"])
def test_every_optimizer_trains_and_its_state_round_trips(optimizer, tmp_path):
    model = GUM()
    lr = {"sgd": 0.1, "sgd_larc": 3.0, "lamb": 3e-2}.get(optimizer, 3e-3)
    net = model.learn_inference_network(4096, learning_rate=lr, optimizer=optimizer, **SMALL)
    losses = np.array(net.history)[:, 1]
    if optimizer == "sgd":  # plain SGD hardly moves this loss in 4096 traces; it must still step
        assert net._optimizer.dense.state and float(net.tables.m[: net.tables.n].abs().sum()) > 0
    else:
        assert losses[-8:].mean() < losses[:4].mean() - 0.2, (optimizer, losses[:4], losses[-8:])
    path = tmp_path / "net.pt"
    model.save_inference_network(path)
    meta = json.loads((tmp_path / "net.pt.json").read_text())
    assert meta["optimizer"]["kind"] == optimizer
    model.inference_network = load_inference_network(path)
    cont = model.learn_inference_network(256, learning_rate=lr, optimizer=optimizer, **SMALL)
    assert cont.traces_trained == 4096 + 256


def test_checkpoint_keeps_the_schedule_state(tmp_path):
    model = GUM()
    path = tmp_path / "ckpt.pt"
    model.learn_inference_network(5 * 256, learning_rate=1e-9, lr_schedule="plateau", lr_patience=2, lr_decay=0.5,
                                  valid_size=100, valid_every=256, checkpoint=path, **SMALL)
    assert json.loads((tmp_path / "ckpt.pt.json").read_text())["schedule"]["scale"] == pytest.approx(0.25)
    model.inference_network = load_inference_network(path)
    again = model.learn_inference_network(256, learning_rate=1e-9, lr_schedule="plateau",
                                          lr_patience=2, lr_decay=0.5, valid_size=100, valid_every=256, **SMALL)
    assert again.lr_history[-1] == (6 * 256, pytest.approx(1e-9 / 4))  # went on at the lowered rate


def test_plot_training_draws_the_histories(tmp_path):
    model = GUM()
    model.learn_inference_network(1024, valid_size=100, valid_every=256, **SMALL)
    fig = ppfast.diagnostics.plot_training(model, file_name=str(tmp_path / "train.png"))
    assert (tmp_path / "train.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert len(ax.lines) >= 2 and ax.get_legend() is not None
    with pytest.raises(TypeError, match="inference network"):
        ppfast.diagnostics.plot_training(object())


# --------------------------------------------------------------------------- feed-forward network


def test_feedforward_network_gives_the_gum_posterior_and_round_trips(tmp_path):
    model = ppfast.examples.load("gum")
    net = model.learn_inference_network(20000, network_type="feedforward", learning_rate=3e-3, **SMALL)
    assert net.lstm is None and net.config["network_type"] == "feedforward"
    post = model.posterior_results(20000, IC, observe=GUM_OBS, seed=2, slots=128)
    assert_gum_posterior(post, "feed-forward IC")
    assert post.effective_sample_size / len(post) >= 0.5
    path = tmp_path / "ff.pt"
    model.save_inference_network(path)
    here = model.posterior_batch(300, IC, observe=GUM_OBS, seed=5)
    loaded = load_inference_network(path)
    assert loaded.config["network_type"] == "feedforward" and loaded.lstm is None
    model.inference_network = loaded
    there = model.posterior_batch(300, IC, observe=GUM_OBS, seed=5)
    np.testing.assert_allclose(there.log_weights, here.log_weights, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="feedforward"):
        model.learn_inference_network(128, network_type="lstm")


# --------------------------------------------------------------------------- sites without a proposal


class ScalarAndTensor(ppfast.Model):
    def forward(self):
        mu = ppfast.sample(ppfast.distributions.Normal(0.0, 1.0), address="mu")
        v = ppfast.sample(ppfast.distributions.Normal(np.zeros(3), np.ones(3)), address="v")
        ppfast.observe(ppfast.distributions.Normal(mu + float(np.sum(v)), 1.0), name="y")
        return mu


def test_training_warns_once_per_address_that_guided_inference_draws_from_the_prior(tmp_path):
    """A tensor-valued controlled site next to scalar ones has no proposal: training must
    say so, naming the address, once (not silently leave it to the prior)."""
    import warnings

    model = ScalarAndTensor()
    with pytest.warns(UserWarning, match=r"prior: 'v' \(tensor value of 3 elements\)") as caught:
        net = model.learn_inference_network(512, **SMALL)
    assert sum("'v'" in str(w.message) for w in caught) == 1
    assert "'mu'" not in str(caught[0].message)
    assert net.prior_addresses == {"v": "tensor value of 3 elements"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # going on with the same network: said already
        model.learn_inference_network(256, **SMALL)
    model.save_inference_network(tmp_path / "n.pt")
    assert load_inference_network(tmp_path / "n.pt").prior_addresses == net.prior_addresses


# --------------------------------------------------------------------------- CPU threads


class _ThreadsSeen(torch.nn.Module):
    """An observation embedding that notes torch's thread count in each training step."""

    def __init__(self, seen: list[int]):
        super().__init__()
        self.seen = seen
        self.linear = torch.nn.Linear(1, 8)

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.linear(x)


class _GUMThreads(GUM):
    """GUM noting torch's thread count in each execution (guided runs execute during the run)."""

    def __init__(self, seen: list[int]):
        super().__init__()
        self.seen = seen

    def forward(self):
        self.seen.append(torch.get_num_threads())
        return super().forward()


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def test_cpu_steps_run_on_one_torch_thread_and_the_users_count_comes_back(monkeypatch):
    """Out of the box (no OMP_NUM_THREADS, torch at its default of one thread per core),
    training steps and guided runs use one torch thread; afterwards torch has its count back."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    torch.set_num_threads(_cores())
    seen: list[int] = []
    model = _GUMThreads(seen)
    emb = {"obs0": {"embedding": _ThreadsSeen(seen), "dim": 8}, "obs1": {"dim": 8}}
    model.learn_inference_network(512, observe_embeddings=emb, **SMALL)
    assert seen and set(seen[-4:]) == {1}  # the last executions and steps: inside training
    assert torch.get_num_threads() == _cores()
    seen.clear()
    model.posterior_results(300, IC, observe=GUM_OBS, seed=1)
    assert seen.count(1) >= 300  # every guided execution (a check before the run may see the user's count)
    assert torch.get_num_threads() == _cores()


@pytest.mark.parametrize("how", ["environment", "argument"])
def test_an_explicit_thread_count_wins(monkeypatch, how):
    seen: list[int] = []
    model = _GUMThreads(seen)
    emb = {"obs0": {"embedding": _ThreadsSeen(seen), "dim": 8}, "obs1": {"dim": 8}}
    kw = {}
    if how == "environment":
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(2)
    else:
        kw = {"torch_threads": 2}
    model.learn_inference_network(256, observe_embeddings=emb, **SMALL, **kw)
    assert set(seen[-4:]) == {2}
    seen.clear()
    model.posterior_results(100, IC, observe=GUM_OBS, seed=1, **kw)
    assert seen.count(2) >= 100
    with pytest.raises(ValueError, match="torch_threads"):
        model.learn_inference_network(128, torch_threads=0, **SMALL)
