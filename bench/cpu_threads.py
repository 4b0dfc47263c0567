"""CPU thread defaults: inference compilation out of the box against every manual setting.

Each configuration runs in its own process (``OMP_NUM_THREADS`` is read when torch starts),
rounds interleaved so that load from other processes hits every configuration alike:

- ``default``: no ``OMP_NUM_THREADS``, no ``torch.set_num_threads`` -- what a user gets;
- ``OMP_NUM_THREADS=k`` for k = 1 .. cores;
- ``torch.set_num_threads(k)`` called by the user before training, for k = 1 .. cores.

Per configuration: training traces/s and guided importance-sampling traces/s on GUM, as a
Python model and as the embedded C++ simulator, at PyProb's default network sizes, batch 128.
The table gives each rate, the best manual setting, and default / best (target >= 0.8).

``--profile``: instead, the cost of one training step on CPU: wall time per step with one
torch thread, the part of it spent building the minibatch in numpy, and the number of torch
operators per step from ``torch.profiler`` (all, and those called from Python).

    python bench/cpu_threads.py                 # table; --rounds 3 --seconds 4
    python bench/cpu_threads.py --profile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

OBSERVE = {"obs0": 8.0, "obs1": 9.0}
SIZES = {"observe_embeddings": {"obs0": {"dim": 128}, "obs1": {"dim": 128}}}  # PyProb's defaults otherwise
BATCH = 128
WORKLOADS = ("train_python", "guided_python", "train_embedded", "guided_embedded")


def _model(kind: str) -> Any:
    if kind == "python":
        from ppfast.examples.python_models import GUM

        return GUM()
    import ppfast.examples

    return ppfast.examples.load("gum")


def _rate(fn: Any, n0: int, seconds: float) -> float:
    """Items per second of ``fn(n)``, n grown until one call takes ``seconds``."""
    n = n0
    while True:
        t = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t
        if dt >= seconds:
            return n / dt
        n = int(n * min(8.0, max(2.0, 1.2 * seconds / max(dt, 1e-3))))


def child(setting: str, seconds: float) -> dict[str, float]:
    """One configuration, in this process: rates of every workload."""
    import torch

    if setting.startswith("torch="):
        torch.set_num_threads(int(setting.split("=")[1]))
    import ppfast

    ppfast.set_progress(False)
    engine = ppfast.InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
    out = {}
    for kind in ("python", "embedded"):
        model = _model(kind)
        model.learn_inference_network(2 * BATCH, batch_size=BATCH, seed=0, **SIZES)  # warm-up, builds the tables

        def train(n: int, model: Any = model) -> None:
            model.learn_inference_network(max(BATCH, n // BATCH * BATCH), batch_size=BATCH, seed=1)

        def guided(n: int, model: Any = model) -> None:
            model.posterior_results(n, engine, observe=OBSERVE, seed=2)

        out[f"train_{kind}"] = _rate(train, 4 * BATCH, seconds)
        out[f"guided_{kind}"] = _rate(guided, 2000, seconds)
    out["torch_threads_after"] = torch.get_num_threads()
    return out


def _settings() -> list[str]:
    cores = len(os.sched_getaffinity(0))
    return ["default"] + [f"OMP_NUM_THREADS={k}" for k in range(1, cores + 1)] + \
        [f"torch={k}" for k in range(1, cores + 1)]


def _run_child(setting: str, seconds: float) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if setting.startswith("OMP_NUM_THREADS="):
        env["OMP_NUM_THREADS"] = setting.split("=")[1]
    env["PPFAST_PROGRESS"] = "0"
    cmd = [sys.executable, __file__, "--child", setting, "--seconds", str(seconds)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rounds: int, seconds: float) -> dict[str, Any]:
    settings = _settings()
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in settings}
    for r in range(rounds):
        for s in settings if r % 2 == 0 else settings[::-1]:
            runs[s].append(_run_child(s, seconds))
            print(f"round {r + 1}/{rounds} {s}: " + ", ".join(f"{k} {v:,.0f}" for k, v in runs[s][-1].items()),
                  file=sys.stderr, flush=True)
    med = {s: {w: statistics.median(x[w] for x in runs[s]) for w in WORKLOADS} for s in settings}
    print(f"{'setting':<20}" + "".join(f"{w:>19}" for w in WORKLOADS))
    for s in settings:
        print(f"{s:<20}" + "".join(f"{med[s][w]:>19,.0f}" for w in WORKLOADS))
    ratios = {}
    for w in WORKLOADS:
        best = max((s for s in settings if s != "default"), key=lambda s: med[s][w])
        ratios[w] = {"default": med["default"][w], "best": med[best][w], "best_setting": best,
                     "ratio": med["default"][w] / med[best][w]}
    print(f"{'default / best':<20}" + "".join(f"{ratios[w]['ratio']:>19.2f}" for w in WORKLOADS))
    print(f"{'best setting':<20}" + "".join(f"{ratios[w]['best_setting']:>19}" for w in WORKLOADS))
    return {"median": med, "ratios": ratios, "runs": runs}


def profile(steps: int) -> None:
    """Host time and torch operator count per training step (one torch thread, Python GUM
    minibatches prepared in advance, so only the step is measured)."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    import ppfast
    from ppfast.nn.train import _step_data

    torch.set_num_threads(1)
    ppfast.set_progress(False)
    model = _model("python")
    net = model.learn_inference_network(4 * BATCH, batch_size=BATCH, seed=0, **SIZES)
    opt = net._optimizer
    batch = model.simulate(steps * BATCH, seed=3, progress=False)
    data = _step_data(net, batch)
    net.train()

    building = [0.0]

    def step(i: int) -> None:
        ids = np.arange(i * BATCH, (i + 1) * BATCH)
        t0 = time.perf_counter()
        mb = net.minibatch(data, ids)
        building[0] += time.perf_counter() - t0
        local = net.tables.gather(mb.rows)
        loss = net.loss(mb, local)
        opt.dense.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(mb.rows, local)
        float(loss)

    for i in range(3):
        step(i)
    building[0] = 0.0
    t = time.perf_counter()
    for i in range(3, steps):
        step(i)
    per_step = (time.perf_counter() - t) / (steps - 3)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(3, 13):
            step(i)
    events = prof.events()
    ops = [e for e in events if e.name.startswith("aten::")]
    top = [e for e in ops if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    print(json.dumps({"ms_per_step": 1e3 * per_step, "minibatch_ms_per_step": 1e3 * building[0] / (steps - 3),
                      "aten_ops_per_step": len(ops) / 10,
                      "top_level_aten_ops_per_step": len(top) / 10}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.seconds)))
        return
    if args.profile:
        profile(args.steps)
        return
    result = table(args.rounds, args.seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
