"""Data-parallel IC training.

- ``ddp_train_gum``: training traces/s (all ranks' traces) of 2 MPI ranks against 1 rank,
  online from the embedded GUM (one simulator thread and one torch thread per rank,
  ``BATCH`` = 128 traces per rank per step, PyProb's default network sizes: 2.0 M dense
  parameters, an 8 MB gradient all-reduce per step).  The ranks live in a pool started
  once (``bench/mpi_train_worker.py`` under ``mpiexec``; run it by hand for more ranks or
  nodes), so the launcher's and torch's start-up are outside the clock.  Ratio =
  rate(2) / rate(1); scaling efficiency = ratio / 2 (column ``eff`` from the ranks' own
  clocks; ``eff_gloo``: the same with every collective on gloo instead of the default
  mpi4py all-reduce; ``cpu_2proc_speedup``: the best any two processes reach on this
  machine right now, 2.0 on two idle cores).
- ``ic_train_offline_gum``: training from a trace dataset on disk (``TraceDataset`` of
  embedded-GUM traces, 4 shards) against online training from the embedded GUM, one
  process, same network and batch.
"""

from __future__ import annotations

import atexit
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_data import WorkerPool, mpiexec
from bench.harness import Case, Runner, Unavailable, benchmark

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "mpi_train_worker.py"
BATCH = 128
EMBED = {"obs0": {"dim": 128}, "obs1": {"dim": 128}}
DATASET_TRACES = 65_536


class TrainPool(WorkerPool):
    """``ranks`` MPI processes training on command (see mpi_train_worker.py)."""

    label = "training pool"

    def __init__(self, ranks: int, backend: str | None = None, dataset: Path | None = None):
        try:
            import mpi4py  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            raise Unavailable(f"{e.name} not installed (pip install mpich mpi4py torch)") from e
        cmd = [mpiexec(), "-n", str(ranks), sys.executable, str(WORKER)]
        cmd += (["--dataset", str(dataset)] if dataset else []) + (["--backend", backend] if backend else [])
        self.start(cmd)


@benchmark("ddp_train_gum", unit="traces/s", target=None, baseline="1 rank")
def ddp_train_gum() -> Case:
    """Online data-parallel training (embedded GUM): 2 ranks vs 1."""
    from bench.bench_data import cpu_ceiling

    pools: dict[int, TrainPool] = {}
    ceilings: list[float] = []

    def side(ranks: int):
        def setup() -> Runner:
            pool = TrainPool(ranks)
            pool(8 * BATCH * ranks)  # warm-up outside the calibration
            pool.inner.clear()
            pools[ranks] = pool
            ceilings.append(cpu_ceiling())
            return pool

        return setup

    def extra() -> dict[str, Any]:
        out: dict[str, Any] = {"batch_per_rank": BATCH, "threads_per_rank": 1}
        if 1 in pools and 2 in pools and pools[1].inner and pools[2].inner:
            r1, r2 = statistics.median(pools[1].inner[-3:]), statistics.median(pools[2].inner[-3:])
            out["eff"] = round(r2 / (2 * r1), 3)
            # The same 2 ranks with every collective on gloo (gradients over TCP).
            gloo = TrainPool(2, backend="gloo")
            try:
                n = 16 * BATCH * 2
                for _ in range(4):
                    gloo(n)
                out["eff_gloo"] = round(statistics.median(gloo.inner[-3:]) / (2 * r1), 3)
            finally:
                gloo.close()
        ceilings.append(cpu_ceiling())
        out["cpu_2proc_speedup"] = round(statistics.mean(ceilings), 3)
        for p in pools.values():
            p.close()
        return out

    return Case(ppfast=side(2), baseline=side(1), n_ppfast=2 * BATCH, n_baseline=BATCH, extra=extra)


@benchmark("ic_train_offline_gum", unit="traces/s", target=1.0, baseline="online, embedded")
def ic_train_offline_gum() -> Case:
    """Offline training from a 65,536-trace dataset (4 shards, memory-mapped) against online
    training from the embedded GUM simulator (1 simulator thread), one process."""
    tmp = Path(tempfile.mkdtemp(prefix="ppfast-bench-offline-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    models: dict[str, Any] = {}

    def make(offline: bool) -> Runner:
        import torch

        import ppfast.examples

        torch.manual_seed(0)
        model = ppfast.examples.load("gum", threads=1)
        data = None
        if offline:
            from ppfast.data import TraceDataset

            path = model.save_dataset(tmp / "ds", DATASET_TRACES, traces_per_file=DATASET_TRACES // 4, seed=1,
                                      progress=False)
            data = TraceDataset(path)
        models["offline" if offline else "online"] = model

        def run(n: int) -> None:
            model.learn_inference_network(n, batch_size=BATCH, observe_embeddings=EMBED, dataset=data, seed=2,
                                          progress=False)

        run(DATASET_TRACES if offline else 4 * BATCH)  # the network; offline: every shard's step data once
        return run

    def extra() -> dict[str, Any]:
        return {"dataset_traces": DATASET_TRACES, "batch": BATCH,
                **{f"loss_{k}": round(m.inference_network.history[-1][1], 3) for k, m in models.items()}}

    return Case(ppfast=lambda: make(True), baseline=lambda: make(False), n_ppfast=BATCH, n_baseline=BATCH,
                extra=extra)
