"""Posterior diagnostics and interpretability.

Convergence: :func:`ess` (autocorrelation-based, over chains), :func:`ess_kish`
(weighted samples), :func:`effective_sample_size` (picks one), :func:`rhat` /
:func:`gelman_rubin` (split R-hat), :func:`autocorrelation`, :func:`log_prob_trace`.
Plots saved with one call: :func:`plot_trace`, :func:`plot_autocorrelation`,
:func:`plot_log_prob`, :func:`plot_training` (an inference network's losses).  ArviZ: :func:`to_arviz`.  Interpretability:
:func:`address_report`, :func:`trace_types`, :func:`latent_graph` (Graphviz DOT,
networkx, rendered picture).

Every function takes a posterior (an MCMC run's chains are found through
``posterior.batch.mcmc``), a list of chains, numpy arrays, torch tensors or plain
Python numbers alike.

>>> from ppfast import diagnostics
>>> diagnostics.rhat([[1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7]]) > 1
True
"""

from ..inference.mcmc import chains
from .export import to_arviz, variable_names, variable_values
from .plots import plot_autocorrelation, plot_log_prob, plot_trace, plot_training
from .stats import autocorrelation, effective_sample_size, ess, ess_kish, gelman_rubin, log_prob_trace, rhat
from .structure import (
                        AddressInfo,
                        AddressReport,
                        LatentGraph,
                        TraceTypeInfo,
                        address_report,
                        latent_graph,
                        trace_types,
)

__all__ = [
    "AddressInfo",
    "AddressReport",
    "LatentGraph",
    "TraceTypeInfo",
    "address_report",
    "autocorrelation",
    "chains",
    "effective_sample_size",
    "ess",
    "ess_kish",
    "gelman_rubin",
    "latent_graph",
    "log_prob_trace",
    "plot_autocorrelation",
    "plot_log_prob",
    "plot_trace",
    "plot_training",
    "rhat",
    "to_arviz",
    "trace_types",
    "variable_names",
    "variable_values",
]
