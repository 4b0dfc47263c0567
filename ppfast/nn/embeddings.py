"""Observation embeddings: feed-forward, 2-D CNN, 3-D CNN (voxel tensors) or a user
``torch.nn.Module``, one per observed name, combined into one vector per trace.

``observe_embeddings={'obs0': {'dim': 32, 'depth': 2}, 'calorimeter': {'embedding':
'cnn3d', 'reshape': [1, 20, 20, 20]}}``.  Keys of a spec: ``embedding`` ('feedforward'
(default), 'cnn2d', 'cnn3d', or a ``torch.nn.Module`` mapping [batch, *reshape] to
[batch, dim]), ``dim`` (output width), ``depth`` (feed-forward layers), ``reshape`` (the
value's shape for the CNNs, channels first or without channels), ``channels`` (CNN
channels per block), ``downsample`` (average-pool factor applied before the CNN).  PyProb's names (``ObserveEmbedding.FEEDFORWARD``, ``CNN2D5C``,
``CNN3D4C``) are accepted as strings too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from ..errors import PpfastError

__all__ = ["ObservationEmbedding", "ObserveEmbedding", "normalize_spec"]

_KINDS = {"feedforward": "feedforward", "ff": "feedforward", "cnn2d": "cnn2d", "cnn2d5c": "cnn2d",
          "cnn3d": "cnn3d", "cnn3d4c": "cnn3d"}


class SpecError(PpfastError, ValueError):
    """An observe_embeddings entry is malformed."""


def normalize_spec(name: str, spec: Any, default_dim: int) -> dict[str, Any]:
    """A spec as a dict with 'embedding' (a kind string or 'module'), 'dim', 'depth', ..."""
    if spec is None:
        spec = {}
    if isinstance(spec, nn.Module):
        spec = {"embedding": spec}
    if not isinstance(spec, dict):
        raise SpecError(f"observe_embeddings[{name!r}]: expected a dict or a torch.nn.Module, got {type(spec).__name__}")
    out = dict(spec)
    emb = out.get("embedding", "feedforward")
    if isinstance(emb, nn.Module):
        out["module"] = emb
        out["embedding"] = "module"
    else:
        key = str(getattr(emb, "name", emb)).lower().split(".")[-1]
        if key not in _KINDS:
            raise SpecError(f"observe_embeddings[{name!r}]: unknown embedding {emb!r}; expected 'feedforward', "
                            "'cnn2d', 'cnn3d' or a torch.nn.Module")
        out["embedding"] = _KINDS[key]
    out["dim"] = int(out.get("dim", default_dim))
    out["depth"] = int(out.get("depth", 2))
    if out["dim"] < 1 or out["depth"] < 1:
        raise SpecError(f"observe_embeddings[{name!r}]: dim and depth must be >= 1, got {out['dim']}, {out['depth']}")
    if out["embedding"] in ("cnn2d", "cnn3d"):
        if "reshape" not in out:
            raise SpecError(f"observe_embeddings[{name!r}]: a {out['embedding']} embedding needs 'reshape' "
                            "(the value's shape, e.g. [1, 20, 20, 20])")
        out["reshape"] = [int(s) for s in out["reshape"]]
    elif "reshape" in out:
        out["reshape"] = [int(s) for s in out["reshape"]]
    return out


class _Normalize(nn.Module):
    """Standardizes inputs by statistics of the first training batch (kept in the
    state_dict): observations on any scale start in a useful range."""

    def __init__(self, size: int, per_element: bool):
        super().__init__()
        self.per_element = per_element
        n = size if per_element else 1
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.fitted: torch.Tensor
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        if bool(self.fitted):
            return
        x = x.float().reshape(x.shape[0], -1)
        if self.per_element:
            self.mean.copy_(x.mean(0))
            self.std.copy_(x.std(0, unbiased=False).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones_like(self.std))
        else:
            self.mean.fill_(float(x.mean()))
            self.std.fill_(max(float(x.std(unbiased=False)), 1e-6) if x.numel() > 1 else 1.0)
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _feedforward(inp: int, dim: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = inp
    for i in range(depth):
        layers.append(nn.Linear(width, dim))
        if i < depth - 1:
            layers.append(nn.ReLU())
        width = dim
    return nn.Sequential(*layers)


class _CNN(nn.Module):
    """Conv blocks (conv, ReLU, conv, ReLU, max-pool) then a feed-forward to ``dim``."""

    def __init__(self, shape: Sequence[int], dims: int, channels: Sequence[int], dim: int, depth: int,
                 downsample: int = 1):
        super().__init__()
        shape = list(shape)
        if len(shape) == dims:
            shape = [1] + shape
        if len(shape) != dims + 1:
            raise SpecError(f"a {dims}-D CNN needs a reshape of {dims} or {dims + 1} dimensions, got {shape}")
        self.shape = shape
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        layers: list[nn.Module] = []
        if downsample > 1:  # average-pool large grids first (cheap, keeps deposited energy)
            layers.append((nn.AvgPool2d if dims == 2 else nn.AvgPool3d)(downsample, ceil_mode=True))
            shape = [shape[0]] + [-(-s // downsample) for s in shape[1:]]
        c_in = shape[0]
        for c in channels:
            layers += [conv(c_in, c, 3, padding=1), nn.ReLU(), conv(c, c, 3, padding=1), nn.ReLU()]
            if min(shape[1:]) >= 2:
                layers.append(pool(2))
                shape = [c] + [s // 2 for s in shape[1:]]
            c_in = c
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.conv(torch.zeros([1] + self.shape)).numel()
        self.ff = _feedforward(flat, dim, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.reshape([x.shape[0]] + self.shape))
        return self.ff(x.flatten(1))


class ObservationEmbedding(nn.Module):
    """One embedding per observed name; the concatenation, mixed by one linear layer
    when there are several names, is the observation embedding of a trace."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int], specs: dict[str, dict[str, Any]], dim: int):
        super().__init__()
        self.names = list(names)
        self.sizes = [int(s) for s in sizes]
        self.dim = int(dim)
        self.norms = nn.ModuleList()
        self.embeds = nn.ModuleList()
        total = 0
        for name, size in zip(self.names, self.sizes):
            spec = specs[name]
            kind = spec["embedding"]
            if kind == "feedforward":
                emb: nn.Module = _feedforward(size, spec["dim"], spec["depth"])
                self.norms.append(_Normalize(size, per_element=True))
            elif kind in ("cnn2d", "cnn3d"):
                shape = spec["reshape"]
                if _prod(shape) != size:
                    raise SpecError(f"observe_embeddings[{name!r}]: reshape {shape} has {_prod(shape)} elements, "
                                    f"the observed value has {size}")
                channels = spec.get("channels", [16, 32] if kind == "cnn3d" else [32, 64])
                emb = _CNN(shape, 2 if kind == "cnn2d" else 3, channels, spec["dim"], spec["depth"],
                           int(spec.get("downsample", 1)))
                self.norms.append(_Normalize(size, per_element=False))
            else:
                emb = spec["module"]
                self.norms.append(_Normalize(size, per_element=False))
            self.embeds.append(emb)
            total += spec["dim"]
        self.reshape: list[list[int] | None] = [specs[n].get("reshape") if specs[n]["embedding"] == "module" else None
                                                   for n in self.names]
        self.mix = nn.Linear(total, self.dim) if (len(self.names) != 1 or total != self.dim) else None

    def fit(self, values: Sequence[torch.Tensor]) -> None:
        for norm, v in zip(self.norms, values):
            cast(_Normalize, norm).fit(v)

    def forward(self, values: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = []
        for i, (norm, emb, v) in enumerate(zip(self.norms, self.embeds, values)):
            x = norm(v.float())
            shape = self.reshape[i]
            if shape is not None:
                x = x.reshape([x.shape[0]] + list(shape))
            parts.append(torch.relu(emb(x)))
        h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return torch.relu(self.mix(h)) if self.mix is not None else h


def _prod(xs: Sequence[int]) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


class ObserveEmbedding:
    """PyProb-style names for the embedding kinds."""

    FEEDFORWARD = "feedforward"
    CNN2D5C = "cnn2d"
    CNN3D4C = "cnn3d"
