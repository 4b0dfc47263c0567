"""Trace datasets: Arrow shards + manifest, memory-mapped zero-copy reading, checksums,
address remapping, trace-type grouping, the torch DataLoader path."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from pyarrow import ipc

import ppfast
import ppfast.examples as ex
from ppfast.data import ColumnBatch, TraceDataset
from ppfast.data.columns import ARENAS, RECORD_COLUMNS, TRACE_COLUMNS, trace_type_hashes
from ppfast.distributions import Normal
from ppfast.errors import DatasetError


def assert_same_columns(a, b, what=""):
    """Every column of two trace batches equal, bit for bit (NaN == NaN)."""
    for group in ("records", "traces", "arenas"):
        ca, cb = getattr(a, group), getattr(b, group)
        assert set(ca) == set(cb), (what, group)
        for k in ca:
            assert ca[k].dtype == cb[k].dtype, (what, group, k, ca[k].dtype, cb[k].dtype)
            assert np.array_equal(ca[k], cb[k], equal_nan=ca[k].dtype.kind == "f"), (what, group, k)


@pytest.fixture(scope="module")
def gum():
    return ex.load("gum", threads=1)


@pytest.fixture(scope="module")
def tau():
    return ex.load("tau_decay", threads=1)


def test_column_layout_matches_the_core(gum):
    b = gum.prior_batch(3, seed=0)
    assert {k: v.dtype for k, v in b.records.items()} == RECORD_COLUMNS
    assert {k: v.dtype for k, v in b.traces.items()} == TRACE_COLUMNS
    assert tuple(b.arenas) == ARENAS


@pytest.mark.parametrize("name", ["gum", "tau_decay", "python:branching", "python:geometric"])
def test_round_trip_equals_in_memory_traces(tmp_path, name):
    if name.startswith("python:"):
        model = ex.load(name.split(":")[1], mode="python")
        n, per_file = 600, 250
    else:
        model = ex.load(name, threads=1)
        n, per_file = (25, 10) if name == "tau_decay" else (5000, 1500)
    path = model.save_dataset(tmp_path / "ds", n, traces_per_file=per_file, seed=11)
    ds = TraceDataset(path)
    assert len(ds) == n and ds.num_shards == -(-n // per_file)
    assert ds.shard_sizes == [min(per_file, n - i) for i in range(0, n, per_file)]
    ref = model.prior_batch(n, seed=11)
    assert_same_columns(ds.to_batch(), ref, name)
    # Shard by shard against the same trace range simulated on its own.
    for k in range(ds.num_shards):
        first = k * per_file
        assert_same_columns(ds.shard(k), model.simulate(ds.shard_sizes[k], seed=11, first=first), f"{name} shard {k}")
    if name == "tau_decay":
        assert len(ds.to_batch().arenas["values"]) > 0  # tensors (the calorimeter) made the trip
    t = ds[n - 1]
    assert [(v.address, v.value) for v in t.variables if v.kind == 0] == \
           [(v.address, v.value) for v in ref.trace(n - 1).variables if v.kind == 0]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["seed"] == 11 and manifest["num_traces"] == n and manifest["model"] == model.name
    assert manifest["schema_version"] == 1 and len(manifest["shards"]) == ds.num_shards


def test_files_open_with_plain_pyarrow(tmp_path, gum):
    path = gum.save_dataset(tmp_path / "ds", 100, traces_per_file=100, seed=1)
    table = ipc.open_file(str(path / "shard-000000-records.arrow")).read_all()
    assert table.num_rows == 300 and table.column_names == list(RECORD_COLUMNS)
    traces = ipc.open_file(str(path / "shard-000000-traces.arrow")).read_all()
    ref = gum.prior_batch(100, seed=1)
    assert np.array_equal(traces.column("result").to_numpy(), ref.traces["result"])


def test_reading_is_zero_copy(tmp_path, gum):
    path = gum.save_dataset(tmp_path / "ds", 2000, traces_per_file=1000, seed=2)
    ds = TraceDataset(path)
    shard = ds.shard(1)
    mapped = [m for m in shard._owner if isinstance(m, pa.MemoryMappedFile)]
    assert len(mapped) == 3
    files = []
    for m in mapped:
        m.seek(0)
        files.append(np.frombuffer(m.read_buffer(m.size()), dtype=np.uint8))
    records_file, traces_file, arenas_file = files
    for k, col in shard.records.items():
        assert np.shares_memory(col, records_file), k
        assert not col.flags.writeable
    for k, col in shard.traces.items():
        assert np.shares_memory(col, traces_file), k
    assert np.shares_memory(shard.arenas["params"], arenas_file)
    # A contiguous in-order minibatch is still a view of the file.
    first = next(ds.batches(500))
    assert np.shares_memory(first.records["value"], ds.shard(0).records["value"])
    # Views outlive the dataset and the batch objects.
    values = shard.records["value"]
    expected = gum.simulate(1000, seed=2, first=1000).records["value"].copy()
    del ds, shard, mapped, first
    assert np.array_equal(values, expected)


def _flip_byte(path, where):
    data = bytearray(path.read_bytes())
    data[where] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_shard_is_named_and_others_stay_readable(tmp_path, gum):
    path = gum.save_dataset(tmp_path / "ds", 3000, traces_per_file=1000, seed=3)
    bad = path / "shard-000001-records.arrow"
    _flip_byte(bad, bad.stat().st_size // 2)
    ds = TraceDataset(path)
    with pytest.raises(DatasetError, match="shard-000001-records.arrow.*checksum") as err:
        ds.shard(1)
    assert err.value.file == str(bad)
    assert isinstance(err.value, OSError)
    assert_same_columns(ds.shard(0), gum.simulate(1000, seed=3, first=0))
    assert_same_columns(ds.shard(2), gum.simulate(1000, seed=3, first=2000))
    assert list(ds.check()) == [str(bad)]
    with pytest.raises(DatasetError, match="shard-000001"):
        ds.to_batch()
    with pytest.warns(RuntimeWarning, match="shard-000001-records.arrow"):
        kept = sum(len(b) for b in ds.batches(400, on_error="skip"))
    assert kept == 2000


def test_truncated_shard_is_named(tmp_path, gum):
    path = gum.save_dataset(tmp_path / "ds", 2000, traces_per_file=1000, seed=4)
    bad = path / "shard-000000-traces.arrow"
    bad.write_bytes(bad.read_bytes()[:-100])
    for verify in (True, False):
        ds = TraceDataset(path, verify=verify)
        with pytest.raises(DatasetError, match="shard-000000-traces.arrow.*truncated"):
            ds.shard(0)
        assert len(ds.shard(1)) == 1000
    # Truncated to a size that happens to match the manifest cannot happen by accident;
    # a damaged Arrow footer with checks off still names the file.
    other = path / "shard-000001-arenas.arrow"
    size = other.stat().st_size
    _flip_byte(other, size - 3)
    with pytest.raises(DatasetError, match="shard-000001-arenas.arrow"):
        TraceDataset(path, verify=False).shard(1)
    (path / "shard-000001-arenas.arrow").unlink()
    with pytest.raises(DatasetError, match="shard-000001-arenas.arrow"):
        TraceDataset(path).shard(1)


def test_bad_manifest_and_directories(tmp_path, gum):
    with pytest.raises(DatasetError, match="no dataset manifest"):
        TraceDataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="manifest.json"):
        TraceDataset(tmp_path)
    path = gum.save_dataset(tmp_path / "ds", 10, seed=1)
    with pytest.raises(DatasetError, match="already holds a trace dataset"):
        gum.save_dataset(path, 10, seed=1)
    gum.save_dataset(path, 20, traces_per_file=5, seed=2, overwrite=True)
    ds = TraceDataset(path)
    assert len(ds) == 20 and ds.num_shards == 4 and ds.seed == 2
    m = json.loads((path / "manifest.json").read_text())
    m["schema_version"] = 99
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="schema version 99"):
        TraceDataset(path)
    with pytest.raises(ValueError, match="traces_per_file"):
        gum.save_dataset(tmp_path / "x", 10, traces_per_file=0)
    with pytest.raises(ValueError, match="num_traces"):
        gum.save_dataset(tmp_path / "x", -1)


def test_empty_dataset(tmp_path, gum):
    ds = TraceDataset(gum.save_dataset(tmp_path / "ds", 0, seed=1))
    assert len(ds) == 0 and ds.num_shards == 0 and len(ds.to_batch()) == 0
    assert list(ds.batches(4)) == []


class Flaky(ppfast.Model):
    def forward(self):
        x = ppfast.sample(Normal(0.0, 1.0), name="x")
        if x > 1.0:
            raise ValueError(f"x too large: {x:.3f}")
        ppfast.tag(np.array([x, 2 * x, 3 * x]), name="triple")
        return x


def test_failed_traces_keep_their_messages(tmp_path):
    model = Flaky()
    path = model.save_dataset(tmp_path / "ds", 300, traces_per_file=70, seed=5, on_error="skip")
    ds = TraceDataset(path)
    ref = model.simulate(300, seed=5, on_error="skip")
    got = ds.to_batch()
    assert_same_columns(got, ref)
    assert len(ref.failed) > 10 and np.array_equal(got.failed, ref.failed)
    assert [got.error(i) for i in got.failed] == [ref.error(i) for i in ref.failed]
    assert all("x too large" in got.error(i) for i in got.failed)
    sub = ds.select(ref.failed[::-1])
    assert [sub.error(i) for i in range(len(sub))] == [ref.error(i) for i in ref.failed[::-1]]
    with pytest.raises(ppfast.errors.ModelError):
        model.save_dataset(tmp_path / "raise", 300, seed=5)


def test_address_ids_are_remapped(tmp_path):
    """A dataset written by a process whose address ids differ from ours reads back in our ids."""
    path = tmp_path / "ds"
    code = textwrap.dedent(f"""
        import ppfast, ppfast.examples as ex
        from ppfast import _core
        for i in range(7):
            _core.intern(f"unrelated/address/{{i}}")
        ex.load("branching", mode="python").save_dataset({str(path)!r}, 400, traces_per_file=150, seed=9,
                                                         progress=False)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    model = ex.load("branching", mode="python")
    ref = model.prior_batch(400, seed=9)
    ds = TraceDataset(path)
    table = ds.manifest["address_tables"][0]
    assert table[1:8] == [f"unrelated/address/{i}" for i in range(7)]
    assert_same_columns(ds.to_batch(), ref)
    for name in ("r", "branch"):
        got = ds.to_batch().values_of(name)
        assert np.isfinite(got).sum() > 50
        assert np.array_equal(got, ref.values_of(name), equal_nan=True)


def test_trace_type_hashes_match_the_recorder(tau):
    for batch in (tau.prior_batch(40, seed=1), ex.load("branching", mode="python").prior_batch(300, seed=1)):
        assert np.array_equal(trace_type_hashes(batch.records, len(batch)), batch.traces["trace_type"])


def test_trace_type_grouping_and_minibatches(tmp_path):
    model = ex.load("geometric", mode="python")
    n = 1000
    ds = TraceDataset(model.save_dataset(tmp_path / "ds", n, traces_per_file=300, seed=6))
    types = ds.trace_types()
    counts = ds.trace_type_counts()
    assert sum(counts.values()) == n and len(counts) >= 5
    assert list(counts.values()) == sorted(counts.values(), reverse=True)
    order = ds.sorted_indices(seed=1)
    assert sorted(order.tolist()) == list(range(n))
    assert np.all(types[order][1:] >= types[order][:-1])
    for group in (False, True):
        plan = ds.minibatch_indices(64, shuffle=True, seed=2, group_by_trace_type=group)
        assert sorted(np.concatenate(plan).tolist()) == list(range(n))
        distinct = sum(len(np.unique(types[idx])) for idx in plan)
        if group:  # cuts of a sorted sequence: each batch adds at most one type boundary
            assert distinct <= len(plan) + len(counts) - 1
        else:
            assert distinct > len(plan) + len(counts)
    batches = list(ds.batches(64, shuffle=True, seed=2, group_by_trace_type=True))
    for idx, b in zip(plan, batches):
        assert_same_columns(b, ds.select(idx))
        assert np.array_equal(b.traces["index"], idx.astype(np.uint64))  # index = trace number = position
        for t, groups in b.trace_type_groups().items():
            assert np.all(b.traces["trace_type"][groups] == t)


def test_select_and_slice(tmp_path, tau):
    n = 24
    ds = TraceDataset(tau.save_dataset(tmp_path / "ds", n, traces_per_file=7, seed=8))
    ref = ColumnBatch.from_batch(tau.prior_batch(n, seed=8))
    idx = np.array([20, 3, 3, 15, 0, 6, 7])
    got = ds.select(idx)
    want = ref.select(idx)
    assert_same_columns(got, want)
    assert np.array_equal(got.traces["index"], idx.astype(np.uint64))
    for j, i in enumerate(idx):
        gv = [(v.address, np.asarray(v.value).tolist()) for v in got.trace(j).variables]
        rv = [(v.address, np.asarray(v.value).tolist()) for v in ref.trace(int(i)).variables]
        assert gv == rv
    # A selection of everything in order reproduces the batch exactly (compact arenas included).
    assert_same_columns(ref.select(np.arange(n)), ref)
    assert_same_columns(ref.slice(5, 9).select(np.arange(4)), ref.select(np.arange(5, 9)))
    assert_same_columns(ColumnBatch.concat([ref.select(np.arange(0, 10)), ref.select(np.arange(10, n))]), ref)


def test_torch_dataloader_path(tmp_path, gum):
    torch = pytest.importorskip("torch")
    n = 3000
    ds = TraceDataset(gum.save_dataset(tmp_path / "ds", n, traces_per_file=1000, seed=7))
    ref = gum.prior_batch(n, seed=7)
    for workers in (0, 1):
        loader = ds.dataloader(256, shuffle=True, seed=3, num_workers=workers)
        assert isinstance(loader, torch.utils.data.DataLoader)
        seen = []
        for batch in loader:
            assert isinstance(batch, ColumnBatch) and isinstance(batch, ppfast.TraceBatch)
            idx = batch.traces["index"].astype(np.int64)
            assert np.array_equal(batch.traces["result"], ref.traces["result"][idx])
            assert np.array_equal(batch.values_of("mu"), ref.values_of("mu")[idx])
            tensors = batch.to_torch()
            assert tensors["value"].shape[0] == batch.num_records
            seen.append(idx)
        assert sorted(np.concatenate(seen).tolist()) == list(range(n))
    chunks = ds.torch_dataset(1000)
    assert isinstance(chunks, torch.utils.data.Dataset) and len(chunks) == 3
    assert_same_columns(chunks[1], gum.simulate(1000, seed=7, first=1000))


def test_python_results_that_are_not_numbers_are_nan(tmp_path):
    class Obj(ppfast.Model):
        def forward(self):
            x = ppfast.sample(Normal(0.0, 1.0), name="x")
            return {"x": x}

    ds = TraceDataset(Obj().save_dataset(tmp_path / "ds", 5, seed=1))
    assert np.isnan(ds.to_batch().traces["result"]).all()
    assert len(ds.to_batch().values_of("x")) == 5
