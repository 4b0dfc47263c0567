"""Trace datasets on disk: sharded Arrow IPC files with a JSON manifest.

``model.save_dataset(dir, num_traces, traces_per_file, seed=...)`` writes one (on every
rank under ``mpiexec``); :class:`TraceDataset` reads it memory-mapped and zero-copy, as
:class:`ColumnBatch` objects with the ``.records`` / ``.traces`` / ``.arenas`` columns of
a :class:`ppfast.TraceBatch`, and serves minibatches (grouped by trace type if asked) to
training loops directly or through ``torch.utils.data``::

    import ppfast.examples
    from ppfast.data import TraceDataset

    model = ppfast.examples.load("gum")
    path = model.save_dataset("gum-traces", 10_000, traces_per_file=2_500, seed=1)
    ds = TraceDataset(path)
    len(ds), ds.num_shards, ds[0].variables[0].address     # (10000, 4, 'mu')
"""

from .columns import ColumnBatch
from .dataset import TraceDataset
from .writer import save_dataset

__all__ = ["ColumnBatch", "TraceDataset", "save_dataset"]
