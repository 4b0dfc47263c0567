"""PyProb's ``diagnostics`` module name: ppfast's diagnostics (see
:mod:`ppfast.diagnostics`).  PyProb's plotting helpers whose signatures ppfast does not
share raise NotImplementedError naming ppfast's equivalent."""

from __future__ import annotations

from typing import Any

from ..diagnostics import *  # noqa: F403 -- the same functions under PyProb's module name
from ..diagnostics import __all__ as _native_all

_EQUIVALENTS = {
    "trace_histograms": "ppfast.diagnostics.trace_types",
    "address_histograms": "ppfast.diagnostics.address_report",
    "network": "InferenceNetwork attributes (ppfast.nn)",
    "graph": "ppfast.diagnostics.latent_graph",
    "address_dictionary": "ppfast.diagnostics.address_report",
    "trace_plot": "ppfast.diagnostics.plot_trace",
    "log_prob": "ppfast.diagnostics.plot_log_prob",
    "jensen_shannon": "none yet",
}


def _not_here(name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"pyprob.diagnostics.{name}: use {_EQUIVALENTS[name]}")

    call.__name__ = name
    return call


for _name in _EQUIVALENTS:
    globals()[_name] = _not_here(_name)

__all__ = list(_native_all) + list(_EQUIVALENTS)
