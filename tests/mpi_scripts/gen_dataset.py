"""Run under ``mpiexec -n R``: every rank writes its shards of one dataset.

usage: gen_dataset.py DIR MODEL NUM_TRACES TRACES_PER_FILE SEED
MODEL: an embedded example ('gum', 'tau_decay', ...) or 'python:<name>' for a Python one.
"""

import sys

import ppfast
import ppfast.distributed as dist
import ppfast.examples as ex


def load(name: str):
    if name.startswith("python:"):
        return ex.load(name.split(":", 1)[1], mode="python")
    return ex.load(name, threads=1)


def main() -> None:
    out, name, n, per_file, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    ppfast.set_progress(False)
    w = dist.world()
    assert w.size == int(sys.argv[6]) if len(sys.argv) > 6 else True, f"world size {w.size}"
    model = load(name)
    path = model.save_dataset(out, n, traces_per_file=per_file, seed=seed)
    print(f"rank {w.rank} of {w.size}: wrote {path}", flush=True)


if __name__ == "__main__":
    main()
