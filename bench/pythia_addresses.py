"""Call-stack addresses of Pythia's draws: distinct addresses and trace types in 10k events of
pythia_tau and pythia_z, and the first lines of ``address_report`` (Pythia's function names).

Usage: python -m bench.pythia_addresses [--events 10000] [--lines 8]"""

from __future__ import annotations

import argparse

import numpy as np

import ppfast.examples
from ppfast.diagnostics import address_report
from ppfast.trace import FLAG_CONTROL, RecordKind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--lines", type=int, default=8, help="address_report lines shown per model")
    args = ap.parse_args()
    for name in ("pythia_tau", "pythia_z"):
        model = ppfast.examples.load(name)
        batch = model.prior_batch(args.events, seed=17, progress=False)
        rec = batch.records
        draws = (rec["kind"] == RecordKind.SAMPLE) & ((rec["flags"] & FLAG_CONTROL) != 0)
        print(f"{name}: {args.events} events, {draws.sum() / len(batch):.1f} draws/event, "
              f"{len(np.unique(rec['address'][draws]))} distinct addresses, "
              f"{len(np.unique(batch.traces['trace_type']))} trace types")
        lines = str(address_report(batch)).splitlines()
        print("\n".join(lines[:args.lines + 1]))
        print()


if __name__ == "__main__":
    main()
