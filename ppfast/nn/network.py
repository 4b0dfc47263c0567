"""The inference-compilation network, fused over addresses and trace types.

Per step t of a trace the LSTM reads [observation embedding, previous value embedding,
previous address embedding, previous distribution embedding, current address embedding,
current distribution embedding] (PyProb's layout: 256 + 4 + 2 * (64 + 8) = 404 wide by
default) and a proposal head turns its output into the parameters of a proposal.

Everything per address lives in :class:`~ppfast.nn.tables.AddressTables` rows (address
embedding, previous-value embedding, head weights and bias), so a minibatch of any mix
of trace types costs a fixed set of kernels: one gather per table, one LSTM call over
the packed minibatch, one batched product for all heads, and one loss expression per
proposal family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import families as fam
from .data import Packed, StepData, pack
from .embeddings import ObservationEmbedding
from .tables import AddressTables, make_keys

__all__ = ["DEFAULTS", "NETWORK_TYPES", "InferenceNetwork", "Minibatch"]

DEFAULTS: dict[str, Any] = {
    "lstm_dim": 512,
    "lstm_depth": 1,
    "address_embedding_dim": 64,
    "distribution_type_embedding_dim": 8,
    "sample_embedding_dim": 4,
    "observe_embedding_dim": 256,
    "proposal_mixture_components": 10,
    "proposal_dim": 64,
    "address_instances": True,
    "network_type": "lstm",
    # Parts of address names: the network proposes only at addresses whose name contains
    # one of them, and guided runs draw every other address from its prior without a step.
    "propose_addresses": None,
}
NETWORK_TYPES = ("lstm", "feedforward")

# Heads are computed densely for every touched row (one GEMM) up to this many rows, by
# gathering each step's head weights (one batched product) beyond.
_DENSE_HEADS = 32
# Answer kind: the prior at this address from now on (the core's kPriorAtAddress).
PRIOR_AT_ADDRESS = 255


@dataclass
class Minibatch:
    """Tensors of one packed minibatch, on the network's device."""

    num_traces: int
    num_steps: int
    batch_sizes: torch.Tensor  # CPU int64
    observed: list[torch.Tensor]  # per name: [traces with steps, length], rank order
    rows: torch.Tensor  # touched table rows
    inv: torch.Tensor  # per step: index into rows
    inv_prev: torch.Tensor
    rank: torch.Tensor
    not_first: torch.Tensor  # float [n, 1]
    dist: torch.Tensor
    prev_dist: torch.Tensor
    z_prev: torch.Tensor  # [n, 1]
    families: list[tuple[int, torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]]
    tries: torch.Tensor | None  # packed position scoring each rejection-loop try


class InferenceNetwork(nn.Module):
    """Observation embedding + address / distribution / value embeddings + LSTM +
    per-address proposal heads.  Build through ``model.learn_inference_network``."""

    def __init__(self, observe_names: Sequence[str], observe_sizes: Sequence[int],
                 observe_specs: dict[str, dict[str, Any]], device: Any = "cpu", **config: Any):
        super().__init__()
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"InferenceNetwork: unknown options {sorted(unknown)}")
        cfg = dict(DEFAULTS, **config)
        cfg["network_type"] = str(getattr(cfg["network_type"], "name", cfg["network_type"])).lower()
        if cfg["network_type"] not in NETWORK_TYPES:
            raise ValueError(f"network_type must be one of {', '.join(NETWORK_TYPES)}, got {config['network_type']!r}")
        parts = cfg["propose_addresses"]
        if parts is not None:
            parts = [parts] if isinstance(parts, str) else list(parts)
            if not parts or not all(isinstance(p, str) and p for p in parts):
                raise TypeError(f"propose_addresses must be a non-empty list of non-empty strings (parts of address "
                                f"names), got {config['propose_addresses']!r}")
            cfg["propose_addresses"] = parts
        self.config = cfg
        self._proposed: dict[int, bool] = {}  # address id -> proposes (ids are per process: not saved)
        self.observe_names = list(observe_names)
        self.observe_sizes = [int(s) for s in observe_sizes]
        self.observe_specs = observe_specs
        adim, ddim, sdim = cfg["address_embedding_dim"], cfg["distribution_type_embedding_dim"], cfg["sample_embedding_dim"]
        self.components = int(cfg["proposal_mixture_components"])
        self.observe = ObservationEmbedding(self.observe_names, self.observe_sizes, observe_specs,
                                            cfg["observe_embedding_dim"])
        self.dist_embedding = nn.Embedding(fam.FAMILY_OF_KIND.size, ddim, padding_idx=0)
        self.input_dim = cfg["observe_embedding_dim"] + sdim + 2 * (adim + ddim)
        # PyProb's two families: an LSTM over the trace's sites, or the same inputs through
        # a feed-forward stack (no state carried from site to site).
        self.lstm: nn.LSTM | None = None
        self.feedforward: nn.Sequential | None = None
        if cfg["network_type"] == "lstm":
            self.lstm = nn.LSTM(self.input_dim, cfg["lstm_dim"], cfg["lstm_depth"])
        else:
            layers: list[nn.Module] = []
            for i in range(cfg["lstm_depth"]):
                layers += [nn.Linear(self.input_dim if i == 0 else cfg["lstm_dim"], cfg["lstm_dim"]), nn.ReLU()]
            self.feedforward = nn.Sequential(*layers)
        self.trunk = nn.Linear(cfg["lstm_dim"], cfg["proposal_dim"])
        width = 3 * self.components
        self.tables = AddressTables({"address": (adim,), "value": (2, sdim), "head_w": (cfg["proposal_dim"], width),
                                    "head_b": (width,)}, device)
        self.traces_trained = 0
        # (traces trained, loss) of every training step, and (traces trained, value) of
        # every validation: the validation loss and the learning rate then.
        self.history: list[tuple[int, float]] = []
        self.valid_history: list[tuple[int, float]] = []
        self.lr_history: list[tuple[int, float]] = []
        self.schedule_state: dict[str, Any] | None = None  # of the last run's learning-rate schedule
        # Controlled addresses guided inference draws from the prior, and why (training warns once each).
        self.prior_addresses: dict[str, str] = {}
        self.to(device)

    # -- device ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.trunk.weight.device

    def to(self, *args: Any, **kwargs: Any) -> InferenceNetwork:  # type: ignore[override]
        super().to(*args, **kwargs)
        self.tables.to(self.trunk.weight.device)
        return self

    @property
    def head_width(self) -> int:
        return self.tables.shapes["head_b"][0]

    def proposes(self, address: np.ndarray) -> np.ndarray:
        """Whether the network proposes at each of these address ids (``propose_addresses``)."""
        parts = self.config["propose_addresses"]
        if parts is None:
            return np.ones(len(address), dtype=bool)
        from ..trace import address_name

        ids, inv = np.unique(address, return_inverse=True)
        for i in ids.tolist():
            if i not in self._proposed:
                name = address_name(i)
                self._proposed[i] = any(p in name for p in parts)
        return np.array([self._proposed[i] for i in ids.tolist()], dtype=bool)[inv.reshape(-1)]

    # -- rows ----------------------------------------------------------------------------
    def rows_for(self, keys: np.ndarray, address: np.ndarray, instance: np.ndarray, kind: np.ndarray,
                 grow: bool) -> np.ndarray:
        rows = self.tables.lookup(keys)
        if grow and np.any(rows < 0):
            miss = rows < 0
            new = self.tables.add(address[miss], instance[miss], kind[miss])
            self._init_rows(new)
            rows = self.tables.lookup(keys)
        return rows

    def _step_rows(self, data: StepData, grow: bool) -> np.ndarray:
        """Table row of every step of ``data`` (looked up once per batch of traces: rows
        never move once given)."""
        cached = getattr(data, "_rows", None)
        if cached is not None and (cached.min(initial=0) >= 0 or not grow):
            return cached
        steps = np.arange(data.num_steps)
        rows = self.rows_for(data.keys(steps, self.config["address_instances"]), data.address[steps],
                             data.instance[steps], data.kind[steps], grow)
        data._rows = rows  # type: ignore[attr-defined]
        return rows

    @torch.no_grad()
    def _init_rows(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        t = self.tables
        r = torch.from_numpy(rows).to(t.device)
        n = len(rows)
        p, d = t.shapes["head_w"]
        adim = t.shapes["address"][0]
        sdim = t.shapes["value"][1]
        t.data["address"][r] = torch.randn(n, adim, device=t.device)
        value = torch.zeros(n, 2, sdim, device=t.device)
        value[:, 0] = torch.randn(n, sdim, device=t.device)
        t.data["value"][r] = value
        t.data["head_w"][r] = (torch.rand(n, p, d, device=t.device) * 2 - 1) * (0.5 / math.sqrt(p))
        families = fam.FAMILY_OF_KIND[t.row_kind[rows]]
        bias = np.zeros((n, d), dtype=np.float32)
        for f in np.unique(families):  # a handful of families, not addresses
            bias[families == f] = fam.init_bias(int(f), self.components, d)
        t.data["head_b"][r] = torch.from_numpy(bias).to(t.device)

    def _ensure_width(self, width: int) -> None:
        if width > self.head_width:
            self.tables.widen("head_w", width)
            self.tables.widen("head_b", width)

    # -- training ------------------------------------------------------------------------
    def minibatch(self, data: StepData, ids: np.ndarray, grow: bool = True) -> Minibatch:
        """The tensors of traces ``ids`` of ``data`` (numpy work only, vectorized)."""
        pk: Packed = pack(data, ids)
        step_rows = self._step_rows(data, grow)
        rows = step_rows[pk.step]
        rows_prev = np.where(pk.first, rows, step_rows[pk.prev])
        if not grow and np.any(rows < 0):
            raise ValueError("minibatch: traces have addresses the network does not know (grow=False)")
        touched, inv_all = _compact(np.concatenate([rows, rows_prev]), self.tables.n)
        n = len(rows)
        up = _Upload(self.device)
        families = []
        item = np.concatenate([pk.step, pk.tries])  # loss items: steps, then rejection-loop tries
        fam_p = data.family[item]
        for f in np.flatnonzero(np.bincount(fam_p, minlength=len(fam.FAMILY_NAMES))):
            pos = np.flatnonzero(fam_p == f)
            idx = data.fam_index[item[pos]]
            prep = data.prep[int(f)]
            tensors = {k: up.add(v[idx], True) for k, v in prep.items() if k not in ("logp", "k")}
            logp = None
            if f == fam.CATEGORICAL:
                kmax = int(prep["k"][idx].max())
                self._ensure_width(kmax)
                logp = up.add(prep["logp"][idx][:, :kmax], True)
            families.append((int(f), up.add(pos), tensors, logp))
        h_observed = [up.add(o[pk.traces], True) for o in data.observed]
        h_rows, h_inv, h_inv_prev = up.add(touched), up.add(inv_all[:n]), up.add(inv_all[n:])
        h_rank, h_not_first = up.add(pk.rank), up.add((~pk.first)[:, None], True)
        h_dist, h_prev_dist = up.add(data.kind[pk.step]), up.add(np.where(pk.first, 0, data.kind[pk.prev]))
        h_z_prev = up.add(np.where(pk.first, 0, data.z[pk.prev])[:, None], True)
        h_tries = up.add(pk.try_pos) if len(pk.tries) else -1
        got = up.run()
        return Minibatch(
            num_traces=pk.num_traces, num_steps=n, batch_sizes=torch.from_numpy(pk.batch_sizes),
            observed=[got[k] for k in h_observed], rows=got[h_rows], inv=got[h_inv], inv_prev=got[h_inv_prev],
            rank=got[h_rank], not_first=got[h_not_first], dist=got[h_dist], prev_dist=got[h_prev_dist],
            z_prev=got[h_z_prev],
            families=[(f, got[pos], {k: got[v] for k, v in ts.items()}, None if lp is None else got[lp])
                      for f, pos, ts, lp in families],
            tries=got[h_tries] if h_tries >= 0 else None)

    def _inputs(self, obs: torch.Tensor, local: dict[str, torch.Tensor], inv: torch.Tensor, inv_prev: torch.Tensor,
                not_first: torch.Tensor, dist: torch.Tensor, prev_dist: torch.Tensor, z_prev: torch.Tensor,
                known: torch.Tensor | None = None, known_prev: torch.Tensor | None = None) -> torch.Tensor:
        addr = local["address"]
        e_cur = addr.index_select(0, inv)
        e_prev = addr.index_select(0, inv_prev)
        val = local["value"].index_select(0, inv_prev)
        e_val = z_prev * val[:, 0] + val[:, 1]
        m_prev = not_first if known_prev is None else not_first * known_prev
        if known is not None:
            e_cur = e_cur * known
        return torch.cat([obs, e_val * m_prev, e_prev * m_prev, self.dist_embedding(prev_dist), e_cur,
                          self.dist_embedding(dist)], dim=1)

    def _heads(self, h: torch.Tensor, local: dict[str, torch.Tensor], inv: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.trunk(h))
        w, b = local["head_w"], local["head_b"]
        u, p, d = w.shape
        if u <= _DENSE_HEADS:
            y = (z @ w.permute(1, 0, 2).reshape(p, u * d)).view(-1, u, d)
            y = y.gather(1, inv.view(-1, 1, 1).expand(-1, 1, d)).squeeze(1)
        else:
            y = torch.bmm(z.unsqueeze(1), w.index_select(0, inv)).squeeze(1)
        return y + b.index_select(0, inv)

    def loss(self, mb: Minibatch, local: dict[str, torch.Tensor], autocast: bool = False) -> torch.Tensor:
        """-sum log q(x_t) per trace, averaged over the minibatch's traces."""
        dev = self.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            obs = self.observe(mb.observed).index_select(0, mb.rank)
            x = self._inputs(obs, local, mb.inv, mb.inv_prev, mb.not_first, mb.dist, mb.prev_dist, mb.z_prev)
            if self.lstm is not None:
                h = self.lstm(PackedSequence(x, mb.batch_sizes))[0].data
            else:
                h = self.feedforward(x)  # type: ignore[misc]
            inv = mb.inv
            if mb.tries is not None:
                h = torch.cat([h, h.index_select(0, mb.tries)])
                inv = torch.cat([inv, inv.index_select(0, mb.tries)])
            y = self._heads(h, local, inv)
        y = y.float()
        total = y.new_zeros(())
        for f, pos, prep, logp in mb.families:  # one flat expression per proposal family
            total = total + fam.log_q(f, y.index_select(0, pos), prep, self.components, logp).sum()
        return -total / max(mb.num_traces, 1)

    # -- inference -------------------------------------------------------------------------
    def rows_of_ids(self, address: np.ndarray, instance: np.ndarray, kind: np.ndarray) -> np.ndarray:
        if not self.config["address_instances"]:
            instance = np.zeros_like(instance)
        return self.tables.lookup(make_keys(address, instance, kind))

    @torch.no_grad()
    def embed_observation(self, values: Sequence[np.ndarray]) -> torch.Tensor:
        obs = [torch.as_tensor(np.asarray(v, dtype=np.float32).reshape(1, -1), device=self.device) for v in values]
        return self.observe(obs)

    def stepper(self, values: Sequence[np.ndarray], slots: int, autocast: bool = False) -> Stepper:
        """The inference-time state of a guided run with observed ``values``."""
        return Stepper(self, values, slots, autocast)

    def _encode(self, y: np.ndarray, kind: np.ndarray, p4: np.ndarray, arena: np.ndarray, req: dict[str, np.ndarray],
                known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(kind)
        kinds = np.zeros(n, dtype=np.uint8)
        lens = np.zeros(n, dtype=np.uint32)
        offsets = np.zeros(n, dtype=np.uint32)
        families = np.where(known, fam.FAMILY_OF_KIND[np.minimum(kind, 13)], fam.NONE)
        blocks: list[np.ndarray] = []
        used = 0
        for f in np.flatnonzero(np.bincount(families, minlength=len(fam.FAMILY_NAMES))):
            if f == fam.NONE:
                continue
            pos = np.flatnonzero(families == f)
            prep = fam.prepare(int(f), kind[pos], p4[pos])
            logp = None
            o = y[pos]
            if f == fam.CATEGORICAL:
                k = req["param_len"][pos].astype(np.int64)
                kmax = int(k.max())
                with np.errstate(divide="ignore"):
                    logp = np.log(_gather(arena, req["param_offset"][pos], k, kmax))
                logp[np.arange(kmax)[None, :] >= k[:, None]] = -np.inf
                if o.shape[1] < kmax:
                    o = np.pad(o, ((0, 0), (0, kmax - o.shape[1])))
            code, rows = fam.encode(int(f), o, prep, self.components, logp)
            if f == fam.CATEGORICAL:
                valid = np.arange(rows.shape[1])[None, :] < k[:, None]
                flat = rows[valid]
                lens[pos] = k
                offsets[pos] = used + np.cumsum(k) - k
            else:
                flat = rows.reshape(-1)
                lens[pos] = rows.shape[1]
                offsets[pos] = used + np.arange(len(pos)) * rows.shape[1]
            kinds[pos] = code
            blocks.append(flat)
            used += len(flat)
        params = np.concatenate(blocks) if blocks else np.zeros(0)
        return kinds, offsets, lens, params

    # -- saving ------------------------------------------------------------------------------
    def save_state(self) -> dict[str, Any]:
        """state_dict (plain tensors) and JSON-able metadata (addresses by string)."""
        from ..trace import address_name

        t = self.tables
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        for k, v in t.state().items():
            state[f"tables.{k}"] = v
        specs = {}
        for name, spec in self.observe_specs.items():
            s = {k: v for k, v in spec.items() if k != "module"}
            specs[name] = s
        meta = {
            "format": "ppfast-inference-network",
            "version": 1,
            "config": self.config,
            "observe": [{"name": n, "size": s} for n, s in zip(self.observe_names, self.observe_sizes)],
            "observe_specs": specs,
            "rows": [{"address": address_name(int(a)), "instance": int(i), "kind": int(k)}
                     for a, i, k in zip(t.row_address, t.row_instance, t.row_kind)],
            "head_width": self.head_width,
            "traces_trained": int(self.traces_trained),
            "history": [[int(a), float(b)] for a, b in self.history],
            "valid_history": [[int(a), float(b)] for a, b in self.valid_history],
            "lr_history": [[int(a), float(b)] for a, b in self.lr_history],
            "schedule": self.schedule_state,
            "prior_addresses": self.prior_addresses,
        }
        return {"state": state, "meta": meta}


class Stepper:
    """One LSTM step at a time for a guided run, for every pending request at once.

    The step is the LSTM cell written out (same weights, same gate order as
    ``torch.nn.LSTM``), so two exact savings apply: the observation's share of the input
    product is the same for every trace of a run and is computed once; and a trace's
    first site has no previous value and a zero state, so its output depends only on
    (address, distribution) and is computed once per distinct pair in a batch.  Per-slot
    states live in ``h``, ``c`` ([layers, slots, hidden]).  A feed-forward network takes
    the same path with a ReLU layer for the cell and no state."""

    def __init__(self, net: InferenceNetwork, values: Sequence[np.ndarray], slots: int, autocast: bool):
        self.net = net
        cfg = net.config
        dev = net.device
        self.autocast = autocast and dev.type == "cuda"
        self.dtype = torch.bfloat16 if self.autocast else torch.float32
        layers, hidden = cfg["lstm_depth"], cfg["lstm_dim"]
        self.recurrent = net.lstm is not None
        self.h = torch.zeros(layers, slots if self.recurrent else 0, hidden, device=dev, dtype=self.dtype)
        self.c = torch.zeros(layers, slots if self.recurrent else 0, hidden, device=dev)
        e = net.observe.dim
        with torch.no_grad():
            obs = net.embed_observation(values)[0]
            self.w_ih: list[torch.Tensor] = []
            self.w_hh: list[torch.Tensor] = []
            self.bias: list[torch.Tensor] = []
            for layer in range(layers):
                if self.recurrent:
                    w_ih = getattr(net.lstm, f"weight_ih_l{layer}")
                    b = getattr(net.lstm, f"bias_ih_l{layer}") + getattr(net.lstm, f"bias_hh_l{layer}")
                    self.w_hh.append(getattr(net.lstm, f"weight_hh_l{layer}").t().contiguous().to(self.dtype))
                else:
                    linear = net.feedforward[2 * layer]  # type: ignore[index]
                    w_ih, b = linear.weight, linear.bias
                if layer == 0:
                    b = b + w_ih[:, :e] @ obs
                    w_ih = w_ih[:, e:]
                self.w_ih.append(w_ih.t().contiguous().to(self.dtype))
                self.bias.append(b.float())
        self.steps = 0
        self.requests = 0

    def __call__(self, req: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Answers one round of requests: (kinds, offsets, lens, params) for the core.  An
        address the network does not propose for is answered PRIOR_AT_ADDRESS: its slot
        draws it from the prior from then on without asking, and takes no step."""
        proposed = self.net.proposes(req["address"])
        if proposed.all():
            return self._step(req)
        n = len(proposed)
        kinds = np.full(n, PRIOR_AT_ADDRESS, dtype=np.uint8)
        offsets = np.zeros(n, dtype=np.uint32)
        lens = np.zeros(n, dtype=np.uint32)
        if not proposed.any():
            return kinds, offsets, lens, np.zeros(0)
        ask = np.flatnonzero(proposed)
        k, o, ln, params = self._step({key: v if key == "params" else v[ask] for key, v in req.items()})
        kinds[ask], offsets[ask], lens[ask] = k, o, ln
        return kinds, offsets, lens, params

    @torch.no_grad()
    def _step(self, req: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        net = self.net
        dev = net.device
        n = len(req["slot"])
        self.steps += 1
        self.requests += n
        arena = req["params"]
        kind = req["dist"].astype(np.int64)
        first = req["first"].astype(bool)
        rows = net.rows_of_ids(req["address"].astype(np.int64), req["instance"].astype(np.int64), kind)
        known = rows >= 0

        # The rows to compute: one per distinct (row, kind) among first sites, every other site.
        fidx = np.flatnonzero(first)
        later = np.flatnonzero(~first)
        fkey = rows[fidx] * 16 + kind[fidx]
        _, rep, finv = np.unique(fkey, return_index=True, return_inverse=True)
        comp = np.concatenate([fidx[rep], later])  # request index of each computed row
        expand = np.empty(n, dtype=np.int64)  # computed row answering each request
        expand[fidx] = finv.reshape(-1)
        expand[later] = len(rep) + np.arange(len(later))
        m_first = len(rep)

        c_rows, c_kind = rows[comp], kind[comp]
        lat = later
        pkind = req["prev_dist"][lat].astype(np.int64)
        prows = net.rows_of_ids(req["prev_address"][lat].astype(np.int64), req["prev_instance"][lat].astype(np.int64),
                                pkind)
        pp4 = _gather(arena, req["prev_param_offset"][lat], np.minimum(req["prev_param_len"][lat], 4), 4)
        z_prev = fam.standardize(pkind, pp4, req["prev_param_len"][lat].astype(np.int64), req["prev_value"][lat])

        def t(x: np.ndarray, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(dev, dtype=dtype)

        if net.tables.n:
            touched, inv_all = _compact(np.concatenate([np.maximum(c_rows, 0), np.maximum(prows, 0)]), net.tables.n)
            local = net.tables._views(net.tables.storage.index_select(0, t(touched)))
        else:  # an untrained network: zero embeddings, every site goes to the prior
            local = net.tables._views(torch.zeros(1, net.tables.width, device=dev))
            inv_all = np.zeros(len(comp) + len(lat), dtype=np.int64)
        inv_all = inv_all.reshape(-1)
        inv = t(inv_all[: len(comp)])
        m = len(comp)
        cknown = t(known[comp].astype(np.float32)[:, None], torch.float32)
        e_cur = local["address"].index_select(0, inv) * cknown
        parts_prev = torch.zeros(m, net.config["sample_embedding_dim"] + net.config["address_embedding_dim"],
                                 device=dev)
        d_prev = torch.zeros(m, dtype=torch.long, device=dev)
        if len(lat):
            pinv = t(inv_all[len(comp):])
            pknown = t((prows >= 0).astype(np.float32)[:, None], torch.float32)
            val = local["value"].index_select(0, pinv)
            e_val = t(z_prev[:, None], torch.float32) * val[:, 0] + val[:, 1]
            e_prev = local["address"].index_select(0, pinv)
            parts_prev[m_first:] = torch.cat([e_val, e_prev], dim=1) * pknown
            d_prev[m_first:] = t(pkind)
        # The input without the observation's share (folded into the bias): [previous value,
        # previous address, previous distribution, current address, current distribution].
        x = torch.cat([parts_prev, net.dist_embedding(d_prev), e_cur, net.dist_embedding(t(c_kind))], dim=1)

        slots = t(req["slot"][comp[m_first:]])
        hs: list[torch.Tensor] = []
        cs: list[torch.Tensor] = []
        inp = x.to(self.dtype)
        for layer in range(len(self.w_ih)):
            gates = (inp @ self.w_ih[layer]).float() + self.bias[layer]
            if not self.recurrent:
                hs.append(torch.relu(gates))
                inp = hs[-1].to(self.dtype)
                continue
            c_prev = torch.zeros(m, self.c.shape[2], device=dev)
            if len(lat):
                h_prev = self.h[layer].index_select(0, slots)
                gates[m_first:] += (h_prev @ self.w_hh[layer]).float()
                c_prev[m_first:] = self.c[layer].index_select(0, slots)
            i, f, g, o = gates.chunk(4, dim=1)
            c1 = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
            h1 = torch.sigmoid(o) * torch.tanh(c1)
            hs.append(h1)
            cs.append(c1)
            inp = h1.to(self.dtype)
        # States of every requesting slot (first sites share their computed row).
        e = t(expand)
        all_slots = t(req["slot"])
        for layer in range(len(cs)):
            self.h[layer].index_copy_(0, all_slots, hs[layer].index_select(0, e).to(self.dtype))
            self.c[layer].index_copy_(0, all_slots, cs[layer].index_select(0, e))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.autocast):
            y = net._heads(hs[-1].to(self.dtype), local, inv)
        heads = y.float().cpu().numpy()[expand]
        p4 = _gather(arena, req["param_offset"], np.minimum(req["param_len"], 4), 4)
        return net._encode(heads, kind, p4, arena, req, known)


class _Upload:
    """Arrays bound for the device: on CPU zero-copy views, elsewhere packed into one
    integer and one float buffer so a minibatch costs two host-to-device copies."""

    def __init__(self, device: torch.device):
        self.device = device
        self.arrays: list[tuple[np.ndarray, bool]] = []

    def add(self, x: np.ndarray, floating: bool = False) -> int:
        self.arrays.append((x, floating))
        return len(self.arrays) - 1

    def run(self) -> list[torch.Tensor]:
        if self.device.type == "cpu":
            return [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32 if f else np.int64))
                    for x, f in self.arrays]
        out: list[torch.Tensor | None] = [None] * len(self.arrays)
        for floating, dtype in ((False, np.int64), (True, np.float32)):
            part = [(i, x) for i, (x, f) in enumerate(self.arrays) if f == floating]
            if not part:
                continue
            flat = np.concatenate([np.asarray(x, dtype=dtype).reshape(-1) for _, x in part])
            host = torch.from_numpy(flat).pin_memory()
            dev = host.to(self.device, non_blocking=True)
            off = 0
            for i, x in part:
                size = int(np.prod(x.shape))
                out[i] = dev[off:off + size].view(x.shape)
                off += size
        return out  # type: ignore[return-value]


def _compact(rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows, index of each row among them), without sorting: rows are < n."""
    present = np.zeros(n + 1, dtype=bool)
    present[rows] = True
    touched = np.flatnonzero(present)
    remap = np.cumsum(present) - 1
    return touched, remap[rows]


def _gather(arena: np.ndarray, offset: np.ndarray, length: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((len(offset), width))
    if width == 0 or len(offset) == 0:
        return out
    idx = offset[:, None].astype(np.int64) + np.arange(width)
    valid = np.arange(width) < length[:, None].astype(np.int64)
    out[valid] = arena[idx[valid]]
    return out
