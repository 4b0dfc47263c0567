"""Per-address parameters in tables indexed by row, with a row-wise Adam.

One row per (address, instance, distribution kind) key seen in training; rows are added
when new keys appear (capacity doubles, optimizer state grows with it).  A training step
gathers the rows its minibatch touches into small leaf tensors, and the optimizer
updates only those rows, so its cost follows the addresses a minibatch touches, not
every address ever seen ("lazy" Adam: each row counts its own steps).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch

__all__ = ["AddressTables", "make_keys"]

_INSTANCE_LIMIT = (1 << 24) - 1


def make_keys(address: np.ndarray, instance: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """uint64 keys of (address id, instance, kind)."""
    a = address.astype(np.uint64) << np.uint64(32)
    i = np.minimum(instance.astype(np.uint64), np.uint64(_INSTANCE_LIMIT)) << np.uint64(8)
    return a | i | kind.astype(np.uint64)


class AddressTables:
    """Tables of shape [rows, *shape] for each name in ``shapes``, on ``device``."""

    def __init__(self, shapes: Dict[str, Tuple[int, ...]], device: torch.device, capacity: int = 64):
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        self.device = torch.device(device)
        self.n = 0
        self.capacity = 0
        self.data: Dict[str, torch.Tensor] = {}
        self.m: Dict[str, torch.Tensor] = {}
        self.v: Dict[str, torch.Tensor] = {}
        self.steps = torch.zeros(0, device=self.device)
        self._keys = np.zeros(0, dtype=np.uint64)  # sorted
        self._key_rows = np.zeros(0, dtype=np.int64)
        self.row_address = np.zeros(0, dtype=np.int64)
        self.row_instance = np.zeros(0, dtype=np.int64)
        self.row_kind = np.zeros(0, dtype=np.int64)
        self._reserve(capacity)

    # -- rows -------------------------------------------------------------------------
    def _reserve(self, rows: int) -> None:
        if rows <= self.capacity:
            return
        cap = max(rows, 2 * self.capacity, 16)
        for name, shape in self.shapes.items():
            for store in (self.data, self.m, self.v):
                new = torch.zeros((cap,) + shape, device=self.device)
                if name in store:
                    new[: self.n] = store[name][: self.n]
                store[name] = new
        steps = torch.zeros(cap, device=self.device)
        steps[: self.n] = self.steps[: self.n]
        self.steps = steps
        self.capacity = cap

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` (-1 where unknown)."""
        if len(self._keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[pos] == keys, self._key_rows[pos], -1)

    def add(self, address: np.ndarray, instance: np.ndarray, kind: np.ndarray) -> np.ndarray:
        """Adds rows for the keys not known yet; returns the new rows."""
        keys = make_keys(address, instance, kind)
        keys, first = np.unique(keys, return_index=True)
        first = first[self.lookup(keys) < 0]
        return self._append(address[first], instance[first], kind[first])

    def _append(self, address: np.ndarray, instance: np.ndarray, kind: np.ndarray) -> np.ndarray:
        """Rows n, n+1, ... for new, distinct keys, in the order given."""
        rows = np.arange(self.n, self.n + len(address), dtype=np.int64)
        if len(rows) == 0:
            return rows
        self._reserve(self.n + len(rows))
        self.row_address = np.concatenate([self.row_address, address.astype(np.int64)])
        self.row_instance = np.concatenate([self.row_instance, instance.astype(np.int64)])
        self.row_kind = np.concatenate([self.row_kind, kind.astype(np.int64)])
        all_keys = np.concatenate([self._keys, make_keys(address, instance, kind)])
        all_rows = np.concatenate([self._key_rows, rows])
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._key_rows = all_keys[order], all_rows[order]
        self.n += len(rows)
        return rows

    def widen(self, name: str, width: int) -> None:
        """Grows the last dimension of table ``name`` to ``width`` (new entries zero)."""
        shape = self.shapes[name]
        if shape[-1] >= width:
            return
        new_shape = shape[:-1] + (width,)
        for store in (self.data, self.m, self.v):
            new = torch.zeros((self.capacity,) + new_shape, device=self.device)
            new[..., : shape[-1]] = store[name]
            store[name] = new
        self.shapes[name] = new_shape

    def to(self, device: torch.device) -> "AddressTables":
        self.device = torch.device(device)
        for store in (self.data, self.m, self.v):
            for k in store:
                store[k] = store[k].to(self.device)
        self.steps = self.steps.to(self.device)
        return self

    # -- training ----------------------------------------------------------------------
    def gather(self, rows: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Leaf copies of the touched rows (the step's gradients land on these)."""
        return {k: t.index_select(0, rows).requires_grad_() for k, t in self.data.items()}

    @torch.no_grad()
    def adam(self, rows: torch.Tensor, local: Dict[str, torch.Tensor], lr: float, betas: Tuple[float, float] = (0.9, 0.999),
             eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        """One Adam step on ``rows`` with the gradients of the gathered ``local`` rows."""
        b1, b2 = betas
        st = self.steps.index_select(0, rows) + 1
        self.steps.index_copy_(0, rows, st)
        bc1 = 1 - torch.pow(b1, st)
        bc2 = 1 - torch.pow(b2, st)
        for name, leaf in local.items():
            g = leaf.grad
            if g is None:
                continue
            if weight_decay:
                g = g + weight_decay * leaf.detach()
            view = (-1,) + (1,) * (g.dim() - 1)
            m = self.m[name].index_select(0, rows).mul_(b1).add_(g, alpha=1 - b1)
            v = self.v[name].index_select(0, rows).mul_(b2).addcmul_(g, g, value=1 - b2)
            self.m[name].index_copy_(0, rows, m)
            self.v[name].index_copy_(0, rows, v)
            step = (m / bc1.view(view)).div_((v / bc2.view(view)).sqrt_().add_(eps)).mul_(lr)
            self.data[name].index_copy_(0, rows, leaf.detach() - step)

    @torch.no_grad()
    def sgd(self, rows: torch.Tensor, local: Dict[str, torch.Tensor], lr: float) -> None:
        for name, leaf in local.items():
            if leaf.grad is not None:
                self.data[name].index_copy_(0, rows, leaf.detach() - lr * leaf.grad)

    # -- saving ------------------------------------------------------------------------
    def state(self) -> Dict[str, torch.Tensor]:
        return {k: t[: self.n].detach().cpu().contiguous() for k, t in self.data.items()}

    def load_state(self, tensors: Dict[str, torch.Tensor], address: np.ndarray, instance: np.ndarray,
                   kind: np.ndarray) -> None:
        for k, t in tensors.items():
            self.shapes[k] = tuple(t.shape[1:])
        self.data, self.m, self.v = {}, {}, {}
        self.n = self.capacity = 0
        self._keys = np.zeros(0, dtype=np.uint64)
        self._key_rows = np.zeros(0, dtype=np.int64)
        self.row_address = self.row_instance = self.row_kind = np.zeros(0, dtype=np.int64)
        self.steps = torch.zeros(0, device=self.device)
        self._reserve(max(len(address), 16))
        if len(np.unique(make_keys(address, instance, kind))) != len(address):
            raise ValueError("inference network file: duplicate address rows")
        self._append(address, instance, kind)
        for k, t in tensors.items():
            self.data[k][: self.n] = t.to(self.device)

    def rows_of(self, rows: np.ndarray) -> List[Tuple[int, int, int]]:
        return [(int(self.row_address[r]), int(self.row_instance[r]), int(self.row_kind[r])) for r in rows]
