"""Tau decays on Pythia observed in the calorimeter: does the posterior over the decay
channel group concentrate on the generating one?  For each of N synthetic observations (prior
traces of pythia_tau), importance sampling with K prior samples; prints the confusion matrix
(rows: generating group, columns: posterior-mode group) and the mean posterior mass on the
generating group.  Usage: python -m bench.pythia_channels [N] [K]"""

import sys

import numpy as np

import ppfast
import ppfast.examples
from ppfast.trace import RecordKind

GROUPS = ["pi", "pi+pi0s", "3 prongs", "e", "mu", "other"]


def main(n: int = 100, k: int = 500) -> None:
    model = ppfast.examples.load("pythia_tau")
    truth = model.prior_batch(n, seed=2024)
    rec = truth.records
    observed = np.where(rec["kind"] == RecordKind.OBSERVE)[0]
    confusion = np.zeros((6, 6), int)
    mass = []
    for i, j in enumerate(observed):
        off, size = int(rec["value_offset"][j]), int(rec["value_len"][j])
        grid = np.array(truth.arenas["values"][off:off + size])
        post = model.posterior_results(k, observe={"calorimeter": grid}, seed=i, progress=False)
        channels, w = np.asarray(post.values, dtype=int), np.asarray(post.weights)
        by_group = np.bincount(channels, weights=w, minlength=6)
        generating = int(truth.traces["result"][i])
        confusion[generating, int(np.argmax(by_group))] += 1
        mass.append(by_group[generating] / by_group.sum())
    print(f"{n} observations, importance sampling with {k} prior samples each")
    print("generating \\ posterior mode  " + "  ".join(f"{g:>8}" for g in GROUPS))
    for g in range(6):
        print(f"{GROUPS[g]:>26}  " + "  ".join(f"{c:>8}" for c in confusion[g]))
    print(f"posterior mode = generating group: {np.trace(confusion)}/{n}; "
          f"mean posterior mass on the generating group: {np.mean(mass):.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
