"""Benchmarks of ppfast against PyProb 1.5.0 and other baselines: ``python -m bench --help``."""
