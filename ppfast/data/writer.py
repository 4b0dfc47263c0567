"""Writing trace datasets: ``model.save_dataset(dir, num_traces, traces_per_file, seed=...)``,
on one process or on every rank of an MPI world."""

from __future__ import annotations

import datetime
import math
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import DatasetError
from ..model import check_num_traces, check_on_error
from .columns import ARENAS, RECORD_COLUMNS, TRACE_COLUMNS, ColumnBatch, address_table
from .format import FORMAT, MANIFEST, SCHEMA_VERSION, read_manifest, write_manifest, write_shard

__all__ = ["DEFAULT_TRACES_PER_FILE", "save_dataset"]

DEFAULT_TRACES_PER_FILE = 100_000
_SHARD_FILE = re.compile(r"shard-\d{6,}-(records|traces|arenas)\.arrow")


def _plan(num_traces: int, traces_per_file: int, size: int) -> List[List[Tuple[int, int, int]]]:
    """Per rank, its shards as (global shard number, first trace, count): each rank's
    contiguous share of the trace numbers cut into files of at most traces_per_file."""
    from ..distributed import share

    plan: List[List[Tuple[int, int, int]]] = []
    k = 0
    for r in range(size):
        first, count = share(num_traces, r, size)
        mine = []
        for j in range(math.ceil(count / traces_per_file)):
            n = min(traces_per_file, count - j * traces_per_file)
            mine.append((k, first + j * traces_per_file, n))
            k += 1
        plan.append(mine)
    return plan


def _prepare(directory: Path, overwrite: bool) -> None:
    """Creates the directory; an existing dataset there is an error unless ``overwrite``,
    which removes its files first (and nothing else)."""
    if (directory / MANIFEST).exists():
        if not overwrite:
            raise DatasetError(f"{directory} already holds a trace dataset; pass overwrite=True to replace it",
                               file=str(directory / MANIFEST))
        try:
            old = read_manifest(directory)
            names = [f["name"] for s in old.get("shards", []) for f in s.get("files", {}).values()]
        except DatasetError:
            names = []
        (directory / MANIFEST).unlink()
        for name in names:
            # Only files this writer names: a crafted manifest cannot make overwrite delete others.
            if isinstance(name, str) and _SHARD_FILE.fullmatch(name):
                (directory / name).unlink(missing_ok=True)
    if directory.exists() and not directory.is_dir():
        raise DatasetError(f"{directory} exists and is not a directory", file=str(directory))
    directory.mkdir(parents=True, exist_ok=True)


def save_dataset(model: Any, dataset_dir: Union[str, Path], num_traces: int, traces_per_file: Optional[int] = None,
                 seed: Optional[int] = None, *, distributed: Optional[bool] = None, on_error: str = "raise",
                 overwrite: bool = False, progress: Optional[bool] = None,
                 num_traces_per_file: Optional[int] = None) -> Path:
    """Simulates ``num_traces`` prior traces of ``model`` into Arrow IPC shards of at most
    ``traces_per_file`` traces under ``dataset_dir`` (see :mod:`ppfast.data.format`);
    trace ``i`` uses RNG stream ``i`` of ``seed``.  Under ``mpiexec`` (or with
    ``distributed=True``) every rank writes the shards of its share of the trace numbers
    and rank 0 writes the manifest; every rank must make the same call.  ``on_error``:
    'raise', or 'skip' (failed traces are kept with their error).  Results that are not
    numbers (Python objects) are not stored: the ``result`` column holds NaN for them
    (tensor results of PPX simulators are: as ``__result__`` Tag records, read back whole).
    Returns the dataset directory::

        path = ppfast.examples.load("gum").save_dataset("gum-traces", 1000, traces_per_file=250, seed=1)
        len(ppfast.data.TraceDataset(path))     # 1000
    """
    from ..distributed import _agree, world
    from .._progress import Progress
    from ..model import next_seed

    if num_traces_per_file is not None:  # PyProb's name
        if traces_per_file is not None and traces_per_file != num_traces_per_file:
            raise ValueError("pass traces_per_file or num_traces_per_file, not both")
        traces_per_file = num_traces_per_file
    num_traces = check_num_traces(num_traces)
    traces_per_file = DEFAULT_TRACES_PER_FILE if traces_per_file is None else int(traces_per_file)
    if traces_per_file < 1:
        raise ValueError(f"traces_per_file must be >= 1, got {traces_per_file}")
    check_on_error(on_error)
    directory = Path(dataset_dir)
    w = world(distributed)
    args = _agree(w, num_traces=num_traces, traces_per_file=traces_per_file, dataset_dir=str(directory),
                  overwrite=overwrite, on_error=on_error, seed=next_seed(seed) if w.is_root else None)
    seed = int(args["seed"])
    w.run("preparing the dataset directory", lambda: _prepare(directory, overwrite) if w.is_root else None)
    w.run("creating the dataset directory", lambda: directory.mkdir(parents=True, exist_ok=True))
    plan = _plan(num_traces, traces_per_file, w.size)

    def write_mine() -> Tuple[List[Dict[str, Any]], List[str]]:
        entries = []
        mine = plan[w.rank]
        bar = Progress(sum(n for _, _, n in mine), "Saving dataset", progress if w.is_root else False)
        try:
            for k, first, n in mine:
                batch = ColumnBatch.from_batch(model.simulate(n, seed=seed, first=first, progress=False,
                                                              on_error=on_error, required=False))
                files = write_shard(directory, k, batch)
                entries.append({"index": k, "first": first, "count": n, "num_records": batch.num_records,
                                "failed": len(batch.failed), "rank": w.rank, "files": files})
                bar.update(n)
        finally:
            bar.close()
        # Taken after simulating: the table is append-only, so it covers every id written.
        return entries, address_table()

    outcomes = w.run("writing the dataset shards", write_mine, share=True)

    def write_index() -> None:
        if not w.is_root:
            return
        tables: List[List[str]] = []
        shards = []
        for entries, table in outcomes:
            if table not in tables:
                tables.append(table)
            for e in entries:
                shards.append({**e, "address_table": tables.index(table)})
        shards.sort(key=lambda e: e["index"])
        write_manifest(directory, _manifest(model, seed, num_traces, traces_per_file, w.size, tables, shards))

    w.run("writing the dataset manifest", write_index)
    return directory


def _manifest(model: Any, seed: int, num_traces: int, traces_per_file: int, world_size: int,
              tables: List[List[str]], shards: List[Dict[str, Any]]) -> Dict[str, Any]:
    from .. import __version__

    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "model": getattr(model, "name", type(model).__name__),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "seed": seed,
        "num_traces": num_traces,
        "num_records": sum(s["num_records"] for s in shards),
        "traces_per_file": traces_per_file,
        "num_shards": len(shards),
        "world_size": world_size,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ppfast_version": __version__,
        "columns": {"records": {k: str(dt) for k, dt in RECORD_COLUMNS.items()},
                    "traces": {k: str(dt) for k, dt in TRACE_COLUMNS.items()},
                    "arenas": {k: "float64" for k in ARENAS}},
        "address_tables": tables,
        "shards": shards,
    }


def remove_dataset(dataset_dir: Union[str, Path]) -> None:
    """Deletes a dataset directory written by save_dataset (checks the manifest first)."""
    directory = Path(dataset_dir)
    read_manifest(directory)
    shutil.rmtree(directory)
