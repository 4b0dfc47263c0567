"""The scale bench's code paths at tiny sizes (no timing is asserted)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is a folder of the source tree

from bench import bench_scale  # noqa: E402


def test_scale_sweep_smoke(tmp_path):
    out = io.StringIO()
    plot = tmp_path / "scale.png"
    rows = bench_scale.sweep([1000, 3000], out=out, plot=plot)
    # prior and IS, in memory and streamed, two sizes each: every rate positive.
    assert len(rows) == 8 and all(r["rate"] > 0 and r["ratio"] > 0 for r in rows)
    assert "bytes/trace" in out.getvalue()
    assert plot.stat().st_size > 0


def test_scale_breakdown_and_flat_table_smoke():
    out = io.StringIO()
    spent = bench_scale.breakdown("gum", "embedded", "is", 3000, out=out)
    assert spent["total"] > 0 and spent["simulate chunks"] > 0 and "traces/s" in out.getvalue()
    rates = bench_scale.flat_table([("gum", "embedded", "prior")], ["1000", "4000", "4000s"], 2, out=out,
                                   reference=4000)
    assert sorted(rates[("gum", "embedded", "prior")]) == ["1000", "4000", "4000s"]
    assert "x1.00" in out.getvalue()
    ratios = bench_scale.floor_pairs("gum", "prior", 2, size=2000, out=out)
    assert len(ratios) == 2 and all(r > 0 for r in ratios) and "floor/rate median" in out.getvalue()


def test_scale_benchmarks_registered():
    from bench.harness import REGISTRY

    names = [b.name for b in REGISTRY.select("^scale_")]
    assert "scale_gum_embedded_is_100M_stream" in names and "scale_hundred_embedded_prior_10M_stream" in names
    assert "scale_gum_shm_prior_10M" in names and "scale_gum_numba_prior_1M" in names
    assert "scale_gum_numba_is_100M_stream" in names and "scale_gum_shm_is_100M_stream" in names
