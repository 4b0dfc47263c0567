"""Trace batches: many traces in columnar numpy views over C++ memory (no copies).

``batch.records`` and ``batch.traces`` are dicts of read-only numpy arrays whose memory
is the C++ batch; a view keeps the batch alive after the TraceBatch object is gone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from . import _core
from . import distributions as _distributions
from .distributions import KIND_NAMES

__all__ = ["TraceBatch", "TraceList", "Trace", "Variable", "RecordKind", "FLAG_CONTROL", "FLAG_REPLACE", "FLAG_OBSERVED",
           "FLAG_DISCARDED", "FLAG_PROPOSED"]

FLAG_CONTROL, FLAG_REPLACE, FLAG_OBSERVED, FLAG_DISCARDED, FLAG_PROPOSED = 1, 2, 4, 8, 16


class RecordKind:
    SAMPLE, OBSERVE, TAG, FACTOR = 0, 1, 2, 3


_RECORD_KIND_NAMES = ["sample", "observe", "tag", "factor"]

#: Distribution kinds whose values are integers (from each class's ``discrete``).
DISCRETE_KINDS = frozenset(c.kind for c in vars(_distributions).values()
                           if isinstance(c, type) and issubclass(c, _distributions.Distribution)
                           and c.discrete is True)


_address_cache: List[str] = [""]


def address_name(i: int) -> str:
    """String of an interned address / name id (cached on the Python side)."""
    if i >= len(_address_cache):
        _address_cache.extend(_core.address_names(len(_address_cache)))
    return _address_cache[i]


# Columns that index into the batch, by the group of the column a chunk's index is shifted by.
_SHIFTED = {("records", "trace"): "traces", ("records", "value_offset"): "values",
            ("records", "param_offset"): "params", ("traces", "begin"): "records", ("traces", "end"): "records",
            ("traces", "message"): "messages"}


class _ChunkedColumns(Mapping):
    """One group of columns (records, traces or arenas) of a batch made of several native
    chunks: a column is concatenated on first access, the indices it holds shifted to the
    whole batch, so a run's chunks are never merged as a whole (results and weights are
    all most runs read)."""

    def __init__(self, group: str, chunks: List[Dict[str, Dict[str, np.ndarray]]], offsets: Dict[str, List[int]]):
        self._group, self._chunks, self._offsets = group, chunks, offsets
        self._done: Dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        col = self._done.get(key)
        if col is None:
            col = np.concatenate([c[self._group][key] for c in self._chunks])
            shift = _SHIFTED.get((self._group, key))
            if shift is not None:
                begin = 0
                for c, off in zip(self._chunks, self._offsets[shift]):
                    end = begin + len(c[self._group][key])
                    if off:
                        col[begin:end] += col.dtype.type(off)
                    begin = end
            col.flags.writeable = False
            self._done[key] = col
        return col

    def __iter__(self) -> Iterator[str]:
        return iter(self._chunks[0][self._group])

    def __len__(self) -> int:
        return len(self._chunks[0][self._group])


def _native_chunks(chunks: List[Any]) -> List[Any]:
    """The chunks as ordinary native batches (those living elsewhere, e.g. in shared
    memory, are copied)."""
    return [c if isinstance(c, _core.TraceBatch) else c.to_batch() for c in chunks]


class TraceBatch:
    """A finished batch of traces.  ``objects`` holds non-numeric results of Python
    models (one per trace), else None.  ``native``: a native batch, or a list of them (the
    chunks of one run, in order: columns are views of a single chunk, or concatenated on
    first access)."""

    def __init__(self, native: Any, objects: Optional[List[Any]] = None):
        chunks = list(native) if isinstance(native, (list, tuple)) else [native]
        if not chunks:
            chunks = [_core.TraceBatch()]
        self._chunks = chunks
        self._whole = chunks[0] if len(chunks) == 1 else None
        cols = [c.columns() for c in chunks]
        if len(chunks) == 1:
            self.records: Mapping[str, np.ndarray] = cols[0]["records"]
            self.traces: Mapping[str, np.ndarray] = cols[0]["traces"]
            self.arenas: Mapping[str, np.ndarray] = cols[0]["arenas"]
        else:
            sizes = {"traces": [c.num_traces for c in chunks], "records": [c.num_records for c in chunks],
                     "values": [len(c["arenas"]["values"]) for c in cols],
                     "params": [len(c["arenas"]["params"]) for c in cols],
                     "messages": [len(c.messages) for c in chunks]}
            offsets = {k: [0, *np.cumsum(v[:-1]).tolist()] for k, v in sizes.items()}
            self.records = _ChunkedColumns("records", cols, offsets)
            self.traces = _ChunkedColumns("traces", cols, offsets)
            self.arenas = _ChunkedColumns("arenas", cols, offsets)
        self.objects = objects

    @property
    def _native(self) -> Any:
        """The batch as one ordinary native batch, for C++ consumers (chunks, and batches
        living elsewhere such as shared memory, are copied into one the first time)."""
        if not isinstance(self._whole, _core.TraceBatch):
            natives = _native_chunks(self._chunks)
            self._whole = natives[0] if len(natives) == 1 else _core.TraceBatch.concat(natives)
            self._chunks = [self._whole]
        return self._whole

    @_native.setter
    def _native(self, value: Any) -> None:
        self._whole = value
        self._chunks = [] if value is None else [value]

    @classmethod
    def concat(cls, batches: Sequence["TraceBatch"]) -> "TraceBatch":
        """The batches as one (their chunks are kept, not copied; batches living elsewhere,
        e.g. in shared memory, are copied into a native batch)."""
        if len(batches) == 1:
            return batches[0]
        objects = None
        if any(b.objects is not None for b in batches):
            objects = [o for b in batches for o in (b.objects if b.objects is not None else b.traces["result"].tolist())]
        return cls(_native_chunks([c for b in batches for c in b._chunks]), objects)

    def __len__(self) -> int:
        return sum(c.num_traces for c in self._chunks)

    @property
    def num_records(self) -> int:
        return sum(c.num_records for c in self._chunks)

    @property
    def _messages(self) -> List[str]:
        return [m for c in self._chunks for m in c.messages]

    @property
    def results(self) -> Any:
        """Per-trace results: a float64 view, or a list for non-numeric results (tensor
        results of PPX simulators are numpy arrays of their shape)."""
        if self.objects is None and not getattr(self, "_tensors_checked", False):
            self.objects = tensor_results(self)
            self._tensors_checked = True
        return self.objects if self.objects is not None else self.traces["result"]

    @property
    def log_weights(self) -> np.ndarray:
        return self.traces["log_weight"]

    def column_chunks(self, group: str, key: str) -> List[np.ndarray]:
        """Column ``key`` of ``group`` ("records", "traces" or "arenas") as one view per
        chunk, not joined, with each chunk's own indices (for scans that need no whole
        column: the join copies it)."""
        return [c.columns()[group][key] for c in self._chunks] if len(self._chunks) > 1 else [
            getattr(self, group)[key]]

    @property
    def failed(self) -> np.ndarray:
        """Indices of failed traces."""
        if len(self._chunks) == 1:
            return np.flatnonzero(self.traces["status"])
        out, first = [], 0
        for status in self.column_chunks("traces", "status"):  # chunk by chunk: no joined column
            out.append(np.flatnonzero(status) + first)
            first += len(status)
        return np.concatenate(out)

    def error(self, i: int) -> str:
        return self._messages[int(self.traces["message"][i])]

    def to_torch(self) -> Dict[str, Any]:
        """The columns as torch tensors sharing this batch's memory."""
        from ._optional import require

        torch = require("torch", "TraceBatch.to_torch")

        out = {}
        for group in (self.records, self.traces):
            for k, v in group.items():
                if v.dtype == np.uint32:  # torch has no uint32 tensors on older versions: reinterpret as int32
                    v = v.view(np.int32)
                elif v.dtype == np.uint64:
                    v = v.view(np.int64)
                with warnings.catch_warnings():  # read-only views: torch warns, then shares the memory
                    warnings.simplefilter("ignore", UserWarning)
                    out[k] = torch.from_numpy(v)
        return out

    def to_pandas(self, what: str = "records") -> Any:
        """A pandas DataFrame: ``what="records"`` one row per sample / observe / tag / factor
        (``trace``, ``address`` and ``name`` as strings, ``instance``, ``kind``, ``dist``,
        ``control``, ``discarded``, ``flags``, ``value``, ``log_prob``, and ``tensor`` with
        the whole value of tensor-valued records); ``what="traces"`` one row per trace
        (``index``, ``log_prior``, ``log_likelihood``, ``log_weight``, ``result``,
        ``trace_type``, ``failed``, ``error``).  Strings are categoricals."""
        from ._optional import require

        pd = require("pandas", "TraceBatch.to_pandas")
        cols = {k: (pd.Categorical.from_codes(v[0], v[1]) if isinstance(v, tuple) else v)
                for k, v in self._table(what).items()}
        return pd.DataFrame(cols)

    def to_arrow(self, what: str = "records") -> Any:
        """The same table as ``to_pandas`` as a pyarrow Table (strings dictionary-encoded),
        e.g. for Parquet, polars or DuckDB."""
        from ._optional import require

        pa = require("pyarrow", "TraceBatch.to_arrow")
        cols = {}
        for k, v in self._table(what).items():
            if isinstance(v, tuple):
                codes, names = v
                cols[k] = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), pa.array(names, pa.string()))
            elif v.dtype == object:
                cols[k] = pa.array(list(v), type=pa.list_(pa.float64()))
            else:
                cols[k] = pa.array(v)
        return pa.table(cols)

    def _table(self, what: str) -> Dict[str, Any]:
        """Columns for to_pandas / to_arrow: arrays, or (codes, names) for strings (code -1:
        missing)."""
        if what == "traces":
            t = self.traces
            failed = t["status"] != 0
            messages = self._messages
            # Message ids shifted by one, so that 0 means "no error" (missing).
            error = _categories(np.where(failed, t["message"].astype(np.int64) + 1, 0), lambda i: messages[i - 1],
                                zero_missing=True)
            return {"index": t["index"], "log_prior": t["log_prior"], "log_likelihood": t["log_likelihood"],
                    "log_weight": t["log_weight"], "result": t["result"], "trace_type": t["trace_type"],
                    "failed": failed, "error": error}
        if what != "records":
            raise ValueError(f"to_pandas / to_arrow: what must be 'records' or 'traces', got {what!r}")
        r = self.records
        cols: Dict[str, Any] = {
            "trace": r["trace"],
            "address": _categories(r["address"], address_name),
            "name": _categories(r["name"], address_name, zero_missing=True),  # id 0: no name
            "instance": r["instance"],
            "kind": _categories(r["kind"], lambda k: _RECORD_KIND_NAMES[k]),
            "dist": _categories(r["dist"], lambda k: KIND_NAMES.get(k, "")),
            "control": (r["flags"] & FLAG_CONTROL) != 0,
            "discarded": (r["flags"] & FLAG_DISCARDED) != 0,
            "flags": r["flags"],
            "value": r["value"],
            "log_prob": r["log_prob"],
        }
        tensors = np.flatnonzero(r["value_len"] > 1)
        if len(tensors):
            values = self.arenas["values"]
            column = np.full(len(r["value"]), None, dtype=object)
            for j in tensors:
                off = int(r["value_offset"][j])
                column[j] = values[off:off + int(r["value_len"][j])]
            cols["tensor"] = column
        return cols

    def values_of(self, name: str, instance: int = 0, fill: float = np.nan) -> np.ndarray:
        """Per-trace value of the variable called ``name`` (a name or an address)."""
        ids = _ids_for(name)
        rec = self.records
        mask = np.isin(rec["name"], ids) | np.isin(rec["address"], ids)
        mask &= rec["instance"] == instance
        mask &= (rec["flags"] & FLAG_DISCARDED) == 0
        out = np.full(len(self), fill)
        out[rec["trace"][mask]] = rec["value"][mask]
        return out

    def trace(self, i: int) -> "Trace":
        return Trace(self, i)

    def __iter__(self) -> Iterator["Trace"]:
        for i in range(len(self)):
            yield Trace(self, i)


#: Address of the Tag records holding tensor run results (csrc/transport/ppx/client.hpp).
RESULT_ADDRESS = "__result__"


def tensor_results(batch: Any) -> Optional[List[Any]]:
    """Per-trace results with the tensor ones rebuilt from their RESULT_ADDRESS Tag records
    (value [rank, dims..., elements...]); None if the batch has none."""
    res = batch.traces["result"]
    if not len(res) or not np.isnan(res.min()):  # (min is NaN if any element is: no temporary)
        return None
    rec = batch.records
    rows = np.flatnonzero((rec["address"] == _ids_for(RESULT_ADDRESS)[0]) & (rec["kind"] == RecordKind.TAG))
    if not len(rows):
        return None
    out: List[Any] = res.tolist()
    arena = batch.arenas["values"]
    for j in rows:
        off, n = int(rec["value_offset"][j]), int(rec["value_len"][j])
        packed = arena[off:off + n] if n > 1 else rec["value"][j:j + 1]
        rank = int(packed[0])
        shape = tuple(int(d) for d in packed[1:1 + rank])
        out[int(rec["trace"][j])] = np.array(packed[1 + rank:]).reshape(shape)
    return out


def _categories(ids: np.ndarray, name_of: Any, zero_missing: bool = False) -> Any:
    """(codes, names) of a column of ids: names[codes[i]] is row i's string; with
    ``zero_missing`` id 0 has no string (code -1)."""
    uniq, codes = np.unique(ids, return_inverse=True)
    codes = np.asarray(codes, dtype=np.int32).reshape(-1)
    if zero_missing and len(uniq) and uniq[0] == 0:
        codes, uniq = codes - 1, uniq[1:]
    if not len(uniq):
        return codes, []
    # Different ids may share a string (e.g. two failed traces with one message): merge them.
    names, merged = np.unique(np.array([name_of(int(i)) for i in uniq], dtype=object), return_inverse=True)
    codes = np.where(codes >= 0, merged.reshape(-1)[np.maximum(codes, 0)], -1).astype(np.int32)
    return codes, [str(n) for n in names]


def _ids_for(name: str) -> List[int]:
    from .primitives import name_id

    return [name_id(name)]


class TraceList(Sequence):
    """The traces of a batch as a sequence of lazy Trace views."""

    def __init__(self, batch: TraceBatch):
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [Trace(self.batch, j) for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return Trace(self.batch, i)


@dataclass
class Variable:
    """One record of a trace (PyProb's Variable)."""

    address: str
    name: Optional[str]
    instance: int
    kind: int
    distribution: Optional[str]
    value: Any
    log_prob: float
    control: bool
    replace: bool
    observed: bool

    @property
    def tagged(self) -> bool:
        return self.kind == RecordKind.TAG


class Trace:
    """A lazy view of trace ``i`` of a batch."""

    def __init__(self, batch: TraceBatch, i: int):
        self.batch = batch
        self.index = i

    def _col(self, key: str) -> Any:
        return self.batch.traces[key][self.index]

    @property
    def result(self) -> Any:
        return self.batch.results[self.index]

    @property
    def log_prob(self) -> float:
        return float(self._col("log_prior") + self._col("log_likelihood"))

    @property
    def log_prior(self) -> float:
        return float(self._col("log_prior"))

    @property
    def log_likelihood(self) -> float:
        return float(self._col("log_likelihood"))

    @property
    def log_importance_weight(self) -> float:
        return float(self._col("log_weight"))

    @property
    def trace_type(self) -> int:
        return int(self._col("trace_type"))

    @property
    def failed(self) -> bool:
        return bool(self._col("status"))

    @property
    def variables(self) -> List[Variable]:
        b, r = self.batch, self.batch.records
        begin, end = int(self._col("begin")), int(self._col("end"))
        out = []
        for j in range(begin, end):
            flags = int(r["flags"][j])
            if flags & FLAG_DISCARDED:
                continue
            n = int(r["value_len"][j])
            if n > 1:
                off = int(r["value_offset"][j])
                value: Any = b.arenas["values"][off:off + n]
            else:
                value = float(r["value"][j])
            name_i = int(r["name"][j])
            dist = int(r["dist"][j])
            out.append(Variable(address=address_name(int(r["address"][j])), name=address_name(name_i) if name_i else None,
                                instance=int(r["instance"][j]), kind=int(r["kind"][j]),
                                distribution=KIND_NAMES.get(dist) if dist else None, value=value,
                                log_prob=float(r["log_prob"][j]), control=bool(flags & FLAG_CONTROL),
                                replace=bool(flags & FLAG_REPLACE), observed=bool(flags & FLAG_OBSERVED)))
        return out

    @property
    def variables_controlled(self) -> List[Variable]:
        return [v for v in self.variables if v.kind == RecordKind.SAMPLE and v.control]

    @property
    def variables_observed(self) -> List[Variable]:
        return [v for v in self.variables if v.observed]

    @property
    def named_variables(self) -> Dict[str, Variable]:
        return {v.name: v for v in self.variables if v.name is not None}

    def __len__(self) -> int:
        return int(self._col("end") - self._col("begin"))

    def __repr__(self) -> str:
        return f"Trace({self.index}, records={len(self)}, log_weight={self.log_importance_weight:.4g})"
