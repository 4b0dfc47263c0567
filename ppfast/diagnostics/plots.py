"""Plots a user saves with one call: ``plot_trace(post, 'mu', file_name='mu.png')``.

Figures are built on matplotlib's Agg canvas directly (no pyplot, no global backend
change), so they work headless; each function returns the Figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import chain_array
from .stats import autocorrelation, ess, log_prob_trace, rhat

__all__ = ["plot_autocorrelation", "plot_log_prob", "plot_trace", "plot_training"]


def _figure(width: float, height: float, ncols: int = 1, width_ratios: list | None = None) -> Any:
    from .._optional import require

    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "plotting").FigureCanvasAgg
    Figure = require("matplotlib.figure", "plotting").Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, gridspec_kw={"width_ratios": width_ratios} if width_ratios else None)
    return fig, axes


def _finish(fig: Any, file_name: str | None, dpi: int) -> Any:
    if file_name is not None:
        fig.savefig(str(file_name), dpi=dpi)
    return fig


def _scalar_chains(x: Any, name: str | None, what: str) -> np.ndarray:
    a = chain_array(x, name, what)
    if a.ndim > 2:
        raise ValueError(f"{what}: values of shape {a.shape[2:]} per draw; plot one element, e.g. values[..., 0]")
    return a


def plot_trace(x: Any, name: str | None = None, file_name: str | None = None, bins: int = 50,
               dpi: int = 100) -> Any:
    """Values against step, one line per chain, beside their histogram; the title gives
    the ESS and (with several chains) R-hat."""
    a = _scalar_chains(x, name, "plot_trace")
    fig, (left, right) = _figure(10, 3.5, 2, [3, 1])
    for c, chain in enumerate(a):
        left.plot(chain, lw=0.6, alpha=0.8, label=f"chain {c}")
    left.set_xlabel("draw")
    left.set_ylabel(name or "value")
    if len(a) > 1:
        left.legend(loc="upper right", fontsize="small")
    finite = a[np.isfinite(a)]
    if finite.size:
        right.hist(finite, bins=bins, orientation="horizontal", density=True, color="C0", alpha=0.7)
    right.set_xlabel("density")
    title = f"{name or 'values'}: ESS {ess(a):.4g}"
    if len(a) > 1:
        title += f", R-hat {rhat(a):.4f}"
    fig.suptitle(title)
    return _finish(fig, file_name, dpi)


def plot_autocorrelation(x: Any, name: str | None = None, file_name: str | None = None, max_lag: int = 50,
                         dpi: int = 100) -> Any:
    """Autocorrelation against lag (averaged over chains)."""
    a = _scalar_chains(x, name, "plot_autocorrelation")
    rho = autocorrelation(a, max_lag=max_lag)
    fig, ax = _figure(6, 3.5)
    ax.bar(np.arange(len(rho)), rho, width=0.8, color="C0")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("lag")
    ax.set_ylabel("autocorrelation")
    ax.set_title(f"{name or 'values'}: autocorrelation")
    return _finish(fig, file_name, dpi)


def plot_log_prob(x: Any, file_name: str | None = None, dpi: int = 100) -> Any:
    """log p(x, y) of each state against step, one line per chain (burn-in shows as a climb)."""
    lp = log_prob_trace(x)
    fig, ax = _figure(8, 3.5)
    for c, chain in enumerate(lp):
        ax.plot(chain, lw=0.6, alpha=0.8, label=f"chain {c}")
    ax.set_xlabel("draw")
    ax.set_ylabel("log joint probability")
    if len(lp) > 1:
        ax.legend(loc="lower right", fontsize="small")
    ax.set_title("log probability trace")
    return _finish(fig, file_name, dpi)


def plot_training(network: Any, file_name: str | None = None, dpi: int = 100) -> Any:
    """The loss history of an inference network (or of a model's): the training loss per
    step with a moving average, the validation loss, and the learning rate beside it."""
    net = getattr(network, "inference_network", network)
    history = getattr(net, "history", None)
    if history is None:
        raise TypeError(f"plot_training: expected an inference network or a model with one, got {type(network).__name__}")
    if not history:
        raise ValueError("plot_training: the network has no training history yet")
    fig, (ax, ax_lr) = _figure(10, 3.5, ncols=2, width_ratios=[2, 1])
    traces, loss = np.asarray(history, dtype=np.float64).T
    ax.plot(traces, loss, lw=0.5, alpha=0.4, label="training")
    k = max(1, len(loss) // 50)
    if k > 1:  # a moving average over k steps shows the trend under the minibatch noise
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(traces[k - 1:], smooth, lw=1.5, color="C0", label=f"training ({k}-step mean)")
    if getattr(net, "valid_history", None):
        vt, vl = np.asarray(net.valid_history, dtype=np.float64).T
        ax.plot(vt, vl, "o-", color="C1", label="validation")
    ax.set_xlabel("traces")
    ax.set_ylabel("loss (-log q per trace)")
    ax.legend()
    if getattr(net, "lr_history", None):
        lt, lr = np.asarray(net.lr_history, dtype=np.float64).T
        ax_lr.step(lt, lr, where="post", color="C2")
        ax_lr.set_yscale("log")
    ax_lr.set_xlabel("traces")
    ax_lr.set_ylabel("learning rate")
    return _finish(fig, file_name, dpi)
