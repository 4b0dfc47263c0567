"""The ``torch.utils.data`` path: a Dataset whose items are minibatches of traces.

A training loop takes whole minibatches (column chunks), not single traces: the
DataLoader runs with ``batch_size=None`` and passes the ColumnBatch items through
untouched; ``batch.to_torch()`` turns the columns into tensors sharing their memory.
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

from .._optional import require

require("torch", "the torch DataLoader path of trace datasets")
import torch.utils.data  # noqa: E402

from .columns import ColumnBatch

__all__ = ["TraceChunks", "make_loader"]


class TraceChunks(torch.utils.data.Dataset):
    """Item ``i`` is the ColumnBatch of the dataset traces ``plan[i]`` (sorted indices)."""

    def __init__(self, dataset: Any, plan: List[np.ndarray]):
        self.dataset = dataset
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> ColumnBatch:
        return self.dataset._chunk(self.plan[int(i)])


def _identity(item: Any) -> Any:
    return item


def make_loader(chunks: TraceChunks, shuffle: bool = True, seed: Optional[int] = None, num_workers: int = 0,
                **kwargs: Any) -> torch.utils.data.DataLoader:
    generator = None
    if shuffle and seed is not None:
        generator = torch.Generator()
        generator.manual_seed(int(seed))
    kwargs.setdefault("collate_fn", _identity)
    return torch.utils.data.DataLoader(chunks, batch_size=None, shuffle=shuffle, generator=generator,
                                       num_workers=int(num_workers), **kwargs)
