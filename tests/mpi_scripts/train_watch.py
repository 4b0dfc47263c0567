"""Run under ``mpiexec -n 2``: data-parallel training with a validation set, a 'plateau'
schedule, early stopping and logs.  Every rank must take the same decisions (rank 0's
validation loss is everyone's) and only rank 0 writes the logs.

usage: train_watch.py DIR -- writes DIR/watch.rank<r>.json
"""

import json
import sys
from pathlib import Path

import torch

import ppfast
import ppfast.distributed as dist
from ppfast.examples.python_models import GUM

SMALL = {"lstm_dim": 16, "observe_embedding_dim": 8, "address_embedding_dim": 4, "proposal_dim": 8}


def main() -> None:
    out = Path(sys.argv[1])
    ppfast.set_progress(False)
    torch.set_num_threads(1)
    r = dist.rank()
    # A learning rate too small to move the network: flat validation losses, so the rate
    # is cut every second validation and training stops after the fourth.
    net = GUM().learn_inference_network(40 * 64, batch_size=32, learning_rate=1e-9, lr_scaling="none",
                                        lr_schedule="plateau", lr_patience=2, lr_decay=0.5, valid_size=50,
                                        valid_every=128, early_stopping=3, log_dir=out / "tb",
                                        log_file_name=out / "train.csv", seed=1, **SMALL)
    (out / f"watch.rank{r}.json").write_text(json.dumps({
        "traces_trained": net.traces_trained, "valid": net.valid_history, "lr": net.lr_history}))


if __name__ == "__main__":
    main()
