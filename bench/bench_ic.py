"""Inference compilation: training traces/s and guided-inference traces/s.

Both engines train the same LSTM network family at PyProb's default sizes (LSTM 512, address
embedding 64, distribution embedding 8, value embedding 4, observation embedding 256 in total,
10 mixture components; LSTM input 404 wide), batch 128, torch on the harness's thread count
(1 by default).  Rows:

- ``ic_train_<model>``: whole training steps (simulation included) against PyProb 1.5.0;
- ``ic_train_<model>_floor``: the same against a bare ``torch.nn.LSTM`` step (forward + backward
  + Adam) of the same input width, hidden size, trace lengths (packed, as ppfast runs them) and
  batch -- the issue's floor; target 1 / 1.5;
- ``ic_guided_<model>``: importance sampling with the trained network against PyProb's;
- ``ic_step_addresses``: a training step with 10,000 known addresses, row-wise Adam against a
  dense Adam over the same tables; the extra columns give ms per step at 10 .. 10,000 addresses.

``python bench/gpu_ic.py`` runs the same measurements on CUDA.
"""

from __future__ import annotations

import contextlib
import io
import time
from typing import Any, Callable

from bench.harness import Case, Runner, Unavailable, benchmark

BATCH = 128
OBSERVE = {"gum": {"obs0": 8.0, "obs1": 9.0}, "branching": {"obs": 6}, "geometric": {"obs": 3.0}}
EMBED = {"gum": {"obs0": {"dim": 128}, "obs1": {"dim": 128}}, "branching": {"obs": {"dim": 256}},
         "geometric": {"obs": {"dim": 256}}}
CLASSES = {"gum": "GUM", "branching": "Branching", "geometric": "Geometric"}
TAU_EMBED = {"calorimeter": {"embedding": "cnn3d", "reshape": [1, 20, 35, 35], "dim": 256, "channels": [8, 16]}}
INPUT, HIDDEN = 404, 512


def _quiet() -> Any:
    return contextlib.redirect_stdout(io.StringIO())


def _ppfast_model(name: str, embedded: bool) -> Any:
    if embedded:
        import ppfast.examples

        try:
            return ppfast.examples.load(name, threads=1)
        except ValueError as e:
            raise Unavailable(str(e)) from e
    import bench.ppfast_models as models

    return getattr(models, CLASSES[name])()


def _pyprob_model(name: str) -> Any:
    import bench.pyprob_models as models

    models.load_pyprob()
    models.disable_distribution_validation()  # IC-guided IS with Poisson latents
    return getattr(models, CLASSES[name])()


def _pyprob_train(model: Any, name: str, n: int) -> None:
    import pyprob

    with _quiet():
        model.learn_inference_network(num_traces=n, observe_embeddings=EMBED[name], batch_size=BATCH,
                                      inference_network=pyprob.InferenceNetwork.LSTM)


def _ppfast_train(model: Any, name: str, n: int, **kw: Any) -> Any:
    return model.learn_inference_network(n, batch_size=BATCH, observe_embeddings=kw.pop("embed", EMBED.get(name)),
                                         progress=False, seed=1, **kw)


# --------------------------------------------------------------------------- the bare-LSTM floor


def lstm_floor(lengths: list[list[int]], device: str = "cpu", dtype: Any = None) -> Runner:
    """run(n): n traces through bare LSTM steps (forward + backward + Adam) of batch len(lengths[i])
    with the given trace lengths, packed; input 404, hidden 512."""
    import torch
    from torch.nn.utils.rnn import PackedSequence

    lstm = torch.nn.LSTM(INPUT, HIDDEN).to(device)
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-3, fused=True if device != "cpu" else None)
    steps = []
    for ls in lengths:
        counts = sorted(ls, reverse=True)
        t_max = counts[0]
        sizes = torch.tensor([sum(1 for c in counts if c > t) for t in range(t_max)], dtype=torch.int64)
        steps.append((torch.randn(int(sizes.sum()), INPUT, device=device), sizes))
    batch = len(lengths[0])
    k = [0]

    def run(n: int) -> None:
        for _ in range(max(1, n // batch)):
            x, sizes = steps[k[0] % len(steps)]
            k[0] += 1
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=dtype is not None):
                out, _ = lstm(PackedSequence(x, sizes))
            out.data.float().pow(2).mean().backward()
            opt.step()
        if device != "cpu":
            torch.cuda.synchronize()

    return run


def trace_lengths(model: Any, batches: int = 16, batch: int = BATCH) -> list[list[int]]:
    """Steps per trace (controlled scalar draws) of the model's prior traces, in minibatches."""
    from ppfast.nn.data import StepData

    data = StepData(model.prior_batch(batches * batch, seed=3, progress=False), [])
    c = data.count.tolist()
    return [c[i * batch:(i + 1) * batch] for i in range(batches)]


# --------------------------------------------------------------------------- training


def _train_case(name: str, embedded: bool, against: str) -> Case:
    last: dict[str, Any] = {}

    def ppfast() -> Runner:
        m = _ppfast_model(name, embedded)
        _ppfast_train(m, name, 4 * BATCH)  # builds the network (address rows, embeddings)

        def run(n: int) -> None:
            net = _ppfast_train(m, name, n)
            last["loss"] = net.history[-1][1]

        return run

    def pyprob() -> Runner:
        m = _pyprob_model(name)
        _pyprob_train(m, name, 4 * BATCH)
        return lambda n: _pyprob_train(m, name, n)

    def floor() -> Runner:
        return lstm_floor(trace_lengths(_ppfast_model(name, embedded)))

    return Case(ppfast=ppfast, baseline=pyprob if against == "pyprob" else floor, n_ppfast=BATCH, n_baseline=BATCH,
                extra=lambda: {"loss": last.get("loss", float("nan")), "batch": BATCH})


def _register_train(name: str, embedded: bool) -> None:
    tag = f"{name}{'_embedded' if embedded else ''}"

    @benchmark(f"ic_train_{tag}", unit="traces/s")
    def vs_pyprob() -> Case:
        return _train_case(name, embedded, "pyprob")

    @benchmark(f"ic_train_{tag}_floor", unit="traces/s", target=1 / 1.5, baseline="bare LSTM step")
    def vs_floor() -> Case:
        return _train_case(name, embedded, "floor")


for _name, _embedded in (("gum", False), ("gum", True), ("branching", False), ("geometric", False)):
    _register_train(_name, _embedded)


@benchmark("ic_train_tau_decay_floor", unit="traces/s", baseline="bare LSTM step")
def ic_train_tau_decay() -> Case:
    """The realistic workload: embedded tau-decay simulator, 3-D CNN over the 20x35x35
    calorimeter (training is bound by the CNN here; the LSTM floor is shown for scale)."""
    last: dict[str, Any] = {}

    def ppfast() -> Runner:
        m = _ppfast_model("tau_decay", True)
        _ppfast_train(m, "tau_decay", BATCH, embed=TAU_EMBED)

        def run(n: int) -> None:
            last["loss"] = _ppfast_train(m, "tau_decay", n).history[-1][1]

        return run

    return Case(ppfast=ppfast, baseline=lambda: lstm_floor(trace_lengths(_ppfast_model("tau_decay", True), 4)),
                n_ppfast=BATCH, n_baseline=BATCH, extra=lambda: {"loss": last.get("loss", float("nan"))})


# --------------------------------------------------------------------------- guided inference


def _guided_case(name: str, embedded: bool) -> Case:
    last: dict[str, Any] = {}
    observe = OBSERVE[name]

    def ppfast() -> Runner:
        import ppfast as pf

        m = _ppfast_model(name, embedded)
        _ppfast_train(m, name, 16 * BATCH)
        eng = pf.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK

        def run(n: int) -> None:
            post = m.posterior_results(n, eng, observe=observe, progress=False, seed=2)
            last["ess_per_trace"] = post.effective_sample_size / n
            last["records_per_trace"] = post.batch.num_records / n

        return run

    def pyprob() -> Runner:
        import pyprob

        m = _pyprob_model(name)
        _pyprob_train(m, name, 16 * BATCH)
        eng = pyprob.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK

        def run(n: int) -> None:
            with _quiet():
                m.posterior_results(num_traces=n, inference_engine=eng, observe=observe)

        return run

    return Case(ppfast=ppfast, baseline=pyprob, n_ppfast=256, n_baseline=16,
                extra=lambda: {k: round(v, 3) for k, v in last.items()})


def _register_guided(name: str, embedded: bool) -> None:
    tag = f"{name}{'_embedded' if embedded else ''}"

    @benchmark(f"ic_guided_{tag}", unit="traces/s", target=50.0 if name == "gum" else None)
    def make() -> Case:
        return _guided_case(name, embedded)


for _name, _embedded in (("gum", False), ("gum", True), ("branching", False), ("branching", True),
                         ("geometric", False)):
    _register_guided(_name, _embedded)


@benchmark("ic_guided_tau_decay", unit="traces/s", baseline="prior IS")
def ic_guided_tau_decay() -> Case:
    """Guided IS on the tau-decay simulator (3-D CNN embedding computed once per run) against
    prior importance sampling of the same simulator (for scale; not a speed target)."""
    import numpy as np

    state: dict[str, Any] = {}

    def observation() -> dict[str, Any]:
        m = _ppfast_model("tau_decay", True)
        b = m.prior_batch(1, seed=11, progress=False)
        rec = b.records
        i = int(np.flatnonzero(rec["kind"] == 1)[0])
        off, n = int(rec["value_offset"][i]), int(rec["value_len"][i])
        state["channel"] = int(b.traces["result"][0])
        return {"calorimeter": np.array(b.arenas["values"][off:off + n])}

    def ppfast() -> Runner:
        import ppfast as pf

        m = _ppfast_model("tau_decay", True)
        _ppfast_train(m, "tau_decay", 2 * BATCH, embed=TAU_EMBED)
        obs = observation()
        eng = pf.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
        return lambda n: m.posterior_results(n, eng, observe=obs, progress=False, seed=2)

    def prior() -> Runner:
        m = _ppfast_model("tau_decay", True)
        obs = observation()
        return lambda n: m.posterior_results(n, observe=obs, progress=False, seed=2)

    return Case(ppfast=ppfast, baseline=prior, n_ppfast=256, n_baseline=256)


# --------------------------------------------------------------------------- addresses


def _address_step(addresses: int, dense: bool) -> Callable[[], float]:
    """A training step (GUM minibatch, one touched address) on a network that knows
    ``addresses`` addresses; returns a function timing one step in seconds."""
    import numpy as np
    import torch

    from ppfast.nn.data import StepData

    m = _ppfast_model("gum", False)
    net = _ppfast_train(m, "gum", BATCH)
    extra = addresses - net.tables.n
    if extra > 0:  # synthetic addresses, as if seen in earlier traces
        ids = np.arange(1 << 20, (1 << 20) + extra, dtype=np.int64)
        net._init_rows(net.tables.add(ids, np.zeros(extra, dtype=np.int64), np.ones(extra, dtype=np.int64)))
    data = StepData(m.prior_batch(BATCH, seed=4, progress=False),
                    [(m_id(o), s) for o, s in zip(net.observe_names, net.observe_sizes)])
    ids = np.arange(BATCH)
    dense_opt: torch.optim.Optimizer | None = None
    full: dict[str, torch.nn.Parameter] = {}
    if dense:
        full = {k: torch.nn.Parameter(v) for k, v in net.tables.data.items()}
        dense_opt = torch.optim.Adam(list(net.parameters()) + list(full.values()), lr=1e-4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> float:
        start = time.perf_counter()
        mb = net.minibatch(data, ids, grow=False)
        if dense:
            local = {k: p.index_select(0, mb.rows) for k, p in full.items()}
            assert dense_opt is not None
            dense_opt.zero_grad(set_to_none=True)
            net.loss(mb, local).backward()
            dense_opt.step()
        else:
            local = net.tables.gather(mb.rows)
            opt.zero_grad(set_to_none=True)
            net.loss(mb, local).backward()
            opt.step()
            net.tables.adam(mb.rows, local, 1e-4)
        return time.perf_counter() - start

    return step


def m_id(name: str) -> int:
    from ppfast.primitives import name_id

    return name_id(name)


@benchmark("ic_step_addresses", unit="steps/s", target=1.0, baseline="dense Adam")
def ic_step_addresses() -> Case:
    """Training steps/s with 10,000 known addresses (a GUM minibatch touches one of them):
    row-wise Adam on the touched rows against dense Adam over every row.  Extra columns: median
    ms per step at 10, 100, 1,000 and 10,000 known addresses, for both."""
    import statistics

    table: dict[str, Any] = {}

    def side(dense: bool) -> Callable[[], Runner]:
        def setup() -> Runner:
            step = _address_step(10_000, dense)
            step()
            return lambda n: [step() for _ in range(n)]

        return setup

    def extra() -> dict[str, Any]:
        for a in (10, 100, 1_000, 10_000):
            for dense in (False, True):
                step = _address_step(a, dense)
                step()
                table[f"{'dense' if dense else 'rows'}_ms@{a}"] = round(1e3 * statistics.median(step() for _ in range(7)), 1)
        return table

    return Case(ppfast=side(False), baseline=side(True), extra=extra)
