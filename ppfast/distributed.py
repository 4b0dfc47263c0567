"""Scale-out over MPI (mpi4py, launched by ``mpiexec``): distributed trace generation and
distributed importance sampling, plain or guided by an inference network (data-parallel
training of the network itself: :mod:`ppfast.nn.distributed`).

Each rank runs a contiguous share of the trace numbers ``[0, num_traces)``; trace ``i``
uses RNG stream ``i`` of the seed on whichever rank runs it, so the union over ranks
equals, trace for trace, a single-process run with the same seed.

Run a script under ``mpiexec -n 4 python script.py``::

    import ppfast, ppfast.distributed as dist
    model = ppfast.examples.load("gum", threads=1)
    model.save_dataset("traces/", 10_000_000, traces_per_file=1_000_000, seed=1)  # each rank its shards
    post = dist.posterior_results(model, 1_000_000, observe={"obs0": 8, "obs1": 9}, seed=2)
    if dist.rank() == 0:
        print(post.mean, post["mu"].stddev)          # the other ranks get None
    model.learn_inference_network(500_000, batch_size=128)  # data-parallel: the same network on every rank
    ic = ppfast.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
    post = dist.posterior_results(model, 100_000, ic, observe={"obs0": 8, "obs1": 9}, seed=3)

mpi4py is imported only when the process was started by an MPI launcher (``PMI_SIZE``,
``OMPI_COMM_WORLD_SIZE``, ...), or already imported by the caller; otherwise the world
is this process alone and nothing MPI-related is loaded.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .errors import RankError
from .model import check_num_traces
from .posterior import Empirical

__all__ = [
    "RankError",
    "World",
    "gather_batch",
    "posterior",
    "posterior_batch",
    "posterior_results",
    "rank",
    "save_dataset",
    "share",
    "world",
    "world_size",
]

_LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def _launched_by_mpi() -> bool:
    if "mpi4py.MPI" in sys.modules or os.environ.get("PPFAST_MPI") == "1":
        return True
    for var in _LAUNCHER_VARS:
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


class World:
    """The ranks taking part: an mpi4py communicator, or this process alone (``comm`` None).

    The collectives wait by polling with short sleeps, so idle ranks leave their core to
    the ranks still working (MPI's own waits spin)."""

    def __init__(self, comm: Any = None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def _wait(self, request: Any) -> None:
        delay = 1e-5
        while not request.Test():
            time.sleep(delay)
            delay = min(delay * 2, 2e-3)

    def barrier(self) -> None:
        if self.comm is not None:
            self._wait(self.comm.Ibarrier())

    def bcast(self, obj: Any) -> Any:
        if self.comm is None:
            return obj
        self.barrier()
        return self.comm.bcast(obj, root=0)

    def gather(self, obj: Any) -> Optional[List[Any]]:
        if self.comm is None:
            return [obj]
        self.barrier()
        return self.comm.gather(obj, root=0)

    def allgather(self, obj: Any) -> List[Any]:
        if self.comm is None:
            return [obj]
        self.barrier()
        return self.comm.allgather(obj)

    def gatherv(self, arr: np.ndarray) -> Optional[np.ndarray]:
        """Concatenation of every rank's 1-D array (same dtype) on rank 0, None elsewhere."""
        arr = np.ascontiguousarray(arr)
        if self.comm is None:
            return arr
        counts = self.comm.gather(arr.size, root=0)
        if self.rank != 0:
            self.comm.Gatherv(arr, None, root=0)
            return None
        out = np.empty(int(sum(counts)), dtype=arr.dtype)
        self.comm.Gatherv(arr, [out, counts], root=0)
        return out

    def run(self, what: str, fn: Callable[[], Any], share: bool = False) -> Any:
        """Runs ``fn`` on every rank and returns its result (with ``share``, every rank's
        results as a list, on every rank).  If any rank raised, every rank raises (the
        failing one its own error, the others a RankError naming it), so no rank is left
        waiting in a later collective."""
        error: Optional[BaseException] = None
        value: Any = None
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 -- reported to every rank below
            error = e
        if self.comm is None:
            if error is not None:
                raise error
            return [value] if share else value
        status = None if error is None else f"{type(error).__name__}: {error}"
        outcomes = self.allgather((status, value if share and error is None else None))
        if error is not None:
            raise error
        for r, (failure, _) in enumerate(outcomes):
            if failure is not None:
                raise RankError(f"{what} failed on rank {r} of {self.size}: {failure}")
        return [v for _, v in outcomes] if share else value

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"


_WORLD: Optional[World] = None


def world(distributed: Optional[bool] = None) -> World:
    """The MPI world when launched by ``mpiexec`` (or ``distributed=True``), else this
    process alone (``distributed=False`` forces that)."""
    global _WORLD
    if distributed is False:
        return World(None)
    if _WORLD is None:
        if distributed or _launched_by_mpi():
            from ._optional import require

            MPI = require("mpi4py.MPI", "distributed runs")
            _WORLD = World(MPI.COMM_WORLD)
        else:
            return World(None)
    return _WORLD


def rank() -> int:
    return world().rank


def world_size() -> int:
    return world().size


def share(num_traces: int, rank: int, size: int) -> Tuple[int, int]:
    """The contiguous trace range ``[first, first + count)`` of ``rank`` of ``size``."""
    first = num_traces * rank // size
    return first, num_traces * (rank + 1) // size - first


def _agree(w: World, **args: Any) -> Dict[str, Any]:
    """Rank 0's arguments on every rank; raises (everywhere) if a rank was given others."""
    root = w.bcast(args)
    mismatch = [k for k, v in args.items() if k != "seed" and v != root[k]]
    bad = [(r, m) for r, m in enumerate(w.allgather(mismatch)) if m]
    if bad:
        r, names = bad[0]
        raise ValueError(f"every rank must pass the same arguments: rank {r} differs from rank 0 in "
                         f"{', '.join(names)}")
    return root


# -- gathering traces ------------------------------------------------------------------


def gather_batch(batch: Any, w: Optional[World] = None) -> Any:
    """Every rank's TraceBatch concatenated (in rank order) into one ColumnBatch on rank 0
    (None on the others), with each rank's address ids translated to rank 0's."""
    from .data.columns import (
        ARENAS,
        RECORD_COLUMNS,
        TRACE_COLUMNS,
        ColumnBatch,
        address_table,
        remap_addresses,
    )

    w = w or world()
    local = ColumnBatch.from_batch(batch)
    if w.comm is None:
        return local
    meta = {"table": address_table(), "messages": local.messages, "objects": local.objects,
            "traces": len(local), "records": local.num_records,
            "values": len(local.arenas["values"]), "params": len(local.arenas["params"])}
    metas = w.gather(meta)
    cols: Dict[str, Optional[np.ndarray]] = {}
    for k in RECORD_COLUMNS:
        cols["r." + k] = w.gatherv(local.records[k])
    for k in TRACE_COLUMNS:
        cols["t." + k] = w.gatherv(local.traces[k])
    for k in ARENAS:
        cols["a." + k] = w.gatherv(local.arenas[k])
    if metas is None:
        return None
    parts = []
    cut = {"r": 0, "t": 0, "a.values": 0, "a.params": 0}
    lut_cache: Dict[Any, np.ndarray] = {}
    for m in metas:
        def piece(key: str, n: int, group: str) -> np.ndarray:
            arr = cols[key]
            assert arr is not None
            return arr[cut[group]:cut[group] + n]

        records = {k: piece("r." + k, m["records"], "r") for k in RECORD_COLUMNS}
        traces = {k: piece("t." + k, m["traces"], "t") for k in TRACE_COLUMNS}
        arenas = {k: piece("a." + k, m[k], "a." + k) for k in ARENAS}
        cut["r"] += m["records"]
        cut["t"] += m["traces"]
        for k in ARENAS:
            cut["a." + k] += m[k]
        records, traces = remap_addresses(records, traces, m["table"], lut_cache)
        parts.append(ColumnBatch(records, traces, arenas, m["messages"], m["objects"]))
    return ColumnBatch.concat(parts)


# -- importance sampling -----------------------------------------------------------------


def posterior_batch(model: Any, num_traces: int, inference_engine: Any = None, observe: Optional[Dict[str, Any]] = None,
                    seed: Optional[int] = None, progress: Optional[bool] = None, on_error: str = "raise",
                    distributed: Optional[bool] = True, **kwargs: Any) -> Any:
    """Importance sampling (plain, or guided by an inference network) over all ranks:
    rank r runs its share of the trace numbers, and the traces are gathered into one
    ColumnBatch on rank 0 (None on the other ranks).  Every rank must call it with the
    same arguments; the network for IC-guided sampling must be loaded on every rank."""
    from .model import InferenceEngine, next_seed

    engine = InferenceEngine.IMPORTANCE_SAMPLING if inference_engine is None else inference_engine
    if engine in (InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS, InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS):
        raise ValueError(f"{engine.name} is a Markov chain, not split into independent traces; run one chain "
                         "per rank and combine them with Empirical.combine")
    num_traces = check_num_traces(num_traces)
    w = world(distributed)
    args = _agree(w, num_traces=num_traces, engine=engine.name, seed=next_seed(seed) if w.is_root else None,
                  observe=sorted((observe or {}).keys()))
    first, count = share(num_traces, w.rank, w.size)
    show = progress if w.is_root else False

    def run() -> Any:
        if engine == InferenceEngine.IMPORTANCE_SAMPLING:
            return model.simulate(count, observe=observe, seed=args["seed"], first=first, progress=show,
                                  on_error=on_error, required=True, desc="Importance sampling")
        from . import inference

        # Guided: rank r runs trace numbers [first, first + count) with its copy of the network.
        return inference.run(model, engine, count, observe=observe, seed=args["seed"], first=first,
                             progress=show, on_error=on_error, **kwargs)

    local = w.run("importance sampling", run)
    return gather_batch(local, w)


def posterior(model: Any, num_traces: int, inference_engine: Any = None, observe: Optional[Dict[str, Any]] = None,
              **kwargs: Any) -> Optional[Empirical]:
    """Distributed posterior over traces: an Empirical on rank 0, None on the others."""
    from .trace import TraceList

    batch = posterior_batch(model, num_traces, inference_engine, observe=observe, **kwargs)
    if batch is None:
        return None
    return Empirical(TraceList(batch), log_weights=batch.log_weights, name="Posterior", batch=batch)


def posterior_results(model: Any, num_traces: int, inference_engine: Any = None,
                      observe: Optional[Dict[str, Any]] = None, **kwargs: Any) -> Optional[Empirical]:
    """Distributed posterior over the model's results: one Empirical on rank 0 (values,
    log-weights, and ``post['name']`` for any variable), None on the other ranks."""
    batch = posterior_batch(model, num_traces, inference_engine, observe=observe, **kwargs)
    if batch is None:
        return None
    return Empirical(batch.results, log_weights=batch.log_weights, name="Posterior", batch=batch)


def save_dataset(model: Any, dataset_dir: Any, num_traces: int, traces_per_file: Optional[int] = None,
                 seed: Optional[int] = None, **kwargs: Any) -> Any:
    """``model.save_dataset`` over all ranks (each rank writes the shards of its share;
    rank 0 writes the manifest)."""
    from .data.writer import save_dataset as _save

    return _save(model, dataset_dir, num_traces, traces_per_file, seed=seed, distributed=True, **kwargs)
