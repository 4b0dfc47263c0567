"""Watching a training run: validation loss, learning-rate schedules, early stopping,
and logs (TensorBoard event files, a CSV file).

Everything is counted in traces the network has trained on (``net.traces_trained``), as
PyProb counts: ``num_traces_end`` of a schedule and ``valid_every`` are trace counts.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data import StepData
from .network import InferenceNetwork

__all__ = ["SCHEDULES", "Schedule", "Watch"]

SCHEDULES = ("step", "cosine", "plateau", "poly1", "poly2")
# 'step' divides the rate by 1 / decay at these fractions of num_traces_end.
_STEP_MILESTONES = (0.5, 0.75)
# 'plateau' counts a validation as an improvement when it beats the best by this fraction.
_IMPROVEMENT = 1e-4


def _improves(loss: float, best: float) -> bool:
    return math.isinf(best) or loss < best - _IMPROVEMENT * abs(best)


class Schedule:
    """The learning rate at a number of traces trained.

    ``None``: constant.  'poly1' / 'poly2' (PyProb's POLY1 / POLY2):
    ``(lr - lr_end) (1 - t / t_end)^p + lr_end``, then ``lr_end``.  'cosine': half a
    cosine from ``lr`` to ``lr_end`` over ``t_end``.  'step': ``lr`` times ``decay`` at
    half and three quarters of ``t_end``.  'plateau': ``lr`` times ``decay`` each time the
    watched loss has not improved for ``patience`` validations, never below ``lr_end``."""

    def __init__(self, kind: str | None, lr: float, lr_end: float, traces_end: int, decay: float, patience: int):
        self.kind, self.lr0, self.lr_end, self.traces_end = kind, lr, lr_end, max(int(traces_end), 1)
        self.decay, self.patience = decay, patience
        self.scale = 1.0  # 'plateau': the decays so far
        self.best = math.inf
        self.bad = 0

    def lr(self, traces: int) -> float:
        f = min(traces / self.traces_end, 1.0)
        if self.kind is None:
            return self.lr0
        if self.kind in ("poly1", "poly2"):
            return (self.lr0 - self.lr_end) * (1.0 - f) ** int(self.kind[-1]) + self.lr_end
        if self.kind == "cosine":
            return self.lr_end + (self.lr0 - self.lr_end) * 0.5 * (1.0 + math.cos(math.pi * f))
        if self.kind == "step":
            return self.lr0 * self.decay ** sum(f >= m for m in _STEP_MILESTONES)
        return max(self.lr0 * self.scale, self.lr_end)  # plateau

    def update(self, loss: float) -> bool:
        """'plateau': takes one validation's loss; True when the rate was lowered."""
        if self.kind != "plateau" or not math.isfinite(loss):
            return False
        if _improves(loss, self.best):
            self.best, self.bad = loss, 0
            return False
        self.bad += 1
        if self.bad < self.patience:
            return False
        self.bad = 0
        self.scale *= self.decay
        return True

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "scale": self.scale, "best": None if math.isinf(self.best) else self.best,
                "bad": self.bad}

    def load(self, state: dict[str, Any] | None) -> None:
        """Goes on from a saved state of the same kind (a resumed 'plateau' keeps its decays)."""
        if state and state.get("kind") == self.kind:
            self.scale = float(state.get("scale", 1.0))
            best = state.get("best")
            self.best = math.inf if best is None else float(best)
            self.bad = int(state.get("bad", 0))


def _summary_writer(log_dir: str | Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch's writer needs the tensorboard package
        raise ImportError("log_dir= writes TensorBoard event files, which needs the tensorboard package: "
                          "pip install 'ppfast[tensorboard]'") from e
    return SummaryWriter(log_dir=str(log_dir))


class Watch:
    """Per-run bookkeeping around the training loop: sets the learning rate before each
    step, logs each step's loss, and every ``valid_every`` traces computes the validation
    loss, steps a 'plateau' schedule, logs, and decides on early stopping.

    ``valid``: (StepData, trace ids) of the validation traces (rows already in the
    network's tables), or None.  ``writes``: this process (rank 0) computes the validation
    loss and writes the logs; ``share``: with several ranks, hands rank 0's validation
    loss to every rank, so that all take the same decisions."""

    def __init__(self, net: InferenceNetwork, opt: Any, schedule: Schedule, valid: tuple[StepData, np.ndarray] | None,
                 valid_every: int, early_stopping: int | None, batch_size: int, autocast: bool,
                 log_dir: str | Path | None, log_file: str | Path | None, writes: bool,
                 share: Callable[[Any], Any] | None = None):
        self.net, self.opt, self.schedule, self.valid = net, opt, schedule, valid
        self.every, self.early_stopping = valid_every, early_stopping
        self.batch_size, self.autocast, self.share, self.writes = batch_size, autocast, share, writes
        saved = net.schedule_state or {}
        schedule.load(saved)
        self.best_valid = math.inf if saved.get("best_valid") is None else float(saved["best_valid"])
        self.stale = int(saved.get("stale", 0)) if saved else 0
        self.next_at = (net.traces_trained // valid_every + 1) * valid_every
        self.since = len(net.history)  # training losses since the last evaluation
        self.last_valid: float | None = None
        self.stopped = False
        self.start = time.perf_counter()
        self.writer = _summary_writer(log_dir) if writes and log_dir is not None else None
        self.log = None
        if writes and log_file is not None:
            path = Path(log_file)
            fresh = not path.exists() or path.stat().st_size == 0
            self.log = path.open("a", buffering=1)
            if fresh:
                self.log.write("traces,seconds,train_loss,valid_loss,learning_rate\n")
        self.lr = schedule.lr(net.traces_trained)
        opt.set_lr(self.lr)

    def before_step(self) -> None:
        lr = self.schedule.lr(self.net.traces_trained)
        if lr != self.lr:
            self.lr = lr
            self.opt.set_lr(lr)

    def losses(self, items: list[tuple[int, float]]) -> None:
        """Training losses read back: (traces trained, loss) per step."""
        if self.writer is not None:
            for traces, value in items:
                self.writer.add_scalar("loss/train", value, traces)

    def due(self) -> bool:
        return self.net.traces_trained >= self.next_at

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean over the validation traces of -sum_t log q(x_t)."""
        assert self.valid is not None
        net = self.net
        data, ids = self.valid
        was = net.training
        net.eval()
        total = 0.0
        try:
            for s in range(0, len(ids), self.batch_size):
                mb = net.minibatch(data, ids[s:s + self.batch_size], grow=False)
                if mb.num_steps:
                    total += float(net.loss(mb, net.tables.gather(mb.rows), self.autocast)) * mb.num_traces
        finally:
            net.train(was)
        return total / max(len(ids), 1)

    def evaluate(self) -> bool:
        """One evaluation at the current trace count; True when training should stop."""
        net = self.net
        traces, lr = net.traces_trained, self.lr  # the rate of the steps up to here
        self.next_at = (traces // self.every + 1) * self.every
        recent = [v for _, v in net.history[self.since:]]
        self.since = len(net.history)
        train = float(np.mean(recent)) if recent else math.nan
        valid = None
        if self.valid is not None:
            valid = self.validation_loss() if self.writes else None
            if self.share is not None:
                valid = self.share(valid)
        self.last_valid = valid
        lowered = self.schedule.update(valid if valid is not None else train)
        stop = False
        if valid is not None:
            if _improves(valid, self.best_valid):
                self.best_valid, self.stale = valid, 0
            else:
                self.stale += 1
                stop = self.early_stopping is not None and self.stale >= self.early_stopping
            net.valid_history.append((traces, valid))
        net.lr_history.append((traces, lr))
        if lowered:
            self.before_step()
        net.schedule_state = dict(self.schedule.state(), stale=self.stale,
                                  best_valid=None if math.isinf(self.best_valid) else self.best_valid)
        if self.writer is not None:
            if valid is not None:
                self.writer.add_scalar("loss/valid", valid, traces)
            self.writer.add_scalar("learning_rate", lr, traces)
            self.writer.flush()
        if self.log is not None:
            self.log.write(f"{traces},{time.perf_counter() - self.start:.3f},{train:.6g},"
                           f"{'' if valid is None else f'{valid:.6g}'},{lr:.6g}\n")
        self.stopped = stop
        return stop

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.log is not None:
            self.log.close()
