"""Proposal families: how a head's raw outputs become a proposal q(x) for a prior kind.

Each family works on flat vectors (one row per sample site of any address): it turns
the prior's parameters into standardizing constants (numpy, float64, :func:`prepare`),
evaluates log q(x) in torch for the training loss (:func:`log_q`) and encodes the
proposal in the C++ core's distribution layout for guided inference (:func:`encode`),
where the values are drawn and log q is evaluated again, in float64.

| prior | proposal |
| --- | --- |
| Normal | mixture of K Normals, standardized by the prior mean / stddev |
| Uniform, TruncatedNormal | mixture of K truncated Normals on the prior's support |
| Categorical | Categorical (logits added to the prior's) |
| Poisson | mixture of K Poissons (rates scaled from the prior's) |
| Binomial | mixture of K Binomials with the prior's total count |
| Bernoulli | Bernoulli (logit added to the prior's) |
| Beta | mixture of K Betas |
| Exponential, Gamma, LogNormal, Weibull | mixture of K LogNormals, standardized by a moment-matched LogNormal |

A head starts near the prior, so an untrained network proposes roughly the prior.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BERNOULLI",
    "BETA",
    "BINOMIAL",
    "CATEGORICAL",
    "FAMILY_NAMES",
    "FAMILY_OF_KIND",
    "LOGNORMAL",
    "NONE",
    "NORMAL",
    "POISSON",
    "TRUNCATED",
    "encode",
    "init_bias",
    "log_q",
    "prepare",
    "standardize",
    "width",
]

NONE, NORMAL, TRUNCATED, CATEGORICAL, POISSON, BERNOULLI, BINOMIAL, BETA, LOGNORMAL = range(9)
FAMILY_NAMES = ["prior", "normal-mixture", "truncated-normal-mixture", "categorical", "poisson-mixture",
                "bernoulli", "binomial-mixture", "beta-mixture", "lognormal-mixture"]

# Distribution kind code (C++ DistKind) -> family.  Mixture priors (13) are not network steps.
FAMILY_OF_KIND = np.array([NONE, NORMAL, TRUNCATED, CATEGORICAL, POISSON, BERNOULLI, BETA, LOGNORMAL, LOGNORMAL,
                           LOGNORMAL, BINOMIAL, LOGNORMAL, TRUNCATED, NONE], dtype=np.int8)

_NORMAL, _UNIFORM, _CATEGORICAL, _POISSON, _BERNOULLI, _BETA, _EXPONENTIAL, _GAMMA, _LOGNORMAL, _BINOMIAL, \
    _WEIBULL, _TRUNCATED = range(1, 13)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_P_EDGE = 1e-9  # Bernoulli / Binomial proposals stay inside (0, 1) where the prior does


def width(family: int, components: int) -> int:
    """Head outputs a family needs (Categorical: its number of categories, set elsewhere)."""
    k = components
    return {NORMAL: 3 * k, TRUNCATED: 3 * k, POISSON: 2 * k, BERNOULLI: 1, BINOMIAL: 2 * k, BETA: 3 * k,
            LOGNORMAL: 3 * k, CATEGORICAL: 0}.get(family, 0)


def init_bias(family: int, components: int, width_: int) -> np.ndarray:
    """Head bias that makes the untrained proposal close to the prior: mixture
    components spread over the prior's bulk, unit-ish scales, equal weights."""
    k = components
    b = np.zeros(width_, dtype=np.float32)
    spread = np.linspace(-1.5, 1.5, k) if k > 1 else np.zeros(1)
    if family in (NORMAL, LOGNORMAL, TRUNCATED):
        b[k:2 * k] = spread * (0.5 if family == TRUNCATED else 1.0)
        b[2 * k:3 * k] = math.log(math.expm1(0.6))  # softplus^-1: component scale 0.6 (standardized)
    elif family in (POISSON, BINOMIAL):
        b[k:2 * k] = spread * 0.3
    elif family == BETA:
        b[k:2 * k] = spread * 0.3
        b[2 * k:3 * k] = -spread * 0.3
    return b


def _softclamp(x: torch.Tensor, limit: float) -> torch.Tensor:
    return limit * torch.tanh(x / limit)


def _softclamp_np(x: np.ndarray, limit: float) -> np.ndarray:
    return limit * np.tanh(x / limit)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _P_EDGE, 1 - _P_EDGE)
    return np.log(p) - np.log1p(-p)


def _lgamma(x: np.ndarray) -> np.ndarray:
    return torch.lgamma(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def _lognormal_match(kind: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) of log x for the positive-support priors: exact for LogNormal,
    moment-matched otherwise."""
    c = np.zeros(len(kind))
    s2 = np.ones(len(kind))
    m = kind == _LOGNORMAL
    c[m], s2[m] = p[m, 0], p[m, 1] ** 2
    m = kind == _EXPONENTIAL
    s2[m] = math.log(2.0)
    c[m] = -np.log(p[m, 0]) - 0.5 * s2[m]
    m = kind == _GAMMA
    s2[m] = np.log1p(1.0 / p[m, 0])
    c[m] = np.log(p[m, 0] / p[m, 1]) - 0.5 * s2[m]
    m = kind == _WEIBULL
    if m.any():
        k = p[m, 1]
        l1, l2 = _lgamma(1 + 1 / k), _lgamma(1 + 2 / k)
        s2[m] = np.maximum(l2 - 2 * l1, 1e-12)
        c[m] = np.log(p[m, 0]) + l1 - 0.5 * s2[m]
    return c, np.sqrt(s2)


def prepare(family: int, kind: np.ndarray, p: np.ndarray, x: np.ndarray | None = None,
            log_p: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Standardizing constants (and, with x, the standardized values) of one family's
    rows.  kind: prior kind codes; p: [n, 4] first prior parameters (float64); x: values;
    log_p: the prior log-probabilities of x (recorded)."""
    out: dict[str, np.ndarray] = {}
    if family == NORMAL:
        out["c"], out["s"] = p[:, 0], p[:, 1]
    elif family == TRUNCATED:
        uni = kind == _UNIFORM
        lo = np.where(uni, p[:, 0], p[:, 2])
        hi = np.where(uni, p[:, 1], p[:, 3])
        c = np.where(uni, 0.5 * (p[:, 0] + p[:, 1]), p[:, 0])
        s = np.where(uni, 0.5 * (p[:, 1] - p[:, 0]), p[:, 1])
        out.update(c=c, s=s, lo=lo, hi=hi, za=(lo - c) / s, zb=(hi - c) / s)
    elif family == LOGNORMAL:
        out["c"], out["s"] = _lognormal_match(kind, p)
    elif family == BETA:
        out["a"], out["b"] = p[:, 0], p[:, 1]
    elif family == POISSON:
        out["rate"] = p[:, 0]
    elif family == BINOMIAL:
        out["n"], out["p"] = p[:, 0], p[:, 1]
        out["edge"] = ((p[:, 1] <= 0) | (p[:, 1] >= 1)).astype(np.float64)
        out["l0"] = _logit(p[:, 1])
    elif family == BERNOULLI:
        out["p"] = p[:, 0]
        out["edge"] = ((p[:, 0] <= 0) | (p[:, 0] >= 1)).astype(np.float64)
        out["l0"] = _logit(p[:, 0])
    if x is not None:
        if family in (NORMAL, TRUNCATED):
            out["z"] = (x - out["c"]) / out["s"]
            out["jac"] = -np.log(out["s"])
        elif family == LOGNORMAL:
            y = np.log(np.maximum(x, 1e-300))
            out["z"] = (y - out["c"]) / out["s"]
            out["jac"] = -np.log(out["s"]) - y
        elif family == BETA:
            xc = np.clip(x, 1e-300, 1 - 1e-16)
            out["lx"], out["l1x"] = np.log(xc), np.log1p(-xc)
        elif family in (POISSON, BINOMIAL, BERNOULLI, CATEGORICAL):
            out["x"] = x
            if log_p is not None:
                out["base"] = log_p
    return out


def standardize(kind: np.ndarray, p: np.ndarray, plen: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A previous site's value on a scale of about one, for the value embedding."""
    z = np.zeros(len(kind))
    fam = FAMILY_OF_KIND[np.minimum(kind, 13)]
    for f in (NORMAL, TRUNCATED, LOGNORMAL):
        m = fam == f
        if m.any():
            z[m] = prepare(f, kind[m], p[m], x[m])["z"]
    m = fam == POISSON
    z[m] = (x[m] - p[m, 0]) / np.sqrt(p[m, 0] + 1e-3)
    m = fam == BINOMIAL
    z[m] = (x[m] - p[m, 0] * p[m, 1]) / np.sqrt(p[m, 0] * p[m, 1] * (1 - p[m, 1]) + 1e-3)
    m = (fam == BERNOULLI) | (fam == BETA)
    z[m] = 2 * x[m] - 1
    m = fam == CATEGORICAL
    z[m] = 2 * x[m] / np.maximum(plen[m] - 1, 1) - 1
    return np.clip(np.nan_to_num(z, nan=0.0, posinf=10.0, neginf=-10.0), -10.0, 10.0)


# --------------------------------------------------------------------------- torch (training)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(d)) for d <= 0, with both branches kept finite (no NaN gradients)."""
    near = d > -0.6931471805599453
    a = torch.log((-torch.expm1(torch.where(near, d, torch.full_like(d, -1.0)))).clamp_min(1e-38))
    b = torch.log1p(-torch.exp(torch.where(near, torch.full_like(d, -1.0), d)))
    return torch.where(near, a, b)


def _log_normal_mass(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """log(Phi(beta) - Phi(alpha)), alpha < beta, stable in both tails."""
    flip = alpha > 0
    a = torch.where(flip, -beta, alpha)
    b = torch.where(flip, -alpha, beta)
    lb = torch.special.log_ndtr(b)
    la = torch.special.log_ndtr(a)
    return lb + _log1mexp(torch.clamp(la - lb, max=0.0))


def _normal_mix(o: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logw = torch.log_softmax(o[:, :k], dim=1)
    u = _softclamp(o[:, k:2 * k], 20.0)
    r = F.softplus(o[:, 2 * k:3 * k]) + 1e-3
    return logw, u, r


def log_q(family: int, o: torch.Tensor, prep: dict[str, torch.Tensor], k: int,
          cat_logp: torch.Tensor | None = None) -> torch.Tensor:
    """log q(x) per row; o: [n, D] head outputs (float32); prep: :func:`prepare` as tensors."""
    if family in (NORMAL, LOGNORMAL):
        logw, u, r = _normal_mix(o, k)
        z = prep["z"][:, None]
        lp = -0.5 * ((z - u) / r) ** 2 - torch.log(r) - _LOG_SQRT_2PI
        return torch.logsumexp(logw + lp, dim=1) + prep["jac"]
    if family == TRUNCATED:
        logw, u, r = _normal_mix(o, k)
        z = prep["z"][:, None]
        lp = -0.5 * ((z - u) / r) ** 2 - torch.log(r) - _LOG_SQRT_2PI
        lp = lp - _log_normal_mass((prep["za"][:, None] - u) / r, (prep["zb"][:, None] - u) / r)
        return torch.logsumexp(logw + lp, dim=1) + prep["jac"]
    if family == BETA:
        logw = torch.log_softmax(o[:, :k], dim=1)
        a = prep["a"][:, None] * torch.exp(_softclamp(o[:, k:2 * k], 5.0))
        b = prep["b"][:, None] * torch.exp(_softclamp(o[:, 2 * k:3 * k], 5.0))
        lp = (a - 1) * prep["lx"][:, None] + (b - 1) * prep["l1x"][:, None] - (
            torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b))
        return torch.logsumexp(logw + lp, dim=1)
    if family == POISSON:
        logw = torch.log_softmax(o[:, :k], dim=1)
        v = _softclamp(o[:, k:2 * k], 5.0)
        rel = prep["x"][:, None] * v - prep["rate"][:, None] * torch.expm1(v)
        return torch.logsumexp(logw + rel, dim=1) + prep["base"]
    if family == BINOMIAL:
        logw = torch.log_softmax(o[:, :k], dim=1)
        l0 = prep["l0"][:, None]
        v = _softclamp(o[:, k:2 * k], 10.0) * (1 - prep["edge"][:, None])
        x, n = prep["x"][:, None], prep["n"][:, None]
        rel = x * (F.logsigmoid(l0 + v) - F.logsigmoid(l0)) + (n - x) * (F.logsigmoid(-l0 - v) - F.logsigmoid(-l0))
        return torch.logsumexp(logw + rel, dim=1) + prep["base"]
    if family == BERNOULLI:
        logit = prep["l0"] + _softclamp(o[:, 0], 15.0)
        x = prep["x"]
        lq = x * F.logsigmoid(logit) + (1 - x) * F.logsigmoid(-logit)
        return lq * (1 - prep["edge"])
    if family == CATEGORICAL:
        assert cat_logp is not None
        kmax = cat_logp.shape[1]
        logits = cat_logp + _softclamp(o[:, :kmax], 15.0)
        return torch.log_softmax(logits, dim=1).gather(1, prep["x"].long()[:, None])[:, 0]
    raise ValueError(f"no proposal family {family}")


# --------------------------------------------------------------------------- encoding (inference)


def _mixture(logw: np.ndarray, comp_kind: int, comps: np.ndarray) -> np.ndarray:
    """Rows [K, w_1..w_K, (kind, nparams, params...) x K] of the core's Mixture layout."""
    n, k, m = comps.shape
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    head = np.empty((n, k, 2))
    head[:, :, 0], head[:, :, 1] = comp_kind, m
    return np.concatenate([np.full((n, 1), float(k)), w, np.concatenate([head, comps], axis=2).reshape(n, -1)],
                          axis=1)


def _log_softmax_np(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _softplus_np(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def encode(family: int, o: np.ndarray, prep: dict[str, np.ndarray], k: int,
           cat_logp: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """(kind code, parameter rows) of the proposals of one family's rows, float64.
    Rows have one length per family, except Categorical (padded with zeros past k)."""
    o = o.astype(np.float64)
    if family in (NORMAL, TRUNCATED, LOGNORMAL):
        logw = _log_softmax_np(o[:, :k])
        u = _softclamp_np(o[:, k:2 * k], 20.0)
        r = _softplus_np(o[:, 2 * k:3 * k]) + 1e-3
        c, s = prep["c"][:, None], prep["s"][:, None]
        mu, sd = c + s * u, s * r
        if family == NORMAL:
            return 13, _mixture(logw, 1, np.stack([mu, sd], axis=2))
        if family == LOGNORMAL:
            return 13, _mixture(logw, 9, np.stack([mu, sd], axis=2))
        lo = np.broadcast_to(prep["lo"][:, None], mu.shape)
        hi = np.broadcast_to(prep["hi"][:, None], mu.shape)
        return 13, _mixture(logw, 12, np.stack([mu, sd, lo, hi], axis=2))
    if family == BETA:
        logw = _log_softmax_np(o[:, :k])
        a = prep["a"][:, None] * np.exp(_softclamp_np(o[:, k:2 * k], 5.0))
        b = prep["b"][:, None] * np.exp(_softclamp_np(o[:, 2 * k:3 * k], 5.0))
        return 13, _mixture(logw, 6, np.stack([a, b], axis=2))
    if family == POISSON:
        logw = _log_softmax_np(o[:, :k])
        rate = prep["rate"][:, None] * np.exp(_softclamp_np(o[:, k:2 * k], 5.0))
        return 13, _mixture(logw, 4, rate[:, :, None])
    if family == BINOMIAL:
        logw = _log_softmax_np(o[:, :k])
        v = _softclamp_np(o[:, k:2 * k], 10.0)
        p = np.clip(_sigmoid_np(prep["l0"][:, None] + v), _P_EDGE, 1 - _P_EDGE)
        p = np.where(prep["edge"][:, None] > 0, prep["p"][:, None], p)
        n = np.broadcast_to(prep["n"][:, None], p.shape)
        return 13, _mixture(logw, 10, np.stack([n, p], axis=2))
    if family == BERNOULLI:
        p = np.clip(_sigmoid_np(prep["l0"] + _softclamp_np(o[:, 0], 15.0)), _P_EDGE, 1 - _P_EDGE)
        p = np.where(prep["edge"] > 0, prep["p"], p)
        return 5, p[:, None]
    if family == CATEGORICAL:
        assert cat_logp is not None
        kmax = cat_logp.shape[1]
        logits = cat_logp + _softclamp_np(o[:, :kmax], 15.0)
        with np.errstate(invalid="ignore"):
            probs = np.exp(_log_softmax_np(logits))
        probs /= probs.sum(axis=1, keepdims=True)
        return 3, np.where(np.isfinite(cat_logp), probs, 0.0)
    raise ValueError(f"no proposal family {family}")
