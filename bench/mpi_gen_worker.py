"""A pool of MPI ranks that generate trace datasets on command, for timing distributed
generation without the launcher's start-up in the clock.

Started as ``mpiexec -n R python bench/mpi_gen_worker.py MODEL OUT_DIR TRACES_PER_FILE
[MODE]``; rank 0 prints ``ready``, then reads one command per line from stdin: a number
``n`` (every rank writes its share of an ``n``-trace dataset under OUT_DIR; rank 0 answers
``done <seconds>``) or ``quit``.  MODE: ``save`` (simulate and write shards, the default)
or ``simulate`` (simulate only, in batches of TRACES_PER_FILE, nothing written).  The ranks wait for commands by
polling with short sleeps, so an idle pool leaves the cores to whatever is being timed.
"""

from __future__ import annotations

import sys
import time

import ppfast
import ppfast.distributed as dist
import ppfast.examples as ex


def main() -> None:
    name, out, per_file = sys.argv[1], sys.argv[2], int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "save"
    ppfast.set_progress(False)
    w = dist.world()
    model = ex.load(name, threads=1)  # one core per rank: ranks, not threads, scale out here
    model.prior_batch(100, seed=0)  # warm-up: address table, batch pool

    def run(n: int) -> None:
        if mode == "simulate":
            # The rank's share in shard-sized batches, dropped as they come (as save does,
            # minus the writing): memory is reused instead of growing with n.
            first, count = dist.share(n, w.rank, w.size)
            for start in range(first, first + count, per_file):
                model.simulate(min(per_file, first + count - start), seed=1, first=start)
            w.barrier()
        else:
            model.save_dataset(out, n, traces_per_file=per_file, seed=1, overwrite=True)

    if w.is_root:
        print("ready", flush=True)
    while True:
        line = sys.stdin.readline().strip() if w.is_root else None
        line = w.bcast(line)
        if not line or line == "quit":
            break
        start = time.perf_counter()
        run(int(line))
        if w.is_root:
            print(f"done {time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
