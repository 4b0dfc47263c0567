"""PyProb's ``sample`` / ``observe`` / ``factor`` / ``tag``: ppfast's primitives with
PyProb's signatures, returning torch tensors."""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np

from .. import primitives as _p
from ..distributions import Distribution

__all__ = ["sample", "observe", "factor", "tag", "to_tensor"]


def to_tensor(value: Any, discrete_index: bool = False) -> Any:
    """A draw or statistic as a torch tensor (float64; int64 for category indices)."""
    import torch

    if value is None or isinstance(value, torch.Tensor):
        return value
    if discrete_index:
        return torch.as_tensor(np.asarray(value), dtype=torch.int64)
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def _address(distribution: Distribution, name: Optional[str], address: Optional[str]) -> int:
    if address is not None:
        return _p.name_id(address)
    return _p._site_address(sys._getframe(2), distribution.kind, name)  # the model's frame


def sample(distribution: Distribution, name: Optional[str] = None, address: Optional[str] = None,
           control: bool = True) -> Any:
    """A draw from ``distribution`` at a random-choice site, as a torch tensor; a named
    sample whose name is in ``observe={...}`` returns the observed value."""
    handlers = _p.handler_stack.get()
    if not handlers:
        return distribution.sample()
    value = handlers[-1].sample(distribution, _address(distribution, name, address), _p.name_id(name), control,
                                False)
    return to_tensor(value, distribution.kind == 3)


def observe(distribution: Distribution, value: Any = None, name: Optional[str] = None,
            address: Optional[str] = None) -> Any:
    """Conditions on ``value`` (or on ``observe={name: value}`` of the run)."""
    handlers = _p.handler_stack.get()
    if not handlers:
        return None
    n = _p.name_id(name)
    if distribution.kind == 0:  # Factor
        given = handlers[-1].observed(n) if n else None
        lp = distribution.log_prob(value if given is None else given)
        handlers[-1].factor(float(np.sum(lp)))
        return None
    handlers[-1].observe(distribution, value, _address(distribution, name, address), n)
    given = handlers[-1].observed(n) if n else None
    return to_tensor(value if given is None else given)


def factor(log_prob: Any = None, log_prob_func: Any = None, name: Optional[str] = None,
           address: Optional[str] = None) -> None:
    """Adds ``log_prob`` (or ``log_prob_func(observed value of name)``) to the trace's
    log-likelihood."""
    _p.factor(log_prob, log_prob_func=log_prob_func, name=name, address=address)


def tag(value: Any, name: Optional[str] = None, address: Optional[str] = None) -> None:
    """Records ``value`` in the trace, for analysis only."""
    handlers = _p.handler_stack.get()
    if not handlers:
        return
    a = _p.name_id(address) if address is not None else _p._site_address(sys._getframe(1), 0, name)
    handlers[-1].tag(value, a, _p.name_id(name))
