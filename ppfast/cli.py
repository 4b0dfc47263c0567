"""The ``ppfast`` command: ``ppfast demo``, ``ppfast examples``, ``ppfast --cmake-dir``.

The benchmarks belong to the source tree, not to the installed package: ``python -m bench``
in a checkout."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import List, Optional

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import ppfast
    import ppfast.examples
    from ppfast.examples.python_models import GUM

    if args.no_progress:  # otherwise the default stands (PPFAST_PROGRESS=0 turns it off)
        ppfast.set_progress(False)
    observe = {"obs0": 8.0, "obs1": 9.0}
    exact_mean, exact_std = 7.25, math.sqrt(1 / 1.2)
    print("ppfast demo: Gaussian with unknown mean, mu ~ Normal(1, sqrt 5), obs0/obs1 ~ Normal(mu, sqrt 2)")
    print(f"observed {observe}; exact posterior Normal({exact_mean}, {exact_std:.4f})\n")
    rows = []
    for label, model, n in (("embedded C++ simulator", ppfast.examples.load("gum"), args.traces),
                            ("Python model", GUM(), max(args.traces // 50, 1000))):
        model.posterior_results(n, observe=observe, seed=0, progress=False)  # warm up: buffers pooled, pages touched
        t0 = time.perf_counter()
        post = model.posterior_results(n, observe=observe, seed=args.seed)
        dt = time.perf_counter() - t0
        rows.append((label, n, post, n / dt))
    for label, n, post, rate in rows:
        print(f"{label:24s} {n:>10,d} traces  posterior mean {post.mean:7.4f}  stddev {post.stddev:6.4f}  "
              f"ESS {post.effective_sample_size:10.1f}")
    print()
    for label, n, post, rate in rows:
        print(f"throughput: {label}: {rate:,.0f} traces/s (importance sampling)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        print("ppfast bench: the benchmarks are part of the source tree, not of the installed package; "
              "run `python -m bench` in a checkout of ppfast (see bench/README.md)", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="ppfast", description="Fast probabilistic programming for simulators.")
    parser.add_argument("--cmake-dir", action="store_true", help="print the CMake package dir (for -Dppfast_DIR)")
    parser.add_argument("--include-dir", action="store_true", help="print the C/C++ include dir")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="simulate, infer, print the posterior and the throughput")
    demo.add_argument("--traces", type=int, default=1_000_000)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--no-progress", action="store_true")
    sub.add_parser("examples", help="list the example simulators")
    args = parser.parse_args(argv)
    if args.cmake_dir or args.include_dir:
        from ._paths import CMAKE_DIR, INCLUDE_DIR

        print(CMAKE_DIR if args.cmake_dir else INCLUDE_DIR)
        return 0
    if args.command == "demo":
        return _demo(args)
    if args.command == "examples":
        import ppfast.examples

        print("\n".join(ppfast.examples.available()))
        return 0
    parser.print_help()
    return 0
