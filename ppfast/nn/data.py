"""Training data straight from TraceBatch columns, with vectorized numpy.

A trace's *steps* are its controlled, scalar, non-discarded sample records in order
(the sites the network proposes at; rejection-loop tries other than the accepted one
are left out).  :class:`StepData` reads them once per batch; :func:`pack` turns a set of
traces into the packed-sequence order that one ``torch.nn.LSTM`` call consumes: traces
sorted by length, steps time-major, so no step is padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PpfastError
from ..trace import FLAG_CONTROL, FLAG_DISCARDED, RecordKind, TraceBatch, address_name
from . import families as fam
from .tables import make_keys

__all__ = ["Packed", "StepData", "observe_names_of", "pack"]


class DataError(PpfastError, ValueError):
    """Training traces that the network cannot use (inconsistent observation shapes, ...)."""


def _obs_key(rec: dict[str, np.ndarray]) -> np.ndarray:
    """The id an observation is known by: its name, else its address."""
    return np.where(rec["name"] != 0, rec["name"], rec["address"])


def observe_names_of(batch: TraceBatch) -> list[tuple[int, int]]:
    """(name id, value length) of every observed name, in order of first appearance."""
    rec = batch.records
    m = rec["kind"] == RecordKind.OBSERVE
    keys = _obs_key(rec)[m]
    if len(keys) == 0:
        return []
    uniq, first = np.unique(keys, return_index=True)
    order = np.argsort(first)
    lens = rec["value_len"][m]
    return [(int(uniq[i]), int(lens[first[i]])) for i in order]


def _gather_rows(arena: np.ndarray, offset: np.ndarray, length: np.ndarray, width: int,
                 fill: float) -> np.ndarray:
    """[n, width] rows arena[offset:offset+length], padded with ``fill``."""
    out = np.full((len(offset), width), fill)
    if width == 0 or len(offset) == 0:
        return out
    idx = offset[:, None].astype(np.int64) + np.arange(width)
    valid = np.arange(width) < length[:, None]
    out[valid] = arena[idx[valid]]
    return out


class StepData:
    """Steps and observations of one TraceBatch (failed traces are left out).
    ``prior_sites``: (address id, distribution kind, size) of each controlled address
    that is not a step (tensor-valued, or of a family without a proposal).  ``proposes``
    (address ids -> bool) leaves the sites of other addresses out of the steps.

    Loss *items* are the steps followed by the discarded tries of rejection loops: a
    try is proposed from the same network state as the accepted draw of its loop (the
    state does not advance between tries), so it is scored with that step's output.
    Training on the tries too makes the proposal cover the rejected region, which keeps
    the weights of guided traces with rejections (every try counts in log p - log q)
    bounded."""

    def __init__(self, batch: TraceBatch, observe: Sequence[tuple[int, int]],
                 proposes: Callable[[np.ndarray], np.ndarray] | None = None):
        self.batch = batch
        rec, tr = batch.records, batch.traces
        n_traces = len(batch)
        kind, flags, dist = rec["kind"], rec["flags"], rec["dist"]
        controlled = (kind == RecordKind.SAMPLE) & ((flags & FLAG_CONTROL) != 0)
        scalar = controlled & (rec["value_len"] == 1) & (fam.FAMILY_OF_KIND[np.minimum(dist, 13)] != fam.NONE)
        discarded = (flags & FLAG_DISCARDED) != 0
        # Controlled sites the network has no proposal for (tensor values, families without
        # a proposal): guided runs draw them from the prior.
        other = np.flatnonzero(controlled & ~scalar & ~discarded)
        # Sites at addresses left out by choice (propose_addresses) are no steps either.
        site = scalar if proposes is None else scalar & proposes(rec["address"])
        _, first = np.unique(rec["address"][other], return_index=True)
        self.prior_sites = [(int(rec["address"][i]), int(rec["dist"][i]), int(rec["value_len"][i]))
                            for i in other[first]]
        steps = np.flatnonzero(site & ~discarded)
        tries = np.flatnonzero(site & discarded)
        trace = rec["trace"][steps]
        ok = tr["status"] == 0
        self.count = np.bincount(trace, minlength=n_traces).astype(np.int64)
        self.start = np.cumsum(self.count) - self.count
        self.usable = np.flatnonzero(ok)
        self.num_traces = n_traces
        self.num_steps = len(steps)

        # The accepted step of each discarded try: same trace, address and instance.
        try_trace = rec["trace"][tries].astype(np.int64)
        self.try_count = np.bincount(try_trace, minlength=n_traces).astype(np.int64)
        self.try_start = np.cumsum(self.try_count) - self.try_count
        if len(tries):
            both = np.concatenate([steps, tries])
            ai = (rec["address"][both].astype(np.uint64) << np.uint64(32)) | rec["instance"][both].astype(np.uint64)
            dense = np.unique(ai, return_inverse=True)[1].astype(np.uint64).reshape(-1)
            key = (rec["trace"][both].astype(np.uint64) << np.uint64(32)) | dense
            skeys, tkeys = key[: len(steps)], key[len(steps):]
            order = np.argsort(skeys, kind="stable")
            pos = np.minimum(np.searchsorted(skeys[order], tkeys), max(len(steps) - 1, 0))
            self.try_step = order[pos] if len(steps) else np.zeros(len(tries), dtype=np.int64)
            unmatched = skeys[self.try_step] != tkeys if len(steps) else np.ones(len(tries), dtype=bool)
            ok[try_trace[unmatched]] = False  # a loop without an accepted draw: leave the trace out
            self.usable = np.flatnonzero(ok)
        else:
            self.try_step = np.zeros(0, dtype=np.int64)

        items = np.concatenate([steps, tries])
        self.address = rec["address"][items].astype(np.int64)
        self.instance = rec["instance"][items].astype(np.int64)
        self.kind = dist[items].astype(np.int64)
        self.value = rec["value"][items]
        self.log_prob = rec["log_prob"][items]
        plen = rec["param_len"][items].astype(np.int64)
        poff = rec["param_offset"][items].astype(np.int64)
        self.param_len = plen
        self.params = _gather_rows(batch.arenas["params"], poff, np.minimum(plen, 4), 4, 0.0)
        self.family = fam.FAMILY_OF_KIND[self.kind]
        self.z = fam.standardize(self.kind, self.params, plen, self.value).astype(np.float32)

        # Per-family prepared constants, and each item's position in its family's arrays.
        self.fam_index = np.zeros(len(items), dtype=np.int64)
        self.prep: dict[int, dict[str, np.ndarray]] = {}
        for f in np.unique(self.family):
            sel = np.flatnonzero(self.family == f)
            self.fam_index[sel] = np.arange(len(sel))
            p = fam.prepare(int(f), self.kind[sel], self.params[sel], self.value[sel], self.log_prob[sel])
            if f == fam.CATEGORICAL:
                k = int(plen[sel].max())
                with np.errstate(divide="ignore"):
                    p["logp"] = np.log(_gather_rows(batch.arenas["params"], poff[sel], plen[sel], k, 0.0))
                p["k"] = plen[sel]
            self.prep[int(f)] = p

        # Observations: one [traces, length] array per name.
        self.observed: list[np.ndarray] = []
        okey = _obs_key(rec)
        om = (kind == RecordKind.OBSERVE) & (rec["instance"] == 0)
        for name, length in observe:
            sel = np.flatnonzero(om & (okey == name))
            lens = rec["value_len"][sel]
            if len(sel) and np.any(lens != length):
                bad = int(np.flatnonzero(lens != length)[0])
                raise DataError(f"observation '{address_name(name)}' has {int(lens[bad])} elements in trace "
                                f"{int(tr['index'][rec['trace'][sel[bad]]])}, the network expects {length}")
            vals = np.zeros((n_traces, length), dtype=np.float32)
            if length == 1:
                vals[rec["trace"][sel], 0] = rec["value"][sel]
            else:  # one copy per trace: an index array per element would dwarf big tensors
                arena = batch.arenas["values"]
                for tr_, off in zip(rec["trace"][sel].tolist(), rec["value_offset"][sel].tolist()):
                    vals[tr_] = arena[off:off + length]
            self.observed.append(vals)

    def keys(self, steps: np.ndarray, instances: bool) -> np.ndarray:
        inst = self.instance[steps] if instances else np.zeros(len(steps), dtype=np.int64)
        return make_keys(self.address[steps], inst, self.kind[steps])


@dataclass
class Packed:
    """A minibatch in packed-sequence order.  ``traces``: the traces with steps, longest
    first (rank order); ``step``: StepData index of each packed step; ``rank``: its
    trace's rank; ``first``: true at t = 0; ``prev``: StepData index of the previous
    step (meaningless where first)."""

    num_traces: int  # all traces of the minibatch, with or without steps
    traces: np.ndarray
    batch_sizes: np.ndarray
    step: np.ndarray
    rank: np.ndarray
    first: np.ndarray
    prev: np.ndarray
    tries: np.ndarray  # StepData item index of each discarded try of these traces
    try_pos: np.ndarray  # packed position of its accepted step


def pack(data: StepData, ids: np.ndarray) -> Packed:
    counts = data.count[ids]
    order = np.argsort(-counts, kind="stable")
    ids_s, counts_s = ids[order], counts[order]
    b = int(np.count_nonzero(counts_s))
    ids_s, counts_s = ids_s[:b], counts_s[:b]
    t_max = int(counts_s[0]) if b else 0
    n = int(counts_s.sum())
    hist = np.bincount(counts_s, minlength=t_max + 1)
    batch_sizes = b - np.cumsum(hist)[:t_max]  # traces longer than t
    offs = np.cumsum(batch_sizes) - batch_sizes
    rank = np.repeat(np.arange(b), counts_s)
    t = np.arange(n) - np.repeat(np.cumsum(counts_s) - counts_s, counts_s)
    step = np.repeat(data.start[ids_s], counts_s) + t
    perm = np.empty(n, dtype=np.int64)
    perm[offs[t] + rank] = np.arange(n)
    step, rank, t = step[perm], rank[perm], t[perm]
    # Discarded tries: each scored at the packed position of its loop's accepted step.
    tc = data.try_count[ids_s]
    m = int(tc.sum())
    if m:
        j = np.arange(m) - np.repeat(np.cumsum(tc) - tc, tc)
        tries = np.repeat(data.try_start[ids_s], tc) + j
        acc = data.try_step[tries]
        try_rank = np.repeat(np.arange(b), tc)
        try_pos = offs[acc - data.start[ids_s][try_rank]] + try_rank
        tries = tries + data.num_steps
    else:
        tries = try_pos = np.zeros(0, dtype=np.int64)
    return Packed(num_traces=len(ids), traces=ids_s, batch_sizes=batch_sizes.astype(np.int64), step=step, rank=rank,
                  first=t == 0, prev=np.maximum(step - 1, 0), tries=tries, try_pos=try_pos)


def select_usable(data: StepData, ids: np.ndarray | None = None) -> np.ndarray:
    return data.usable if ids is None else np.intersect1d(ids, data.usable)
