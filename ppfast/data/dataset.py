"""Reading trace datasets: memory-mapped, zero-copy, shard by shard::

    ds = TraceDataset("traces/")
    len(ds), ds.num_shards              # (1000000, 10)
    shard = ds.shard(0)                 # ColumnBatch: .records / .traces / .arenas views of the files
    for batch in ds.batches(1024, shuffle=True, seed=0, group_by_trace_type=True):
        train_step(batch)
    loader = ds.dataloader(1024, num_workers=2)   # a torch.utils.data.DataLoader of ColumnBatch
"""

from __future__ import annotations

import collections
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from ..errors import DatasetError
from ..model import check_on_error
from ..trace import Trace
from .columns import ColumnBatch, remap_addresses
from .format import MANIFEST, PARTS, is_plain_file_name, read_manifest, read_shard

__all__ = ["TraceDataset"]

_SHARD_KEYS = ("index", "first", "count", "num_records", "files", "address_table")


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


class TraceDataset:
    """A trace dataset written by ``model.save_dataset``.

    ``verify``: check each shard's files against the manifest's SHA-256 checksums when
    the shard is first opened (a corrupted or truncated file raises
    :class:`~ppfast.errors.DatasetError` naming it; the other shards stay readable).
    ``max_open_shards``: how many shards stay mapped at once.

    Traces are numbered 0..len-1 in trace-number order across shards; ``ds[i]`` is a
    :class:`~ppfast.trace.Trace` view, ``ds.shard(k)`` a zero-copy ColumnBatch, and
    ``ds.batches(...)`` / ``ds.dataloader(...)`` serve minibatches for training.
    """

    def __init__(self, dataset_dir: Union[str, Path], verify: bool = True, max_open_shards: int = 64):
        self.path = Path(dataset_dir)
        self.verify = bool(verify)
        self.max_open_shards = max(1, int(max_open_shards))
        self.manifest = read_manifest(self.path)
        self._check_manifest()
        counts = np.array([s["count"] for s in self._shards], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._open: "collections.OrderedDict[int, ColumnBatch]" = collections.OrderedDict()
        self._luts: Dict[Any, np.ndarray] = {}
        self._types: Optional[np.ndarray] = None

    def _check_manifest(self) -> None:
        """Every field the reader uses, with its type: a crafted or damaged manifest raises
        DatasetError naming what is wrong, not a TypeError or KeyError later."""
        where = str(self.path / MANIFEST)
        m = self.manifest

        def bad(what: str) -> DatasetError:
            return DatasetError(f"{where}: {what}", file=where)

        shards = m.get("shards")
        tables = m.get("address_tables")
        if not isinstance(shards, list) or not isinstance(tables, list):
            raise bad("manifest lacks 'shards' or 'address_tables'")
        for t, table in enumerate(tables):
            if not isinstance(table, list) or not all(isinstance(a, str) for a in table):
                raise bad(f"address table {t} is not a list of strings")
        for i, s in enumerate(shards):
            missing = [k for k in _SHARD_KEYS if not isinstance(s, dict) or k not in s]
            if missing:
                raise bad(f"shard entry {i} lacks {', '.join(missing)}")
            for k in ("index", "first", "count", "num_records", "address_table"):
                if not _is_count(s[k]):
                    raise bad(f"shard entry {i}: {k!r} must be an integer >= 0, got {s[k]!r}")
            files = s["files"]
            if not isinstance(files, dict) or not all(p in files for p in PARTS):
                raise bad(f"shard entry {i} does not name its {'/'.join(PARTS)} files")
            for p in PARTS:
                f = files[p]
                if not (isinstance(f, dict) and isinstance(f.get("name"), str) and _is_count(f.get("bytes"))
                        and isinstance(f.get("sha256"), str)):
                    raise bad(f"shard entry {i}: its {p} file entry needs a name, bytes and sha256, got {f!r}")
                if not is_plain_file_name(f["name"]):
                    raise bad(f"shard entry {i}: file name {f['name']!r} is not a plain file name in the dataset "
                              "folder")
            if not s["address_table"] < len(tables):
                raise bad(f"shard entry {i} refers to address table {s['address_table']} of {len(tables)}")
        self._shards: List[Dict[str, Any]] = sorted(shards, key=lambda s: s["first"])
        total = sum(s["count"] for s in shards)
        if total != m.get("num_traces", total):
            raise bad(f"shards hold {total} traces, the manifest says {m['num_traces']!r}")

    # -- pickling (DataLoader workers reopen the files themselves) ---------------------
    def __getstate__(self) -> Dict[str, Any]:
        return {"path": str(self.path), "verify": self.verify, "max_open_shards": self.max_open_shards}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["path"], state["verify"], state["max_open_shards"])  # type: ignore[misc]

    # -- description -----------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    @property
    def shard_sizes(self) -> List[int]:
        return [int(s["count"]) for s in self._shards]

    @property
    def seed(self) -> Optional[int]:
        return self.manifest.get("seed")

    @property
    def model_name(self) -> Optional[str]:
        return self.manifest.get("model")

    def shard_files(self, k: int) -> List[Path]:
        return [self.path / self._shards[k]["files"][p]["name"] for p in PARTS]

    def __repr__(self) -> str:
        return f"TraceDataset({str(self.path)!r}, traces={len(self)}, shards={self.num_shards})"

    # -- shards ----------------------------------------------------------------------
    def shard(self, k: int) -> ColumnBatch:
        """Shard ``k`` as a ColumnBatch of views into its memory-mapped files (address ids
        translated to this process's when they differ, which copies those two columns)."""
        k = int(k)
        if not 0 <= k < self.num_shards:
            raise IndexError(f"shard {k} of {self.num_shards}")
        batch = self._open.get(k)
        if batch is not None:
            self._open.move_to_end(k)
            return batch
        entry = self._shards[k]
        raw = read_shard(self.path, entry, self.verify)
        table = self.manifest["address_tables"][entry["address_table"]]
        try:
            records, traces = remap_addresses(raw.records, raw.traces, table, self._luts)
        except ValueError as e:
            f = str(self.path / entry["files"]["records"]["name"])
            raise DatasetError(f"{f}: {e}", file=f) from e
        batch = ColumnBatch(records, traces, raw.arenas, raw.messages, owner=raw._owner)
        self._open[k] = batch
        if len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)
        return batch

    def shards(self, on_error: str = "raise") -> Iterator[ColumnBatch]:
        """Every shard in order; ``on_error='skip'`` warns about a bad shard (naming its
        file) and goes on with the next."""
        for k in range(self.num_shards):
            batch = self._shard_or_skip(k, on_error)
            if batch is not None:
                yield batch

    def _shard_or_skip(self, k: int, on_error: str) -> Optional[ColumnBatch]:
        check_on_error(on_error)
        try:
            return self.shard(k)
        except DatasetError as e:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping shard {k}: {e}", RuntimeWarning, stacklevel=3)
            return None

    def check(self) -> Dict[str, str]:
        """Verifies every shard (checksums, sizes, counts); returns {file: problem} for the
        bad ones, empty when all are sound."""
        problems = {}
        for k, entry in enumerate(self._shards):
            try:
                read_shard(self.path, entry, verify=True)
            except DatasetError as e:
                problems[e.file or str(self.path)] = str(e)
        return problems

    # -- traces ----------------------------------------------------------------------
    def locate(self, i: int) -> Tuple[int, int]:
        """(shard, index within the shard) of dataset trace ``i``."""
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"trace {i} of {n}")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        return k, int(i - self._starts[k])

    def __getitem__(self, i: int) -> Trace:
        k, j = self.locate(int(i))
        return Trace(self.shard(k), j)

    def __iter__(self) -> Iterator[Trace]:
        for batch in self.shards():
            for j in range(len(batch)):
                yield Trace(batch, j)

    def to_batch(self) -> ColumnBatch:
        """All traces in one ColumnBatch (a copy, unless there is one shard)."""
        return ColumnBatch.concat(list(self.shards()))

    def select(self, indices: Any) -> ColumnBatch:
        """The dataset traces at ``indices``, in that order, copied into one batch."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"trace indices must lie in [0, {n})")
        order = np.argsort(idx, kind="stable")
        batch = self._chunk(idx[order])
        if np.array_equal(order, np.arange(len(idx))):
            return batch
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return batch.select(inverse)

    def _chunk(self, idx: np.ndarray, on_error: str = "raise") -> ColumnBatch:
        """Sorted dataset indices as one batch: views when they are a contiguous run inside
        one shard, else gathered per shard and concatenated."""
        if len(idx) == 0:
            return ColumnBatch.empty()
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        first, last = int(shard_of[0]), int(shard_of[-1])
        if first == last and int(idx[-1] - idx[0]) == len(idx) - 1:
            batch = self._shard_or_skip(first, on_error)
            if batch is None:
                return ColumnBatch.empty()
            j = int(idx[0] - self._starts[first])
            return batch.slice(j, j + len(idx))
        bounds = np.searchsorted(shard_of, np.arange(first, last + 2))
        parts = []
        for k in range(first, last + 1):
            local = idx[bounds[k - first]:bounds[k - first + 1]] - self._starts[k]
            if len(local) == 0:
                continue
            batch = self._shard_or_skip(k, on_error)
            if batch is not None:
                parts.append(batch.select(local))
        return ColumnBatch.concat(parts)

    # -- trace types -------------------------------------------------------------------
    def trace_types(self) -> np.ndarray:
        """The trace-type hash of every trace, in dataset order."""
        if self._types is None:
            self._types = np.concatenate([self.shard(k).traces["trace_type"] for k in range(self.num_shards)]) \
                if self.num_shards else np.zeros(0, np.uint64)
        return self._types

    def trace_type_counts(self) -> Dict[int, int]:
        """{trace-type hash: number of traces}, most frequent first."""
        uniq, counts = np.unique(self.trace_types(), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {int(uniq[i]): int(counts[i]) for i in order}

    def sorted_indices(self, seed: Optional[int] = None) -> np.ndarray:
        """Dataset indices sorted by trace type (random order within a type when ``seed``
        is given, else trace-number order)."""
        types = self.trace_types()
        if seed is None:
            return np.argsort(types, kind="stable")
        perm = np.random.default_rng(seed).permutation(len(types))
        return perm[np.argsort(types[perm], kind="stable")]

    def save_sorted(self, dataset_dir: Union[str, Path], traces_per_file: Optional[int] = None,
                    overwrite: bool = False) -> Path:
        """Writes a copy of this dataset re-sharded in trace-type order (PyProb's
        ``OfflineDataset.save_sorted``): the traces of one type are contiguous, so shards
        and minibatches of consecutive traces share one structure.  Returns the new
        directory; its manifest records ``sorted_by: trace_type`` and the source."""
        import datetime

        from .columns import address_table
        from .format import write_manifest, write_shard
        from .writer import _prepare

        per = int(traces_per_file or self.manifest.get("traces_per_file") or max(1, len(self)))
        if per < 1:
            raise ValueError(f"traces_per_file must be >= 1, got {traces_per_file}")
        directory = Path(dataset_dir)
        if directory.resolve() == self.path.resolve():
            raise ValueError(f"save_sorted: write to another directory than the source {self.path}")
        _prepare(directory, overwrite)
        directory.mkdir(parents=True, exist_ok=True)
        order = self.sorted_indices()
        shards = []
        for k, start in enumerate(range(0, len(order), per)):
            batch = self.select(order[start:start + per])  # in this process's address ids
            files = write_shard(directory, k, batch)
            shards.append({"index": k, "first": start, "count": len(batch), "num_records": batch.num_records,
                           "failed": len(batch.failed), "rank": 0, "files": files, "address_table": 0})
        manifest = dict(self.manifest)
        manifest.update(traces_per_file=per, num_shards=len(shards), world_size=1, shards=shards,
                        address_tables=[address_table()], num_records=sum(s["num_records"] for s in shards),
                        sorted_by="trace_type", source=str(self.path),
                        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        write_manifest(directory, manifest)
        return directory

    # -- minibatches -------------------------------------------------------------------
    def minibatch_indices(self, batch_size: int, shuffle: bool = False, seed: Optional[int] = None,
                          group_by_trace_type: bool = False, drop_last: bool = False) -> List[np.ndarray]:
        """The plan of a pass over the data: one sorted index array per minibatch.
        ``group_by_trace_type`` fills each minibatch with traces of as few trace types as
        possible (PyProb's sorted datasets), which makes the network's work per batch more
        uniform; ``shuffle`` randomizes membership and minibatch order."""
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        rng = np.random.default_rng(seed)
        if group_by_trace_type:
            order = self.sorted_indices(int(rng.integers(2**63)) if shuffle else None)
        elif shuffle:
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        stop = n - n % batch_size if drop_last else n
        chunks = [np.sort(order[i:i + batch_size]) for i in range(0, stop, batch_size)]
        if shuffle:
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        return chunks

    def batches(self, batch_size: int, shuffle: bool = False, seed: Optional[int] = None,
                group_by_trace_type: bool = False, drop_last: bool = False,
                on_error: str = "raise") -> Iterator[ColumnBatch]:
        """Minibatches (ColumnBatch) for one pass over the dataset; in order and without
        shuffling they are zero-copy views of the files.  ``on_error='skip'`` leaves out
        the traces of bad shards (with a warning naming the file)."""
        for idx in self.minibatch_indices(batch_size, shuffle, seed, group_by_trace_type, drop_last):
            batch = self._chunk(idx, on_error)
            if len(batch) or on_error != "skip":
                yield batch

    def torch_dataset(self, batch_size: int, shuffle: bool = False, seed: Optional[int] = None,
                      group_by_trace_type: bool = False, drop_last: bool = False) -> Any:
        """A ``torch.utils.data.Dataset`` whose items are whole minibatches (ColumnBatch)."""
        from .loader import TraceChunks

        return TraceChunks(self, self.minibatch_indices(batch_size, shuffle, seed, group_by_trace_type, drop_last))

    def dataloader(self, batch_size: int, shuffle: bool = True, seed: Optional[int] = None,
                   group_by_trace_type: bool = False, drop_last: bool = False, num_workers: int = 0,
                   **kwargs: Any) -> Any:
        """A ``torch.utils.data.DataLoader`` yielding ColumnBatch minibatches; ``num_workers``
        processes read (each maps the files itself), ``shuffle`` reshuffles the order of
        the minibatches every epoch."""
        from .loader import make_loader

        return make_loader(self.torch_dataset(batch_size, shuffle, seed, group_by_trace_type, drop_last),
                           shuffle=shuffle, seed=seed, num_workers=num_workers, **kwargs)
