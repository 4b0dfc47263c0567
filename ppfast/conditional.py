"""``model.condition(predicate)``: a model whose traces are the base model's traces for
which ``predicate(trace)`` is true (rejection sampling, PyProb's ConditionalModel).

>>> import ppfast
>>> from ppfast.distributions import Normal
>>> class Coin(ppfast.Model):
...     def forward(self):
...         return ppfast.sample(Normal(0.0, 1.0), name="x")
>>> positive = Coin().condition(lambda trace: trace.result > 0)
>>> bool((positive.prior_results(200, seed=1).values > 0).all())
True
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .data.columns import ColumnBatch
from .errors import ModelError
from .model import BaseModel
from .runtime import Progress, check_count, check_num_traces, check_on_error, next_seed
from .trace import TraceBatch, TraceList

__all__ = ["ConditionalModel"]


class ConditionalModel(BaseModel):
    """The traces of ``base`` that satisfy ``predicate``.  Trace ``first + i`` of a seed is
    the i-th accepted trace of base traces drawn from a stream derived from (seed,
    first), so runs are reproducible.  ``max_tries``: base traces tried per accepted one
    before giving up (ModelError)."""

    def __init__(self, base: BaseModel, predicate: Callable[[Any], Any], max_tries: int = 10**6):
        if not callable(predicate):
            raise TypeError(f"condition: predicate must be callable, got {type(predicate).__name__}")
        super().__init__(f"{base.name} | condition")
        self.base, self.predicate = base, predicate
        self.max_tries = check_count(max_tries, "max_tries", 1)
        self.tried = 0  # base traces tried over the model's life (acceptance = accepted / tried)
        self.accepted = 0

    @property
    def acceptance_ratio(self) -> float:
        return self.accepted / self.tried if self.tried else float("nan")

    def simulate(self, num_traces: int, observe: Optional[Dict[str, Any]] = None, seed: Optional[int] = None,
                 first: int = 0, progress: Optional[bool] = None, on_error: str = "raise",
                 required: Optional[bool] = None, desc: str = "Simulating") -> TraceBatch:
        """As :meth:`BaseModel.simulate`, keeping accepted traces only."""
        num_traces = check_num_traces(num_traces)
        check_on_error(on_error)
        first = check_num_traces(first, "first")
        seed = next_seed(seed)
        base_seed = int(np.random.SeedSequence([seed, first]).generate_state(1, np.uint64)[0])
        kept: List[TraceBatch] = []
        have, tried, start = 0, 0, 0
        bar = Progress(num_traces, f"{desc} (conditioned)", progress)
        try:
            while have < num_traces:
                # Ask for what is missing, scaled by the acceptance seen so far.
                rate = max(have / tried, 1e-3) if tried else 1.0
                n = int(min(max(64, (num_traces - have) / rate * 1.2), 1 << 16))
                batch = self.base.simulate(n, observe=observe, seed=base_seed, first=start, progress=False,
                                           on_error=on_error, required=required, desc=desc)
                start += n
                tried += n
                ok = [i for i, t in enumerate(TraceList(batch)) if not t.failed and self.predicate(t)]
                ok = ok[:num_traces - have]
                if ok:
                    kept.append(ColumnBatch.from_batch(batch).select(ok))
                    have += len(ok)
                    bar.update(len(ok))
                if have < num_traces and tried >= self.max_tries * max(1, num_traces - have):
                    raise ModelError(f"condition: {have} of {num_traces} traces satisfied the predicate after "
                                     f"{tried} tries (max_tries={self.max_tries} per trace)")
        finally:
            bar.close()
            self.tried += tried
            self.accepted += have
        return ColumnBatch.concat(kept) if kept else ColumnBatch.empty()
