"""A pool of MPI ranks that train the IC network of the embedded GUM on command, for
timing data-parallel training without the launcher's and torch's start-up in the clock.

Started as ``mpiexec -n R python bench/mpi_train_worker.py [--dataset DIR] [--backend B]``;
rank 0 prints ``ready``, then reads one command per line from stdin: a number ``n`` (the
ranks train on ``n`` traces in all, ``BATCH`` per rank per step; rank 0 answers
``done <seconds>``) or ``quit``.  Online (each rank simulates its traces, one simulator
thread) unless ``--dataset`` names a trace dataset (each rank reads its share).  One torch
thread per rank; PyProb's default network sizes (as bench/bench_ic.py).  By hand, for
more ranks or nodes::

    printf '40000\n40000\nquit\n' | mpiexec -n 8 python bench/mpi_train_worker.py
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import ppfast
import ppfast.distributed as dist
import ppfast.examples as ex

BATCH = 128
EMBED = {"obs0": {"dim": 128}, "obs1": {"dim": 128}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset")
    ap.add_argument("--backend")
    args = ap.parse_args()
    ppfast.set_progress(False)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    w = dist.world()
    model = ex.load("gum", threads=1)
    data = None
    if args.dataset:
        from ppfast.data import TraceDataset

        data = TraceDataset(args.dataset)

    def train(n: int, seed: int) -> None:
        model.learn_inference_network(n, batch_size=BATCH, observe_embeddings=EMBED, dataset=data, seed=seed,
                                      backend=args.backend, progress=False)

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
