"""Run under ``mpiexec -n 2``: a failure on one rank during data-parallel training makes
every rank raise (its own error on the failing rank, a RankError naming it on the
others) instead of leaving a rank waiting in a collective.

usage: train_failure.py DIR

Cases, one after the other in the same processes (the ranks stay in step after a failure),
all on the gloo backend (the other tests use the default, mpi4py all-reduces):
``step``: rank 1's traces change the observation's shape in the second step;
``shard``: rank 1's share of a dataset is a corrupted shard;
then a training that succeeds.  Prints ``<case> rank <r>: <error type>: <message>`` per
rank, and ``digest rank <r>: <sum of the parameters>`` after the last training.
"""

import sys
from pathlib import Path

import numpy as np
import torch

import ppfast
import ppfast.distributed as dist
from ppfast.distributions import Normal
from ppfast.errors import PpfastError, RankError

SMALL = {"lstm_dim": 8, "observe_embedding_dim": 4, "address_embedding_dim": 4, "proposal_dim": 4,
         "backend": "gloo"}


class ShapeShift(ppfast.Model):
    """On rank 1, observations grow from 1 to 2 elements after 30 traces."""

    def __init__(self) -> None:
        super().__init__("shape-shift")
        self.calls = 0

    def forward(self):
        self.calls += 1
        x = ppfast.sample(Normal(0.0, 1.0), address="x")
        wide = dist.rank() == 1 and self.calls > 30
        ppfast.observe(Normal(np.zeros(2) + x if wide else x, 1.0), name="obs")
        return x


def attempt(case: str, fn) -> None:
    try:
        fn()
        print(f"{case} rank {dist.rank()}: no error", flush=True)
    except (PpfastError, RankError) as e:
        print(f"{case} rank {dist.rank()}: {type(e).__name__}: {e}", flush=True)


def main() -> None:
    work = Path(sys.argv[1])
    ppfast.set_progress(False)
    torch.set_num_threads(1)
    w = dist.world()
    attempt("step", lambda: ShapeShift().learn_inference_network(4 * 24 * w.size, batch_size=24,
                                                                 simulation_chunk=24, seed=1, **SMALL))
    from ppfast.examples.python_models import GUM

    GUM().save_dataset(work / "ds", 400, traces_per_file=100, seed=1)
    if w.rank == 0:
        bad = max((work / "ds").glob("*records*"))  # the last shard: rank 1's share
        bad.write_bytes(bad.read_bytes()[:-100])
    w.barrier()
    from ppfast.data import TraceDataset

    attempt("shard", lambda: GUM().learn_inference_network(dataset=TraceDataset(work / "ds"), batch_size=50,
                                                           seed=1, **SMALL))
    # Still in step: a collective after both failures completes, and so does training.
    total = w.allgather(w.rank)
    print(f"after rank {w.rank}: {total}", flush=True)
    net = GUM().learn_inference_network(200, batch_size=50, seed=1, **SMALL)
    digest = sum(float(p.detach().double().sum()) for p in net.parameters()) + float(net.tables.storage.sum())
    from ppfast.nn.distributed import group

    print(f"digest rank {w.rank}: {digest!r}", flush=True)
    print(f"group rank {w.rank}: {group()!r}", flush=True)


if __name__ == "__main__":
    main()
