"""Inference compilation on CUDA: one command, the same table as ``python -m bench``.

    python bench/gpu_ic.py                 # every row
    python bench/gpu_ic.py --quick         # shorter timed calls
    python bench/gpu_ic.py --only ten      # a subset (regular expression)

ppfast runs its network on the GPU with bf16 autocast (the default on CUDA); each row's
baseline is measured in the same run on the same device:

- ``gpu_train_gum_b<B>``: embedded GUM trained online (simulation on the C++ workers
  included) at batch B, against a bare cuDNN LSTM step (input 404, hidden 512, forward +
  backward + Adam, bf16 autocast) at one step per trace and the same batch;
- ``gpu_train_ten_b<B>``: ten steps per trace (a ten-draw model, trained from saved traces)
  against the bare LSTM at ten steps per trace -- the issue's 70 % target;
- ``gpu_train_gum_pyprob`` / ``gpu_train_branching_pyprob``: batch 128 against PyProb 1.5.0
  on CUDA (when pyprob is importable; PyProb's CUDA path fails on Poisson proposals);
- ``gpu_guided_gum``: guided importance sampling against PyProb's on CUDA;
- ``gpu_train_tau_decay``: the tau-decay simulator with the 3-D CNN embedding.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_ic as ic
from bench.harness import Case, Registry, Runner, Unavailable, main

REGISTRY = Registry()
DEVICE = "cuda"


def _need_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise Unavailable("no CUDA device (torch.cuda.is_available() is False)")


def _floor(lengths: list[list[int]]) -> Runner:
    import torch

    _need_cuda()
    return ic.lstm_floor(lengths, device=DEVICE, dtype=torch.bfloat16)


def _sync() -> None:
    import torch

    torch.cuda.synchronize()


def _ten_model() -> Any:
    import ppfast
    from ppfast.distributions import Normal

    class Ten(ppfast.Model):
        """Ten Normal draws in a loop (ten addresses by instance); observe their sum."""

        def forward(self) -> float:
            s = 0.0
            for _ in range(10):
                s += ppfast.sample(Normal(0.0, 1.0), name="x")
            ppfast.observe(Normal(s, 1.0), name="obs")
            return s

    return Ten()


def _train_gum(batch: int) -> Case:
    def ppfast() -> Runner:
        _need_cuda()
        import ppfast.examples

        m = ppfast.examples.load("gum", threads=8)
        m.learn_inference_network(4 * batch, batch_size=batch, observe_embeddings=ic.EMBED["gum"], device=DEVICE,
                                  progress=False, seed=1)

        def run(n: int) -> None:
            m.learn_inference_network(n, batch_size=batch, progress=False, seed=2, simulation_chunk=16 * batch)
            _sync()

        return run

    return Case(ppfast=ppfast, baseline=lambda: _floor([[1] * batch]), n_ppfast=batch, n_baseline=batch)


def _train_ten(batch: int) -> Case:
    state: dict[str, Any] = {}

    def ppfast() -> Runner:
        _need_cuda()
        m = _ten_model()
        data = [m.prior_batch(max(8 * batch, 32768), seed=0, progress=False)]
        state["model"], state["data"] = m, data
        m.learn_inference_network(dataset=data, num_traces=4 * batch, batch_size=batch, device=DEVICE, progress=False,
                                  seed=1, observe_embeddings={"obs": {"dim": 256}})

        def run(n: int) -> None:
            m.learn_inference_network(dataset=data, num_traces=n, batch_size=batch, progress=False, seed=2)
            _sync()

        return run

    return Case(ppfast=ppfast, baseline=lambda: _floor([[10] * batch]), n_ppfast=batch, n_baseline=batch)


def _register_batch(batch: int) -> None:
    REGISTRY.benchmark(f"gpu_train_gum_b{batch}", unit="traces/s", target=0.7, baseline="bare cuDNN LSTM")(
        lambda: _train_gum(batch))
    REGISTRY.benchmark(f"gpu_train_ten_b{batch}", unit="traces/s", target=0.7, baseline="bare cuDNN LSTM")(
        lambda: _train_ten(batch))


for _b in (1024, 8192):
    _register_batch(_b)


def _pyprob_cuda(name: str) -> Any:
    m = ic._pyprob_model(name)
    import pyprob

    pyprob.set_device("cuda")
    return m


def _train_vs_pyprob(name: str) -> Case:
    def ppfast() -> Runner:
        _need_cuda()
        m = ic._ppfast_model(name, True)
        ic._ppfast_train(m, name, 4 * ic.BATCH, device=DEVICE)

        def run(n: int) -> None:
            ic._ppfast_train(m, name, n)
            _sync()

        return run

    def pyprob() -> Runner:
        _need_cuda()
        m = _pyprob_cuda(name)
        ic._pyprob_train(m, name, 4 * ic.BATCH)
        return lambda n: ic._pyprob_train(m, name, n)

    return Case(ppfast=ppfast, baseline=pyprob, n_ppfast=ic.BATCH, n_baseline=ic.BATCH)


def _register_pyprob(name: str) -> None:
    REGISTRY.benchmark(f"gpu_train_{name}_pyprob", unit="traces/s")(lambda: _train_vs_pyprob(name))


for _name in ("gum", "branching"):
    _register_pyprob(_name)


@REGISTRY.benchmark("gpu_guided_gum", unit="traces/s", target=50.0)
def gpu_guided_gum() -> Case:
    last: dict[str, Any] = {}

    def ppfast() -> Runner:
        import ppfast as pf

        _need_cuda()
        m = ic._ppfast_model("gum", True)
        ic._ppfast_train(m, "gum", 64 * ic.BATCH, device=DEVICE)
        eng = pf.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK

        def run(n: int) -> None:
            post = m.posterior_results(n, eng, observe=ic.OBSERVE["gum"], progress=False, seed=2, slots=4096)
            last["ess_per_trace"] = round(post.effective_sample_size / n, 3)

        return run

    def pyprob() -> Runner:
        import pyprob

        _need_cuda()
        m = _pyprob_cuda("gum")
        ic._pyprob_train(m, "gum", 16 * ic.BATCH)
        eng = pyprob.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK

        def run(n: int) -> None:
            with ic._quiet():
                m.posterior_results(num_traces=n, inference_engine=eng, observe=ic.OBSERVE["gum"])

        return run

    return Case(ppfast=ppfast, baseline=pyprob, n_ppfast=4096, n_baseline=16, extra=lambda: last)


@REGISTRY.benchmark("gpu_train_tau_decay", unit="traces/s", baseline="bare cuDNN LSTM")
def gpu_train_tau_decay() -> Case:
    embed = {"calorimeter": dict(ic.TAU_EMBED["calorimeter"], channels=[16, 32])}

    def ppfast() -> Runner:
        _need_cuda()
        import ppfast.examples

        m = ppfast.examples.load("tau_decay")  # every core simulates
        m.learn_inference_network(2 * ic.BATCH, batch_size=ic.BATCH, observe_embeddings=embed, device=DEVICE,
                                  progress=False, seed=1)

        def run(n: int) -> None:
            m.learn_inference_network(n, batch_size=ic.BATCH, progress=False, seed=2)
            _sync()

        return run

    def floor() -> Runner:
        return _floor(ic.trace_lengths(ic._ppfast_model("tau_decay", True), 4))

    return Case(ppfast=ppfast, baseline=floor, n_ppfast=ic.BATCH, n_baseline=ic.BATCH)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], registry=REGISTRY))
