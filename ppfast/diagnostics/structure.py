"""Interpretability: which addresses a posterior's traces contain, where each lives in
the simulator's code, what it looks like a posteriori; the trace types; and the latent
structure as a graph (addresses as nodes, transitions between consecutive addresses as
weighted edges) for Graphviz and networkx.

>>> report = ppfast.diagnostics.address_report(post)      # doctest: +SKIP
>>> print(report)                                          # doctest: +SKIP
>>> ppfast.diagnostics.latent_graph(post).render("structure.png")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..distributions import KIND_NAMES
from ..trace import FLAG_CONTROL, FLAG_DISCARDED, RecordKind, TraceBatch, address_name
from ._inputs import batch_of, weights_of

__all__ = [
    "AddressInfo",
    "AddressReport",
    "LatentGraph",
    "TraceTypeInfo",
    "address_report",
    "latent_graph",
    "trace_types",
]

_KIND = {RecordKind.SAMPLE: "sample", RecordKind.OBSERVE: "observe", RecordKind.TAG: "tag"}


def _batch_and_weights(x: Any, what: str) -> tuple[TraceBatch, np.ndarray]:
    batch = batch_of(x)
    if batch is None:
        raise TypeError(f"{what} needs a posterior over traces (model.posterior(...), model.prior(...)) or a "
                        f"TraceBatch, got {type(x).__name__}")
    w, n = weights_of(x)
    if n != len(batch):
        w = np.full(len(batch), 1.0 / max(len(batch), 1))
    return batch, w


def _label(i: int) -> str:
    return address_name(int(i))


@dataclasses.dataclass
class AddressInfo:
    """One address of the traces.  ``frequency``: posterior probability that a trace
    contains it; ``occurrences``: expected number of occurrences per trace; the summary
    (mean, stddev, min, max) is over its values (first element of tensor values)."""

    id: int
    address: str
    name: str | None
    location: str
    kind: str
    controlled: bool
    distributions: tuple[str, ...]
    frequency: float
    occurrences: float
    mean: float
    stddev: float
    min: float
    max: float


class AddressReport(list[AddressInfo]):
    """A list of AddressInfo in order of first appearance; ``str()`` is a table."""

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(a) for a in self]

    def __str__(self) -> str:
        head = ("address", "name", "kind", "distribution", "frequency", "per trace", "mean", "stddev", "location")
        rows = [head]
        for a in self:
            kind = a.kind + ("" if a.kind != "sample" or a.controlled else " (uncontrolled)")
            rows.append((a.address, a.name or "", kind, ",".join(a.distributions), f"{a.frequency:.4g}",
                         f"{a.occurrences:.4g}", f"{a.mean:.4g}", f"{a.stddev:.4g}", a.location))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def address_report(x: Any, kinds: tuple[str, ...] = ("sample", "observe")) -> AddressReport:
    """Each address of the traces: location in the code, distribution(s), how often it
    occurs, its posterior summary (weighted by the posterior's weights)."""
    batch, w = _batch_and_weights(x, "address_report")
    wanted = [k for k, v in _KIND.items() if v in kinds]
    rec = batch.records
    mask = np.isin(rec["kind"], wanted) & ((rec["flags"] & FLAG_DISCARDED) == 0)
    idx = np.flatnonzero(mask)
    report = AddressReport()
    if not len(idx):
        return report
    addr, trace = rec["address"][idx].astype(np.int64), rec["trace"][idx].astype(np.int64)
    rw = w[trace]
    groups, first, inverse = np.unique(addr, return_index=True, return_inverse=True)
    occurrences = np.bincount(inverse, weights=rw, minlength=len(groups))
    # Frequency: weight of the distinct traces containing the address.
    pair = inverse * (len(batch) + 1) + trace
    _, once = np.unique(pair, return_index=True)
    frequency = np.bincount(inverse[once], weights=rw[once], minlength=len(groups))
    values = rec["value"][idx]
    finite = np.isfinite(values)
    vw = np.where(finite, rw, 0.0)
    # Shifted by each address's first finite value: constants (observations) get exactly 0 spread.
    ref = np.zeros(len(groups))
    ref[inverse[finite][::-1]] = values[finite][::-1]
    v0 = np.where(finite, values - ref[inverse], 0.0)
    wsum = np.bincount(inverse, weights=vw, minlength=len(groups))
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.bincount(inverse, weights=vw * v0, minlength=len(groups)) / wsum
        var = np.bincount(inverse, weights=vw * (v0 - shift[inverse]) ** 2, minlength=len(groups)) / wsum
    mean = ref + shift
    for g in np.argsort(first):
        sel = inverse == g
        j = idx[first[g]]
        names = rec["name"][idx[sel]]
        dists = tuple(KIND_NAMES.get(int(d), str(int(d))) for d in np.unique(rec["dist"][idx[sel]]) if d)
        vals = values[sel][finite[sel]]
        report.append(AddressInfo(
            id=int(groups[g]), address=_label(groups[g]), name=_label(names[0]) if names[0] else None,
            location=_core.address_location(int(groups[g])), kind=_KIND[int(rec["kind"][j])],
            controlled=bool(np.any(rec["flags"][idx[sel]] & FLAG_CONTROL)), distributions=dists,
            frequency=min(1.0, float(frequency[g])), occurrences=float(occurrences[g]), mean=float(mean[g]),
            stddev=float(np.sqrt(var[g])), min=float(vals.min()) if len(vals) else float("nan"),
            max=float(vals.max()) if len(vals) else float("nan")))
    return report


@dataclasses.dataclass
class TraceTypeInfo:
    """One trace type (sequence of controlled addresses): how many traces have it, its
    posterior probability, and its addresses."""

    trace_type: int
    count: int
    frequency: float
    addresses: tuple[str, ...]

    @property
    def length(self) -> int:
        return len(self.addresses)


def trace_types(x: Any) -> list[TraceTypeInfo]:
    """The trace types of a posterior, most probable first."""
    batch, w = _batch_and_weights(x, "trace_types")
    types = batch.traces["trace_type"]
    if not len(types):
        return []
    uniq, first, inverse = np.unique(types, return_index=True, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(uniq))
    freq = np.bincount(inverse, weights=w, minlength=len(uniq))
    rec = batch.records
    out = []
    for g in np.argsort(-freq, kind="stable"):
        t = int(first[g])
        b, e = int(batch.traces["begin"][t]), int(batch.traces["end"][t])
        k, f = rec["kind"][b:e], rec["flags"][b:e]
        sites = (k == RecordKind.SAMPLE) & ((f & FLAG_CONTROL) != 0) & ((f & FLAG_DISCARDED) == 0)
        out.append(TraceTypeInfo(int(uniq[g]), int(counts[g]), float(freq[g]),
                                 tuple(_label(a) for a in rec["address"][b:e][sites])))
    return out


_START, _END = -1, -2


def _dot_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclasses.dataclass
class LatentGraph:
    """Addresses as nodes (plus ``START`` and ``END``), transitions between consecutive
    addresses of a trace as edges.  Node ``count`` and edge ``weight``: expected number
    of occurrences / traversals per trace under the posterior; edge ``traces``: number of
    traces with that transition (unweighted)."""

    nodes: dict[str, dict[str, Any]]
    edges: dict[tuple[str, str], dict[str, Any]]

    def to_networkx(self) -> Any:
        from .._optional import require

        nx = require("networkx", "LatentGraph.to_networkx")

        g = nx.DiGraph()
        for key, attrs in self.nodes.items():
            g.add_node(key, **attrs)
        for (a, b), attrs in self.edges.items():
            g.add_edge(a, b, **attrs)
        return g

    def to_dot(self) -> str:
        lines = ["digraph latent_structure {", '  graph [rankdir=TB, fontname="Helvetica"];',
                 '  node [shape=box, style="rounded,filled", fontname="Helvetica", fillcolor="#dbe7f4"];',
                 '  edge [fontname="Helvetica", fontsize=10, color="#555555"];']
        for key, n in self.nodes.items():
            if n["kind"] in ("start", "end"):
                lines.append(f'  {key} [shape=circle, label={_dot_string(n["kind"])}, fillcolor="#eeeeee"];')
                continue
            label = (n["name"] or n["address"]) + "\n" + ",".join(n["distributions"]) + f" x{n['count']:.3g}"
            attrs = [f"label={_dot_string(label)}", f"tooltip={_dot_string(n['address'] + ' @ ' + n['location'])}"]
            if n["kind"] == "observe":
                attrs.append('shape=ellipse, fillcolor="#f6dfcf"')
            elif not n["controlled"]:
                attrs.append('fillcolor="#e8e8e8"')
            lines.append(f"  {key} [{', '.join(attrs)}];")
        top = max([e["weight"] for e in self.edges.values()] + [1e-300])
        for (a, b), e in self.edges.items():
            width = 0.5 + 3.5 * e["weight"] / top
            lines.append(f'  {a} -> {b} [label="{e["weight"]:.3g}", penwidth={width:.2f}];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def save_dot(self, file_name: str) -> str:
        Path(file_name).write_text(self.to_dot())
        return str(file_name)

    def render(self, file_name: str, format: str | None = None, timeout: float = 60.0) -> str | None:
        """Draws the graph with Graphviz's ``dot`` (format from the suffix, default png).
        Returns the file name, or None with a warning when ``dot`` is not installed."""
        exe = shutil.which("dot")
        if exe is None:
            warnings.warn("Graphviz 'dot' not found: install graphviz to render; use to_dot() / save_dot() instead",
                          RuntimeWarning, stacklevel=2)
            return None
        fmt = format or (Path(file_name).suffix.lstrip(".") or "png")
        proc = subprocess.run([exe, f"-T{fmt}", "-o", str(file_name)], input=self.to_dot(), text=True, check=False,
                              capture_output=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"dot failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return str(file_name)


def latent_graph(x: Any, observes: bool = True, uncontrolled: bool = True) -> LatentGraph:
    """The latent structure of a posterior's (or a batch's) traces."""
    batch, w = _batch_and_weights(x, "latent_graph")
    rec = batch.records
    kinds = [RecordKind.SAMPLE] + ([RecordKind.OBSERVE] if observes else [])
    mask = np.isin(rec["kind"], kinds) & ((rec["flags"] & FLAG_DISCARDED) == 0)
    if not uncontrolled:
        mask &= (rec["kind"] != RecordKind.SAMPLE) | ((rec["flags"] & FLAG_CONTROL) != 0)
    idx = np.flatnonzero(mask)
    addr = rec["address"][idx].astype(np.int64)
    trace = rec["trace"][idx].astype(np.int64)

    nodes: dict[str, dict[str, Any]] = {"START": {"kind": "start", "count": 1.0},
                                        "END": {"kind": "end", "count": 1.0}}
    report = {a.id: a for a in address_report(x, ("sample", "observe"))}
    for a in np.unique(addr):
        info = report.get(int(a))
        nodes[f"a{int(a)}"] = {
            "kind": info.kind if info else "sample", "address": _label(a), "name": info.name if info else None,
            "location": info.location if info else "", "controlled": info.controlled if info else True,
            "distributions": list(info.distributions) if info else [], "count": info.occurrences if info else 0.0}

    # Consecutive records of one trace; START -> first and last -> END per trace.
    new = np.ones(len(idx), dtype=bool)
    new[1:] = trace[1:] != trace[:-1]
    last = np.ones(len(idx), dtype=bool)
    last[:-1] = new[1:]
    inner = ~new[1:]
    src = np.concatenate([np.full(int(new.sum()), _START), addr[:-1][inner], addr[last]])
    dst = np.concatenate([addr[new], addr[1:][inner], np.full(int(last.sum()), _END)])
    tr = np.concatenate([trace[new], trace[:-1][inner], trace[last]])
    empty = np.setdiff1d(np.arange(len(batch)), trace)  # traces without any such record
    src = np.concatenate([src, np.full(len(empty), _START)])
    dst = np.concatenate([dst, np.full(len(empty), _END)])
    tr = np.concatenate([tr, empty])
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    if len(src):
        pairs, inverse = np.unique(np.stack([src, dst], axis=1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        weight = np.bincount(inverse, weights=w[tr], minlength=len(pairs))
        _, once = np.unique(inverse * (len(batch) + 1) + tr, return_index=True)
        ntraces = np.bincount(inverse[once], minlength=len(pairs))

        def key(a: int) -> str:
            return "START" if a == _START else "END" if a == _END else f"a{a}"

        for (a, b), wt, n in zip(pairs, weight, ntraces):
            edges[(key(int(a)), key(int(b)))] = {"weight": float(wt), "traces": int(n)}
    return LatentGraph(nodes, edges)
