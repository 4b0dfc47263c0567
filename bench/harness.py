"""Benchmark harness: ppfast against a baseline measured in the same run.

A benchmark is a function registered with :func:`benchmark` in a module ``bench/bench_<area>.py``
(found automatically). It returns a :class:`Case`: one *setup* per side, each building what it
needs (models, imports) and returning a runner ``run(n)`` that processes ``n`` items::

    from bench.harness import Case, benchmark

    @benchmark("gum_prior", unit="traces/s", target=30.0)
    def gum_prior() -> Case:
        def ppfast():
            from bench.ppfast_models import GUM
            model = GUM()
            return lambda n: model.prior_results(num_traces=n, progress=False)

        def baseline():
            from bench.pyprob_models import GUM
            model = GUM()
            return lambda n: model.prior_results(num_traces=n)

        return Case(ppfast=ppfast, baseline=baseline)

The harness times the runners (not the setups): it grows ``n`` in multiples of the side's initial
``n`` until one call takes at least the minimum time, then runs ``repeats`` timed calls per side,
interleaved (baseline, ppfast, baseline, ppfast, ...), and reports median rates (items/s) and their
ratio ppfast / baseline next to the benchmark's target ratio (information, never a failure).

A setup that raises :class:`Unavailable` or ``ImportError`` skips its side with the message; any
other exception is reported as an error for that side, and the run goes on. The baseline need not
be PyProb (``baseline="recording off"`` labels any other reference), and ``Case.extra`` adds
columns of the benchmark's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib
import json
import math
import os
import pkgutil
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "Benchmark",
    "Case",
    "Registry",
    "Settings",
    "Unavailable",
    "benchmark",
    "discover",
    "main",
    "run_benchmarks",
]

Runner = Callable[[int], object]
Setup = Callable[[], Runner]

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results.json"
SIDES = ("baseline", "ppfast")  # the order of the interleaved timed calls
SCHEMA = 1


class Unavailable(Exception):
    """Raised by a setup whose side cannot run here (missing package, no GPU, ...)."""


@dataclasses.dataclass(frozen=True)
class Case:
    """What one benchmark measures.

    ppfast, baseline: setups, each ``() -> run(n)``; ``None`` leaves that side out.
    n_ppfast, n_baseline: the first ``n`` tried, and the step ``n`` grows by (a batch size, say).
    extra: called once after both sides ran; its mapping is reported as extra columns.
    """

    ppfast: Setup | None
    baseline: Setup | None = None
    n_ppfast: int = 1
    n_baseline: int = 1
    extra: Callable[[], Mapping[str, Any]] | None = None


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    make: Callable[[], Case]
    unit: str
    target: float | None
    baseline: str
    module: str


class Registry:
    """Named benchmarks in registration order."""

    def __init__(self) -> None:
        self._benchmarks: dict[str, Benchmark] = {}

    def benchmark(
        self,
        name: str,
        *,
        unit: str,
        target: float | None = None,
        baseline: str = "pyprob 1.5.0",
    ) -> Callable[[Callable[[], Case]], Callable[[], Case]]:
        """Register ``fn() -> Case`` under ``name``; ``target`` is the ratio the issue asks for."""
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise ValueError(f"benchmark name must be letters, digits, '_', '.', '-': got {name!r}")

        def register(fn: Callable[[], Case]) -> Callable[[], Case]:
            if name in self._benchmarks:
                raise ValueError(
                    f"benchmark {name!r} registered twice ({self._benchmarks[name].module} and "
                    f"{fn.__module__})"
                )
            self._benchmarks[name] = Benchmark(name, fn, unit, target, baseline, fn.__module__)
            return fn

        return register

    def select(self, pattern: str | None = None) -> list[Benchmark]:
        """The benchmarks whose name ``pattern`` (a regular expression) is found in; all if None."""
        found = list(self._benchmarks.values())
        if pattern is None:
            return found
        regex = re.compile(pattern)
        return [b for b in found if regex.search(b.name)]


REGISTRY = Registry()
benchmark = REGISTRY.benchmark


def discover() -> list[str]:
    """Import every ``bench/bench_*.py``, registering its benchmarks; returns errors by module."""
    errors = []
    for info in sorted(pkgutil.iter_modules([str(BENCH_DIR)]), key=lambda i: i.name):
        if info.name.startswith("bench_"):
            try:
                importlib.import_module(f"bench.{info.name}")
            except Exception as e:  # noqa: BLE001 -- one broken file must not hide the others
                errors.append(f"bench/{info.name}.py: {type(e).__name__}: {e}")
    return errors


@dataclasses.dataclass(frozen=True)
class Settings:
    min_time: float = 0.5
    repeats: int = 3
    threads: int = 1


# --------------------------------------------------------------------------- measuring


def _timed(run: Runner, n: int) -> float:
    # Garbage left by the other side must not be collected on this side's clock. Cheap, because
    # setups and imports are frozen first (torch and pyprob alone take 0.1 s to scan).
    gc.collect()
    start = time.perf_counter()
    run(n)
    return time.perf_counter() - start


def _freeze() -> None:
    gc.collect()
    gc.freeze()


def _calibrate(run: Runner, step: int, min_time: float) -> int:
    """The smallest multiple of ``step`` found whose call takes at least ``min_time``."""
    mult = 1
    while True:
        n = mult * step
        elapsed = _timed(run, n)
        if elapsed >= min_time or n >= 10**12:
            return n
        growth = min(100.0, 1.2 * min_time / max(elapsed, 1e-9))
        mult = max(mult + 1, math.ceil(mult * growth))


def _describe_error(e: BaseException) -> str:
    where = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    at = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
    return f"{type(e).__name__}: {e}{at}"


def _measure(bench: Benchmark, settings: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": bench.name,
        "unit": bench.unit,
        "target": bench.target,
        "baseline_label": bench.baseline,
        "module": bench.module,
    }
    try:
        case = bench.make()
    except Exception as e:  # noqa: BLE001 -- reported; the other benchmarks still run
        reason = _describe_error(e)
        say(f"{bench.name}: error building the case: {reason}")
        for side in SIDES:
            entry[side] = {"status": "error", "reason": reason}
        return _finish(entry)

    setups = {"ppfast": case.ppfast, "baseline": case.baseline}
    steps = {"ppfast": case.n_ppfast, "baseline": case.n_baseline}
    runners: dict[str, Runner] = {}
    sizes: dict[str, int] = {}
    for side in SIDES:
        setup = setups[side]
        if setup is None:
            entry[side] = {"status": "absent"}
            continue
        try:
            runners[side] = setup()
            _freeze()  # the setup's imports and models are long-lived
            # The calibration calls double as warm-up (imports, caches, address tables).
            sizes[side] = _calibrate(runners[side], max(1, int(steps[side])), settings.min_time)
        except (Unavailable, ImportError) as e:
            entry[side] = {"status": "skipped", "reason": str(e)}
            runners.pop(side, None)
            say(f"{bench.name}: {side} skipped: {e}")
        except Exception as e:  # noqa: BLE001 -- reported; the other side still runs
            entry[side] = {"status": "error", "reason": _describe_error(e)}
            runners.pop(side, None)
            say(f"{bench.name}: {side} error: {entry[side]['reason']}")

    times: dict[str, list[float]] = {side: [] for side in runners}
    for _ in range(settings.repeats):
        for side in SIDES:
            if side not in runners:
                continue
            try:
                times[side].append(_timed(runners[side], sizes[side]))
            except Exception as e:  # noqa: BLE001 -- reported; the other side still runs
                entry[side] = {"status": "error", "reason": _describe_error(e)}
                del runners[side]
                say(f"{bench.name}: {side} error: {entry[side]['reason']}")

    for side, side_times in times.items():
        if side not in runners:
            continue
        rates = [sizes[side] / max(t, 1e-12) for t in side_times]
        entry[side] = {
            "status": "ok",
            "rate": statistics.median(rates),
            "rates": rates,
            "n": sizes[side],
            "times_s": side_times,
        }

    if case.extra is not None:
        try:
            entry["extra"] = {str(k): v for k, v in case.extra().items()}
        except Exception as e:  # noqa: BLE001 -- reported in the extra column
            entry["extra"] = {"error": _describe_error(e)}
    return _finish(entry)


def _finish(entry: dict[str, Any]) -> dict[str, Any]:
    entry.setdefault("extra", {})
    ppfast, baseline = entry.get("ppfast", {}), entry.get("baseline", {})
    ratio = None
    if ppfast.get("status") == "ok" and baseline.get("status") == "ok":
        ratio = ppfast["rate"] / baseline["rate"]
    entry["ratio"] = ratio
    target = entry["target"]
    entry["meets_target"] = None if ratio is None or target is None else ratio >= target
    return entry


def run_benchmarks(
    benchmarks: Sequence[Benchmark], settings: Settings, say: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Measure each benchmark in turn; one JSON-ready entry per benchmark."""
    results = []
    try:
        for i, bench in enumerate(benchmarks, 1):
            say(f"[{i}/{len(benchmarks)}] {bench.name} ...")
            _freeze()
            results.append(_measure(bench, settings, say))
    finally:
        gc.unfreeze()
    return results


# --------------------------------------------------------------------------- reporting


def _si(x: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def _cell(side: Mapping[str, Any]) -> str:
    status = side.get("status", "absent")
    if status == "ok":
        return _si(side["rate"])
    return {"absent": "-"}.get(status, status)


def _ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}x" if x < 1000 else f"{x:,.0f}x"


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    header = ("benchmark", "unit", "ppfast", "baseline", "vs", "ratio", "target", "meets", "extra")
    rows = [header]
    for r in results:
        meets = {None: "-", True: "yes", False: "no"}[r["meets_target"]]
        target = "-" if r["target"] is None else _ratio(r["target"])
        extra = " ".join(f"{k}={_format_value(v)}" for k, v in r["extra"].items())
        rows.append(
            (
                r["name"],
                r["unit"],
                _cell(r["ppfast"]),
                _cell(r["baseline"]),
                r["baseline_label"],
                _ratio(r["ratio"]),
                target,
                meets,
                extra,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _format_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _ppfast_version() -> str | None:
    version = _version("ppfast")
    if version is not None:
        return version
    try:  # an in-tree build that pip does not know about
        import ppfast
    except Exception:  # noqa: BLE001 -- a half-built ppfast fails in many ways; None says it
        return None
    if getattr(ppfast, "__file__", None) is None:  # an empty source folder seen as a namespace
        return None
    return str(getattr(ppfast, "__version__", "unversioned"))


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "pyprob": _version("pyprob"),
        "ppfast": _ppfast_version(),
        "git": _git_commit(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info.update(
            torch=torch.__version__,
            torch_threads=torch.get_num_threads(),
            torch_interop_threads=torch.get_num_interop_threads(),
            cuda=torch.cuda.is_available(),
        )
    except ImportError:
        info.update(torch=None, torch_threads=None, torch_interop_threads=None, cuda=False)
    return info


# --------------------------------------------------------------------------- command line

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _set_threads(n: int) -> Callable[[], None]:
    """Pin torch (and the BLAS pools) to ``n`` threads; returns a function undoing it."""
    saved_env = {k: os.environ.get(k) for k in _THREAD_ENV}
    for k in _THREAD_ENV:
        os.environ[k] = str(n)
    torch: Any
    try:
        import torch
    except ImportError:
        torch = None
    saved_threads = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(n)
        try:  # allowed once per process, before any inter-op work
            torch.set_num_interop_threads(n)
        except RuntimeError:
            pass

    def restore() -> None:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if torch and saved_threads is not None:
            torch.set_num_threads(saved_threads)

    return restore


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure ppfast against its baselines, both in this run.",
    )
    p.add_argument("--quick", action="store_true", help="smoke mode: ~0.1 s per timed call")
    p.add_argument("--only", metavar="PATTERN", help="regular expression searched in the names")
    default_json = DEFAULT_JSON.relative_to(BENCH_DIR.parent)
    p.add_argument(
        "--json",
        metavar="PATH",
        default=str(DEFAULT_JSON),
        help=f"where to write results (default {default_json})",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--min-time",
        type=float,
        metavar="SECONDS",
        help="minimum time of one timed call (default 0.5, 0.1 with --quick)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls per side (default 3)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return p


def main(
    argv: Sequence[str] | None = None, registry: Registry | None = None, out: TextIO | None = None
) -> int:
    """Run the command line; ``registry`` replaces discovery of ``bench/bench_*.py`` (tests)."""
    args = _parser().parse_args(argv)
    stream = out if out is not None else sys.stdout

    def say(line: str) -> None:
        print(line, file=stream, flush=True)

    discovery_errors: list[str] = []
    if registry is None:
        discovery_errors = discover()
        registry = REGISTRY
    for err in discovery_errors:
        say(f"could not load {err}")

    try:
        selected = registry.select(args.only)
    except re.error as e:
        say(f"--only {args.only!r} is not a regular expression: {e}")
        return 2
    if args.list:
        for b in selected:
            target = "-" if b.target is None else f"{b.target:g}x"
            say(f"{b.name:32s} {b.unit:12s} target {target:8s} vs {b.baseline}  ({b.module})")
        return 0
    if not selected:
        say(f"no benchmark matches {args.only!r}" if args.only else "no benchmarks registered")
        return 2
    if args.threads < 1 or args.repeats < 1:
        say("--threads and --repeats must be at least 1")
        return 2

    settings = Settings(
        min_time=args.min_time if args.min_time is not None else (0.1 if args.quick else 0.5),
        repeats=args.repeats,
        threads=args.threads,
    )
    restore_threads = _set_threads(settings.threads)
    try:
        machine = machine_info()
        say(
            f"torch threads: {machine['torch_threads']} | cpus: {machine['cpu_count']} "
            f"| python {machine['python']} | torch {machine['torch']} "
            f"| pyprob {machine['pyprob'] or 'not installed'} "
            f"| ppfast {machine['ppfast'] or 'not importable'}"
        )
        say(
            f"each timed call >= {settings.min_time:g} s, {settings.repeats} repeats per side "
            f"interleaved, medians"
        )
        started = time.perf_counter()
        results = run_benchmarks(selected, settings, say)
        elapsed = time.perf_counter() - started
        machine["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    finally:
        restore_threads()

    say("")
    say(format_table(results))
    say("ratio = ppfast rate / baseline rate; 'meets' compares it with the target (information, not a test)")

    report = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])],
        "machine": machine,
        "settings": {**dataclasses.asdict(settings), "quick": args.quick, "only": args.only},
        "elapsed_s": elapsed,
        "discovery_errors": discovery_errors,
        "benchmarks": results,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    say(f"wrote {path}")

    failed = discovery_errors or any(r[side].get("status") == "error" for r in results for side in SIDES)
    return 1 if failed else 0
