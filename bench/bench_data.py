"""Trace datasets and distributed generation.

- ``mpi_generate_*`` / ``mpi_save_dataset_*``: traces/s of 2 MPI ranks against 1 rank (the
  baseline), each rank one simulator thread; the ranks live in a pool started once
  (``bench/mpi_gen_worker.py`` under ``mpiexec``), so the launcher's start-up is outside
  the clock.  Ratio = rate(2) / rate(1); scaling efficiency = ratio / 2 (column ``eff``,
  also from the ranks' own clocks as ``eff_inner``).
- ``dataset_read``: reading a trace dataset (open, checksums, every trace) against PyProb
  1.5.0's ``OfflineDataset`` over the same model and number of traces.
- ``dataset_save``: ``model.save_dataset`` against PyProb's ``Model.save_dataset``.

More ranks or nodes: ``bench/mpi_scale.sh``.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from bench.harness import Case, Runner, Unavailable, benchmark

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "mpi_gen_worker.py"
READ_TRACES = 2000  # PyProb writes ~400 and reads ~1.4k traces/s: keep its setup short
READ_PER_FILE = 1000
READ_BATCH = 128  # PyProb's default minibatch


def mpiexec() -> str:
    """mpiexec beside this Python (pip's mpich), else on PATH."""
    for name in ("mpiexec", "mpirun"):
        cand = Path(sys.executable).parent / name
        if cand.exists():
            return str(cand)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise Unavailable("mpiexec not found (pip install mpich mpi4py)")
    return found


class WorkerPool:
    """MPI rank processes driven over stdin: "N" runs N traces and answers "done SECONDS"
    (the ranks' own clock), "quit" ends them."""

    label = "rank pool"

    def start(self, cmd: List[str]) -> None:
        env = dict(os.environ, PPFAST_PROGRESS="0")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.inner: List[float] = []  # traces/s by the ranks' own clock
        if self._line() != "ready":
            raise RuntimeError(f"{self.label} {' '.join(cmd)} did not start")
        atexit.register(self.close)

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label} exited with {self.proc.wait()}")
        return line.strip()

    def __call__(self, n: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        reply = self._line()
        if not reply.startswith("done "):
            raise RuntimeError(f"{self.label} answered {reply!r}")
        self.inner.append(n / float(reply.split()[1]))

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RankPool(WorkerPool):
    """``ranks`` MPI processes generating datasets on command (see mpi_gen_worker.py)."""

    def __init__(self, ranks: int, model: str, per_file: int, mode: str):
        try:
            import mpi4py  # noqa: F401
        except ImportError as e:
            raise Unavailable("mpi4py not installed (pip install mpich mpi4py)") from e
        self.dir = Path(tempfile.mkdtemp(prefix=f"ppfast-bench-{ranks}r-"))
        self.start([mpiexec(), "-n", str(ranks), sys.executable, str(WORKER), model, str(self.dir / "ds"),
                    str(per_file), mode])

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.dir, ignore_errors=True)


_SPIN = "import time\nt = time.perf_counter()\ns = 0\nfor i in range(6_000_000): s += i\n"


def cpu_ceiling() -> float:
    """How much faster this machine runs two copies of a CPU-bound loop than one, right now
    (2 x t(one) / t(two at once)): the best any 2-rank speedup can be while other work
    shares the cores.  2.0 on two idle cores."""
    def wall(copies: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(copies)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - start

    wall(1)  # page in the interpreter
    return 2 * wall(1) / wall(2)


def _scaling_case(model: str, mode: str, step: int, per_file: int) -> Case:
    pools: Dict[int, RankPool] = {}
    ceilings: List[float] = []

    def side(ranks: int):
        def setup() -> Runner:
            pool = RankPool(ranks, model, per_file, mode)
            for _ in range(2):  # warm-up (allocations, files, page cache) outside the calibration
                pool(step)
            pool.inner.clear()
            pools[ranks] = pool
            ceilings.append(cpu_ceiling())
            return pool

        return setup

    def extra() -> Dict[str, Any]:
        out: Dict[str, Any] = {"model": model, "threads_per_rank": 1}
        if 1 in pools and 2 in pools and pools[1].inner and pools[2].inner:
            # The ranks' own clocks over the timed calls (the last ones; earlier ones calibrated n).
            r1, r2 = statistics.median(pools[1].inner[-5:]), statistics.median(pools[2].inner[-5:])
            out["eff_inner"] = r2 / (2 * r1)
        ceilings.append(cpu_ceiling())
        out["cpu_2proc_speedup"] = statistics.mean(ceilings)
        for p in pools.values():
            p.close()
        return out

    return Case(ppfast=side(2), baseline=side(1), n_ppfast=step, n_baseline=step, extra=extra)


@benchmark("mpi_generate_gum", unit="traces/s", target=1.8, baseline="1 rank")
def mpi_generate_gum() -> Case:
    """Simulating only (embedded GUM, 1 thread per rank): 2 ranks vs 1."""
    return _scaling_case("gum", "simulate", 200_000, 250_000)


@benchmark("mpi_save_dataset_gum", unit="traces/s", target=1.8, baseline="1 rank")
def mpi_save_dataset_gum() -> Case:
    """Simulating and writing the shards (embedded GUM): 2 ranks vs 1."""
    return _scaling_case("gum", "save", 200_000, 250_000)


@benchmark("mpi_save_dataset_tau", unit="traces/s", target=1.8, baseline="1 rank")
def mpi_save_dataset_tau() -> Case:
    """Simulating and writing the shards (embedded tau_decay: 35x35x20 calorimeter): 2 ranks vs 1."""
    return _scaling_case("tau_decay", "save", 100, 250)


# -- reading and writing datasets against PyProb -------------------------------------------


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _pyprob_dataset(directory: Path) -> None:
    from bench.pyprob_models import GUM

    _quiet(GUM().save_dataset, str(directory), READ_TRACES, READ_PER_FILE)


def _close_pyprob_shelves() -> None:
    """Closes the SQLite shelves PyProb's OfflineDataset caches: left to the garbage
    collector at interpreter exit they deadlock (sqlitedict commits from __del__)."""
    dataset = sys.modules.get("pyprob.nn.dataset")
    cache = getattr(getattr(dataset, "OfflineDatasetFile", None), "cache", None)
    while cache:
        _, shelf = cache.popitem(last=False)
        with contextlib.suppress(Exception):
            shelf.close()


def _touch_batch(batch: Any) -> float:
    """Reads every column of a minibatch (the pages really come in)."""
    total = 0.0
    for group in (batch.records, batch.traces):
        for col in group.values():
            total += float(col.sum())
    return total


@benchmark("dataset_read", unit="traces/s", target=100.0)
def dataset_read() -> Case:
    """Open a 2,000-trace GUM dataset (2 files) and read every trace, in minibatches of 128.
    ppfast: ``TraceDataset`` (manifest, SHA-256 of every file, memory-mapped columns);
    PyProb: ``OfflineDataset`` (hashes precomputed at setup) and ``dataset[i]``."""
    tmp = Path(tempfile.mkdtemp(prefix="ppfast-bench-read-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    atexit.register(_close_pyprob_shelves)  # runs before the rmtree (atexit is last in, first out)

    def ppfast() -> Runner:
        from bench.ppfast_models import GUM
        from ppfast.data import TraceDataset

        path = GUM().save_dataset(tmp / "ppfast", READ_TRACES, traces_per_file=READ_PER_FILE, seed=1,
                                  progress=False)

        def run(n: int) -> None:
            for _ in range(n // READ_TRACES):
                ds = TraceDataset(path)
                for batch in ds.batches(READ_BATCH):
                    _touch_batch(batch)

        return run

    def baseline() -> Runner:
        from bench.pyprob_models import load_pyprob

        pyprob = load_pyprob()
        path = tmp / "pyprob"
        _pyprob_dataset(path)
        _quiet(pyprob.nn.OfflineDataset, str(path))  # computes and stores the trace-type hashes once

        def run(n: int) -> None:
            for _ in range(n // READ_TRACES):
                ds = _quiet(pyprob.nn.OfflineDataset, str(path))
                total = 0.0
                for i in range(len(ds)):
                    trace = ds[i]
                    total += float(trace.log_importance_weight) + len(trace.variables_controlled)

        return run

    def extra() -> Dict[str, Any]:
        from ppfast.data import TraceDataset

        ds = TraceDataset(tmp / "ppfast")
        start = time.perf_counter()
        count = sum(len(t.variables) for t in ds)
        views = len(ds) / (time.perf_counter() - start)
        _close_pyprob_shelves()
        # At scale: 1M embedded-GUM traces in 4 files, minibatches of 128, in order and
        # shuffled + grouped by trace type (gathered copies).
        import ppfast.examples

        big = ppfast.examples.load("gum", threads=1).save_dataset(tmp / "big", 1_000_000, traces_per_file=250_000,
                                                                  seed=2, progress=False)
        rates = {}
        for label, kwargs in (("seq", {}), ("shuffled", {"shuffle": True, "seed": 1, "group_by_trace_type": True})):
            start = time.perf_counter()
            ds = TraceDataset(big)
            for batch in ds.batches(READ_BATCH, **kwargs):
                _touch_batch(batch)
            rates[f"{label}_1M_per_s"] = round(len(ds) / (time.perf_counter() - start))
        shutil.rmtree(big, ignore_errors=True)
        return {"traces": READ_TRACES, "batch": READ_BATCH, "trace_views_per_s": round(views), "vars": count,
                **rates}

    return Case(ppfast=ppfast, baseline=baseline, n_ppfast=READ_TRACES, n_baseline=READ_TRACES, extra=extra)


@benchmark("dataset_save", unit="traces/s", target=None)
def dataset_save() -> Case:
    """``model.save_dataset`` of the Python GUM (1,000 traces per file) against PyProb's."""
    tmp = Path(tempfile.mkdtemp(prefix="ppfast-bench-save-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)

    def ppfast() -> Runner:
        from bench.ppfast_models import GUM

        model = GUM()
        return lambda n: model.save_dataset(tmp / "ppfast", n, traces_per_file=1000, seed=1, progress=False,
                                            overwrite=True)

    def baseline() -> Runner:
        from bench.pyprob_models import GUM

        model = GUM()

        def run(n: int) -> None:
            path = tmp / "pyprob"
            shutil.rmtree(path, ignore_errors=True)
            _quiet(model.save_dataset, str(path), n, 1000)

        return run

    return Case(ppfast=ppfast, baseline=baseline, n_ppfast=1000, n_baseline=100)
