"""Empiricals that grow on disk: a folder of Arrow IPC segments (``part-000000.arrow``,
...), each holding a ``value`` column (float64, or fixed-size lists for equal-shape
arrays) and a ``log_weight`` column.  Appending writes a new segment (a run can be
resumed by appending more), reading memory-maps every segment, and several folders
read as one concatenated Empirical.

>>> # post = model.posterior_results(10_000, observe=obs, file_name="post.arrowdir")
>>> # more = model.posterior_results(10_000, observe=obs, seed=2, file_name="post.arrowdir")
>>> # everything = read_empirical("post.arrowdir")        # 20,000 values
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Sequence, Union

import numpy as np

__all__ = ["append_empirical", "read_empirical", "segment_files"]

PathLike = Union[str, os.PathLike]
_SHAPE_KEY = b"ppfast.value_shape"


def segment_files(path: PathLike) -> List[Path]:
    """The segment files of a folder, in order (none for a folder not written yet)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: a file-backed Empirical is a folder of Arrow segments, not a file")
    return sorted(p for p in folder.glob("part-*.arrow") if p.is_file()) if folder.exists() else []


def append_empirical(path: PathLike, values: Any, log_weights: Any) -> Path:
    """Writes ``values`` (numbers or equal-shape arrays) and ``log_weights`` as the next
    segment of the folder ``path`` (created if needed); returns the segment's path."""
    import pyarrow as pa
    import pyarrow.ipc

    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("a file-backed Empirical holds numbers or equal-shape arrays; map the values to "
                        "numbers first (map_func=)") from None
    lw = np.ascontiguousarray(log_weights, dtype=np.float64).reshape(-1)
    if v.ndim == 0 or len(v) != len(lw):
        raise ValueError(f"{len(lw)} log-weights for values of shape {v.shape}")
    shape = v.shape[1:]
    width = int(np.prod(shape, dtype=np.int64))
    flat = pa.array(np.ascontiguousarray(v).reshape(-1))
    column = flat if not shape else pa.FixedSizeListArray.from_arrays(flat, width)
    schema = pa.schema([("value", column.type), ("log_weight", pa.float64())],
                       metadata={_SHAPE_KEY: json.dumps(list(shape)).encode()})
    table = pa.Table.from_arrays([column, pa.array(lw)], schema=schema)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    existing = segment_files(folder)
    number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    target = folder / f"part-{number:06d}.arrow"
    tmp = target.with_suffix(".arrow.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(table)
        os.replace(tmp, target)  # readers never see a half-written segment
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _read_segment(file: Path) -> "tuple[np.ndarray, np.ndarray]":
    import pyarrow as pa
    import pyarrow.ipc

    table = pa.ipc.open_file(pa.memory_map(str(file), "r")).read_all()
    shape = tuple(json.loads((table.schema.metadata or {}).get(_SHAPE_KEY, b"[]")))
    column = table.column("value").combine_chunks()
    flat = column.flatten() if shape else column
    values = flat.to_numpy(zero_copy_only=False).reshape((len(table),) + shape)
    return values, table.column("log_weight").to_numpy()


def read_empirical(paths: Union[PathLike, Sequence[PathLike]], name: str = "Empirical") -> Any:
    """One Empirical from the segments of a folder, or of several folders concatenated
    (log-weights kept as written)."""
    from .posterior import Empirical

    folders = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    parts = [_read_segment(f) for folder in folders for f in segment_files(folder)]
    if not parts:
        return Empirical(name=name)
    values = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    log_weights = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    return Empirical(values, log_weights=log_weights, name=name)
