"""The benchmark harness itself, on tiny synthetic benchmarks (no timing is asserted)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

try:
    from bench.harness import Case, Registry, Unavailable, main
except ImportError:  # bench/ is a folder of the source tree, not an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.harness import Case, Registry, Unavailable, main


def _registry() -> Registry:
    reg = Registry()

    @reg.benchmark("synthetic_sum", unit="items/s", target=2.0, baseline="python loop")
    def synthetic_sum() -> Case:
        def loop(n: int) -> int:
            total = 0
            for i in range(n):
                total += i
            return total

        return Case(
            ppfast=lambda: lambda n: sum(range(n)),
            baseline=lambda: loop,
            n_ppfast=64,
            n_baseline=64,
            extra=lambda: {"items_per_call": 1, "note": "synthetic"},
        )

    @reg.benchmark("synthetic_skip", unit="items/s", target=10.0)
    def synthetic_skip() -> Case:
        def missing():
            raise Unavailable("needs something not here")

        return Case(ppfast=lambda: lambda n: None, baseline=missing)

    @reg.benchmark("synthetic_error", unit="items/s")
    def synthetic_error() -> Case:
        def broken(n: int) -> None:
            raise RuntimeError("boom")

        return Case(ppfast=lambda: broken)

    return reg


def _run(argv: list[str], reg: Registry | None) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, registry=reg, out=out)
    return code, out.getvalue()


def test_table_and_json(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    code, text = _run(["--quick", "--min-time", "0.002", "--json", str(path)], _registry())

    assert code == 1  # synthetic_error's ppfast side failed
    assert "torch threads: 1" in text
    assert "synthetic_skip: baseline skipped: needs something not here" in text
    assert "synthetic_error: ppfast error: RuntimeError: boom" in text
    header = next(line for line in text.splitlines() if line.startswith("benchmark"))
    for column in ("unit", "ppfast", "baseline", "ratio", "target", "meets", "extra"):
        assert column in header.split()
    row = next(line for line in text.splitlines() if line.startswith("synthetic_sum"))
    assert "python loop" in row and "items_per_call=1" in row and "note=synthetic" in row

    report = json.loads(path.read_text())
    assert report["schema"] == 1
    assert report["settings"]["min_time"] == 0.002 and report["settings"]["repeats"] == 3
    machine = report["machine"]
    for key in ("cpu_count", "python", "torch", "torch_threads", "pyprob", "ppfast"):
        assert key in machine
    assert machine["torch_threads"] in (1, None)
    by_name = {b["name"]: b for b in report["benchmarks"]}
    assert list(by_name) == ["synthetic_sum", "synthetic_skip", "synthetic_error"]

    ok = by_name["synthetic_sum"]
    for side in ("ppfast", "baseline"):
        assert ok[side]["status"] == "ok"
        assert len(ok[side]["rates"]) == 3 and len(ok[side]["times_s"]) == 3
        assert ok[side]["n"] % 64 == 0
        assert ok[side]["rate"] > 0
    assert ok["ratio"] == pytest.approx(ok["ppfast"]["rate"] / ok["baseline"]["rate"])
    assert ok["meets_target"] == (ok["ratio"] >= 2.0)
    assert ok["extra"] == {"items_per_call": 1, "note": "synthetic"}

    skip = by_name["synthetic_skip"]
    assert skip["baseline"] == {"status": "skipped", "reason": "needs something not here"}
    assert skip["ppfast"]["status"] == "ok"
    assert skip["ratio"] is None and skip["meets_target"] is None

    err = by_name["synthetic_error"]
    assert err["ppfast"]["status"] == "error" and "boom" in err["ppfast"]["reason"]
    assert err["baseline"] == {"status": "absent"}


def test_only_and_list(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    code, _ = _run(["--quick", "--min-time", "0.002", "--only", "sum$", "--json", str(path)], _registry())
    assert code == 0
    assert [b["name"] for b in json.loads(path.read_text())["benchmarks"]] == ["synthetic_sum"]

    code, text = _run(["--only", "nothing-matches"], _registry())
    assert code == 2 and "no benchmark matches" in text

    code, text = _run(["--list"], _registry())
    assert code == 0 and "synthetic_skip" in text


def test_duplicate_name_rejected() -> None:
    reg = _registry()
    with pytest.raises(ValueError, match="registered twice"):
        reg.benchmark("synthetic_sum", unit="items/s")(lambda: Case(ppfast=None))


def test_real_benchmarks_are_discovered() -> None:
    # Discovery only imports bench/bench_*.py; neither ppfast nor pyprob is imported by it.
    code, text = _run(["--list"], None)
    assert code == 0
    for name in ("gum_prior", "gum_is"):
        assert name in text
