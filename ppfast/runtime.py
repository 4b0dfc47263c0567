"""Run-time helpers shared by every layer: defaults, seeds, argument checks, observation
maps and progress bars.

This module sits below ``model.py`` (it imports only ``primitives``, ``trace`` and ``errors``, lazily), so inference engines, datasets and training import it without a cycle.
Each check names the argument and says what was expected and what came.
"""

from __future__ import annotations

import difflib
import math
import numbers
import warnings
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np

from ._progress import Progress, set_progress


__all__ = [
    "MAX_TRACES",
    "MAX_THREADS",
    "ObservationMap",
    "Progress",
    "check_count",
    "check_num_traces",
    "check_on_error",
    "check_seed",
    "check_threads",
    "next_seed",
    "observation_map",
    "set_progress",
    "set_random_seed",
    "warn_unused_observations",
]

# Trace indices are 64-bit, but no run gets near 2^48 traces (a petabyte of records);
# anything above is a typo, and a clear error beats an allocation failure.
MAX_TRACES = 2**48
MAX_THREADS = 4096


class Config:
    """Process-wide defaults (``set_random_seed``; progress bars: ``ppfast._progress``)."""

    seeds = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Makes runs without an explicit ``seed=`` and standalone ``Distribution.sample()``
    reproducible."""
    Config.seeds = np.random.default_rng(check_seed(seed, "seed"))


def check_count(value: Any, name: str, minimum: int = 0, maximum: int = MAX_TRACES) -> int:
    """An integer count in [minimum, maximum], or a TypeError / ValueError naming ``name``.
    Floats are accepted only when integral (``1e4``); bools and strings never."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float, np.floating)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not isinstance(value, numbers.Integral):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    n = int(value)
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if n > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return n


def check_num_traces(num_traces: Any, name: str = "num_traces") -> int:
    return check_count(num_traces, name)


def check_threads(threads: Any, name: str = "threads") -> Optional[int]:
    """None (the default: one per core) or a thread count in [1, MAX_THREADS]."""
    return None if threads is None else check_count(threads, name, 1, MAX_THREADS)


def check_seed(seed: Any, name: str = "seed") -> Optional[int]:
    """None or an int in [0, 2^64)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int in [0, 2**64), got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {seed!r}")
    return int(seed)


def next_seed(seed: Any) -> int:
    """``seed`` checked, or the next seed of the process-wide generator."""
    s = check_seed(seed)
    return s if s is not None else int(Config.seeds.integers(0, 2**63 - 1))


def check_on_error(on_error: Any) -> str:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


class ObservationMap(dict):
    """{name id: flat float64 array}, with the observed values' shapes (``shapes``) and
    names (``names``) kept for shape checks and warnings."""

    shapes: Dict[int, Tuple[int, ...]]
    names: Dict[int, str]
    used: set  # names read by factor(log_prob_func=, name=), which records no name


def observation_map(observe: Optional[Dict[str, Any]]) -> ObservationMap:
    """{name: value} -> {name id: float64 array}."""
    from .primitives import name_id

    if observe is not None and not isinstance(observe, dict):
        raise TypeError(f"observe must be a dict {{name: value}}, got {type(observe).__name__}")
    out = ObservationMap()
    out.shapes, out.names, out.used = {}, {}, set()
    for k, v in (observe or {}).items():
        if not isinstance(k, str):
            raise TypeError(f"observe: names must be strings, got {k!r}")
        if v is None:
            raise ValueError(f"observe={{{k!r}: None}}: every observed name needs a value")
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        arr = np.asarray(v, dtype=np.float64)
        flat = np.ascontiguousarray(arr).reshape(-1)
        if not np.all(np.isfinite(flat)):
            raise ValueError(f"observe={{{k!r}: ...}}: value must be finite, got {v!r}")
        i = name_id(k)
        out[i] = flat
        out.shapes[i] = arr.shape
        out.names[i] = k
    return out


def check_observed_shape(site_shape: Tuple[int, ...], value_shape: Tuple[int, ...], what: str) -> None:
    """A tensor site takes an observed value of its own shape (or one that broadcasts to it
    with the same number of elements, such as (1, 3) at a (3,) site)."""
    if value_shape == site_shape:
        return
    try:
        same = np.broadcast_shapes(value_shape, site_shape) == site_shape and \
            math.prod(value_shape) == math.prod(site_shape)
    except ValueError:
        same = False
    if not same:
        from .errors import SupportError

        raise SupportError(f"{what}: observed value has shape {value_shape}, the site has shape {site_shape}")


def warn_unused_observations(observations: ObservationMap, name_column: Any, stacklevel: int = 3) -> None:
    """Warns about names in observe={...} that no record of the run carries (a typo or a
    name the model never uses), suggesting the nearest names it does use.  ``name_column``:
    the records' name ids, as one array or a list of chunks (scanned in turn until every
    name is found, so a run's chunks are not joined)."""
    chunks = name_column if isinstance(name_column, list) else [name_column]
    if not observations or not any(len(c) for c in chunks):
        return
    used = getattr(observations, "used", ())
    unused = [i for i in observations if i not in used]
    for chunk in chunks:
        if not unused:
            return
        unused = [i for i in unused if not np.any(chunk == i)]
    if not unused:
        return
    name_column = next(c for c in chunks if len(c))
    from .trace import address_name

    known = [address_name(int(i)) for i in np.unique(name_column[:1 << 16]) if i]
    for i in unused:
        label = observations.names.get(i, address_name(i))
        close = difflib.get_close_matches(label, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else (f"; names in the model: {', '.join(sorted(known)[:10])}"
                                                              if known else "")
        warnings.warn(f"observe={{{label!r}: ...}}: no sample or observe of the model is named {label!r}{hint}",
                      UserWarning, stacklevel=stacklevel)


def reject_unknown(where: str, options: Dict[str, Any], known: Iterable[str] = ()) -> None:
    """TypeError naming keyword arguments that ``where`` does not take."""
    unknown = sorted(k for k in options if k not in set(known))
    if unknown:
        raise TypeError(f"{where} got unexpected keyword argument(s): {', '.join(unknown)}")

