"""Run under ``mpiexec -n 2``: data-parallel IC training keeps the ranks' networks
bit-identical, with addresses that only one rank's traces have.

usage: train_sync.py OUT_DIR

Each rank writes OUT_DIR/<case>.rank<r>.pt, the whole state of its network after the case
(module parameters and buffers, table rows keyed by address string, the row-wise and
dense optimizer state, traces trained, loss history) for the test to compare byte for
byte.  Cases:

- ``adam`` / ``lamb``: two online steps of a Python model whose traces differ by rank
  (rank 1 draws ``only_on_rank1`` and a wider categorical; a rare branch on rank 0 draws
  ``rank0_rare``), a new chunk of traces per step; checkpointed by rank 0 to
  OUT_DIR/<case>.pt.
- ``resumed``: the ``adam`` checkpoint loaded on both ranks (checked equal to the live
  network, optimizer state included), then one more step.
- ``sgd0`` / ``sgd1`` (offline): one SGD step with learning rate 0 (creates every row),
  saved by rank 0 to OUT_DIR/sgd0.pt, then one SGD step with learning rate 0.05 on the
  dataset OUT_DIR/gum-extra (rank 0 reads the GUM half, rank 1 the half with an ``extra``
  latent); the test redoes the second step in one process on the whole minibatch.
"""

import math
import sys
from pathlib import Path

import numpy as np
import torch

import ppfast
import ppfast.distributed as dist
from ppfast.distributions import Categorical, Normal, Poisson, Uniform
from ppfast.nn import load_inference_network
from ppfast.trace import address_name

SMALL = {"lstm_dim": 16, "observe_embedding_dim": 8, "address_embedding_dim": 4, "proposal_dim": 8,
         "proposal_mixture_components": 2}
BATCH = 24


class RankModel(ppfast.Model):
    def forward(self):
        r = dist.rank()
        x = ppfast.sample(Normal(0.0, 1.0), address="x")
        y = ppfast.sample(Normal(x, 1.0), address="only_on_rank1") if r == 1 else x
        k = ppfast.sample(Categorical([1.0 / (3 + 6 * r)] * (3 + 6 * r)), address="c")
        n = int(ppfast.sample(Poisson(1.5), address="n"))
        for _ in range(n):
            ppfast.sample(Uniform(0.0, 1.0), address="u")
        if r == 0 and n >= 4:
            ppfast.sample(Normal(0.0, 2.0), address="rank0_rare")
        ppfast.observe(Normal(x + y + float(k), 1.0), name="obs")
        return x


class GUMExtra(ppfast.Model):
    """GUM whose traces after the first ``plain`` ones (in a single-process run) have one
    more latent, at an address the plain ones lack."""

    def __init__(self, plain: int):
        super().__init__("gum-extra")
        self.plain, self.calls = plain, 0

    def forward(self):
        self.calls += 1
        mu = ppfast.sample(Normal(1.0, math.sqrt(5.0)), address="mu")
        if self.calls > self.plain:
            mu = mu + 0.1 * ppfast.sample(Normal(0.0, 1.0), address="extra")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs0")
        ppfast.observe(Normal(mu, math.sqrt(2.0)), name="obs1")
        return mu


def state_of(net) -> dict:
    """Everything a training step changes, keyed by address strings (ids are per process)."""
    t = net.tables
    out = {f"module.{k}": v.detach().cpu().clone() for k, v in net.state_dict().items()}
    keys = [f"{address_name(int(a))}|{int(i)}|{int(k)}" for a, i, k in zip(t.row_address, t.row_instance, t.row_kind)]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    idx = torch.tensor(order, dtype=torch.long)
    for name in ("storage", "m", "v", "steps"):
        out[f"tables.{name}"] = getattr(t, name)[: t.n].cpu().index_select(0, idx).clone()
    out["tables.shapes"] = [list(s) for s in t.shapes.values()]
    out["rows"] = [keys[i] for i in order]
    out["row_order"] = keys
    opt = getattr(net, "_optimizer", None)
    if opt is not None:
        for i, st in opt.dense.state_dict()["state"].items():
            for k, v in st.items():
                out[f"dense.{i}.{k}"] = torch.as_tensor(v).cpu().clone()
    out["traces_trained"] = net.traces_trained
    out["history"] = list(net.history)
    return out


def main() -> None:
    out = Path(sys.argv[1])
    ppfast.set_progress(False)
    torch.set_num_threads(1)
    w = dist.world()
    r = w.rank
    torch.manual_seed(100 + r)  # different local initializations: rank 0's must win

    for case in ("adam", "lamb"):
        model = RankModel()
        net = model.learn_inference_network(2 * BATCH * w.size, batch_size=BATCH, simulation_chunk=BATCH,
                                            optimizer=case, learning_rate=1e-2, seed=7,
                                            checkpoint=out / f"{case}.pt", **SMALL)
        torch.save(state_of(net), out / f"{case}.rank{r}.pt")
        if case == "adam":
            live = state_of(net)

    # Resume from the checkpoint on every rank: the same state, optimizer included.
    net = load_inference_network(out / "adam.pt")
    loaded = state_of(net)
    dense = net._optimizer_saved[0]
    for k, v in live.items():
        if k.startswith("dense."):
            assert torch.equal(dense["optimizer." + k], v), k
        elif k != "row_order":
            same = torch.equal(v, loaded[k]) if torch.is_tensor(v) else v == loaded[k]
            assert same, f"checkpoint differs from the live network in {k}"
    model = RankModel()
    model.inference_network = net
    net = model.learn_inference_network(BATCH * w.size, batch_size=BATCH, simulation_chunk=BATCH,
                                        learning_rate=1e-2, seed=8, **SMALL)
    assert net.traces_trained == 3 * BATCH * w.size
    torch.save(state_of(net), out / f"resumed.rank{r}.pt")

    # Offline, from a dataset on disk: rank r reads only its half.
    ds_dir = out / "gum-extra"
    if r == 0:
        GUMExtra(BATCH).save_dataset(ds_dir, 2 * BATCH, traces_per_file=BATCH, seed=5, distributed=False)
    w.barrier()
    from ppfast.data import TraceDataset

    ds = TraceDataset(ds_dir)
    model = GUMExtra(BATCH)
    net = model.learn_inference_network(dataset=ds, batch_size=BATCH, optimizer="sgd", learning_rate=0.0,
                                        seed=3, **SMALL)
    if r == 0:
        model.save_inference_network(out / "sgd0.pt")
    net = model.learn_inference_network(dataset=ds, batch_size=BATCH, optimizer="sgd", learning_rate=0.05,
                                        lr_scaling="none", seed=3, **SMALL)
    torch.save(state_of(net), out / f"sgd1.rank{r}.pt")
    rows = {address_name(int(a)) for a in net.tables.row_address}
    from ppfast.nn.distributed import group

    print(f"rank {r} of {w.size}: rows {sorted(rows)}, {group()!r}", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
