"""``python -m tests.redteam``: runs the red-team probes (pytest -m redteam on this folder)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.exit(pytest.main(["-q", "-m", "redteam", "-p", "no:cacheprovider", str(HERE), *sys.argv[1:]]))
