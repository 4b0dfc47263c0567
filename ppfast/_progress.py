"""Progress of long runs on stderr, and one summary line when they end.

On a terminal (or in a notebook) a live tqdm bar, removed when done.  Anywhere else —
log files of batch jobs on clusters, CI — plain lines: at most one per ``log_step`` of
the work and per ``log_interval`` seconds (so at most 20 for any run), never carriage
returns.  Either way the run ends with one line: count, time, rate, and whatever the
caller adds (ESS, loss).  ``PPFAST_PROGRESS=0`` / ``ppfast.set_progress(False)`` /
``progress=False`` turn all of it off.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Optional, TextIO

import numpy as np

__all__ = ["Progress", "ess_summary", "set_progress"]

# The default of every ``progress=None``: on unless PPFAST_PROGRESS=0.
_enabled = os.environ.get("PPFAST_PROGRESS", "1") != "0"


def set_progress(enabled: bool) -> None:
    """Turns progress output on or off by default (``progress=`` overrides per call)."""
    global _enabled
    _enabled = bool(enabled)


def _interactive(stream: TextIO) -> bool:
    if "ipykernel" in sys.modules:  # a notebook: tqdm.auto draws a widget
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Progress over ``total`` units of work; ``enabled=None`` follows ``set_progress``.

    ``update(n, postfix)`` after each piece; set ``summary`` (e.g. ``"ESS 812.3"``) before
    ``close()`` to add it to the final line."""

    #: Runs shorter than this show nothing at all.
    min_total = 1000
    #: Without a terminal: a line per this fraction of the work at most ...
    log_step = 0.05
    #: ... and at most one per this many seconds.
    log_interval = 5.0

    def __init__(self, total: int, desc: str, enabled: Optional[bool] = None, unit: str = "trace",
                 stream: Optional[TextIO] = None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = (_enabled if enabled is None else bool(enabled)) and self.total >= self.min_total
        self.done = 0
        self.postfix = ""
        self.summary = ""
        self.start = time.perf_counter()
        self._logged = (self.start, 0)
        self._closed = False
        self._bar = None
        if self.enabled and _interactive(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, unit_scale=True, leave=False,
                             mininterval=0.25, file=self.stream)

    def update(self, n: int, postfix: Optional[str] = None) -> None:
        self.done += int(n)
        if postfix is not None:
            self.postfix = postfix
        if not self.enabled:
            return
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.perf_counter()
        last_time, last_done = self._logged
        if (self.done < self.total and now - last_time >= self.log_interval
                and self.done - last_done >= self.log_step * self.total):
            self._logged = (now, self.done)
            elapsed = now - self.start
            rate = self.done / elapsed if elapsed > 0 else math.inf
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            self._line(f"{self.done:,}/{self.total:,} {self.unit}s ({100 * self.done / self.total:.0f}%), "
                       f"{_duration(elapsed)}, {rate:,.0f} {self.unit}s/s, {_duration(eta)} left"
                       + (f", {self.postfix}" if self.postfix else ""))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else math.inf
        count = f"{self.done:,} {self.unit}s" if self.done >= self.total else \
            f"stopped after {self.done:,} of {self.total:,} {self.unit}s"
        self._line(f"{count} in {_duration(elapsed)} ({rate:,.0f} {self.unit}s/s)"
                   + (f", {self.summary}" if self.summary else ""))

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=self.stream, flush=True)


def ess_summary(log_weights: np.ndarray) -> str:
    """``"ESS x"`` (Kish's effective sample size) for weighted runs, ``""`` when every
    weight is equal (prior runs: the ESS is just the count)."""
    lw = np.asarray(log_weights, dtype=np.float64)
    lw = lw[np.isfinite(lw)]
    if lw.size == 0 or lw.max() == lw.min():
        return ""
    w = np.exp(lw - lw.max())
    return f"ESS {w.sum() ** 2 / np.dot(w, w):,.1f}"
