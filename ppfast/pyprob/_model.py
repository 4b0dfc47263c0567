"""PyProb's Model and RemoteModel: ppfast models with PyProb's method signatures
(positional order included) that return PyProb-style Empiricals."""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

from .. import model as _native
from ..model import InferenceEngine
from ..models.remote import RemoteModel as _NativeRemote
from ._empirical import Empirical

__all__ = ["Model", "RemoteModel", "learn_options"]


def _trace_result(trace: Any) -> Any:
    return trace.result


def _forward_arguments(args: tuple, kwargs: Dict[str, Any], where: str) -> None:
    """PyProb passes extra arguments on to forward(); ppfast models take none."""
    if args:
        raise NotImplementedError(f"{where}: positional arguments for forward() ({len(args)} given); ppfast "
                                  "models take their inputs as attributes")
    if kwargs:
        raise TypeError(f"{where} got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")


class _PyProbMethods:
    """PyProb's run methods on top of a ppfast model kind."""

    def prior(self, num_traces: int = 10, prior_inflation: Any = None, map_func: Any = None,
              file_name: Optional[str] = None, likelihood_importance: float = 1.0, *args: Any,
              seed: Optional[int] = None, progress: Optional[bool] = None, **kwargs: Any) -> Empirical:
        """Prior over traces, as PyProb's ``Model.prior``."""
        results = kwargs.pop("_results", False)
        _forward_arguments(args, kwargs, "prior")
        call = _native.BaseModel.prior_results if results else _native.BaseModel.prior
        emp = call(self, num_traces, prior_inflation=prior_inflation,  # type: ignore[arg-type]
                   map_func=map_func, file_name=file_name, likelihood_importance=likelihood_importance, seed=seed,
                   progress=progress)
        return Empirical.wrap(emp).rename(f"Prior, traces: {len(emp):,}")  # type: ignore[return-value]

    def prior_results(self, num_traces: int = 10, prior_inflation: Any = None, map_func: Any = _trace_result,
                      file_name: Optional[str] = None, likelihood_importance: float = 1.0, *args: Any,
                      seed: Optional[int] = None, progress: Optional[bool] = None, **kwargs: Any) -> Empirical:
        """Prior over the model's results, as PyProb's ``Model.prior_results``."""
        return self.prior(num_traces, prior_inflation, None if map_func is _trace_result else map_func, file_name,
                          likelihood_importance, *args, seed=seed, progress=progress, _results=True, **kwargs)

    def posterior(self, num_traces: int = 10, inference_engine: InferenceEngine = InferenceEngine.IMPORTANCE_SAMPLING,
                  initial_trace: Any = None, map_func: Any = None, observe: Optional[Dict[str, Any]] = None,
                  file_name: Optional[str] = None, thinning_steps: Optional[int] = None,
                  likelihood_importance: float = 1.0, *args: Any, seed: Optional[int] = None,
                  progress: Optional[bool] = None, **kwargs: Any) -> Empirical:
        """Posterior over traces, as PyProb's ``Model.posterior``."""
        results = kwargs.pop("_results", False)
        _forward_arguments(args, kwargs, "posterior")
        mcmc = inference_engine not in (InferenceEngine.IMPORTANCE_SAMPLING,
                                        InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK)
        if thinning_steps is not None and not mcmc:
            thinning_steps = None  # PyProb ignores it for importance sampling (every trace is kept)
        call = _native.BaseModel.posterior_results if results else _native.BaseModel.posterior
        emp = call(self, num_traces, inference_engine, observe=observe, map_func=map_func,  # type: ignore[arg-type]
                   file_name=file_name, likelihood_importance=likelihood_importance, seed=seed, progress=progress,
                   initial_trace=initial_trace, thinning_steps=thinning_steps)
        return Empirical.wrap(emp).rename(f"Posterior, {inference_engine.name}, traces: {len(emp):,}")  # type: ignore

    def posterior_results(self, num_traces: int = 10,
                          inference_engine: InferenceEngine = InferenceEngine.IMPORTANCE_SAMPLING,
                          initial_trace: Any = None, map_func: Any = _trace_result,
                          observe: Optional[Dict[str, Any]] = None, file_name: Optional[str] = None,
                          thinning_steps: Optional[int] = None, *args: Any, likelihood_importance: float = 1.0,
                          seed: Optional[int] = None, progress: Optional[bool] = None, **kwargs: Any) -> Empirical:
        """Posterior over the model's results, as PyProb's ``Model.posterior_results``."""
        return self.posterior(num_traces, inference_engine, initial_trace,
                              None if map_func is _trace_result else map_func, observe, file_name, thinning_steps,
                              likelihood_importance, *args, seed=seed, progress=progress, _results=True, **kwargs)

    def learn_inference_network(self, num_traces: int, num_traces_end: float = 1e9,
                                inference_network: Any = None, prior_inflation: Any = None,
                                dataset_dir: Optional[str] = None, dataset_valid_dir: Optional[str] = None,
                                observe_embeddings: Optional[Dict[str, Any]] = None, batch_size: int = 64,
                                valid_size: Optional[int] = None, valid_every: Optional[int] = None,
                                optimizer_type: Any = None, learning_rate_init: float = 0.001,
                                learning_rate_end: float = 1e-6, learning_rate_scheduler_type: Any = None,
                                momentum: float = 0.9, weight_decay: float = 0.0,
                                save_file_name_prefix: Optional[str] = None, save_every_sec: float = 600,
                                pre_generate_layers: bool = False, distributed_backend: Optional[str] = None,
                                distributed_params_sync_every_iter: int = 10000,
                                distributed_num_buckets: Optional[int] = None,
                                dataloader_offline_num_workers: int = 0, stop_with_bad_loss: bool = True,
                                log_file_name: Optional[str] = None, lstm_dim: int = 512, lstm_depth: int = 1,
                                proposal_mixture_components: int = 10) -> None:
        """PyProb's ``learn_inference_network``, mapped onto
        :func:`ppfast.nn.learn_inference_network` by :func:`learn_options`."""
        options = learn_options(**{k: v for k, v in locals().items() if k not in ("self", "num_traces")})
        _native.BaseModel.learn_inference_network(self, num_traces, **options)  # type: ignore[arg-type]

    @property
    def _inference_network(self) -> Any:  # PyProb's attribute name
        return getattr(self, "inference_network", None)

    def reset_inference_network(self) -> None:
        self.inference_network = None

    def save_inference_network(self, file_name: str) -> None:
        _native.BaseModel.save_inference_network(self, file_name)  # type: ignore[arg-type]

    def load_inference_network(self, file_name: str) -> None:
        _native.BaseModel.load_inference_network(self, file_name)  # type: ignore[arg-type]

    def save_dataset(self, dataset_dir: str, num_traces: int, num_traces_per_file: int, prior_inflation: Any = None,
                     *args: Any, **kwargs: Any) -> None:
        """Writes a ppfast dataset (Arrow shards, not PyProb's shelve files)."""
        _forward_arguments(args, kwargs, "save_dataset")
        _native.BaseModel.save_dataset(self, dataset_dir, num_traces,  # type: ignore[arg-type]
                                       num_traces_per_file=num_traces_per_file, prior_inflation=prior_inflation)

    def parallel(self, num_workers: Optional[int] = None) -> Any:
        raise NotImplementedError("Model.parallel: ppfast runs Python models in one process; compile the model "
                                  "with ppfast.jit or write it in C++ (NativeModel / ShmModel) for parallel runs")


def _enum_name(value: Any) -> str:
    return str(getattr(value, "name", value)).upper()


def learn_options(num_traces_end: float = 1e9, inference_network: Any = None, prior_inflation: Any = None,
                  dataset_dir: Optional[str] = None, dataset_valid_dir: Optional[str] = None,
                  observe_embeddings: Optional[Dict[str, Any]] = None, batch_size: int = 64,
                  valid_size: Optional[int] = None, valid_every: Optional[int] = None, optimizer_type: Any = None,
                  learning_rate_init: float = 0.001, learning_rate_end: float = 1e-6,
                  learning_rate_scheduler_type: Any = None, momentum: float = 0.9, weight_decay: float = 0.0,
                  save_file_name_prefix: Optional[str] = None, save_every_sec: float = 600,
                  pre_generate_layers: bool = False, distributed_backend: Optional[str] = None,
                  distributed_params_sync_every_iter: int = 10000, distributed_num_buckets: Optional[int] = None,
                  dataloader_offline_num_workers: int = 0, stop_with_bad_loss: bool = True,
                  log_file_name: Optional[str] = None, lstm_dim: int = 512, lstm_depth: int = 1,
                  proposal_mixture_components: int = 10) -> Dict[str, Any]:
    """PyProb's training arguments as :func:`ppfast.nn.learn_inference_network`'s."""
    from . import _Device

    out: Dict[str, Any] = dict(batch_size=batch_size, learning_rate=learning_rate_init, weight_decay=weight_decay,
                               lstm_dim=lstm_dim, lstm_depth=lstm_depth,
                               proposal_mixture_components=proposal_mixture_components)
    out["network_type"] = "lstm" if _enum_name(inference_network) == "LSTM" else "feedforward"
    optimizer = _enum_name(optimizer_type) if optimizer_type is not None else "ADAM"
    out["optimizer"] = {"ADAM": "adam", "SGD": "sgd", "ADAM_LARC": "adam_larc", "SGD_LARC": "sgd_larc"}[optimizer]
    schedule = _enum_name(learning_rate_scheduler_type) if learning_rate_scheduler_type is not None else "NONE"
    if schedule != "NONE":
        out["lr_schedule"] = {"POLY1": "poly1", "POLY2": "poly2"}[schedule]
        out["learning_rate_end"] = learning_rate_end
    if num_traces_end != 1e9:
        out["num_traces_end"] = int(num_traces_end)
    if _native._inflation_factor(prior_inflation):
        out["prior_inflation"] = True
    if observe_embeddings:
        out["observe_embeddings"] = observe_embeddings
    if dataset_dir is not None:
        from ..data import TraceDataset

        out["dataset"] = TraceDataset(dataset_dir)
    if valid_size is not None:
        out["valid_size"] = valid_size
    if valid_every is not None:
        out["valid_every"] = valid_every
    if log_file_name is not None:
        out["log_file_name"] = log_file_name
    if save_file_name_prefix is not None:
        out["checkpoint"] = f"{save_file_name_prefix}.network"
    if distributed_backend is not None:
        out["backend"] = distributed_backend
    if _Device.device is not None:
        out["device"] = _Device.device
    unsupported = {"dataset_valid_dir": dataset_valid_dir is not None, "momentum": momentum != 0.9, "save_every_sec": save_every_sec != 600,
                   "distributed_params_sync_every_iter": distributed_params_sync_every_iter != 10000,
                   "distributed_num_buckets": distributed_num_buckets is not None}
    named = [k for k, given in unsupported.items() if given]
    if named:
        raise NotImplementedError(f"learn_inference_network: PyProb's {', '.join(named)} (see the README's "
                                  "porting section for ppfast's equivalents)")
    no_effect = {"pre_generate_layers": pre_generate_layers, "dataloader_offline_num_workers":
                 dataloader_offline_num_workers != 0, "stop_with_bad_loss": not stop_with_bad_loss}
    for k, given in no_effect.items():
        if given:
            warnings.warn(f"learn_inference_network: {k} has no effect in ppfast", UserWarning, stacklevel=3)
    return out


class Model(_PyProbMethods, _native.Model):
    """PyProb's ``Model``: subclass it and write ``forward()`` with ``pyprob.sample`` /
    ``pyprob.observe``."""

    def __init__(self, name: str = "Unnamed PyProb model", address_dict_file_name: Optional[str] = None):
        _native.Model.__init__(self, name, address_dict_file_name)

    def __repr__(self) -> str:
        return f"Model(name:{self.name})"

    def condition(self, criterion: Any, criterion_timeout: float = 1e6) -> Any:
        """PyProb's ConditionalModel: traces for which ``criterion(trace)`` is true."""
        return _Conditional(self, criterion, max_tries=int(criterion_timeout))

    def filter(self, criterion: Any, criterion_timeout: float = 1e6) -> Any:
        return self.condition(criterion, criterion_timeout)


def _conditional_class() -> type:
    from ..conditional import ConditionalModel

    class Conditional(_PyProbMethods, ConditionalModel):
        """PyProb's ConditionalModel with PyProb's method signatures."""

    return Conditional


def _Conditional(base: Any, criterion: Any, max_tries: int) -> Any:
    return _conditional_class()(base, criterion, max_tries=max_tries)


class RemoteModel(_PyProbMethods, _NativeRemote):
    """PyProb's ``RemoteModel(server_address=...)``: a PPX simulator (ppfast's client)."""

    def __init__(self, server_address: str = "tcp://127.0.0.1:5555", before_forward_func: Any = None,
                 after_forward_func: Any = None, name: Optional[str] = None):
        if before_forward_func is not None or after_forward_func is not None:
            raise NotImplementedError("RemoteModel(before_forward_func=, after_forward_func=): ppfast runs "
                                      "simulators from C++ threads, not from a Python forward()")
        _NativeRemote.__init__(self, server_address=server_address, name=name)
