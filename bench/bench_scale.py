"""Throughput against run size: embedded GUM and the 100-draw model, prior and importance
sampling, at 10k, 100k, 1M and 10M traces, and 100M in streaming mode; numba and
shared-memory GUM prior and IS the same way.  Each size is one benchmark whose baseline is the
same model at 1M traces, measured in the same run, so ``ratio`` is the rate relative to the
1M figure (flat throughput: within 0.8-1.2).  Extra columns: bytes per record and per trace,
the recording-off floor's rate over this rate (embedded), and for the streamed GUM IS runs
the peak RSS of a 10M-trace streamed IS run in a fresh process.  Each benchmark redraws
``bench/scale.png`` (rate against size) from the rates measured so far.

``python -m bench --only '^scale_'`` runs them; ``python -m bench.bench_scale --smoke``
is a few-second sweep of the same code at tiny sizes (what the tests run).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from bench.harness import BENCH_DIR, Case, Runner, Unavailable, benchmark

OBS = {"gum": {"obs0": 8.0, "obs1": 9.0}, "hundred": {"obs": 1.0}}
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
REFERENCE = 1_000_000
PLOT = BENCH_DIR / "scale.png"

# (model, mode, engine) -> {size: [rate of each timed call]}
RATES: Dict[Tuple[str, str, str], Dict[int, List[float]]] = {}
_MODELS: Dict[Tuple[str, str], Any] = {}


def _model(name: str, mode: str) -> Any:
    key = (name, mode)
    if key not in _MODELS:
        try:
            import ppfast
            import ppfast.examples

            ppfast.set_progress(False)
            _MODELS[key] = ppfast.examples.load(name, mode=mode)
        except (ImportError, ValueError, OSError) as e:
            raise Unavailable(f"{mode} example {name!r} not available: {e}") from e
    return _MODELS[key]


def _call(model: Any, name: str, engine: str, size: int, stream: bool) -> Any:
    if engine == "prior":
        return model.prior_results(size, stream=stream, progress=False)
    return model.posterior_results(size, observe=OBS[name], stream=stream, progress=False)


def runner(name: str, mode: str, engine: str, size: int, stream: bool, record: bool = True) -> Runner:
    """run(n): n traces as n / size calls of ``size`` traces; each call's rate is recorded."""
    model = _model(name, mode)

    def run(n: int) -> None:
        calls = max(1, n // size)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the automatic-streaming notice
            for _ in range(calls):
                _call(model, name, engine, size, stream)
        if record:
            RATES.setdefault((name, mode, engine), {}).setdefault(size, []).append(
                calls * size / (time.perf_counter() - start))

    return run


def memory_per_trace(name: str, mode: str) -> Dict[str, float]:
    """Bytes per record and per trace of a 10k-trace prior batch (records, traces, arenas)."""
    batch = _model(name, mode).prior_batch(10_000, seed=0, progress=False)
    records = sum(v.nbytes for v in batch.records.values()) + batch.arenas["values"].nbytes
    total = records + sum(v.nbytes for v in batch.traces.values()) + batch.arenas["params"].nbytes
    return {"bytes/record": round(records / max(1, batch.num_records), 1),
            "bytes/trace": round(total / len(batch), 1)}


def floor_ratio(name: str, size: int, rate: float) -> Optional[float]:
    """Recording-off rate over ``rate`` (embedded models), measured now, on ``size`` traces."""
    model = _model(name, "embedded")
    start = time.perf_counter()
    model.run_unrecorded(size)
    return round(size / (time.perf_counter() - start) / rate, 2)


def peak_rss_streaming_is(name: str, num_traces: int) -> float:
    """Peak RSS (MiB) of a fresh process that runs one streamed IS run of ``num_traces``."""
    code = ("import resource, ppfast, ppfast.examples\n"
            "ppfast.set_progress(False)\n"
            f"m = ppfast.examples.load({name!r})\n"
            f"m.posterior_results({num_traces}, observe={OBS[name]!r}, stream=True, seed=1)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600, check=True)
    return round(int(out.stdout.split()[-1]) / 1024, 1)


def _median_rate(key: Tuple[str, str, str], size: int) -> Optional[float]:
    rates = RATES.get(key, {}).get(size)
    return statistics.median(rates[-3:]) if rates else None


def save_plot(path: Path = PLOT) -> Optional[Path]:
    """Rate against size, one line per (model, mode, engine), from the rates so far."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in sorted(RATES):
        sizes = sorted(RATES[key])
        ax.plot(sizes, [_median_rate(key, s) for s in sizes], marker="o", label=" ".join(key))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("traces per run")
    ax.set_ylabel("traces/s")
    ax.set_title("ppfast throughput against run size (streamed above 10M)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _extra(name: str, mode: str, engine: str, size: int, stream: bool) -> Callable[[], Dict[str, Any]]:
    def extra() -> Dict[str, Any]:
        out: Dict[str, Any] = {"traces/call": size, "stream": stream, "mode": mode}
        out.update(memory_per_trace(name, mode))
        rate = _median_rate((name, mode, engine), size)
        if mode == "embedded" and rate:
            out["floor/rate"] = floor_ratio(name, min(size, REFERENCE), rate)
        if name == "gum" and mode == "embedded" and engine == "is" and stream:
            out["peak RSS 10M streamed IS (MiB)"] = peak_rss_streaming_is(name, 10_000_000)
        save_plot()
        return out

    return extra


def _register(name: str, mode: str, engine: str, size: int, stream: bool) -> None:
    label = f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"
    bench_name = f"scale_{name}_{mode}_{engine}_{label}" + ("_stream" if stream else "")

    def make() -> Case:
        return Case(ppfast=lambda: runner(name, mode, engine, size, stream),
                    baseline=lambda: runner(name, mode, engine, REFERENCE, False),
                    n_ppfast=size, n_baseline=REFERENCE, extra=_extra(name, mode, engine, size, stream))

    make.__name__ = bench_name
    benchmark(bench_name, unit="traces/s", target=0.8, baseline="same model at 1M traces")(make)


def _plan() -> List[Tuple[str, str, str, int, bool]]:
    plan = []
    for engine in ("prior", "is"):
        # GUM: in memory up to 10M traces (2.7 GB), streamed at 10M and 100M.
        plan += [("gum", "embedded", engine, s, False) for s in SIZES]
        plan += [("gum", "embedded", engine, s, True) for s in (10_000_000, 100_000_000)]
        # 100 draws per trace: 10M traces are 10^9 records (tens of GB): streamed.
        plan += [("hundred", "embedded", engine, s, False) for s in SIZES[:3]]
        plan += [("hundred", "embedded", engine, 10_000_000, True)]
        # The same GUM compiled with numba (in this process) and served over shared memory.
        for mode in ("numba", "shm"):
            plan += [("gum", mode, engine, s, False) for s in SIZES]
            plan += [("gum", mode, engine, 100_000_000, True)]
    return plan


for _args in _plan():
    _register(*_args)


def sweep(sizes: List[int], out: Any = sys.stdout, plot: Path = PLOT) -> List[Dict[str, Any]]:
    """One timed call per size for embedded GUM prior and IS (in memory, and streamed), each
    size with a 1M-style reference at the largest in-memory size; prints the table and
    saves the plot.  Used by --smoke."""
    rows = []
    ref = sizes[len(sizes) // 2]
    for engine in ("prior", "is"):
        for stream in (False, True):
            base = runner("gum", "embedded", engine, ref, False, record=False)
            for size in sizes:
                run = runner("gum", "embedded", engine, size, stream)
                t0 = time.perf_counter()
                base(ref)
                ref_rate = ref / (time.perf_counter() - t0)
                run(size)
                rate = _median_rate(("gum", "embedded", engine), size)
                row = {"engine": engine, "stream": stream, "size": size, "rate": rate, "ratio": rate / ref_rate}
                rows.append(row)
                print(f"gum embedded {engine:5s} stream={stream!s:5s} {size:>10,} traces  {rate:>12,.0f} traces/s  "
                      f"x{row['ratio']:.2f} of {ref:,}", file=out)
    print(memory_per_trace("gum", "embedded"), file=out)
    save_plot(plot)
    return rows


def breakdown(name: str, mode: str, engine: str, size: int, out: Any = sys.stdout) -> Dict[str, float]:
    """Seconds spent in each stage of one in-memory run of ``size`` traces: simulating the
    chunks (the native runs, which include merging each run's per-thread parts), joining the
    chunks into one batch, checking the observed names, building the Empirical, and the
    rest (Python bookkeeping)."""
    import ppfast.model as model_module
    import ppfast.trace as trace_module

    model = _model(name, mode)
    spent: Dict[str, float] = {}

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0
        return wrapper

    patches = [(model, "_simulate", timed("simulate chunks", model._simulate)),
               (trace_module.TraceBatch, "concat", staticmethod(timed("join chunks", trace_module.TraceBatch.concat))),
               (model_module, "warn_unused_observations",
                timed("check observed names", model_module.warn_unused_observations)),
               (model_module, "_empirical", timed("build Empirical", model_module._empirical))]
    saved = [(obj, attr, obj.__dict__.get(attr)) for obj, attr, _ in patches]
    for obj, attr, fn in patches:
        setattr(obj, attr, fn)
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _call(model, name, engine, size, False)
        total = time.perf_counter() - t0
        del result
    finally:
        for obj, attr, old in saved:
            if old is None:
                delattr(obj, attr)
            else:
                setattr(obj, attr, old)
    # TraceBatch.concat is a classmethod: the timed wrapper got the class as its first argument.
    spent["other"] = total - sum(spent.values())
    spent["total"] = total
    print(f"{name} {mode} {engine} {size:,} traces: {size / total:,.0f} traces/s; "
          + ", ".join(f"{k} {v:.3f} s" for k, v in spent.items()), file=out)
    return spent


def flat_table(models: List[Tuple[str, str, str]], sizes: List[str], repeats: int, out: Any = sys.stdout,
               reference: int = REFERENCE) -> Dict[Tuple[str, str, str], Dict[str, List[float]]]:
    """Rates of every size of each (model, mode, engine), sizes interleaved within each of
    ``repeats`` rounds (so the machine's load falls on all of them alike).  A size is a
    number of traces, streamed if it ends in 's' ("100000000s").  Small sizes repeat their
    call to last about as long as ``reference`` (1M).  Prints the median rate, its spread
    (min-max over the rounds) and the ratio of the median to the reference's median."""
    rates: Dict[Tuple[str, str, str], Dict[str, List[float]]] = {}
    for _ in range(repeats):
        for key in models:
            name, mode, engine = key
            model = _model(name, mode)
            for label in sizes:
                size, stream = int(label.rstrip("s")), label.endswith("s")
                calls = max(1, reference // size)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for _ in range(calls):
                        r = _call(model, name, engine, size, stream)
                        del r
                rates.setdefault(key, {}).setdefault(label, []).append(calls * size / (time.perf_counter() - t0))
    for key, by_size in rates.items():
        ref = statistics.median(by_size[str(reference)]) if str(reference) in by_size else None
        for label, rs in by_size.items():
            med = statistics.median(rs)
            ratio = f"x{med / ref:.2f}" if ref else ""
            print(f"{' '.join(key):22s} {int(label.rstrip('s')):>12,}{' stream' if label.endswith('s') else '       '}"
                  f"  {med:>12,.0f} traces/s  ({min(rs):,.0f}-{max(rs):,.0f})  {ratio}", file=out)
    return rates


def floor_pairs(name: str, engine: str, pairs: int, size: int = REFERENCE, out: Any = sys.stdout) -> List[float]:
    """Recording-off rate over the recorded rate of ``size`` traces (embedded), from
    ``pairs`` back-to-back pairs (a change of machine load falls on both runs of a pair);
    prints the median and quartiles of the per-pair ratios."""
    model = _model(name, "embedded")

    def rate(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return size / (time.perf_counter() - t0)

    rate(lambda: _call(model, name, engine, size, False))  # fills the buffer pool
    ratios = sorted(rate(lambda: model.run_unrecorded(size)) / rate(lambda: _call(model, name, engine, size, False))
                    for _ in range(pairs))
    print(f"{name} embedded {engine} {size:,} traces: floor/rate median x{statistics.median(ratios):.2f} "
          f"(quartiles {ratios[len(ratios) // 4]:.2f}-{ratios[3 * len(ratios) // 4]:.2f}, {pairs} pairs)", file=out)
    return ratios


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (seconds): checks the code paths")
    p.add_argument("--plot", default=str(PLOT))
    p.add_argument("--breakdown", metavar="N[,N...]",
                   help="time each stage of in-memory runs of N traces, sizes in turn (--models, --engines)")
    p.add_argument("--floor", type=int, metavar="PAIRS",
                   help="recording-off floor over the recorded rate at 1M traces, PAIRS back-to-back pairs")
    p.add_argument("--table", type=int, metavar="REPEATS",
                   help="the flat-throughput table: every size, interleaved, REPEATS rounds")
    p.add_argument("--models", default="gum:embedded,hundred:embedded",
                   help="for --table: comma-separated model:mode")
    p.add_argument("--sizes", default="10000,100000,1000000,10000000,10000000s,100000000s",
                   help="for --table: numbers of traces, an 's' suffix streams")
    p.add_argument("--engines", default="prior,is", help="for --table")
    args = p.parse_args(argv)
    if args.breakdown:
        for engine in args.engines.split(","):
            for m in args.models.split(","):
                for size in args.breakdown.split(","):
                    breakdown(*m.split(":"), engine, int(size))
        return 0
    if args.floor:
        for engine in args.engines.split(","):
            for m in args.models.split(","):
                floor_pairs(m.split(":")[0], engine, args.floor)
        return 0
    if args.table:
        keys = [(*m.split(":"), e) for m in args.models.split(",") for e in args.engines.split(",")]
        flat_table(keys, args.sizes.split(","), args.table)  # type: ignore[arg-type]
        return 0
    sizes = [1000, 4000, 16000] if args.smoke else list(SIZES)
    sweep(sizes, plot=Path(args.plot))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
