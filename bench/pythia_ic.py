"""Inference compilation on Pythia tau decays: are guided importance sampling's credible
intervals for the tau momentum calibrated?

Trains an inference network on pythia_tau (3-D CNN embedding of the calorimeter) for a time
budget, saves it, then for N synthetic observations (prior traces, a seed never trained on)
runs guided importance sampling with K traces each, takes the central 68% and 95% intervals
of ``tau/momentum`` from the weighted posterior and counts how often the true momentum falls
inside.  Prior importance sampling with the same K gives the ESS to compare.

The network proposes at a few addresses only (``propose_addresses``, ``--propose``): the
momentum and the channel pick; Pythia's other draws come from their prior.

Usage: python -m bench.pythia_ic [--minutes 25] [--net pythia_tau_net.pt] [--propose PART ...]
[--n 100] [--k 500] [--quick]; an existing --net file is loaded and trained no further unless
--train."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import ppfast.examples
from ppfast import InferenceEngine
from bench.pythia_channels import observations

EMBEDDING = {"calorimeter": {"embedding": "cnn3d", "reshape": [1, 20, 35, 35], "downsample": 2,
                             "channels": [8, 16], "dim": 128}}
# The network proposes the momentum only: Pythia's ~640 draws per decay (about 500 of them
# in one accept/reject loop) come from their prior, without a network step each.  Proposing
# them too needs a network trained far longer than a CPU allows, and a poorly trained
# proposal over hundreds of draws multiplies into weights of ESS ~1.
NETWORK = dict(network_type="feedforward", lstm_dim=64, observe_embedding_dim=64, address_embedding_dim=16,
               proposal_dim=16, proposal_mixture_components=3)
# The momentum, and the draws at the site where TauDecays picks the decay channel (Pythia's
# inlined pickChannel(): the tenth draw there picks it); one head per instance.
PROPOSE = ["tau/momentum", "Pythia8::TauDecays::createChildren(Pythia8::HelicityParticle)+0x2e9"]
LEVELS = (0.68, 0.95)


def train(model, path: Path, minutes: float, chunk: int, batch_size: int, propose: list[str]) -> None:
    net = model.load_inference_network(path) if path.exists() else None
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 60 * minutes:
        t = time.perf_counter()
        if net is None:
            net = model.learn_inference_network(chunk, new_network=True, batch_size=batch_size,
                                                observe_embeddings=EMBEDDING, learning_rate=1e-3, seed=7,
                                                progress=False, propose_addresses=propose, **NETWORK)
        else:
            net = model.learn_inference_network(chunk, batch_size=batch_size, seed=7 + done // chunk, progress=False)
        done += chunk
        loss = np.mean([h[1] for h in net.history[-max(1, chunk // batch_size):]])
        print(f"  {done} traces, {chunk / (time.perf_counter() - t):.0f} traces/s, loss {loss:.2f}", flush=True)
        model.save_inference_network(path)
    print(f"trained {done} traces in {(time.perf_counter() - t0) / 60:.1f} min; network in {path}")


def weighted_interval(values: np.ndarray, log_weights: np.ndarray, level: float) -> tuple[float, float]:
    order = np.argsort(values)
    v, w = values[order], np.exp(log_weights[order] - log_weights.max())
    cdf = np.cumsum(w) / w.sum()
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return float(v[np.searchsorted(cdf, lo)]), float(v[min(np.searchsorted(cdf, hi), len(v) - 1)])


def ess(log_weights: np.ndarray) -> float:
    w = np.exp(log_weights - log_weights.max())
    return float(w.sum() ** 2 / (w ** 2).sum())


def binomial_bounds(n: int, p: float, sd: float = 2.5) -> tuple[int, int]:
    half = sd * math.sqrt(n * p * (1 - p))
    return max(0, math.ceil(n * p - half)), min(n, math.floor(n * p + half))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="pythia_tau_net.pt")
    ap.add_argument("--train", action="store_true", help="train an existing --net further")
    ap.add_argument("--minutes", type=float, default=25.0, help="training time budget")
    ap.add_argument("--chunk", type=int, default=1280, help="traces per training call (between reports)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--propose", action="append", metavar="PART",
                    help=f"the network proposes at addresses containing PART (repeat; default {PROPOSE})")
    ap.add_argument("--n", type=int, default=100, help="synthetic observations")
    ap.add_argument("--k", type=int, default=500, help="traces per observation")
    ap.add_argument("--seed", type=int, default=31337)
    ap.add_argument("--threads", type=int, default=16,
                    help="worker threads: Pythia runs one execution per thread, so this many guided executions "
                         "share each network step")
    ap.add_argument("--quick", action="store_true", help="1 minute of training, 10 observations, 200 traces each")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.chunk, args.n, args.k = 1.0, 256, 10, 100
    path = Path(args.net)
    model = ppfast.examples.load("pythia_tau", threads=args.threads)
    if args.train or not path.exists():
        train(model, path, args.minutes, args.chunk, args.batch_size, args.propose or PROPOSE)
    else:
        model.load_inference_network(path)
        print(f"loaded {path}")

    truth, grids = observations(model, args.n, args.seed)
    momentum = truth.values_of("momentum")
    inside = {lv: [0, 0] for lv in LEVELS}  # guided, prior
    ess_guided, ess_prior, widths = [], [], []
    t_guided = t_prior = 0.0
    for i, grid in enumerate(grids):
        observe = {"calorimeter": grid}
        for e, engine in enumerate((InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK,
                                    InferenceEngine.IMPORTANCE_SAMPLING)):
            t = time.perf_counter()
            batch = model.posterior_batch(args.k, engine, observe=observe, seed=args.seed + 1 + i, progress=False)
            if e == 0:
                t_guided += time.perf_counter() - t
            else:
                t_prior += time.perf_counter() - t
            p, lw = batch.values_of("momentum"), np.asarray(batch.log_weights)
            ok = np.isfinite(lw)
            p, lw = p[ok], lw[ok]
            (ess_guided if e == 0 else ess_prior).append(ess(lw))
            for lv in LEVELS:
                lo, hi = weighted_interval(p, lw, lv)
                inside[lv][e] += int(lo <= momentum[i] <= hi)
                if e == 0 and lv == 0.68:
                    widths.append(hi - lo)
    n = args.n
    print(f"{n} observations, {args.k} traces each: guided {n * args.k / t_guided:.0f} traces/s, "
          f"prior IS {n * args.k / t_prior:.0f} traces/s")
    for lv in LEVELS:
        lo, hi = binomial_bounds(n, lv)
        g, p = inside[lv]
        print(f"central {lv:.0%} interval of tau/momentum covers the truth: guided IS {g}/{n}, prior IS {p}/{n} "
              f"(nominal {n * lv:.0f}, binomial 2.5 s.d. bounds [{lo}, {hi}]: guided "
              f"{'within' if lo <= g <= hi else 'OUTSIDE'})")
    eg, ep = np.array(ess_guided), np.array(ess_prior)
    print(f"ESS with {args.k} traces: guided median {np.median(eg):.1f} (mean {eg.mean():.1f}), "
          f"prior IS median {np.median(ep):.1f} (mean {ep.mean():.1f}); guided 68% interval width: median "
          f"{np.median(widths):.1f} GeV (prior: 60 GeV range)")


if __name__ == "__main__":
    main()
