"""Training the inference network (online from a model, offline from saved traces),
and saving / loading it.

Online: the model simulates prior traces (on its C++ worker threads for embedded
simulators) in chunks, one chunk ahead of the training step that consumes them; the
observations the network learns from are the simulated observe values of those traces.

Under ``mpiexec`` or ``torchrun`` training is data-parallel over the ranks
(:mod:`ppfast.nn.distributed`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .._progress import Progress
from ..errors import PpfastError
from ..trace import TraceBatch, address_name
from .data import StepData, observe_names_of
from .embeddings import normalize_spec
from .network import DEFAULTS, NETWORK_TYPES, InferenceNetwork
from .optim import OPTIMIZERS, NetworkOptimizer, optimizer_for
from .threads import step_threads
from .watch import SCHEDULES, Schedule, Watch

__all__ = ["TrainingError", "learn_inference_network", "load_inference_network", "save_inference_network"]


class TrainingError(PpfastError, RuntimeError):
    """Training cannot go on (no latent sites, loss not finite, ...)."""


def _device(device: Any) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device='cuda' but torch sees no CUDA device (torch.cuda.is_available() is False)")
    return dev


# --------------------------------------------------------------------------- data sources


def _simulator(model: Any, seed: int, prior_inflation: float) -> Callable[[int, int], TraceBatch]:
    """(first, count) -> prior traces of the model (optionally from an inflated prior)."""
    if not prior_inflation:
        return lambda first, count: model.simulate(count, seed=seed, first=first, progress=False, on_error="skip",
                                                   required=False)
    from .. import _core
    from ..model import Model, _Record, run_python

    obs = _core.Observations({}, False)
    if hasattr(model, "_native"):
        runner = _core.InflatedRunner(model._native.entry, int(model.threads))
        return lambda first, count: TraceBatch(runner.run(seed, first, count, obs, float(prior_inflation)))
    if isinstance(model, Model):
        def run(first: int, count: int) -> TraceBatch:
            rec = _core.Recorder(seed, obs)
            rec.set_policy(_core.inflated_prior(float(prior_inflation)))
            return run_python(model.forward, rec, _Record(rec, rec.fast()), first, count, skip_errors=True)

        return run
    raise TrainingError(f"prior_inflation is supported for Python and embedded models, not {type(model).__name__}")


def _dataset_batches(dataset: Any) -> list[Any]:
    """TraceBatches, or shards of a TraceDataset opened when first used (``_opened``)."""
    if isinstance(dataset, TraceBatch):
        return [dataset]
    if hasattr(dataset, "num_shards") and hasattr(dataset, "shard"):  # a ppfast.data.TraceDataset
        if len(dataset) == 0:
            raise TrainingError(f"dataset {dataset!r} is empty")
        return [_LazyShard(dataset, k, n) for k, n in enumerate(dataset.shard_sizes)]
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except TypeError:
        items = list(dataset)
    for i, b in enumerate(items):
        if not isinstance(b, TraceBatch):
            raise TypeError(f"dataset item {i}: expected a ppfast.TraceBatch, got {type(b).__name__}")
    if not items:
        raise TrainingError("dataset is empty")
    return items


class _LazyShard:
    """A dataset shard opened (memory-mapped, checksummed) on first use: a rank opens only
    the shards that hold its share of the traces."""

    def __init__(self, dataset: Any, k: int, n: int):
        self.dataset, self.k, self.n = dataset, k, n

    def __len__(self) -> int:
        return self.n

    def open(self) -> TraceBatch:
        batch: TraceBatch = self.dataset.shard(self.k)
        return batch


def _opened(batches: list[Any]) -> list[TraceBatch]:
    from ..data.columns import ColumnBatch

    out = []
    for b in batches:
        start, stop = 0, None
        if isinstance(b, tuple):  # (batch or shard, start, stop): a rank's share
            b, start, stop = b
        if isinstance(b, _LazyShard):
            b = b.open()
        if stop is not None and (start, stop) != (0, len(b)):
            b = ColumnBatch.from_batch(b).slice(start, stop)
        out.append(b)
    return out


# --------------------------------------------------------------------------- network set-up


def _observe_layout(batch: TraceBatch, observe_embeddings: dict[str, Any] | None,
                    observe_embedding_dim: int) -> tuple[list[str], list[int], dict[str, dict[str, Any]]]:
    found = [(address_name(i), n) for i, n in observe_names_of(batch)]
    sizes = dict(found)
    if observe_embeddings:
        names = list(observe_embeddings)
        missing = [n for n in names if n not in sizes]
        if missing:
            raise TrainingError(f"observe_embeddings names {missing} are not observed in the training traces "
                                f"(observed: {sorted(sizes) or 'none'})")
    else:
        names = [n for n, _ in found]
    if not names:
        raise TrainingError("the training traces have no observe sites: the network has nothing to condition on")
    specs = {n: normalize_spec(n, (observe_embeddings or {}).get(n), observe_embedding_dim) for n in names}
    return names, [sizes[n] for n in names], specs


def _step_data(net: InferenceNetwork, batch: TraceBatch) -> StepData:
    """The network's view of a batch, kept on the batch for reuse (offline epochs)."""
    from ..primitives import name_id

    layout = [(name_id(n), s) for n, s in zip(net.observe_names, net.observe_sizes)]
    cached = getattr(batch, "_ppfast_steps", None)
    if cached is not None and cached[0] == layout and cached[1] is net:
        return cached[2]
    data = StepData(batch, layout, net.proposes)
    batch._ppfast_steps = (layout, net, data)  # type: ignore[attr-defined]
    _warn_prior_sites(net, data)
    return data


def _warn_prior_sites(net: InferenceNetwork, data: StepData) -> None:
    """Warns once per address (and network) about controlled sites the network will not
    propose for: guided inference draws them from the prior, which can cost most of the
    effective sample size when the observations pin them down."""
    from ..distributions import KIND_NAMES

    new = {}
    for address, kind, size in data.prior_sites:
        name = address_name(address)
        if name not in net.prior_addresses:
            why = f"tensor value of {size} elements" if size != 1 else f"no proposal family for {KIND_NAMES.get(kind, kind)}"
            new[name] = why
    if new:
        net.prior_addresses.update(new)
        listed = "; ".join(f"{k!r} ({v})" for k, v in new.items())
        warnings.warn(f"the inference network proposes only scalar sites of the supported families; guided inference "
                      f"will draw these controlled addresses from their prior: {listed}", UserWarning, stacklevel=4)


class _Progress(Progress):
    """The training bar: the loss (and validation loss) beside the count, and in the
    summary line."""

    def __init__(self, total: int, enabled: bool | None):
        super().__init__(total, "Training", enabled)
        self.valid: float | None = None

    def update(self, n: int, loss: float) -> None:  # type: ignore[override]
        valid = "" if self.valid is None else f", valid {self.valid:.4g}"
        super().update(n, f"loss {loss:.4g}{valid}")
        self.summary = f"last loss {loss:.4g}{valid}"


# --------------------------------------------------------------------------- training


def learn_inference_network(model: Any, num_traces: int | None = None, batch_size: int = 64,
                            observe_embeddings: dict[str, Any] | None = None, dataset: Any = None,
                            device: Any = None, learning_rate: float = 1e-3, optimizer: str = "adam",
                            weight_decay: float = 0.0, prior_inflation: bool | float = False,
                            mixed_precision: bool | None = None, seed: int | None = None,
                            progress: bool | None = None, network: InferenceNetwork | None = None,
                            simulation_chunk: int | None = None, distributed: bool | None = None,
                            backend: str | None = None, lr_scaling: str | None = "linear",
                            checkpoint: str | Path | None = None, checkpoint_every: int | None = None,
                            network_type: str | None = None, lr_schedule: str | None = None,
                            learning_rate_end: float | None = None, num_traces_end: int | None = None,
                            lr_decay: float = 0.1, lr_patience: int = 3, valid_size: int = 0,
                            valid_every: int | None = None, early_stopping: int | None = None,
                            log_dir: str | Path | None = None, log_file_name: str | Path | None = None,
                            torch_threads: int | None = None, **config: Any) -> InferenceNetwork:
    """Trains an inference network on ``num_traces`` traces, ``batch_size`` per step.

    Online (default): prior traces of ``model``.  Offline: ``dataset`` = a
    :class:`ppfast.data.TraceDataset`, a TraceBatch, a list of them, or any object with
    ``__len__`` / ``__getitem__`` giving TraceBatches (``num_traces`` defaults to one
    pass).  ``prior_inflation``: True (factor 3) or a factor by which Normal / LogNormal
    scales widen, with uniform Categorical and Bernoulli draws, for broader training data.
    ``device``: 'cpu' or 'cuda' (default: where ``network`` is, else 'cpu'); bf16 autocast
    on CUDA unless ``mixed_precision=False``.  ``torch_threads``: torch's intra-op threads
    during training on CPU (default: one, unless ``OMP_NUM_THREADS`` is set or the program
    called ``torch.set_num_threads`` with another count than the cores; restored after).

    ``network_type``: 'lstm' (default) or 'feedforward' (PyProb's two networks: the same
    embeddings and proposal heads, with ``lstm_depth`` ReLU layers of width ``lstm_dim``
    in place of the LSTM, so a site's proposal does not depend on the sites before the
    previous one).  Network sizes (PyProb's defaults): ``lstm_dim=512, lstm_depth=1,
    address_embedding_dim=64, distribution_type_embedding_dim=8, sample_embedding_dim=4,
    observe_embedding_dim=256, proposal_mixture_components=10, proposal_dim=64,
    address_instances=True``.

    ``optimizer``: 'adam' (default), 'sgd', 'lamb' (Adam with LAMB's layer-wise trust
    ratio, for large global minibatches), 'adam_larc' or 'sgd_larc' (layer-wise adaptive
    rate clipping of the gradient, trust 0.02); the network keeps its optimizer, so
    training again goes on with the optimizer's state.

    Learning rate, counted in traces the network has trained on (PyProb's convention):
    ``lr_schedule`` None (constant ``learning_rate``), 'poly1' / 'poly2' (polynomial decay
    to ``learning_rate_end`` at ``num_traces_end``, PyProb's POLY1 / POLY2), 'cosine' (to
    ``learning_rate_end``), 'step' (times ``lr_decay`` at 1/2 and 3/4 of
    ``num_traces_end``) or 'plateau' (times ``lr_decay`` when the validation loss -- the
    training loss without a validation set -- has not improved for ``lr_patience``
    validations, never below ``learning_rate_end``).  ``num_traces_end`` defaults to the
    end of this call, ``learning_rate_end`` to min(1e-6, learning_rate) (no floor for
    'plateau').  'sgd' uses Nesterov momentum 0.9, as PyProb.

    Watching: ``valid_size`` prior traces of ``model`` (trace numbers from 2^47 of the
    seed, never trained on) give a validation loss every ``valid_every`` traces (default:
    a fiftieth of the run); ``early_stopping=K`` stops after K validations without
    improvement.  ``log_dir``: TensorBoard event files (loss/train per step, loss/valid,
    learning_rate; needs ``pip install 'ppfast[tensorboard]'``); ``log_file_name``: the
    same per validation as CSV lines (traces, seconds, train_loss, valid_loss,
    learning_rate).  The network keeps ``history`` (traces, training loss per step),
    ``valid_history`` and ``lr_history``: ``ppfast.diagnostics.plot_training(net)``.

    Data-parallel training (:mod:`ppfast.nn.distributed`): ``distributed=None`` trains
    over all ranks when launched by ``mpiexec`` / ``torchrun`` with more than one rank;
    True also asks MPI when no launcher is seen in the environment; False trains every
    process on its own.  Every rank calls this with the same arguments;
    ``batch_size`` is per rank (a global minibatch of ``batch_size`` x ranks) and
    ``num_traces`` counts all ranks' traces.  ``lr_scaling``: the learning rate is
    multiplied by the number of ranks R ('linear', default), by sqrt(R) ('sqrt') or not
    ('none').  ``backend``: 'gloo' (default on CPU), 'nccl' (default on CUDA) or 'mpi'.

    ``checkpoint``: a file written (on rank 0 only) every ``checkpoint_every`` traces and
    at the end, with the optimizer and schedule state; resume with ``load_inference_network`` (on every
    rank) and ``learn_inference_network(..., network=net)``.
    """
    from ..model import next_seed
    from . import distributed as dp

    if "learning_rate_init" in config:
        learning_rate = config.pop("learning_rate_init")
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"learn_inference_network: unknown arguments {sorted(unknown)}")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    optimizer = str(getattr(optimizer, "name", optimizer)).lower()
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if network_type is not None:
        network_type = str(getattr(network_type, "name", network_type)).lower()
        if network_type not in NETWORK_TYPES:
            raise ValueError(f"network_type must be one of {', '.join(NETWORK_TYPES)}, got {network_type!r}")
        if network is not None and network.config["network_type"] != network_type:
            raise ValueError(f"network_type={network_type!r}, but the network to train further is a "
                             f"{network.config['network_type']!r} network")
        config["network_type"] = network_type
    if network is not None:  # the options of DEFAULTS fix a network's architecture
        given = dict(config, propose_addresses=[config["propose_addresses"]]) \
            if isinstance(config.get("propose_addresses"), str) else config
        differ = sorted(k for k, v in given.items() if network.config.get(k) != v)
        if differ:
            raise ValueError(f"the network to train further was built with other {', '.join(differ)}: "
                             + "; ".join(f"{k}={network.config.get(k)!r}" for k in differ))
    if lr_schedule is not None and lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be None or one of {', '.join(SCHEDULES)}, got {lr_schedule!r}")
    if not 0 < float(lr_decay) < 1:
        raise ValueError(f"lr_decay must be in (0, 1), got {lr_decay}")
    for name, value in (("lr_patience", lr_patience), ("valid_every", valid_every), ("early_stopping", early_stopping),
                        ("num_traces_end", num_traces_end), ("torch_threads", torch_threads)):
        if value is not None and (isinstance(value, bool) or int(value) != value or int(value) < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    valid_size = int(valid_size or 0)
    if valid_size < 0:
        raise ValueError(f"valid_size must be >= 0, got {valid_size}")
    if early_stopping is not None and not valid_size:
        raise ValueError("early_stopping needs a validation set: pass valid_size=N")
    if valid_size and model is None:
        raise ValueError("valid_size: the validation traces are simulated from the model; pass the model")
    if learning_rate_end is not None and not 0 <= float(learning_rate_end) <= float(learning_rate):
        raise ValueError(f"learning_rate_end must be in [0, learning_rate={learning_rate}], got {learning_rate_end}")
    if checkpoint_every is not None and int(checkpoint_every) < 1:
        raise ValueError(f"checkpoint_every must be >= 1 traces, got {checkpoint_every}")
    # A network goes on training where it is unless a device is named.
    dev = _device(device if device is not None else (network.device if network is not None else "cpu"))
    grp = dp.group(backend, dev) if distributed is not False and dp.launched(bool(distributed)) else None
    size, rank = (grp.size, grp.rank) if grp is not None else (1, 0)
    lr_factor = dp.lr_factor(lr_scaling, size)
    lr = float(learning_rate) * lr_factor
    if grp is not None:
        dev = grp.device_for(dev)
    autocast = (dev.type == "cuda") if mixed_precision is None else bool(mixed_precision)
    if autocast and dev.type != "cuda":
        autocast = False  # bf16 autocast pays off on GPUs; on CPU it only slows the LSTM
    seed = next_seed(seed)
    if grp is not None:
        seed = grp.broadcast_object(seed)
    # Ranks shuffle their own data differently; a single process as before.
    rng = np.random.default_rng(seed if grp is None else [seed, rank])

    # The data: an iterator of StepData-able TraceBatches.
    offline = dataset is not None
    chunk = c0 = 0
    simulate: Callable[[int, int], TraceBatch] | None = None

    def setup() -> tuple[list[TraceBatch], TraceBatch, int, InferenceNetwork, tuple[StepData, np.ndarray] | None]:
        nonlocal num_traces, chunk, c0, simulate
        if offline:
            parts = _dataset_batches(dataset)
            total_available = sum(len(b) for b in parts)
            if num_traces is None:
                num_traces = total_available
            if grp is not None:
                if total_available < size:
                    raise TrainingError(f"the dataset has {total_available} traces, fewer than the {size} ranks")
                parts = list(dp.rank_share(parts, rank, size))
            batches = _opened(parts)
            first_batch = batches[0]
        else:
            batches = []
            if num_traces is None:
                raise ValueError("num_traces is required when training online (no dataset)")
            inflation = 3.0 if prior_inflation is True else float(prior_inflation or 0.0)
            simulate = _simulator(model, seed, inflation)
            chunk = int(simulation_chunk or max(batch_size, min(16 * batch_size, 8192)))
            chunk = max(batch_size, chunk // batch_size * batch_size)
            # Rank r simulates trace numbers [r c0, (r + 1) c0), then chunks after all ranks' first ones.
            c0 = min(chunk, max(-(-int(num_traces) // size), batch_size))
            first_batch = simulate(rank * c0, c0)
            if simulation_chunk is None:  # big observed tensors: keep a chunk's values near 64 MB
                per_trace = 8 * max(1, int(first_batch.arenas["values"].size) // max(len(first_batch), 1))
                chunk = max(batch_size, min(chunk, (64 << 20) // per_trace // batch_size * batch_size))
        if int(num_traces) < 1:
            raise ValueError(f"num_traces must be >= 1, got {num_traces}")
        net = network
        if net is None:
            names, sizes, specs = _observe_layout(
                first_batch, observe_embeddings,
                int(config.get("observe_embedding_dim", DEFAULTS["observe_embedding_dim"])))
            net = InferenceNetwork(names, sizes, specs, device=dev, **config)
        else:
            net.to(dev)
        # The first batch fixes the observation normalizers (before any minibatch is built);
        # with several ranks, rank 0's are broadcast to the others.
        if net.traces_trained == 0:
            d0 = _step_data(net, first_batch)
            net.observe.fit([torch.as_tensor(o[d0.usable], device=dev) for o in d0.observed])
        valid = _validation_set(model, net, seed, valid_size) if valid_size else None
        return batches, first_batch, int(num_traces), net, valid

    if grp is None:
        batches, first_batch, num_traces, net, valid = setup()
    else:
        batches, first_batch, num_traces, net, valid = grp.run("setting up inference network training", setup)
        chunk = int(grp.broadcast_object(chunk))  # trace numbers of later chunks must not overlap
    # One torch thread per step on CPU unless the user chose a count (see ppfast.nn.threads).
    with step_threads(dev, torch_threads):
        net.train()
        opt = optimizer_for(net, optimizer, lr, float(weight_decay))
        ddp = None
        if grp is not None:
            ddp = dp.DataParallel(grp, net, opt, seed)
            ddp.start()
        bar = _Progress(num_traces, progress if rank == 0 else False)
        if learning_rate_end is not None:
            lr_end = float(learning_rate_end) * lr_factor
        else:  # PyProb's 1e-6 for the decaying schedules; 'plateau' has no floor unless asked
            lr_end = 0.0 if lr_schedule == "plateau" else min(lr, 1e-6)
        schedule = Schedule(lr_schedule, lr, lr_end,
                            int(num_traces_end) if num_traces_end else net.traces_trained + num_traces,
                            float(lr_decay), int(lr_patience))
        watch = Watch(net, opt, schedule, valid, int(valid_every or max(batch_size * size, num_traces // 50)),
                      early_stopping, batch_size, autocast, log_dir, log_file_name, writes=rank == 0,
                      share=None if grp is None else grp.broadcast_object)

        def minibatches() -> Iterator[tuple[StepData, np.ndarray]]:
            if offline:
                data = [_step_data(net, b) for b in batches]
                sizes_ = np.array([len(d.usable) for d in data], dtype=np.float64)
                if sizes_.sum() == 0:
                    raise TrainingError("the dataset has no successful traces")
                while True:  # epochs: shuffled traces, one part at a time
                    for part in rng.permutation(len(data)):
                        d = data[part]
                        ids = rng.permutation(d.usable)
                        for s in range(0, len(ids), batch_size):
                            yield d, ids[s:s + batch_size]
            else:
                assert simulate is not None
                # Embedded simulators run without the GIL: simulate the next chunk while training
                # on this one.  A Python model would hold the GIL the training step needs between
                # its kernels, so it simulates in line.
                pool = ThreadPoolExecutor(1) if hasattr(model, "_native") else None
                try:
                    # Chunk j >= 1 of rank r: trace numbers after every rank's chunks before it.
                    first = len(first_batch) if grp is None else size * c0 + rank * chunk
                    stride = chunk * size
                    current = first_batch
                    while True:
                        pending = pool.submit(simulate, first, chunk) if pool is not None else None
                        d = _step_data(net, current)
                        ids = d.usable
                        for s in range(0, len(ids), batch_size):
                            yield d, ids[s:s + batch_size]
                        current = pending.result() if pending is not None else simulate(first, chunk)
                        first += stride
                finally:
                    if pool is not None:
                        pool.shutdown(wait=True)

        every = int(checkpoint_every) if checkpoint is not None and checkpoint_every else 0
        saved_at = [net.traces_trained // every if every else 0]

        def save_due() -> bool:
            if not every:
                return False
            k = net.traces_trained // every
            due, saved_at[0] = k > saved_at[0], max(saved_at[0], k)
            return due

        def save() -> None:
            assert checkpoint is not None
            save_inference_network(net, checkpoint)  # rank 0 writes

        try:
            if ddp is None:
                _train_single(net, opt, minibatches(), num_traces, autocast, bar, dev.type != "cpu", save_due, save, watch)
            else:
                _train_distributed(ddp, minibatches(), math.ceil(num_traces / (batch_size * size)), autocast, bar,
                                   save_due, save, watch)
            if not net.lr_history or net.lr_history[-1][0] != net.traces_trained:
                watch.evaluate()  # the logs and histories end where training ended
            if checkpoint is not None:
                save()
                if grp is not None:
                    grp.barrier()  # the file is there when any rank returns
        finally:
            bar.close()
            watch.close()
        net.eval()
        return net


# Validation traces are trace numbers 2^47, 2^47 + 1, ... of the training seed: never
# reached by training, which numbers its traces from 0.
_VALID_FIRST = 1 << 47


def _validation_set(model: Any, net: InferenceNetwork, seed: int, size: int) -> tuple[StepData, np.ndarray]:
    """``size`` prior traces of ``model`` as (StepData, usable trace ids), with their rows
    added to the network's tables now (every rank adds the same rows, in the same order,
    before the ranks compare networks)."""
    batch = model.simulate(size, seed=seed, first=_VALID_FIRST, progress=False, on_error="skip", required=False)
    data = _step_data(net, batch)
    if len(data.usable) == 0:
        raise TrainingError(f"valid_size={size}: every validation trace failed")
    net._step_rows(data, grow=True)
    return data, data.usable


def _train_single(net: InferenceNetwork, opt: NetworkOptimizer, batches: Iterator[tuple[StepData, np.ndarray]],
                  num_traces: int, autocast: bool, bar: _Progress, gpu: bool, due: Callable[[], bool],
                  save: Callable[[], Any], watch: Watch) -> None:
    def limited() -> Iterator[tuple[StepData, np.ndarray]]:
        given = 0
        for data, ids in batches:
            if given >= num_traces:
                return
            if len(ids):
                given += len(ids)
                yield data, ids

    # On a GPU, the next minibatch is built while the device still runs the step before
    # (kernel launches return at once; losses are read back only every few steps, since a
    # read-back waits for the device).  A helper thread for it would cost more than it
    # saves: it takes the GIL the launching thread needs between kernels.
    source = ((d, i, net.minibatch(d, i)) for d, i in limited())
    pending: list[tuple[int, torch.Tensor]] = []
    pending_sizes: list[int] = []

    def flush() -> None:
        if not pending:
            return
        values = torch.stack([v for _, v in pending]).float().cpu().tolist()
        items = [(n, value) for (n, _), value in zip(pending, values)]
        for n, value in items:
            if not math.isfinite(value):
                raise TrainingError(f"training loss is {value} after {n} traces; try a smaller learning_rate")
        net.history.extend(items)
        watch.losses(items)
        bar.update(sum(pending_sizes), values[-1])
        pending.clear()
        pending_sizes.clear()

    try:
        for data, ids, mb in source:
            if mb.num_steps == 0:
                raise TrainingError("the training traces have no controlled scalar sample sites to propose for")
            watch.before_step()
            local = net.tables.gather(mb.rows)
            loss = net.loss(mb, local, autocast)
            opt.dense.zero_grad(set_to_none=True)
            loss.backward()
            opt.step(mb.rows, local)
            net.traces_trained += len(ids)
            pending.append((net.traces_trained, loss.detach()))
            pending_sizes.append(len(ids))
            if not gpu or len(pending) >= 32:
                flush()
            if watch.due():
                flush()
                stop = watch.evaluate()
                bar.valid = watch.last_valid
                if stop:
                    break
            if due():
                flush()  # a checkpoint holds the history up to its step
                save()
        flush()
    finally:
        source.close()


def _train_distributed(ddp: Any, batches: Iterator[tuple[StepData, np.ndarray]], steps: int, autocast: bool,
                       bar: _Progress, due: Callable[[], bool], save: Callable[[], Any], watch: Watch) -> None:
    """``steps`` steps in lockstep with the other ranks (see :mod:`ppfast.nn.distributed`)."""
    net, opt = ddp.net, ddp.opt
    check = int(os.environ.get("PPFAST_DIST_CHECK", "0") or 0)
    it = iter(batches)
    try:
        for step in range(steps):
            error: BaseException | None = None
            data: StepData | None = None
            ids: np.ndarray | None = None
            try:
                while True:
                    data, ids = next(it)
                    if len(ids):
                        break
            except Exception as e:  # noqa: BLE001 -- every rank raises in the agreement
                error = e
            union = ddp.agree(data, ids, error)
            mb = local = loss = None
            opt.dense.zero_grad(set_to_none=True)
            try:
                assert data is not None and ids is not None
                mb = net.minibatch(data, ids, grow=False)
                if mb.num_steps:
                    local = net.tables.gather(mb.rows)
                    loss = net.loss(mb, local, autocast)
                    loss.backward()
                else:  # no sites in this rank's traces: it adds its count, no gradient
                    local = net.tables.gather(mb.rows)
                    loss = torch.zeros((), device=net.device)
            except Exception as e:  # noqa: BLE001 -- every rank raises in the reduction
                error = e
            value, count, rows = ddp.reduce(union, None if mb is None else mb.rows, local, loss,
                                            0 if ids is None else len(ids), error)
            if len(union) == 0:
                raise TrainingError("the training traces have no controlled scalar sample sites to propose for")
            if not math.isfinite(value):
                raise TrainingError(f"training loss is {value} after {net.traces_trained + count} traces; "
                                    "try a smaller learning_rate")
            watch.before_step()
            opt.step(union, rows)
            net.traces_trained += count
            net.history.append((net.traces_trained, value))
            watch.losses([(net.traces_trained, value)])
            bar.update(count, value)
            if check and (step + 1) % check == 0:
                ddp.verify()
            if watch.due():
                stop = watch.evaluate()  # the same decision on every rank
                bar.valid = watch.last_valid
                if stop:
                    break
            if due():
                save()
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------- files


def _writes_files() -> bool:
    """False on ranks other than 0 of an initialized torch.distributed group."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def save_inference_network(net: InferenceNetwork, path: str | Path, optimizer: bool = True) -> Path:
    """Writes ``path`` (a torch file: {'state_dict': tensors, 'metadata': JSON string},
    loadable with ``torch.load(path, weights_only=True)``) and ``path + '.json'`` (the
    same metadata, for people and tools).  With ``optimizer`` (default) the optimizer's
    state goes in too (``optimizer.*`` tensors): training a loaded network goes on where
    it stopped.  Under a torch.distributed process group only rank 0 writes (the ranks
    hold the same network); each file is written whole, then renamed into place."""
    path = Path(path)
    if not _writes_files():
        return path
    saved = net.save_state()
    state, meta = saved["state"], saved["meta"]
    opt = getattr(net, "_optimizer", None)
    pending = getattr(net, "_optimizer_saved", None)
    if optimizer and isinstance(opt, NetworkOptimizer):
        tensors, meta["optimizer"] = opt.state()
        state.update(tensors)
    elif optimizer and pending is not None:  # loaded with optimizer state, not trained since
        state.update(pending[0])
        state.update({f"optimizer.tables.{k}": v for k, v in net.tables.moments().items()})
        meta["optimizer"] = pending[1]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"state_dict": state, "metadata": json.dumps(meta)}, tmp)
    os.replace(tmp, path)
    side = Path(str(path) + ".json")
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, side)
    return path


def load_inference_network(path: str | Path, observe_embeddings: dict[str, Any] | None = None,
                           device: Any = "cpu") -> InferenceNetwork:
    """Loads a network saved by :func:`save_inference_network` (``weights_only=True``).
    A user ``torch.nn.Module`` embedding is not in the file: pass it again in
    ``observe_embeddings``."""
    from ..primitives import name_id

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"inference network file not found: {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob or "metadata" not in blob:
        raise PpfastError(f"{path}: not a ppfast inference network file (expected 'state_dict' and 'metadata')")
    meta = json.loads(blob["metadata"])
    if meta.get("format") != "ppfast-inference-network":
        raise PpfastError(f"{path}: unknown format {meta.get('format')!r}")
    specs = {}
    for name, spec in meta["observe_specs"].items():
        if spec["embedding"] == "module":
            user = (observe_embeddings or {}).get(name)
            if user is None:
                raise PpfastError(f"{path}: observation {name!r} uses a user torch.nn.Module embedding; pass it "
                                  f"again: load_inference_network(path, observe_embeddings={{{name!r}: module}})")
            spec = dict(spec, embedding=user.get("embedding") if isinstance(user, dict) else user)
        specs[name] = normalize_spec(name, spec, meta["config"]["observe_embedding_dim"])
    names = [o["name"] for o in meta["observe"]]
    sizes = [o["size"] for o in meta["observe"]]
    net = InferenceNetwork(names, sizes, specs, device="cpu", **meta["config"])
    state = blob["state_dict"]
    tables = {k[len("tables."):]: v for k, v in state.items() if k.startswith("tables.")}
    saved_opt = {k: v for k, v in state.items() if k.startswith("optimizer.")}
    module_state = {k: v for k, v in state.items() if not k.startswith(("tables.", "optimizer."))}
    net.load_state_dict(module_state, strict=True)
    rows = meta["rows"]
    net.tables.load_state(tables, np.array([name_id(r["address"]) for r in rows], dtype=np.int64),
                          np.array([r["instance"] for r in rows], dtype=np.int64),
                          np.array([r["kind"] for r in rows], dtype=np.int64))
    if "optimizer" in meta and "optimizer.tables.m" in saved_opt:
        net.tables.set_moments(saved_opt["optimizer.tables.m"], saved_opt["optimizer.tables.v"],
                               saved_opt["optimizer.tables.steps"])
        # The dense part waits for the next learn_inference_network (same optimizer kind).
        dense = {k: v for k, v in saved_opt.items() if k.startswith("optimizer.dense.")}
        net._optimizer_saved = (dense, meta["optimizer"])  # type: ignore[assignment]
    net.traces_trained = int(meta.get("traces_trained", 0))
    net.history = [(int(a), float(b)) for a, b in meta.get("history", [])]
    net.valid_history = [(int(a), float(b)) for a, b in meta.get("valid_history", [])]
    net.lr_history = [(int(a), float(b)) for a, b in meta.get("lr_history", [])]
    net.schedule_state = meta.get("schedule")
    net.prior_addresses = dict(meta.get("prior_addresses", {}))
    net.to(_device(device))
    net.eval()
    return net
