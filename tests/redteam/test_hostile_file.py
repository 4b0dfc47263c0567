"""Hostile files: crafted result files and dataset folders must be refused with a clear
error, never run code, read outside their folder, or crash the host."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import ppfast
from ppfast.data import TraceDataset
from ppfast.errors import DatasetError

from redteam.conftest import ProbeTimeout


@pytest.mark.timeout_s(2)
def test_time_limit_stops_a_hanging_probe():
    """The runner's own bound: a probe that hangs is stopped by its time limit."""
    start = time.monotonic()
    with pytest.raises(ProbeTimeout):
        time.sleep(10)
    assert time.monotonic() - start < 5


# --- Empirical files ---------------------------------------------------------------------

class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib, os; pathlib.Path(os.environ['PPFAST_BOOM']).write_text('ran')",))


@pytest.fixture
def boom(tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("PPFAST_BOOM", str(marker))
    return marker


def test_crafted_pickle_is_not_loaded(tmp_path, boom):
    f = tmp_path / "posterior.pkl"
    f.write_bytes(pickle.dumps({"format": "ppfast.Empirical/1", "name": _Boom(), "values": [1.0],
                                "log_weights": [0.0]}))
    with pytest.raises(ValueError, match="allow_pickle=True"):
        ppfast.Empirical.load(str(f))
    assert not boom.exists()


def test_npz_with_a_pickled_member_is_not_loaded(tmp_path, boom):
    f = tmp_path / "posterior.npz"
    with open(f, "wb") as out:
        np.savez(out, format=np.array("ppfast.Empirical/2"), name=np.array("x"),
                 values=np.array([_Boom()], dtype=object), log_weights=np.zeros(1))
    with pytest.raises(ValueError, match="not a readable ppfast Empirical file"):
        ppfast.Empirical.load(str(f))
    assert not boom.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x80\x04garbage", os.urandom(256)],
                         ids=["empty", "bad-zip", "bad-pickle", "random"])
def test_garbage_empirical_files_give_value_errors(tmp_path, content):
    f = tmp_path / "e.npz"
    f.write_bytes(content)
    with pytest.raises(ValueError):
        ppfast.Empirical.load(str(f))


def test_npz_with_mismatched_lengths_is_refused(tmp_path):
    f = tmp_path / "e.npz"
    with open(f, "wb") as out:
        np.savez(out, format=np.array("ppfast.Empirical/2"), name=np.array("x"), values=np.zeros(3),
                 log_weights=np.zeros(2))
    with pytest.raises(ValueError, match="not a ppfast Empirical file"):
        ppfast.Empirical.load(str(f))


# --- trace datasets ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from ppfast.examples.python_models import GUM

    return GUM().save_dataset(tmp_path_factory.mktemp("ds") / "gum", 40, traces_per_file=20, seed=1)


def _copy_with(dataset: Path, tmp_path: Path, edit) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(dataset, out)
    m = json.loads((out / "manifest.json").read_text())
    edit(m, out)
    (out / "manifest.json").write_text(json.dumps(m))
    return out


def _open_all(path: Path) -> None:
    ds = TraceDataset(path)
    for k in range(ds.num_shards):
        ds.shard(k)


@pytest.mark.parametrize("name", ["../outside.arrow", "/etc/passwd", "sub/x.arrow", "..", "", "a\0b"])
def test_shard_names_that_leave_the_folder_are_refused(dataset, tmp_path, name):
    def edit(m, out):
        m["shards"][0]["files"]["records"]["name"] = name

    (tmp_path / "outside.arrow").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a plain file name"):
        _open_all(_copy_with(dataset, tmp_path, edit))


@pytest.mark.timeout_s(20)
@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_shard_files_that_are_not_regular_files_are_refused(dataset, tmp_path, kind):
    def edit(m, out):
        f = out / m["shards"][0]["files"]["traces"]["name"]
        secret = tmp_path / "secret"
        secret.write_bytes(f.read_bytes())
        f.unlink()
        if kind == "symlink":
            f.symlink_to(secret)  # same bytes: only the link itself is wrong
        elif kind == "fifo":
            os.mkfifo(f)  # reading it would block forever
        else:
            f.mkdir()

    with pytest.raises(DatasetError, match="not a regular file"):
        _open_all(_copy_with(dataset, tmp_path, edit))


ILL_TYPED = {
    "count-string": lambda m: m["shards"][0].update(count="20"),
    "count-negative": lambda m: m["shards"][0].update(count=-1),
    "count-bool": lambda m: m["shards"][0].update(first=True),
    "files-list": lambda m: m["shards"][0].update(files=["a", "b", "c"]),
    "file-entry-string": lambda m: m["shards"][0]["files"].update(records="shard.arrow"),
    "bytes-null": lambda m: m["shards"][0]["files"]["arenas"].update(bytes=None),
    "name-number": lambda m: m["shards"][0]["files"]["arenas"].update(name=5),
    "table-index-string": lambda m: m["shards"][0].update(address_table="0"),
    "table-index-out-of-range": lambda m: m["shards"][0].update(address_table=7),
    "tables-of-ints": lambda m: m.update(address_tables=[[1, 2, 3]]),
    "shards-dict": lambda m: m.update(shards={"0": {}}),
    "shard-entry-list": lambda m: m["shards"].__setitem__(0, [1, 2]),
    "num-traces-string": lambda m: m.update(num_traces="40"),
}


@pytest.mark.parametrize("case", sorted(ILL_TYPED))
def test_ill_typed_manifest_fields_raise_dataset_error(dataset, tmp_path, case):
    path = _copy_with(dataset, tmp_path, lambda m, out: ILL_TYPED[case](m))
    with pytest.raises(DatasetError):
        _open_all(path)


def test_truncated_shard_file_is_named(dataset, tmp_path):
    def edit(m, out):
        f = out / m["shards"][1]["files"]["records"]["name"]
        f.write_bytes(f.read_bytes()[:100])

    path = _copy_with(dataset, tmp_path, edit)
    ds = TraceDataset(path)
    assert len(ds.shard(0)) == 20
    with pytest.raises(DatasetError, match="truncated or altered"):
        ds.shard(1)


def test_failed_write_leaves_no_tmp_files(tmp_path, monkeypatch):
    from ppfast.data import format as fmt
    from ppfast.examples.python_models import GUM

    real = fmt.ipc.new_file
    calls = []

    def failing(sink, schema):
        calls.append(1)
        if len(calls) == 2:  # the second file of the first shard: disk full
            sink.write(b"partial bytes")
            raise OSError(28, "No space left on device")
        return real(sink, schema)

    monkeypatch.setattr(fmt.ipc, "new_file", failing)
    with pytest.raises(OSError, match="No space left"):
        GUM().save_dataset(tmp_path / "ds", 10, traces_per_file=5, seed=1)
    assert not list((tmp_path / "ds").glob("*.tmp"))


def test_overwrite_deletes_only_shard_files(dataset, tmp_path):
    """A crafted manifest naming other files must not make overwrite=True delete them."""
    from ppfast.examples.python_models import GUM

    keep = tmp_path / "copy" / "notes.txt"

    def edit(m, out):
        keep.write_text("mine")
        m["shards"][0]["files"]["records"]["name"] = "notes.txt"

    path = _copy_with(dataset, tmp_path, edit)
    GUM().save_dataset(path, 10, traces_per_file=5, seed=1, overwrite=True)
    assert keep.read_text() == "mine" and len(TraceDataset(path)) == 10
