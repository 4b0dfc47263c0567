"""Optimizers of the inference network: Adam, SGD, LAMB, and Adam / SGD with LARC.

Dense layers use a ``torch.optim`` optimizer; the per-address tables use the row-wise
update of :class:`~ppfast.nn.tables.AddressTables`, which touches only a minibatch's
rows.  Layer-wise rules (LAMB's trust ratio, LARC's clipping) treat each dense
parameter tensor as a layer and each (row, named table) of the address tables as one.
"""

from __future__ import annotations

from typing import Any

import torch

from .network import InferenceNetwork
from .tables import Rows, larc_scale

__all__ = ["OPTIMIZERS", "Lamb", "NetworkOptimizer", "optimizer_for"]

OPTIMIZERS = ("adam", "sgd", "lamb", "adam_larc", "sgd_larc")
# SGD with Nesterov momentum, as PyProb's SGD.
SGD_MOMENTUM = 0.9


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., 2019): Adam whose step for each parameter tensor is rescaled by
    the trust ratio ||w|| / ||update||, with decoupled weight decay -- for the large
    global minibatches of many ranks."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float32)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                st["step"] += 1
                t = float(st["step"])
                m, v, g = st["exp_avg"], st["exp_avg_sq"], p.grad
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                u = (m / (1 - b1 ** t)).div_((v / (1 - b2 ** t)).sqrt_().add_(group["eps"]))
                if group["weight_decay"]:
                    u.add_(p, alpha=group["weight_decay"])
                wn, un = float(p.norm()), float(u.norm())
                ratio = wn / un if wn > 0 and un > 0 else 1.0
                p.add_(u, alpha=-group["lr"] * ratio)


class NetworkOptimizer:
    """Dense Adam / LAMB / SGD (Nesterov momentum 0.9) for the shared layers, row-wise for the address tables;
    ``*_larc`` kinds clip each layer's gradient by LARC first.

    Kept on the network (``net._optimizer``) so that training goes on with its state, and
    saved with it (:func:`~ppfast.nn.save_inference_network`)."""

    def __init__(self, net: InferenceNetwork, kind: str, lr: float, weight_decay: float):
        if kind not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {kind!r}")
        self.net, self.kind, self.lr, self.weight_decay = net, kind, lr, weight_decay
        self.base, self.larc = kind.split("_")[0], kind.endswith("_larc")
        params = list(net.parameters())
        inner_decay = self._inner_decay()
        self.dense: torch.optim.Optimizer
        if self.base == "adam":
            try:
                self.dense = torch.optim.Adam(params, lr=lr, weight_decay=inner_decay, fused=True)
            except (RuntimeError, TypeError):
                self.dense = torch.optim.Adam(params, lr=lr, weight_decay=inner_decay)
        elif self.base == "lamb":
            self.dense = Lamb(params, lr=lr, weight_decay=inner_decay)
        else:
            self.dense = torch.optim.SGD(params, lr=lr, weight_decay=inner_decay, momentum=SGD_MOMENTUM, nesterov=True)

    def _inner_decay(self) -> float:
        return 0.0 if self.larc else self.weight_decay  # LARC adds the decay to the gradient it scales

    def set_lr(self, lr: float, weight_decay: float | None = None) -> None:
        if weight_decay is not None:
            self.weight_decay = weight_decay
        self.lr = lr
        for group in self.dense.param_groups:
            group["lr"], group["weight_decay"] = lr, self._inner_decay()

    @torch.no_grad()
    def _larc_dense(self) -> None:
        params: list[torch.Tensor] = [p for p in self.net.parameters() if p.grad is not None]
        if not params:
            return
        grads: list[torch.Tensor] = [p.grad for p in params]  # type: ignore[misc]
        w = torch.stack(torch._foreach_norm(params))
        g = torch.stack(torch._foreach_norm(grads))
        scale = larc_scale(w, g, self.lr, self.weight_decay)
        for p, grad, s in zip(params, grads, scale):
            if self.weight_decay:
                grad.add_(p, alpha=self.weight_decay)
            grad.mul_(s)

    def step(self, rows: torch.Tensor, local: Rows) -> None:
        if self.larc:
            self._larc_dense()
            self.net.tables.larc_(local, self.lr, self.weight_decay)
        self.dense.step()
        decay = self._inner_decay()
        if self.base == "sgd":
            self.net.tables.sgd(rows, local, self.lr, weight_decay=decay, momentum=SGD_MOMENTUM)
        else:
            self.net.tables.adam(rows, local, self.lr, weight_decay=decay, trust_ratio=self.base == "lamb")

    # -- saving ------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors keyed 'optimizer.…', JSON-able metadata) of the whole optimizer state."""
        tensors = {}
        for i, st in self.dense.state_dict()["state"].items():
            for k, v in st.items():
                tensors[f"optimizer.dense.{i}.{k}"] = torch.as_tensor(v).detach().cpu().clone()
        for k, v in self.net.tables.moments().items():
            tensors[f"optimizer.tables.{k}"] = v
        return tensors, {"kind": self.kind, "lr": self.lr, "weight_decay": self.weight_decay}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, v in tensors.items():
            if key.startswith("optimizer.dense."):
                i, name = key[len("optimizer.dense."):].split(".", 1)
                state.setdefault(int(i), {})[name] = v
        groups = self.dense.state_dict()["param_groups"]
        self.dense.load_state_dict({"state": state, "param_groups": groups})


def optimizer_for(net: InferenceNetwork, kind: str, lr: float, weight_decay: float) -> NetworkOptimizer:
    """The network's optimizer, going on with its state (live, or loaded from a file)
    when it is of the same kind; a new one otherwise."""
    opt = getattr(net, "_optimizer", None)
    if isinstance(opt, NetworkOptimizer) and opt.kind == kind and opt.net is net:
        opt.set_lr(lr, weight_decay)
        moved = any(v.device != p.device for p, st in opt.dense.state.items() for k, v in st.items()
                    if torch.is_tensor(v) and k != "step")
        if moved:  # the network went to another device: its state follows (load_state_dict casts)
            opt.dense.load_state_dict(opt.dense.state_dict())
        return opt
    opt = NetworkOptimizer(net, kind, lr, weight_decay)
    saved = getattr(net, "_optimizer_saved", None)
    if saved is not None and saved[1].get("kind") == kind:
        opt.load(saved[0])
    net._optimizer_saved = None  # type: ignore[assignment]
    net._optimizer = opt  # type: ignore[assignment]
    return opt
