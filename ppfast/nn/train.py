"""Training the inference network (online from a model, offline from saved traces),
and saving / loading it.

Online: the model simulates prior traces (on its C++ worker threads for embedded
simulators) in chunks, one chunk ahead of the training step that consumes them; the
observations the network learns from are the simulated observe values of those traces.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import PpfastError
from ..trace import TraceBatch, address_name
from .data import StepData, observe_names_of
from .embeddings import normalize_spec
from .network import DEFAULTS, InferenceNetwork
from .tables import Rows

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


def _dataset_batches(dataset: Any) -> list[TraceBatch]:
    if isinstance(dataset, TraceBatch):
        return [dataset]
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
    data = StepData(batch, layout)
    batch._ppfast_steps = (layout, net, data)  # type: ignore[attr-defined]
    return data


class _Optimizer:
    """Dense Adam (or SGD) for the shared layers, row-wise for the address tables."""

    def __init__(self, net: InferenceNetwork, kind: str, lr: float, weight_decay: float):
        self.net, self.kind, self.lr, self.weight_decay = net, kind, lr, weight_decay
        params = list(net.parameters())
        self.dense: torch.optim.Optimizer
        if kind == "adam":
            try:
                self.dense = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
            except (RuntimeError, TypeError):
                self.dense = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        elif kind == "sgd":
            self.dense = torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
        else:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {kind!r}")

    def step(self, rows: torch.Tensor, local: Rows) -> None:
        self.dense.step()
        if self.kind == "adam":
            self.net.tables.adam(rows, local, self.lr, weight_decay=self.weight_decay)
        else:
            self.net.tables.sgd(rows, local, self.lr)


class _Progress:
    def __init__(self, total: int, enabled: bool | None):
        from ..model import _Config

        enabled = _Config.progress if enabled is None else enabled
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="Training", unit="trace", unit_scale=True, leave=False,
                            mininterval=0.5)
        self.start = time.perf_counter()
        self.done = 0

    def update(self, n: int, loss: float) -> None:
        self.done += n
        if self.bar is not None:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"loss {loss:.4g}, {rate:,.0f} traces/s", refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- training


def learn_inference_network(model: Any, num_traces: int | None = None, batch_size: int = 64,
                            observe_embeddings: dict[str, Any] | None = None, dataset: Any = None,
                            device: Any = None, learning_rate: float = 1e-3, optimizer: str = "adam",
                            weight_decay: float = 0.0, prior_inflation: bool | float = False,
                            mixed_precision: bool | None = None, seed: int | None = None,
                            progress: bool | None = None, network: InferenceNetwork | None = None,
                            simulation_chunk: int | None = None, **config: Any) -> InferenceNetwork:
    """Trains an inference network on ``num_traces`` traces, ``batch_size`` per step.

    Online (default): prior traces of ``model``.  Offline: ``dataset`` = a TraceBatch, a
    list of them, or any object with ``__len__`` / ``__getitem__`` giving TraceBatches
    (``num_traces`` defaults to one pass).  ``prior_inflation``: True (factor 3) or a
    factor by which Normal / LogNormal scales widen, with uniform Categorical and
    Bernoulli draws, for broader training data.  ``device``: 'cpu' or 'cuda' (default:
    where ``network`` is, else 'cpu'); bf16 autocast on CUDA unless
    ``mixed_precision=False``.  Network sizes (PyProb's defaults):
    ``lstm_dim=512, lstm_depth=1, address_embedding_dim=64,
    distribution_type_embedding_dim=8, sample_embedding_dim=4, observe_embedding_dim=256,
    proposal_mixture_components=10, proposal_dim=64, address_instances=True``.
    """
    from ..model import next_seed

    if "learning_rate_init" in config:
        learning_rate = config.pop("learning_rate_init")
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"learn_inference_network: unknown arguments {sorted(unknown)}")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # A network goes on training where it is unless a device is named.
    dev = _device(device if device is not None else (network.device if network is not None else "cpu"))
    autocast = (dev.type == "cuda") if mixed_precision is None else bool(mixed_precision)
    if autocast and dev.type != "cuda":
        autocast = False  # bf16 autocast pays off on GPUs; on CPU it only slows the LSTM
    seed = next_seed(seed)
    rng = np.random.default_rng(seed)

    # The data: an iterator of StepData-able TraceBatches.
    offline = dataset is not None
    if offline:
        batches = _dataset_batches(dataset)
        total_available = sum(len(b) for b in batches)
        if num_traces is None:
            num_traces = total_available
        first_batch = batches[0]
    else:
        if num_traces is None:
            raise ValueError("num_traces is required when training online (no dataset)")
        inflation = 3.0 if prior_inflation is True else float(prior_inflation or 0.0)
        simulate = _simulator(model, seed, inflation)
        chunk = int(simulation_chunk or max(batch_size, min(16 * batch_size, 8192)))
        chunk = max(batch_size, chunk // batch_size * batch_size)
        first_batch = simulate(0, min(chunk, max(int(num_traces), batch_size)))
        if simulation_chunk is None:  # big observed tensors: keep a chunk's values near 64 MB
            per_trace = 8 * max(1, int(first_batch.arenas["values"].size) // max(len(first_batch), 1))
            chunk = max(batch_size, min(chunk, (64 << 20) // per_trace // batch_size * batch_size))
    num_traces = int(num_traces)
    if num_traces < 1:
        raise ValueError(f"num_traces must be >= 1, got {num_traces}")

    net = network
    if net is None:
        names, sizes, specs = _observe_layout(first_batch, observe_embeddings,
                                              int(config.get("observe_embedding_dim", DEFAULTS["observe_embedding_dim"])))
        net = InferenceNetwork(names, sizes, specs, device=dev, **config)
    else:
        net.to(dev)
    net.train()
    opt = _Optimizer(net, optimizer, float(learning_rate), float(weight_decay))
    bar = _Progress(num_traces, progress)

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
            # Embedded simulators run without the GIL: simulate the next chunk while training
            # on this one.  A Python model would hold the GIL the training step needs between
            # its kernels, so it simulates in line.
            pool = ThreadPoolExecutor(1) if hasattr(model, "_native") else None
            try:
                first = len(first_batch)
                current = first_batch
                while True:
                    pending = pool.submit(simulate, first, chunk) if pool is not None else None
                    d = _step_data(net, current)
                    ids = d.usable
                    for s in range(0, len(ids), batch_size):
                        yield d, ids[s:s + batch_size]
                    current = pending.result() if pending is not None else simulate(first, chunk)
                    first += chunk
            finally:
                if pool is not None:
                    pool.shutdown(wait=True)

    def limited() -> Iterator[tuple[StepData, np.ndarray]]:
        given = 0
        for data, ids in minibatches():
            if given >= num_traces:
                return
            if len(ids):
                given += len(ids)
                yield data, ids

    # The first batch fixes the observation normalizers (before any minibatch is built).
    if net.traces_trained == 0:
        d0 = _step_data(net, first_batch if not offline else batches[0])
        net.observe.fit([torch.as_tensor(o[d0.usable], device=dev) for o in d0.observed])

    # On a GPU, the next minibatch is built while the device still runs the step before
    # (kernel launches return at once; losses are read back only every few steps, since a
    # read-back waits for the device).  A helper thread for it would cost more than it
    # saves: it takes the GIL the launching thread needs between kernels.
    gpu = dev.type != "cpu"
    source = ((d, i, net.minibatch(d, i)) for d, i in limited())
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        values = torch.stack([v for _, v in pending]).float().cpu().tolist()
        for (n, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise TrainingError(f"training loss is {value} after {n} traces; try a smaller learning_rate")
            net.history.append((n, value))
        bar.update(sum(pending_sizes), values[-1])
        pending.clear()
        pending_sizes.clear()

    pending_sizes: list[int] = []
    try:
        for data, ids, mb in source:
            if mb.num_steps == 0:
                raise TrainingError("the training traces have no controlled scalar sample sites to propose for")
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
        flush()
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
        bar.close()
    net.eval()
    return net


# --------------------------------------------------------------------------- files


def save_inference_network(net: InferenceNetwork, path: str | Path) -> Path:
    """Writes ``path`` (a torch file: {'state_dict': tensors, 'metadata': JSON string},
    loadable with ``torch.load(path, weights_only=True)``) and ``path + '.json'`` (the
    same metadata, for people and tools)."""
    path = Path(path)
    saved = net.save_state()
    meta = json.dumps(saved["meta"])
    torch.save({"state_dict": saved["state"], "metadata": meta}, path)
    Path(str(path) + ".json").write_text(json.dumps(saved["meta"], indent=1))
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
    module_state = {k: v for k, v in state.items() if not k.startswith("tables.")}
    net.load_state_dict(module_state, strict=True)
    rows = meta["rows"]
    net.tables.load_state(tables, np.array([name_id(r["address"]) for r in rows], dtype=np.int64),
                          np.array([r["instance"] for r in rows], dtype=np.int64),
                          np.array([r["kind"] for r in rows], dtype=np.int64))
    net.traces_trained = int(meta.get("traces_trained", 0))
    net.history = [(int(a), float(b)) for a, b in meta.get("history", [])]
    net.to(_device(device))
    net.eval()
    return net
