"""Per-address parameters in tables indexed by row, with a row-wise Adam.

One row per (address, instance, distribution kind) key seen in training; rows are added
when new keys appear (capacity doubles, optimizer state grows with it).  All per-address
parameters of a row sit side by side in one [rows, width] storage, each named table a
column range of it, so a training step is one gather of the rows its minibatch touches
(a small leaf tensor that collects their gradients) and one row-wise Adam update of
those rows: the optimizer's cost follows the addresses a minibatch touches, not every
address ever seen ("lazy" Adam: each row counts its own steps).
"""

from __future__ import annotations

import threading

import numpy as np
import torch

__all__ = ["AddressTables", "Rows", "larc_scale", "make_keys"]

_INSTANCE_LIMIT = (1 << 24) - 1


def make_keys(address: np.ndarray, instance: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """uint64 keys of (address id, instance, kind)."""
    a = address.astype(np.uint64) << np.uint64(32)
    i = np.minimum(instance.astype(np.uint64), np.uint64(_INSTANCE_LIMIT)) << np.uint64(8)
    return a | i | kind.astype(np.uint64)


# LARC's trust coefficient (You, Gitman and Ginsburg, 2017; the usual 0.02).
LARC_TRUST = 0.02


def larc_scale(w_norm: torch.Tensor, g_norm: torch.Tensor, lr: float, weight_decay: float) -> torch.Tensor:
    """LARC in clipping mode: the factor min(trust ||w|| / (||g|| + wd ||w||) / lr, 1) by
    which a layer's gradient (weight decay included) is scaled; 1 where either norm is 0."""
    local = LARC_TRUST * w_norm / (g_norm + weight_decay * w_norm + 1e-8)
    scale = torch.clamp(local / lr, max=1.0)
    return torch.where((w_norm > 0) & (g_norm > 0), scale, torch.ones_like(scale))


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


class Rows(dict):
    """Named views of gathered rows; ``flat`` is the leaf tensor they view."""

    flat: torch.Tensor


class AddressTables:
    """Named tables of shape [rows, *shape] (``shapes``), stored side by side on ``device``."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], device: torch.device, capacity: int = 64):
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        self.device = torch.device(device)
        self.lock = threading.Lock()  # growth vs. a training step on another thread
        self.n = 0
        self.capacity = 0
        self.storage = torch.zeros(0, self.width, device=self.device)
        self.m = torch.zeros_like(self.storage)
        self.v = torch.zeros_like(self.storage)
        self.steps = torch.zeros(0, device=self.device)
        self._keys = np.zeros(0, dtype=np.uint64)  # sorted
        self._key_rows = np.zeros(0, dtype=np.int64)
        self.row_address = np.zeros(0, dtype=np.int64)
        self.row_instance = np.zeros(0, dtype=np.int64)
        self.row_kind = np.zeros(0, dtype=np.int64)
        self._reserve(capacity)

    # -- layout ------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return sum(_size(s) for s in self.shapes.values())

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        off = 0
        for name, shape in self.shapes.items():
            size = _size(shape)
            out[name] = flat[:, off:off + size].view((flat.shape[0],) + shape)
            off += size
        return out

    @property
    def data(self) -> dict[str, torch.Tensor]:
        """Each table as a view of the storage ([capacity, *shape])."""
        return self._views(self.storage)

    # -- rows -------------------------------------------------------------------------
    def _reserve(self, rows: int) -> None:
        if rows <= self.capacity:
            return
        cap = max(rows, 2 * self.capacity, 16)
        with self.lock:
            for attr in ("storage", "m", "v"):
                old = getattr(self, attr)
                new = torch.zeros(cap, self.width, device=self.device)
                new[: self.n] = old[: self.n]
                setattr(self, attr, new)
            steps = torch.zeros(cap, device=self.device)
            steps[: self.n] = self.steps[: self.n]
            self.steps = steps
            self.capacity = cap

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` (-1 where unknown)."""
        known, rows = self._keys, self._key_rows
        if len(known) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(known, keys), len(known) - 1)
        return np.where(known[pos] == keys, rows[pos], -1)

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
        self._key_rows, self._keys = all_rows[order], all_keys[order]
        self.n += len(rows)
        return rows

    def widen(self, name: str, width: int) -> None:
        """Grows the last dimension of table ``name`` to ``width`` (new entries zero)."""
        shape = self.shapes[name]
        if shape[-1] >= width:
            return
        new_shapes = dict(self.shapes)
        new_shapes[name] = shape[:-1] + (width,)
        with self.lock:
            for attr in ("storage", "m", "v"):
                old = self._views(getattr(self, attr))
                flat = torch.zeros(self.capacity, sum(_size(s) for s in new_shapes.values()), device=self.device)
                self.shapes, saved = new_shapes, self.shapes
                views = self._views(flat)
                self.shapes = saved
                for k, v in old.items():
                    views[k][..., : v.shape[-1]] = v
                setattr(self, attr, flat)
            self.shapes = new_shapes

    def to(self, device: torch.device) -> AddressTables:
        self.device = torch.device(device)
        for attr in ("storage", "m", "v", "steps"):
            setattr(self, attr, getattr(self, attr).to(self.device))
        return self

    # -- training ----------------------------------------------------------------------
    def gather(self, rows: torch.Tensor) -> Rows:
        """Leaf copy of the touched rows (the step's gradients land on it), as named views."""
        with self.lock:
            flat = self.storage.index_select(0, rows).requires_grad_()
        out = Rows(self._views(flat))
        out.flat = flat
        return out

    @torch.no_grad()
    def adam(self, rows: torch.Tensor, local: Rows, lr: float, betas: tuple[float, float] = (0.9, 0.999),
             eps: float = 1e-8, weight_decay: float = 0.0, trust_ratio: bool = False) -> None:
        """One Adam step on ``rows`` with the gradients of the gathered ``local`` rows.

        ``trust_ratio``: LAMB -- each row's step in each named table is rescaled by
        ||weights|| / ||update|| of that row and table (the per-address analogue of
        LAMB's per-layer ratio), with decoupled weight decay."""
        g = local.flat.grad
        if g is None:
            return
        b1, b2 = betas
        leaf = local.flat.detach()
        if weight_decay and not trust_ratio:
            g = g + weight_decay * leaf
        with self.lock:
            st = self.steps.index_select(0, rows) + 1
            self.steps.index_copy_(0, rows, st)
            m = self.m.index_select(0, rows).mul_(b1).add_(g, alpha=1 - b1)
            v = self.v.index_select(0, rows).mul_(b2).addcmul_(g, g, value=1 - b2)
            self.m.index_copy_(0, rows, m)
            self.v.index_copy_(0, rows, v)
            bc1 = (1 - torch.pow(b1, st)).unsqueeze(1)
            bc2 = (1 - torch.pow(b2, st)).unsqueeze(1)
            step = (m / bc1).div_((v / bc2).sqrt_().add_(eps))
            if trust_ratio:
                if weight_decay:
                    step.add_(leaf, alpha=weight_decay)
                step.mul_(self._trust(leaf, step))
            self.storage.index_copy_(0, rows, leaf - step.mul_(lr))

    def _segment_norms(self, w: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(||w||, ||u|| per row and named table, [rows, tables]; column -> table index)."""
        sizes = torch.tensor([_size(s) for s in self.shapes.values()], device=w.device)
        seg = torch.repeat_interleave(torch.arange(len(sizes), device=w.device), sizes)
        w2 = torch.zeros(w.shape[0], len(sizes), device=w.device).index_add_(1, seg, w * w)
        u2 = torch.zeros_like(w2).index_add_(1, seg, u * u)
        return w2.sqrt(), u2.sqrt(), seg

    def _trust(self, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """[rows, width] factors ||w|| / ||u|| per row and named table (1 where either is 0)."""
        wn, un, seg = self._segment_norms(w, u)
        ratio = torch.where((wn > 0) & (un > 0), wn / un.clamp_min(1e-30), torch.ones_like(wn))
        return ratio.index_select(1, seg)

    @torch.no_grad()
    def larc_(self, local: Rows, lr: float, weight_decay: float) -> None:
        """LARC on the gathered rows' gradient, in place: each (row, named table) is a layer."""
        g = local.flat.grad
        if g is None:
            return
        w = local.flat.detach()
        wn, gn, seg = self._segment_norms(w, g)
        if weight_decay:
            g.add_(w, alpha=weight_decay)
        g.mul_(larc_scale(wn, gn, lr, weight_decay).index_select(1, seg))

    @torch.no_grad()
    def sgd(self, rows: torch.Tensor, local: Rows, lr: float, weight_decay: float = 0.0, momentum: float = 0.0) -> None:
        """One SGD step on ``rows``, with Nesterov momentum (kept in ``m``) when given."""
        g = local.flat.grad
        if g is None:
            return
        leaf = local.flat.detach()
        if weight_decay:
            g = g + weight_decay * leaf
        with self.lock:
            if momentum:
                m = self.m.index_select(0, rows).mul_(momentum).add_(g)
                self.m.index_copy_(0, rows, m)
                g = g + momentum * m
            self.storage.index_copy_(0, rows, leaf - lr * g)

    # -- saving ------------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        return {k: t[: self.n].detach().cpu().contiguous() for k, t in self.data.items()}

    def moments(self) -> dict[str, torch.Tensor]:
        """The row-wise optimizer's state of the rows in use: m, v [rows, width], steps [rows]."""
        return {k: getattr(self, k)[: self.n].detach().cpu().contiguous() for k in ("m", "v", "steps")}

    def set_moments(self, m: torch.Tensor, v: torch.Tensor, steps: torch.Tensor) -> None:
        if m.shape != (self.n, self.width) or v.shape != m.shape or steps.shape != (self.n,):
            raise ValueError(f"optimizer state of the address tables: shapes {tuple(m.shape)}, {tuple(v.shape)}, "
                             f"{tuple(steps.shape)}; expected ({self.n}, {self.width}) and ({self.n},)")
        with self.lock:
            self.m[: self.n] = m.to(self.device)
            self.v[: self.n] = v.to(self.device)
            self.steps[: self.n] = steps.to(self.device)

    def load_state(self, tensors: dict[str, torch.Tensor], address: np.ndarray, instance: np.ndarray,
                   kind: np.ndarray) -> None:
        if set(tensors) != set(self.shapes):
            raise ValueError(f"inference network file: tables {sorted(tensors)}, expected {sorted(self.shapes)}")
        self.shapes = {k: tuple(tensors[k].shape[1:]) for k in self.shapes}
        self.n = self.capacity = 0
        self.storage = torch.zeros(0, self.width, device=self.device)
        self.m, self.v = torch.zeros_like(self.storage), torch.zeros_like(self.storage)
        self.steps = torch.zeros(0, device=self.device)
        self._keys = np.zeros(0, dtype=np.uint64)
        self._key_rows = np.zeros(0, dtype=np.int64)
        self.row_address = self.row_instance = self.row_kind = np.zeros(0, dtype=np.int64)
        self._reserve(max(len(address), 16))
        if len(np.unique(make_keys(address, instance, kind))) != len(address):
            raise ValueError("inference network file: duplicate address rows")
        self._append(address, instance, kind)
        views = self.data
        for k, t in tensors.items():
            views[k][: self.n] = t.to(self.device)
