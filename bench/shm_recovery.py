"""Shared-memory crash recovery: a run whose simulator process crashes at a given share of
its slice, against the same run without a crash (same model, same machine, same
invocation; medians of alternating repeats).

    python -m bench.shm_recovery [--traces N] [--at 0.9] [--repeats 5]

A restart re-runs only the piece the process was on, so a crash at 90% costs the restart
plus at most 1/16 of the slice: the ratio stays near 1, where re-running the slice
would make it about 1.9.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import ppfast
from ppfast.models.shm import ShmModel, SimulatorWarning


def timed_run(traces: int, env: dict, model: str) -> float:
    with ShmModel.example(model, workers=1, env=env) as m:
        m.prior_batch(1000, seed=1)  # started and warm
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SimulatorWarning)
            batch = m.simulate(traces, seed=2, first=0)
        elapsed = time.perf_counter() - start
        assert len(batch) == traces
        return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=int, default=2_000_000)
    ap.add_argument("--at", type=float, default=0.9, help="where in the slice the process crashes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default="gum")
    args = ap.parse_args()
    ppfast.set_progress(False)
    crash = {"PPFAST_SHM_FAULT": f"segv@{int(args.traces * args.at)}"}
    clean, crashed = [], []
    for _ in range(args.repeats):
        clean.append(timed_run(args.traces, {}, args.model))
        crashed.append(timed_run(args.traces, crash, args.model))
    c, k = statistics.median(clean), statistics.median(crashed)
    print(f"{args.model}, {args.traces} traces, one process, crash at {args.at:.0%} of its slice")
    print(f"clean run    median {c:.3f} s")
    print(f"crashed run  median {k:.3f} s")
    print(f"ratio crashed / clean: {k / c:.2f}")


if __name__ == "__main__":
    main()
