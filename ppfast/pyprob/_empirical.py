"""PyProb's Empirical: ppfast's, with statistics and draws as torch tensors."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import posterior as _posterior
from ._state import to_tensor

__all__ = ["Empirical"]


class Empirical(_posterior.Empirical):
    """:class:`ppfast.Empirical` with PyProb's return types: ``mean``, ``stddev``,
    ``variance``, ``effective_sample_size``, ``sample()`` and the other statistics are
    torch tensors; derived Empiricals stay of this class."""

    def __init__(self, values: Any = None, log_weights: Any = None, weights: Any = None,
                 file_name: Optional[str] = None, file_read_only: bool = False, file_sync_timeout: int = 25,
                 file_writeback: bool = False, concat_empiricals: Any = None,
                 concat_empirical_file_names: Any = None, name: str = "Empirical", batch: Any = None):
        """PyProb's constructor.  ``file_name``: a folder of Arrow segments
        (:mod:`ppfast.empirical_file`) read at once, to which ``add`` + ``finalize`` append
        (not with ``file_read_only``); ``concat_empiricals`` (Empiricals, log-weights kept)
        and ``concat_empirical_file_names`` (such folders) concatenate."""
        from ..empirical_file import read_empirical

        del file_sync_timeout, file_writeback  # settings of PyProb's shelve files; segments are atomic
        self._file = None if file_read_only else file_name
        if file_name is not None:  # a folder of Arrow segments: what is there, plus what is added
            concat_empirical_file_names = [file_name]
        if concat_empirical_file_names is not None:
            concat_empiricals = [read_empirical(f) for f in concat_empirical_file_names]
        if concat_empiricals is not None:
            both = _posterior.Empirical.combine(list(concat_empiricals))
            values, log_weights, weights = both.values, both.log_weights, None
        super().__init__(values, log_weights=log_weights, weights=weights, name=name, batch=batch)
        self._pending: list = []

    def add(self, value: Any, log_weight: Any = None, weight: Any = None) -> None:
        """Adds one value (PyProb's incremental API; call ``finalize`` before use)."""
        if weight is not None:
            log_weight = float(np.log(float(weight)))
        self._pending.append((value, 0.0 if log_weight is None else float(log_weight)))

    def add_sequence(self, values: Any, log_weights: Any = None, weights: Any = None) -> None:
        for i, v in enumerate(values):
            self.add(v, None if log_weights is None else log_weights[i], None if weights is None else weights[i])

    def finalize(self) -> None:
        """Makes added values part of the Empirical (and appends them to its file)."""
        if not self._pending:
            return
        if self._file is not None:
            from ..empirical_file import append_empirical

            append_empirical(self._file, [v for v, _ in self._pending], [w for _, w in self._pending])
        old = list(self._values.tolist() if isinstance(self._values, np.ndarray) else self._values)
        values = old + [v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v
                        for v, _ in self._pending]
        lw = np.concatenate([self._log_weights, [w for _, w in self._pending]])
        self._pending = []
        _posterior.Empirical.__init__(self, values, log_weights=lw, name=self.name, batch=None)

    @classmethod
    def wrap(cls, native: _posterior.Empirical) -> "Empirical":
        out = cls.__new__(cls)
        out.__dict__.update(native.__dict__)
        out._pending, out._file = [], None
        return out

    @property
    def mean(self) -> Any:
        return to_tensor(super().mean)

    @property
    def variance(self) -> Any:
        return to_tensor(super().variance)

    @property
    def stddev(self) -> Any:
        return to_tensor(super().stddev)

    @property
    def effective_sample_size(self) -> Any:
        return to_tensor(super().effective_sample_size)

    @property
    def median(self) -> Any:
        return to_tensor(super().median)

    @property
    def mode(self) -> Any:
        return to_tensor(super().mode)

    @property
    def min(self) -> Any:
        return to_tensor(super().min)

    @property
    def max(self) -> Any:
        return to_tensor(super().max)

    @property
    def skewness(self) -> Any:
        return to_tensor(super().skewness)

    @property
    def kurtosis(self) -> Any:
        return to_tensor(super().kurtosis)

    def expectation(self, func: Any) -> Any:
        return to_tensor(super().expectation(func))

    def sample(self, seed: Optional[int] = None, min_index: Optional[int] = None,  # type: ignore[override]
               max_index: Optional[int] = None) -> Any:
        value = super().sample(seed=seed, min_index=min_index, max_index=max_index)
        return to_tensor(value) if isinstance(value, (int, float, np.ndarray)) else value
