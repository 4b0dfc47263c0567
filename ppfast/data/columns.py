"""Trace batches held as plain numpy columns (from a dataset on disk or gathered from
other MPI ranks), with the same ``.records`` / ``.traces`` / ``.arenas`` interface as
:class:`ppfast.trace.TraceBatch`, so consumers (Empirical, the IC network) take either.

Address ids are process-local (each process interns strings in its own order); columns
written by another process are brought into this process's ids with
:func:`remap_addresses`, which also recomputes the trace-type hashes (they hash ids).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..trace import TraceBatch

__all__ = [
    "ARENAS",
    "RECORD_COLUMNS",
    "TRACE_COLUMNS",
    "ColumnBatch",
    "address_table",
    "remap_addresses",
    "trace_type_hashes",
]

Columns = Dict[str, np.ndarray]

# The column layout of csrc/core/trace_batch.hpp (tests check it against a live batch).
RECORD_COLUMNS: Dict[str, np.dtype] = {
    "trace": np.dtype(np.uint32), "address": np.dtype(np.uint32), "instance": np.dtype(np.uint32),
    "name": np.dtype(np.uint32), "kind": np.dtype(np.uint8), "flags": np.dtype(np.uint8),
    "dist": np.dtype(np.uint8), "value": np.dtype(np.float64), "log_prob": np.dtype(np.float64),
    "value_offset": np.dtype(np.uint32), "value_len": np.dtype(np.uint32),
    "param_offset": np.dtype(np.uint32), "param_len": np.dtype(np.uint32),
}
TRACE_COLUMNS: Dict[str, np.dtype] = {
    "index": np.dtype(np.uint64), "begin": np.dtype(np.uint64), "end": np.dtype(np.uint64),
    "log_prior": np.dtype(np.float64), "log_likelihood": np.dtype(np.float64),
    "log_weight": np.dtype(np.float64), "result": np.dtype(np.float64),
    "trace_type": np.dtype(np.uint64), "status": np.dtype(np.uint8), "message": np.dtype(np.uint32),
}
ARENAS: Tuple[str, ...] = ("values", "params")

_FNV_SEED = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_U32_MAX = 2**32 - 1


def address_table() -> List[str]:
    """This process's address table: entry i is the string of id i (entry 0 is "")."""
    return list(_core.address_names(0))


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + n)`` over pairs, without a Python loop."""
    starts = np.asarray(starts, dtype=np.int64)
    lens = np.asarray(lens, dtype=np.int64)
    keep = lens > 0
    starts, lens = starts[keep], lens[keep]
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    step = np.ones(total, dtype=np.int64)
    step[0] = starts[0]
    heads = np.cumsum(lens)[:-1]
    # At the head of each range jump from the previous range's last element to its start.
    step[heads] = starts[1:] - (starts[:-1] + lens[:-1]) + 1
    return np.cumsum(step)


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x), dtype=np.int64)
    if len(x) > 1:
        np.cumsum(x[:-1], dtype=np.int64, out=out[1:])
    return out


def _as_u32(x: np.ndarray, what: str) -> np.ndarray:
    if len(x) and int(x.max()) > _U32_MAX:
        raise ValueError(f"{what} exceeds 2**32 - 1: the batch is too large for 32-bit offsets; "
                         "use smaller batches")
    return x.astype(np.uint32)


def trace_type_hashes(records: Columns, num_traces: int) -> np.ndarray:
    """Trace-type hashes (FNV-1a over the controlled, surviving sample addresses of each
    trace, as the C++ recorder computes them) from the record columns."""
    flags = records["flags"]
    mask = (records["kind"] == 0) & ((flags & 1) != 0) & ((flags & 8) == 0)
    tr = records["trace"][mask].astype(np.int64)
    addr = records["address"][mask].astype(np.uint64)
    h = np.full(num_traces, _FNV_SEED, dtype=np.uint64)
    if len(tr) == 0:
        return h
    # Position of each selected record within its trace (records are grouped by trace).
    first = np.searchsorted(tr, tr, side="left")
    pos = np.arange(len(tr)) - first
    order = np.argsort(pos, kind="stable")
    bounds = np.searchsorted(pos[order], np.arange(int(pos.max()) + 2))
    with np.errstate(over="ignore"):
        for p in range(len(bounds) - 1):
            sel = order[bounds[p]:bounds[p + 1]]  # at most one record per trace
            t, a = tr[sel], addr[sel]
            v = h[t]
            for byte in range(4):
                v ^= (a >> np.uint64(8 * byte)) & np.uint64(0xFF)
                v *= _FNV_PRIME
            h[t] = v
    return h


def remap_addresses(records: Columns, traces: Columns, table: Sequence[str],
                    lut_cache: Optional[Dict[Tuple[str, ...], np.ndarray]] = None) -> Tuple[Columns, Columns]:
    """Columns written with another process's address ``table`` in this process's ids.

    When the ids coincide (the usual case: same program, same interning order) the columns
    come back untouched (zero-copy); otherwise ``address`` and ``name`` are translated and
    ``trace_type`` recomputed.  Raises ValueError for ids outside the table."""
    key = tuple(table)
    lut = lut_cache.get(key) if lut_cache is not None else None
    if lut is None:
        lut = np.fromiter((_core.intern(s) if i else 0 for i, s in enumerate(table)), dtype=np.uint32,
                          count=len(table))
        if lut_cache is not None:
            lut_cache[key] = lut
    n = len(traces["index"])
    top = 0
    for col in ("address", "name"):
        if len(records[col]):
            top = max(top, int(records[col].max()))
    if top >= len(lut):
        raise ValueError(f"address id {top} is outside the address table of {len(lut)} entries")
    if np.array_equal(lut[: top + 1], np.arange(top + 1, dtype=np.uint32)):
        return records, traces
    records = dict(records)
    records["address"] = lut[records["address"]]
    records["name"] = lut[records["name"]]
    traces = dict(traces)
    traces["trace_type"] = trace_type_hashes(records, n)
    return records, traces


class ColumnBatch(TraceBatch):
    """A trace batch made of numpy columns (possibly views of a memory-mapped file).

    ``messages``: error messages of failed traces (``traces['message']`` indexes them);
    ``owner``: whatever keeps the column memory alive (an Arrow table, a mapping).
    """

    def __init__(self, records: Columns, traces: Columns, arenas: Columns, messages: Sequence[str] = (),
                 objects: Optional[List[Any]] = None, owner: Any = None):
        self._native = None
        self.records = records
        self.traces = traces
        self.arenas = arenas
        self.messages: List[str] = list(messages)
        self.objects = objects
        self._owner = owner

    @classmethod
    def from_batch(cls, batch: TraceBatch) -> "ColumnBatch":
        """Wraps any TraceBatch (zero-copy)."""
        if isinstance(batch, ColumnBatch):
            return batch
        return cls(batch.records, batch.traces, batch.arenas, batch._messages, batch.objects, owner=batch)

    @classmethod
    def empty(cls) -> "ColumnBatch":
        return cls({k: np.zeros(0, dt) for k, dt in RECORD_COLUMNS.items()},
                   {k: np.zeros(0, dt) for k, dt in TRACE_COLUMNS.items()},
                   {k: np.zeros(0, np.float64) for k in ARENAS})

    def __len__(self) -> int:
        return len(self.traces["index"])

    @property
    def num_records(self) -> int:
        return len(self.records["trace"])

    @property
    def _messages(self) -> List[str]:
        return self.messages

    def error(self, i: int) -> str:
        if not self.traces["status"][i]:
            return ""
        return self.messages[int(self.traces["message"][i])]

    def __getstate__(self) -> Dict[str, Any]:
        # The owner (an mmap) does not travel; pickling copies the arrays themselves.
        return {"records": self.records, "traces": self.traces, "arenas": self.arenas,
                "messages": self.messages, "objects": self.objects}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["records"], state["traces"], state["arenas"], state["messages"],  # type: ignore[misc]
                      state["objects"])

    def __repr__(self) -> str:
        return f"ColumnBatch(traces={len(self)}, records={self.num_records})"

    # -- building new batches --------------------------------------------------------
    def slice(self, start: int, stop: int) -> "ColumnBatch":
        """Traces [start, stop): views of this batch's columns except the renumbered
        ``trace``, ``begin`` and ``end`` (the arenas are shared whole)."""
        n = len(self)
        start, stop, _ = slice(start, stop).indices(n)
        stop = max(start, stop)
        if start == 0 and stop == n:
            return self
        tb, te = self.traces["begin"], self.traces["end"]
        r0 = int(tb[start]) if stop > start else 0
        r1 = int(te[stop - 1]) if stop > start else 0
        records = {k: v[r0:r1] for k, v in self.records.items()}
        records["trace"] = (records["trace"] - np.uint32(start)) if start else records["trace"]
        traces = {k: v[start:stop] for k, v in self.traces.items()}
        if r0:
            traces["begin"] = traces["begin"] - np.uint64(r0)
            traces["end"] = traces["end"] - np.uint64(r0)
        objects = self.objects[start:stop] if self.objects is not None else None
        return ColumnBatch(records, traces, self.arenas, self.messages, objects, owner=self._owner)

    def select(self, indices: Any) -> "ColumnBatch":
        """The traces at ``indices`` (in that order), copied into a compact new batch."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"trace index out of range for a batch of {n} traces")
        idx = np.where(idx < 0, idx + n, idx)
        tb = self.traces["begin"][idx].astype(np.int64)
        te = self.traces["end"][idx].astype(np.int64)
        lens = te - tb
        rows = _ranges(tb, lens)
        records = {k: v[rows] for k, v in self.records.items()}
        records["trace"] = np.repeat(np.arange(len(idx), dtype=np.uint32), lens)
        traces = {k: v[idx] for k, v in self.traces.items()}
        end = np.cumsum(lens, dtype=np.int64)
        traces["end"] = end.astype(np.uint64)
        traces["begin"] = (end - lens).astype(np.uint64)
        arenas = {}
        for arena, off, ln, only_tensors in (("values", "value_offset", "value_len", True),
                                             ("params", "param_offset", "param_len", False)):
            o, m = records[off].astype(np.int64), records[ln].astype(np.int64)
            used = m if not only_tensors else np.where(m > 1, m, 0)
            # Records of one trace may share parameters (the recorder stores a repeat once):
            # the first record of a trace at an offset keeps the copy, later ones point at it.
            key = np.where(used[:, None] > 0, np.stack([records["trace"].astype(np.int64), o], axis=1), -1)
            _, first, owner = np.unique(key, axis=0, return_index=True, return_inverse=True)
            owner = first[owner.reshape(-1)]
            used = np.where(owner == np.arange(len(o)), used, 0)
            arenas[arena] = self.arenas[arena][_ranges(o, used)]
            new_off = _exclusive_cumsum(used)
            new_off = np.where(m > 0, new_off[owner], new_off)  # (a record without any stays where it is)
            if only_tensors:  # scalar values keep offset 0, as the recorder writes them
                new_off = np.where(m > 1, new_off, 0)
            records[off] = _as_u32(new_off, f"{arena} arena offset")
        messages, status = self.messages, traces["status"]
        if len(messages) and status.any():
            failed = status != 0
            old = traces["message"][failed]
            messages = [self.messages[int(i)] for i in old]
            msg = np.zeros(len(idx), dtype=np.uint32)
            msg[failed] = np.arange(len(old), dtype=np.uint32)
            traces["message"] = msg
        else:
            messages = []
        objects = [self.objects[int(i)] for i in idx] if self.objects is not None else None
        return ColumnBatch(records, traces, arenas, messages, objects)

    @classmethod
    def concat(cls, batches: Sequence[TraceBatch]) -> "ColumnBatch":
        """One batch from several (any TraceBatch kinds), renumbering traces, records,
        arena offsets and messages; a single batch is returned as it is."""
        parts = [ColumnBatch.from_batch(b) for b in batches]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        t0 = r0 = v0 = p0 = m0 = 0
        rec: Dict[str, List[np.ndarray]] = {k: [] for k in RECORD_COLUMNS}
        tra: Dict[str, List[np.ndarray]] = {k: [] for k in TRACE_COLUMNS}
        messages: List[str] = []
        for b in parts:
            r, t = b.records, b.traces
            for k in RECORD_COLUMNS:
                rec[k].append(r[k])
            for k in TRACE_COLUMNS:
                tra[k].append(t[k])
            if t0:
                rec["trace"][-1] = r["trace"].astype(np.int64) + t0
            if r0:
                tra["begin"][-1] = t["begin"] + np.uint64(r0)
                tra["end"][-1] = t["end"] + np.uint64(r0)
            if v0:
                rec["value_offset"][-1] = np.where(r["value_len"] > 1, r["value_offset"].astype(np.int64) + v0, 0)
            if p0:
                rec["param_offset"][-1] = r["param_offset"].astype(np.int64) + p0
            if m0:
                tra["message"][-1] = np.where(t["status"] != 0, t["message"].astype(np.int64) + m0, 0)
            t0 += len(b)
            r0 += b.num_records
            v0 += len(b.arenas["values"])
            p0 += len(b.arenas["params"])
            m0 += len(b.messages)
            messages.extend(b.messages)
        for what, total in (("trace number", t0), ("value arena offset", v0), ("param arena offset", p0)):
            if total > _U32_MAX:
                raise ValueError(f"concatenated {what} exceeds 2**32 - 1; use smaller batches")
        records = {k: np.concatenate(v).astype(RECORD_COLUMNS[k], copy=False) for k, v in rec.items()}
        traces = {k: np.concatenate(v).astype(TRACE_COLUMNS[k], copy=False) for k, v in tra.items()}
        arenas = {k: np.concatenate([b.arenas[k] for b in parts]) for k in ARENAS}
        objects = None
        if any(b.objects is not None for b in parts):
            objects = [o for b in parts for o in (b.objects if b.objects is not None else b.traces["result"].tolist())]
        return cls(records, traces, arenas, messages, objects)

    # -- trace types -------------------------------------------------------------------
    def trace_type_groups(self) -> Dict[int, np.ndarray]:
        """Trace indices by trace type (hash -> sorted indices)."""
        tt = self.traces["trace_type"]
        order = np.argsort(tt, kind="stable")
        uniq, starts = np.unique(tt[order], return_index=True)
        bounds = list(starts) + [len(order)]
        return {int(u): order[bounds[i]:bounds[i + 1]] for i, u in enumerate(uniq)}
