"""Run under ``mpiexec -n 2``: rank 1's model fails mid-run; both ranks must raise (and
exit non-zero) instead of one of them waiting forever in a collective."""

import sys

import ppfast
import ppfast.distributed as dist
from ppfast.distributions import Normal
from ppfast.errors import ModelError, RankError


class FailsOnRank1(ppfast.Model):
    def forward(self):
        x = ppfast.sample(Normal(0.0, 1.0), name="x")
        if dist.rank() == 1:
            raise RuntimeError("simulator exploded")
        return x


def main() -> None:
    ppfast.set_progress(False)
    try:
        FailsOnRank1().save_dataset(sys.argv[1], 100, traces_per_file=10, seed=1)
    except (ModelError, RankError) as e:
        print(f"rank {dist.rank()}: {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
    sys.exit(0)


if __name__ == "__main__":
    main()
