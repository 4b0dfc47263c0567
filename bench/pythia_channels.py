"""Tau decays on Pythia observed in the calorimeter: does the posterior over the decay-channel
group concentrate on the generating one?

For each of N synthetic observations (prior traces of pythia_tau), importance sampling with K
prior samples.  Prints the confusion matrix (rows: generating group, columns: posterior-mode
group), the mean posterior mass on the generating group, the effective sample size per
observation, and the same confusion on merged groups.

The likelihood check says which confusions the calorimeter itself makes: for each observation,
the log-likelihood of the trace that generated it against the best prior sample of every other
group.  A wrong group whose best sample explains the observation at least as well as its own
generating trace cannot be told apart from the generating group on this observation by any
sampler.

Usage: python -m bench.pythia_channels [--n 100] [--k 5000] [--guided NET] [--quick]"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ppfast.examples
from ppfast import InferenceEngine
from ppfast.trace import RecordKind

GROUPS = ["pi", "pi+pi0s", "3 prongs", "e", "mu", "other"]
# One pion, three collinear pions and a charged kaon shower alike (hadronic, no pi0): the
# calorimeter has no tracker and the showers overlap within a voxel.
MERGED = {"hadronic (pi, 3 prongs, other)": [0, 2, 5], "pi+pi0s": [1], "e": [3], "mu": [4]}
CHUNK = 5000


def observations(model, n: int, seed: int):
    truth = model.prior_batch(n, seed=seed, progress=False)
    rec = truth.records
    grids = []
    for j in np.where(rec["kind"] == RecordKind.OBSERVE)[0]:
        off, size = int(rec["value_offset"][j]), int(rec["value_len"][j])
        grids.append(np.array(truth.arenas["values"][off:off + size]))
    return truth, grids


def importance_sampling(model, grid: np.ndarray, k: int, seed: int, engine: InferenceEngine):
    """Per group: log of the summed weights and the best log-likelihood; and the ESS."""
    log_mass = np.full(6, -np.inf)
    best = np.full(6, -np.inf)
    lw_all = []
    for c in range(0, k, CHUNK):
        batch = model.posterior_batch(min(CHUNK, k - c), engine, observe={"calorimeter": grid},
                                      seed=seed * 1000 + c // CHUNK, progress=False)
        group = np.asarray(batch.traces["result"], dtype=int)
        lw, ll = np.asarray(batch.log_weights), np.asarray(batch.traces["log_likelihood"])
        lw_all.append(lw)
        for g in range(6):
            sel = group == g
            if sel.any():
                log_mass[g] = np.logaddexp(log_mass[g], np.logaddexp.reduce(lw[sel]))
                best[g] = max(best[g], ll[sel].max())
    lw = np.concatenate(lw_all)
    w = np.exp(lw - lw.max())
    return log_mass, best, float(w.sum() ** 2 / (w ** 2).sum())


def print_confusion(confusion: np.ndarray, names: list[str]) -> None:
    width = max(len(s) for s in names) + 2
    print(" " * width + "".join(f"{s[:10]:>11}" for s in names))
    for g, row in enumerate(confusion):
        print(f"{names[g]:>{width}}" + "".join(f"{c:>11}" for c in row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="synthetic observations")
    ap.add_argument("--k", type=int, default=5000, help="prior samples per observation")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--guided", metavar="NET", help="guided importance sampling with this inference network "
                    "(bench/pythia_ic.py trains one) instead of prior samples")
    ap.add_argument("--quick", action="store_true", help="10 observations, 2000 samples each")
    args = ap.parse_args()
    if args.quick:
        args.n, args.k = 10, 2000
    model = ppfast.examples.load("pythia_tau")
    engine = InferenceEngine.IMPORTANCE_SAMPLING
    if args.guided:
        model.load_inference_network(args.guided)
        engine = InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
    t = time.perf_counter()
    model.prior_batch(2000, seed=1, progress=False)
    rate = 2000 / (time.perf_counter() - t)
    print(f"pythia_tau with the calorimeter: {rate:.0f} traces/s (prior, embedded, {model.threads} threads)")

    truth, grids = observations(model, args.n, args.seed)
    generating = np.asarray(truth.traces["result"], dtype=int)
    # The generating trace's log-likelihood of its own observation: trace i of the seed again.
    truth_ll = np.array([model.simulate(1, observe={"calorimeter": grid}, seed=args.seed, first=i, progress=False)
                         .traces["log_likelihood"][0] for i, grid in enumerate(grids)])
    confusion = np.zeros((6, 6), int)
    mass, ess, gap, posts, beaten = [], [], [], [], np.zeros((6, 6), int)
    t = time.perf_counter()
    for i, grid in enumerate(grids):
        log_mass, best, e = importance_sampling(model, grid, args.k, args.seed + 1 + i, engine)
        post = np.exp(log_mass - np.logaddexp.reduce(log_mass))
        posts.append(post)
        g = generating[i]
        confusion[g, int(np.argmax(post))] += 1
        mass.append(post[g])
        ess.append(e)
        gap.append(truth_ll[i] - best.max())
        for h in range(6):  # another group's best sample explains the observation as well as the truth
            if h != g and best[h] >= truth_ll[i]:
                beaten[g, h] += 1
    seconds = time.perf_counter() - t
    mass, ess, gap = np.array(mass), np.array(ess), np.array(gap)
    n = args.n
    print(f"{n} observations, {'guided ' if args.guided else ''}importance sampling with {args.k} "
          f"{'proposals from ' + args.guided if args.guided else 'prior samples'} each "
          f"({n * args.k / seconds:.0f} traces/s)")
    print("generating group (rows) x posterior-mode group (columns):")
    print_confusion(confusion, GROUPS)
    print(f"posterior mode = generating group: {np.trace(confusion)}/{n}; "
          f"mean posterior mass on the generating group: {mass.mean():.3f}")
    print(f"ESS per observation: median {np.median(ess):.2f}, mean {ess.mean():.2f}, max {ess.max():.2f}; "
          f"ESS < 2 in {np.sum(ess < 2)}/{n}")
    print(f"log-likelihood of the generating trace minus the best sample's: median {np.median(gap):.1f}, "
          f"positive (the sampler found nothing as good as the truth) in {np.sum(gap > 0)}/{n}")
    print("likelihood check: observations of group (row) where the best sample of group (column) has a "
          "log-likelihood >= the generating trace's:")
    print_confusion(beaten, GROUPS)
    names = list(MERGED)
    of = np.zeros(6, int)
    for m, gs in enumerate(MERGED.values()):
        of[gs] = m
    merged = np.zeros((len(names), len(names)), int)
    merged_mass = []
    for g, post in zip(generating, posts):
        by_merged = np.bincount(of, weights=post, minlength=len(names))
        merged[of[g], int(np.argmax(by_merged))] += 1
        merged_mass.append(by_merged[of[g]])
    print("merged groups, generating (rows) x posterior mode (columns):")
    print_confusion(merged, names)
    print(f"posterior mode = generating merged group: {np.trace(merged)}/{n}; "
          f"mean posterior mass on it: {np.mean(merged_mass):.3f}")


if __name__ == "__main__":
    main()
