"""The on-disk format of trace datasets: Arrow IPC files plus a JSON manifest.

A dataset directory holds ``manifest.json`` and, per shard ``k``, three Arrow IPC files
(uncompressed, so they can be memory-mapped and read without copies):

- ``shard-<k>-records.arrow``: one row per record (the ``TraceBatch.records`` columns);
- ``shard-<k>-traces.arrow``: one row per trace (``TraceBatch.traces``); the error
  messages of failed traces are in the schema metadata under ``ppfast.messages``;
- ``shard-<k>-arenas.arrow``: one row with two ``large_list<double>`` cells, the value
  arena (tensor values) and the parameter arena (distribution parameters).

Any Arrow reader opens them (``pyarrow.ipc.open_file``, pandas, polars, DuckDB).  The
manifest names the files with their sizes and SHA-256 checksums, the address tables
(id -> string) the shards were written with, the seed, the model name and the counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from .._optional import require

pa = require("pyarrow", "trace datasets")
ipc = require("pyarrow.ipc", "trace datasets")

from ..errors import DatasetError
from .columns import ARENAS, RECORD_COLUMNS, TRACE_COLUMNS, ColumnBatch

__all__ = [
    "FORMAT",
    "MANIFEST",
    "SCHEMA_VERSION",
    "file_sha256",
    "read_manifest",
    "read_shard",
    "write_manifest",
    "write_shard",
]

FORMAT = "ppfast.trace-dataset"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PARTS = ("records", "traces", "arenas")
_HASH_BLOCK = 1 << 24


def _schema(columns: Dict[str, np.dtype], part: str) -> pa.Schema:
    return pa.schema([pa.field(k, pa.from_numpy_dtype(dt), nullable=False) for k, dt in columns.items()],
                     metadata={b"ppfast.part": part.encode(), b"ppfast.schema_version": str(SCHEMA_VERSION).encode()})


RECORDS_SCHEMA = _schema(RECORD_COLUMNS, "records")
TRACES_SCHEMA = _schema(TRACE_COLUMNS, "traces")
ARENAS_SCHEMA = pa.schema([pa.field(k, pa.large_list(pa.float64()), nullable=False) for k in ARENAS],
                          metadata={b"ppfast.part": b"arenas", b"ppfast.schema_version": str(SCHEMA_VERSION).encode()})


def shard_file_name(index: int, part: str) -> str:
    return f"shard-{index:06d}-{part}.arrow"


class _HashingSink:
    """A file object that hashes what Arrow writes through it (one pass over the data)."""

    def __init__(self, path: Path):
        self._f = open(path, "wb")  # noqa: SIM115 -- closed by close(), which Arrow calls
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self._f.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self.closed:
            self._f.close()
            self.closed = True


def _write_table(path: Path, schema: pa.Schema, arrays: List[pa.Array]) -> Dict[str, Any]:
    tmp = path.with_name(path.name + ".tmp")
    sink = _HashingSink(tmp)
    try:
        try:
            with ipc.new_file(pa.PythonFile(sink, mode="w"), schema) as writer:
                writer.write_batch(pa.record_batch(arrays, schema=schema))
        finally:
            sink.close()
        os.replace(tmp, path)  # a reader never sees a half-written file under the final name
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (disk full, Ctrl-C) leaves no .tmp behind
        raise
    return {"name": path.name, "bytes": sink.size, "sha256": sink.sha.hexdigest()}


def _column(values: np.ndarray, dtype: np.dtype) -> pa.Array:
    return pa.array(np.ascontiguousarray(values, dtype=dtype))  # zero-copy for contiguous numeric columns


def write_shard(directory: Path, index: int, batch: ColumnBatch) -> Dict[str, Dict[str, Any]]:
    """Writes one shard's three files; returns their manifest entries by part."""
    files = {}
    files["records"] = _write_table(directory / shard_file_name(index, "records"), RECORDS_SCHEMA,
                                    [_column(batch.records[k], dt) for k, dt in RECORD_COLUMNS.items()])
    messages = json.dumps(list(batch.messages)).encode()
    schema = TRACES_SCHEMA.with_metadata({**TRACES_SCHEMA.metadata, b"ppfast.messages": messages})
    files["traces"] = _write_table(directory / shard_file_name(index, "traces"), schema,
                                   [_column(batch.traces[k], dt) for k, dt in TRACE_COLUMNS.items()])
    arenas = []
    for k in ARENAS:
        flat = _column(batch.arenas[k], np.dtype(np.float64))
        arenas.append(pa.LargeListArray.from_arrays(pa.array([0, len(flat)], pa.int64()), flat))
    files["arenas"] = _write_table(directory / shard_file_name(index, "arenas"), ARENAS_SCHEMA, arenas)
    return files


def file_sha256(buf: pa.Buffer) -> str:
    sha = hashlib.sha256()
    view = memoryview(buf)
    for i in range(0, len(view), _HASH_BLOCK):  # hashlib releases the GIL on large blocks
        sha.update(view[i:i + _HASH_BLOCK])
    return sha.hexdigest()


def is_plain_file_name(name: str) -> bool:
    """A name of a file directly in the dataset folder: no directory part, no '..'."""
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
            and Path(name).name == name)


def _open_part(directory: Path, entry: Dict[str, Any], verify: bool) -> Tuple[pa.Table, Any]:
    name = entry["name"]
    if not is_plain_file_name(name):
        raise DatasetError(f"{directory}: the manifest names shard file {name!r}, which is not a plain file name in "
                           "the dataset folder", file=str(directory))
    path = directory / name
    try:
        info = path.lstat()
    except OSError as e:
        raise DatasetError(f"{path}: cannot open shard file ({e})", file=str(path)) from e
    # Not through a link (it may lead out of the folder), not a FIFO or device (a read
    # could block or never end).
    if not stat.S_ISREG(info.st_mode):
        raise DatasetError(f"{path}: not a regular file (a link, FIFO, device or folder); shard files are "
                           "regular files in the dataset folder", file=str(path))
    try:
        mapped = pa.memory_map(str(path), "r")
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"{path}: cannot open shard file ({e})", file=str(path)) from e
    size = mapped.size()
    if size != entry["bytes"]:
        raise DatasetError(f"{path}: truncated or altered: {size} bytes, the manifest says {entry['bytes']}",
                           file=str(path))
    if verify:
        digest = file_sha256(mapped.read_buffer(size))
        mapped.seek(0)
        if digest != entry["sha256"]:
            raise DatasetError(f"{path}: checksum mismatch (sha256 {digest[:16]}..., the manifest says "
                               f"{entry['sha256'][:16]}...): the file is corrupted", file=str(path))
    try:
        table = ipc.open_file(mapped).read_all()
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"{path}: not a readable Arrow IPC file ({e})", file=str(path)) from e
    return table, mapped


def _numpy(table: pa.Table, name: str, dtype: np.dtype, path: Path) -> np.ndarray:
    try:
        col = table.column(name)
    except KeyError as e:
        raise DatasetError(f"{path}: column {name!r} is missing", file=str(path)) from e
    if col.num_chunks != 1:
        col = col.combine_chunks()
        arr = col.to_numpy(zero_copy_only=False)
    else:
        arr = col.chunk(0).to_numpy(zero_copy_only=True)
    if arr.dtype != dtype:
        raise DatasetError(f"{path}: column {name!r} has type {arr.dtype}, expected {dtype}", file=str(path))
    return arr


def read_shard(directory: Path, entry: Dict[str, Any], verify: bool = True) -> ColumnBatch:
    """One shard as a ColumnBatch of zero-copy views into the memory-mapped files (ids as
    written: the caller remaps them).  Raises DatasetError naming the bad file."""
    files = entry["files"]
    owners = []
    rt, m = _open_part(directory, files["records"], verify)
    owners += [rt, m]
    tt, m = _open_part(directory, files["traces"], verify)
    owners += [tt, m]
    at, m = _open_part(directory, files["arenas"], verify)
    owners += [at, m]
    rpath, tpath, apath = (directory / files[p]["name"] for p in PARTS)
    records = {k: _numpy(rt, k, dt, rpath) for k, dt in RECORD_COLUMNS.items()}
    traces = {k: _numpy(tt, k, dt, tpath) for k, dt in TRACE_COLUMNS.items()}
    arenas = {}
    for k in ARENAS:
        try:
            cell = at.column(k).chunk(0)
        except (KeyError, IndexError) as e:
            raise DatasetError(f"{apath}: arena {k!r} is missing", file=str(apath)) from e
        arenas[k] = cell.values.to_numpy(zero_copy_only=True)
    meta = tt.schema.metadata or {}
    try:
        messages = json.loads(meta.get(b"ppfast.messages", b"[]"))
    except ValueError as e:
        raise DatasetError(f"{tpath}: unreadable error messages in the schema metadata", file=str(tpath)) from e
    n, nrec = len(traces["index"]), len(records["trace"])
    if n != entry["count"] or nrec != entry["num_records"]:
        raise DatasetError(f"{tpath}: {n} traces and {nrec} records, the manifest says {entry['count']} and "
                           f"{entry['num_records']}", file=str(tpath))
    return ColumnBatch(records, traces, arenas, messages, owner=tuple(owners))


def write_manifest(directory: Path, manifest: Dict[str, Any]) -> None:
    path = directory / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    try:
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_manifest(directory: Path) -> Dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: no dataset manifest (not a ppfast trace dataset, or its writing did not "
                           "finish)", file=str(path)) from e
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e})", file=str(path)) from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a ppfast trace dataset manifest (format {manifest.get('format')!r})"
                           if isinstance(manifest, dict) else f"{path}: not a manifest", file=str(path))
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{path}: schema version {version}, this ppfast reads version {SCHEMA_VERSION}",
                           file=str(path))
    return manifest
