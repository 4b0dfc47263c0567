"""Red-team probes: hostile peers, simulators and files.

Every test under this folder is marked ``redteam`` (see conftest.py), runs under a
per-test time limit and must leave no child process behind. Run them alone with

    python -m tests.redteam [pytest args]

They also run in the normal test suite.
"""
