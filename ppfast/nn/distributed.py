"""Data-parallel training of the inference network over ranks, with ``torch.distributed``.

Launch the same script on every rank, under ``mpiexec -n R python train.py`` or
``torchrun --nproc-per-node R train.py``; ``learn_inference_network`` then trains
data-parallel (``distributed=None`` detects the launcher, ``False`` trains each process
alone)::

    import ppfast, ppfast.examples, ppfast.distributed as dist
    model = ppfast.examples.load("gum", threads=1)
    model.learn_inference_network(1_000_000, batch_size=128, checkpoint="gum-net.pt")
    # every rank holds the same network; rank 0 wrote gum-net.pt (with the optimizer state:
    # model.load_inference_network("gum-net.pt") on every rank, then train on, resumes)
    ic = ppfast.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
    post = dist.posterior_results(model, 100_000, ic, observe={"obs0": 8, "obs1": 9})  # rank 0's

``batch_size`` is per rank and the learning rate is scaled with the number of ranks R
(``lr_scaling='linear'``, the default: x R for a global minibatch R times larger;
``'sqrt'``; ``'none'``); ``optimizer='lamb'`` adds LAMB's trust ratio for large global
minibatches.

The process group (``backend``): NCCL for networks on CUDA (one GPU per rank on a node);
on the CPU, under ``mpiexec``, 'mpi' (the default): torch's MPI backend where torch was
built with one, else a gloo group whose gradient all-reduces go through mpi4py instead
-- the MPI library that launched the ranks moves them over shared memory, 3.5x faster
than gloo's TCP for 8 MB on this project's 2-core test machine; 'gloo' keeps everything
on gloo (the default under ``torchrun``).  Under ``mpiexec`` rank 0 opens the rendezvous
(``MASTER_ADDR`` / ``MASTER_PORT`` if set, else its own address and a free port) and
broadcasts it through mpi4py; under ``torchrun`` the rendezvous is torchrun's; a process
group the caller initialized is used as it is.

Each rank simulates (online) or reads (offline: its contiguous share of the dataset's
traces, so only the shards holding them are opened) ``batch_size`` traces of every
global minibatch of ``batch_size x R`` traces.  One step, on every rank in lockstep:

1. *agreement*: one all-reduce (max) of a header -- a failure flag, how many
   (address, instance, distribution) keys of the rank's traces have no table row yet, the
   widest categorical, and the rank's touched table rows as a mask.  When any rank met new
   keys, the ranks all-gather them as strings, sort their union, and every rank appends
   the same rows in the same order, initialized from a seed shared by all ranks: an
   address seen by one rank only gets the same row everywhere before it gets parameters.
2. forward and backward on the rank's own traces;
3. one all-reduce (sum) of one flat buffer: the dense gradients, the gradients of the
   union of the ranks' touched rows, the trace count and the loss, each rank's part
   weighted by its trace count -- the gradient of the global minibatch's mean loss;
4. the same optimizer step everywhere (dense, then row-wise on the union rows).

So every rank holds bit-identical parameters, table rows and optimizer state after every
step (``PPFAST_DIST_CHECK=N`` compares digests of the ranks' networks every N steps and
raises if they differ).  A failure on one rank (a simulator error, a bad dataset shard)
makes every rank raise at the next collective instead of leaving the others waiting.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import math
import os
import socket
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from ..errors import PpfastError, RankError
from ..trace import address_name
from . import families as fam
from .tables import Rows, make_keys

__all__ = ["DataParallel", "Group", "group", "launched", "lr_factor", "rank_share"]

LR_SCALINGS = ("linear", "sqrt", "none")
_TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("PPFAST_DIST_TIMEOUT", "1800")))


def _torchrun_env() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or all(
        k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def launched(force_mpi: bool = False) -> bool:
    """Whether this process is one of several ranks: an initialized torch process group,
    torchrun's environment, or an MPI launcher (found by its environment variables, or by
    asking MPI itself with ``force_mpi``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if _torchrun_env():
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    from .. import distributed as mpi

    return (force_mpi or mpi._launched_by_mpi()) and mpi.world(True if force_mpi else None).size > 1


def lr_factor(scaling: str | None, size: int) -> float:
    """The learning-rate multiplier for ``size`` ranks: 'linear' (R, Goyal et al.: the
    global minibatch is R times larger), 'sqrt' (sqrt(R), often better for Adam), 'none'."""
    key = "none" if scaling is None else str(scaling).lower()
    if key not in LR_SCALINGS:
        raise ValueError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {scaling!r}")
    return float(size) if key == "linear" else math.sqrt(size) if key == "sqrt" else 1.0


class Group:
    """The ranks training together: a torch.distributed process group, the device its
    collectives run on (CUDA for NCCL, else the CPU), and -- under ``mpiexec`` with
    ``backend='mpi'`` where torch has no MPI backend -- the mpi4py communicator that
    carries the all-reduces of CPU tensors instead of gloo."""

    def __init__(self, rank: int, size: int, backend: str, local_rank: int, mpi_comm: Any = None):
        self.rank, self.size, self.backend, self.local_rank = rank, size, backend, local_rank
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        self.mpi = mpi_comm

    def __repr__(self) -> str:
        via = ", all-reduce via mpi4py" if self.mpi is not None else ""
        return f"Group(rank={self.rank}, size={self.size}, backend={self.backend!r}{via})"

    def device_for(self, dev: torch.device) -> torch.device:
        """One GPU per rank of a node when the device is 'cuda' without an index."""
        if dev.type == "cuda" and dev.index is None and torch.cuda.device_count() > 1:
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return dev

    # -- collectives --------------------------------------------------------------------
    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """The reduction of ``t`` over the ranks (a new tensor on ``t``'s device), the same
        bits on every rank (each element is reduced once and the result shared, or -- two
        ranks -- a + b == b + a)."""
        if self.mpi is not None and t.device.type == "cpu":
            return self._mpi_all_reduce(t, op)
        x = t.to(self.device, copy=True)
        dist.all_reduce(x, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return x.to(t.device)

    def _mpi_all_reduce(self, t: torch.Tensor, op: str) -> torch.Tensor:
        from mpi4py import MPI

        x = t.detach().contiguous().numpy()
        out = np.empty_like(x)
        req = self.mpi.Iallreduce(x, out, op=MPI.SUM if op == "sum" else MPI.MAX)
        # Poll rather than block: MPI's blocking wait spins, taking the core from this
        # rank's simulator threads while a slower rank finishes its step.
        delay = 0.0
        while not req.Test():
            time.sleep(delay)
            delay = min(2 * delay + 1e-6, 1e-4)
        return torch.from_numpy(out)

    def broadcast_(self, t: torch.Tensor) -> None:
        """Rank 0's ``t`` into ``t`` on every rank."""
        x = t.detach()
        kind = x.dtype
        y = x.to(self.device, dtype=torch.uint8 if kind == torch.bool else kind, copy=True).contiguous()
        dist.broadcast(y, src=0)
        x.copy_(y.to(x.device, dtype=kind))

    def all_gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def fail_together(self, what: str, error: BaseException | None) -> None:
        """Called by every rank when a collective said some rank failed: raises this rank's
        own error, or a RankError naming the failed ranks with their messages."""
        status = None if error is None else f"{type(error).__name__}: {error}"
        outcomes = self.all_gather_object(status)
        if error is not None:
            raise error
        failed = [(r, s) for r, s in enumerate(outcomes) if s is not None]
        msg = "; ".join(f"rank {r}: {s}" for r, s in failed)
        raise RankError(f"{what} failed on {'rank' if len(failed) == 1 else 'ranks'} "
                        f"{', '.join(str(r) for r, _ in failed)} of {self.size}: {msg}")

    def run(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` on every rank; if it raised anywhere, every rank raises."""
        error: BaseException | None = None
        value = None
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 -- reported to every rank
            error = e
        flag = self.all_reduce(torch.tensor([0 if error is None else 1], dtype=torch.int64), "max")
        if int(flag[0]):
            self.fail_together(what, error)
        return value


_GROUP: Group | None = None


def _local_rank_mpi(comm: Any) -> int:
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return int(node.Get_rank())
    finally:
        node.Free()


def _rendezvous_host(w: Any) -> str:
    """The address other ranks reach rank 0 at: loopback when every rank is on its node."""
    env = os.environ.get("MASTER_ADDR")
    if env:
        return env
    hosts = w.allgather(socket.gethostname())
    if len(set(hosts)) == 1:
        return "127.0.0.1"
    name = hosts[0]
    for info in socket.getaddrinfo(name, None, socket.AF_INET):
        addr = str(info[4][0])
        if not addr.startswith("127."):
            return addr
    return name


def group(backend: str | None = None, device: torch.device | None = None) -> Group:
    """The process group of this run, initialized on first use (see the module docstring)."""
    global _GROUP
    if not dist.is_available():
        raise PpfastError("distributed training needs torch.distributed, which this torch build lacks")
    if dist.is_initialized():
        if _GROUP is None or _GROUP.size != dist.get_world_size():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            _GROUP = Group(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()), local)
        return _GROUP
    cuda = device is not None and torch.device(device).type == "cuda"
    torchrun = _torchrun_env()
    if backend is None:
        backend = "nccl" if cuda and dist.is_nccl_available() else "gloo" if torchrun else "mpi"
    available = {"gloo": dist.is_gloo_available(), "nccl": dist.is_nccl_available(), "mpi": dist.is_mpi_available()}
    if backend not in available:
        raise ValueError(f"backend must be 'gloo', 'nccl' or 'mpi', got {backend!r}")
    via_mpi4py = backend == "mpi" and not available["mpi"]
    if via_mpi4py:
        if torchrun:
            raise PpfastError("backend='mpi' needs an MPI launcher (mpiexec), not torchrun; use 'gloo' or 'nccl'")
        backend = "gloo"  # start-up and objects over gloo, gradients over mpi4py
    if not available[backend]:
        raise PpfastError(f"torch.distributed backend {backend!r} is not available in this torch build "
                          f"(available: {[k for k, v in available.items() if v]})")
    comm = None
    if torchrun:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "nccl":
            torch.cuda.set_device(local % torch.cuda.device_count())
        dist.init_process_group(backend, init_method="env://", timeout=_TIMEOUT)
    else:
        from .. import distributed as mpi

        w = mpi.world(True)
        comm = w.comm if via_mpi4py else None
        local = _local_rank_mpi(w.comm) if w.comm is not None else 0
        if backend == "nccl":
            torch.cuda.set_device(local % torch.cuda.device_count())
        if backend == "mpi":
            dist.init_process_group("mpi")
        else:
            host = _rendezvous_host(w)
            # Rank 0 binds the store first (port 0: the system picks a free one), then
            # tells the others where it is.
            store = None
            if w.is_root:
                port = int(os.environ.get("MASTER_PORT", "0"))
                store = dist.TCPStore(host, port, w.size, True, timeout=_TIMEOUT, wait_for_workers=False)
                port = int(store.port)
            port = w.bcast(port if w.is_root else None)
            if store is None:
                store = dist.TCPStore(host, port, w.size, False, timeout=_TIMEOUT)
            dist.init_process_group(backend, store=store, rank=w.rank, world_size=w.size, timeout=_TIMEOUT)
    _GROUP = Group(dist.get_rank(), dist.get_world_size(), backend, local, comm)
    atexit.register(_close)
    return _GROUP


def _close() -> None:
    """Ends the process group this module started (before MPI finalizes at exit)."""
    global _GROUP
    if dist.is_initialized():
        dist.destroy_process_group()
    _GROUP = None


def rank_share(batches: list[Any], rank: int, size: int) -> list[tuple[Any, int, int]]:
    """Rank ``rank``'s contiguous share of the traces of ``batches`` (in order), as
    (batch, start, stop) pieces: only the batches (dataset shards) holding its traces."""
    from ..distributed import share

    sizes = [len(b) for b in batches]
    first, count = share(sum(sizes), rank, size)
    out = []
    start = 0
    for b, n in zip(batches, sizes):
        lo, hi = max(first, start), min(first + count, start + n)
        if lo < hi:
            out.append((b, lo - start, hi - start))
        start += n
    return out


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))


class DataParallel:
    """The per-step protocol of the module docstring for one network and optimizer."""

    def __init__(self, g: Group, net: Any, opt: Any, seed: int):
        self.g, self.net, self.opt, self.seed = g, net, opt, int(seed)
        self.params = list(net.parameters())
        self.dense_size = sum(p.numel() for p in self.params)

    # -- start: one network on every rank --------------------------------------------------
    def _signature(self) -> dict[str, Any]:
        net, t = self.net, self.net.tables
        rows = "\n".join(f"{address_name(int(a))}|{int(i)}|{int(k)}"
                         for a, i, k in zip(t.row_address, t.row_instance, t.row_kind))
        return {
            "observe": list(zip(net.observe_names, net.observe_sizes)),
            "parameters": [(n, tuple(p.shape), str(p.dtype)) for n, p in net.named_parameters()],
            "buffers": [(n, tuple(b.shape), str(b.dtype)) for n, b in net.named_buffers()],
            "tables": sorted(t.shapes.items()),
            "rows": hashlib.sha256(rows.encode()).hexdigest(),
            "optimizer": self.opt.kind,
            "optimizer_state": sorted((i, sorted(s)) for i, s in self._dense_state().items()),
        }

    def _dense_state(self) -> dict[int, dict[str, torch.Tensor]]:
        index = {id(p): i for i, p in enumerate(self.params)}
        return {index[id(p)]: {k: v for k, v in s.items() if torch.is_tensor(v)}
                for p, s in self.opt.dense.state.items()}

    def start(self) -> None:
        """Checks that every rank built the same network, then makes rank 0's parameters,
        buffers (observation normalizers), table rows and optimizer state everyone's."""
        from .train import TrainingError

        sigs = self.g.all_gather_object(self._signature())
        for r, s in enumerate(sigs):
            diff = [k for k in s if s[k] != sigs[0][k]]
            if diff:
                raise TrainingError(f"rank {r} has a different inference network from rank 0 ({', '.join(diff)} "
                                    f"differ): every rank must start from the same network and the same "
                                    f"observation layout")
        net, t = self.net, self.net.tables
        with torch.no_grad():
            for p in self.params:
                self.g.broadcast_(p.data)
            for b in net.buffers():
                self.g.broadcast_(b)
            for attr in ("storage", "m", "v", "steps"):
                if t.n:
                    self.g.broadcast_(getattr(t, attr)[: t.n])
            for _, s in sorted(self._dense_state().items()):
                for _, v in sorted(s.items()):
                    self.g.broadcast_(v)
        net.traces_trained, net.history = self.g.broadcast_object((net.traces_trained, list(net.history)))

    # -- step 1: agreement ------------------------------------------------------------------
    def _keys(self, data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys, address, instance, kind) of every step of ``data``, as the tables key them."""
        cached = getattr(data, "_dp_keys", None)
        if cached is None:
            s = slice(0, data.num_steps)
            inst = data.instance[s] if self.net.config["address_instances"] else np.zeros(data.num_steps, np.int64)
            cached = (make_keys(data.address[s], inst, data.kind[s]), data.address[s], inst, data.kind[s])
            data._dp_keys = cached
        return cached

    def _rows(self, data: Any) -> np.ndarray:
        """Table row of every step (-1 where none yet); cached where the network caches it
        once every step has one, so ``net.minibatch(..., grow=False)`` reuses them."""
        rows = getattr(data, "_rows", None)
        if rows is not None and (len(rows) == 0 or rows.min() >= 0):
            return rows
        rows = self.net.tables.lookup(self._keys(data)[0])
        data._rows = rows if (len(rows) == 0 or rows.min() >= 0) else None
        return rows

    def _mask(self, data: Any, ids: np.ndarray, n: int) -> np.ndarray:
        rows = self._rows(data)
        mask = np.zeros(n, dtype=np.int64)
        steps = _ranges(data.start[ids], data.count[ids])
        r = rows[steps]
        mask[r[r >= 0]] = 1
        return mask

    def agree(self, data: Any, ids: np.ndarray | None, error: BaseException | None) -> torch.Tensor:
        """Step 1: the ranks' tables gain the same rows; returns the union of the table
        rows the ranks' minibatches touch (sorted, on the network's device)."""
        net, t = self.net, self.net.tables
        n = t.n
        new: list[tuple[str, int, int]] = []
        kmax = 0
        mask = np.zeros(n, dtype=np.int64)
        if error is None:
            try:
                keys, address, instance, kind = self._keys(data)
                miss = np.flatnonzero(self._rows(data) < 0)
                if len(miss):
                    _, first = np.unique(keys[miss], return_index=True)
                    sel = miss[first]
                    new = [(address_name(int(a)), int(i), int(k))
                           for a, i, k in zip(address[sel], instance[sel], kind[sel])]
                if fam.CATEGORICAL in data.prep:
                    kmax = int(data.prep[fam.CATEGORICAL]["k"].max())
                assert ids is not None
                mask = self._mask(data, ids, n)
            except Exception as e:  # noqa: BLE001 -- every rank raises below
                error = e
        local = np.concatenate([[0 if error is None else 1, len(new), kmax], mask])
        header = self.g.all_reduce(torch.from_numpy(local), "max").numpy()
        if header[0]:
            self.g.fail_together("inference network training", error)
        assert ids is not None
        if header[1]:
            self._add_rows(self.g.all_gather_object(new))
            mask = self.g.all_reduce(torch.from_numpy(self._mask(data, ids, t.n)), "max").numpy()
        else:
            mask = header[3:]
        if header[2]:
            net._ensure_width(int(header[2]))
        return torch.from_numpy(np.flatnonzero(mask)).to(net.device)

    def _add_rows(self, gathered: list[list[tuple[str, int, int]]]) -> None:
        from ..primitives import name_id

        union = sorted({k for part in gathered for k in part})
        address = np.array([name_id(a) for a, _, _ in union], dtype=np.int64)
        instance = np.array([i for _, i, _ in union], dtype=np.int64)
        kind = np.array([k for _, _, k in union], dtype=np.int64)
        t = self.net.tables
        known = t.lookup(make_keys(address, instance, kind)) >= 0
        before = t.n
        rows = t._append(address[~known], instance[~known], kind[~known])
        # Rows n, n+1, ... of every rank drawn from the same stream: seed and first row.
        dev = [self.net.device] if self.net.device.type == "cuda" else []
        with torch.random.fork_rng(devices=dev):
            torch.manual_seed((self.seed * 1_000_003 + before) % (1 << 63))
            self.net._init_rows(rows)

    def verify(self) -> None:
        """Raises on every rank if the ranks' parameters or table rows differ (a check
        for new MPI stacks: ``PPFAST_DIST_CHECK=N`` runs it every N steps)."""
        from .train import TrainingError

        h = hashlib.sha256()
        for p in self.params:
            h.update(p.detach().cpu().numpy().tobytes())
        t = self.net.tables
        h.update(t.storage[: t.n].detach().cpu().numpy().tobytes())
        digests = self.g.all_gather_object(h.hexdigest())
        if len(set(digests)) > 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise TrainingError(f"after {self.net.traces_trained} traces the networks of ranks {differ} differ from "
                                f"rank 0's: the all-reduces of {self.g!r} did not give every rank the same "
                                "result")

    # -- step 3: one all-reduce of the gradients ----------------------------------------------
    def reduce(self, union: torch.Tensor, touched: torch.Tensor | None, local: Rows | None,
               loss: torch.Tensor | None, count: int, error: BaseException | None) -> tuple[float, int, Rows]:
        """Sums the ranks' count-weighted gradients; sets the dense ``.grad`` s to the
        global minibatch's gradient and returns (global loss, global trace count, the union
        rows gathered with their gradient) for the optimizer step."""
        net, t = self.net, self.net.tables
        u, w = len(union), t.width
        buf = torch.zeros(self.dense_size + u * w + 3, device=net.device)
        if error is None:
            try:
                off = 0
                for p in self.params:
                    k = p.numel()
                    if p.grad is not None:
                        torch.mul(p.grad.reshape(-1), count, out=buf[off:off + k])
                    off += k
                assert local is not None and touched is not None and loss is not None
                if local.flat.grad is not None and len(touched):
                    pos = torch.searchsorted(union, touched)
                    buf[off:off + u * w].view(u, w).index_copy_(0, pos, local.flat.grad.float() * count)
                buf[-3] = count
                buf[-2] = loss.detach().float() * count
            except Exception as e:  # noqa: BLE001 -- every rank raises below
                error = e
        if error is not None:
            buf[-1] = 1
        buf = self.g.all_reduce(buf, "sum")
        if float(buf[-1]):
            self.g.fail_together("inference network training", error)
        total = float(buf[-3])
        grads = buf[:-3].div_(total)
        off = 0
        for p in self.params:
            k = p.numel()
            p.grad = grads[off:off + k].view_as(p)
            off += k
        rows = t.gather(union)
        rows.flat.grad = grads[off:off + u * w].view(u, w)
        return float(buf[-2]) / total, round(total), rows
