"""A pool of MPI ranks that train the IC network of the embedded GUM on command, for
timing data-parallel training without the launcher's and torch's start-up in the clock.

Started as ``mpiexec -n R python bench/mpi_train_worker.py MODE [DATASET_DIR]``; rank 0
prints ``ready``, then reads one command per line from stdin: a number ``n`` (the ranks
train on ``n`` traces in all, ``BATCH`` per rank per step; rank 0 answers
``done <seconds>``) or ``quit``.  MODE: ``online`` (each rank simulates its traces, one
simulator thread) or ``offline`` (each rank reads its share of DATASET_DIR).  One torch
thread per rank; PyProb's default network sizes (as bench/bench_ic.py).
"""

from __future__ import annotations

import sys
import time

import torch

import ppfast
import ppfast.distributed as dist
import ppfast.examples as ex

BATCH = 128
EMBED = {"obs0": {"dim": 128}, "obs1": {"dim": 128}}


def main() -> None:
    mode = sys.argv[1]
    ppfast.set_progress(False)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    w = dist.world()
    model = ex.load("gum", threads=1)
    data = None
    if mode == "offline":
        from ppfast.data import TraceDataset

        data = TraceDataset(sys.argv[2])

    def train(n: int, seed: int) -> None:
        model.learn_inference_network(n, batch_size=BATCH, observe_embeddings=EMBED, dataset=data, seed=seed,
                                      progress=False)

    train(4 * BATCH * w.size, 1)  # builds the network, rows, process group; warms the caches
    if w.is_root:
        print("ready", flush=True)
    calls = 0
    while True:
        line = sys.stdin.readline().strip() if w.is_root else None
        line = w.bcast(line)
        if not line or line == "quit":
            break
        calls += 1
        w.barrier()
        start = time.perf_counter()
        train(int(line), 1 + calls)
        w.barrier()
        if w.is_root:
            print(f"done {time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
