"""Run under ``mpiexec -n R``: the whole distributed IC pipeline on the embedded GUM --
every rank writes its shards of a training dataset, trains data-parallel from its share
of the dataset, then runs its share of a guided importance-sampling run; rank 0 saves
the gathered posterior to OUT.npz, and the same run done by rank 0 alone (same network,
same seed) for comparison.

usage: guided_gum.py OUT DIR NUM_TRACES SEED [TORCH_SEED]
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch

import ppfast
import ppfast.distributed as dist
import ppfast.examples as ex
from ppfast.data import TraceDataset

IC = ppfast.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
OBS = {"obs0": 8.0, "obs1": 9.0}
SMALL = {"lstm_dim": 32, "observe_embedding_dim": 16, "address_embedding_dim": 8, "proposal_dim": 16}


def main() -> None:
    out, work, n, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ppfast.set_progress(False)
    os.environ["PPFAST_DIST_CHECK"] = "10"  # the ranks compare network digests every 10 steps
    torch.set_num_threads(1)
    torch.manual_seed(int(sys.argv[5]) if len(sys.argv) > 5 else 0)  # rank 0's initial network is everyone's
    w = dist.world()
    model = ex.load("gum", threads=1)
    model.save_dataset(work / "ds", 20000, traces_per_file=5000, seed=1)
    ds = TraceDataset(work / "ds")
    net = model.learn_inference_network(dataset=ds, batch_size=64, learning_rate=3e-3, seed=0, **SMALL)
    opened = sorted(ds._open)  # the shards this rank read
    post = model.posterior_results(n, IC, observe=OBS, seed=seed, distributed=True)
    digest = float(sum(float(p.detach().double().sum()) for p in net.parameters()))
    print(f"rank {w.rank} of {w.size}: shards {opened}, traces {net.traces_trained}, digest {digest!r}", flush=True)
    if w.rank == 0:
        assert post is not None
        alone = model.posterior_results(n, IC, observe=OBS, seed=seed)
        np.savez(out, values=np.asarray(post.values), log_weights=post.log_weights, index=post.batch.traces["index"],
                 alone_values=np.asarray(alone.values), alone_log_weights=alone.log_weights, size=w.size,
                 shards=ds.num_shards)
    else:
        assert post is None, "only rank 0 gets the posterior"


if __name__ == "__main__":
    main()
