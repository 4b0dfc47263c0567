"""Run under ``mpiexec -n R``: distributed importance sampling on GUM; rank 0 saves the
gathered posterior (values, log-weights, the 'mu' variable) to OUT.npz.

usage: dist_is.py OUT MODEL NUM_TRACES SEED
"""

import sys

import numpy as np

import ppfast
import ppfast.distributed as dist
import ppfast.examples as ex


def main() -> None:
    out, name, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ppfast.set_progress(False)
    model = ex.load(name.split(":", 1)[1], mode="python") if name.startswith("python:") else ex.load(name, threads=1)
    post = model.posterior_results(n, observe={"obs0": 8.0, "obs1": 9.0}, seed=seed, distributed=True)
    w = dist.world()
    if w.rank == 0:
        assert post is not None
        mu = post["mu"]
        np.savez(out, values=np.asarray(post.values), log_weights=post.log_weights, mu=np.asarray(mu.values),
                 index=post.batch.traces["index"], size=w.size)
    else:
        assert post is None, "only rank 0 gets the posterior"
    print(f"rank {w.rank} of {w.size}: done", flush=True)


if __name__ == "__main__":
    main()
