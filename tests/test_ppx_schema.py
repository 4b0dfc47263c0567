"""The committed Python code in ppfast/ppx/_generated is exactly what flatc makes of
csrc/transport/ppx/ppx.fbs (so nobody edits it by hand or forgets to regenerate it).

Regenerate with::

    flatc --python --gen-onefile -o ppfast/ppx/_generated csrc/transport/ppx/ppx.fbs

(or ``cmake --build <build dir> --target ppfast_ppx_python``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "csrc" / "transport" / "ppx" / "ppx.fbs"
COMMITTED = REPO / "ppfast" / "ppx" / "_generated"
REGENERATE = "flatc --python --gen-onefile -o ppfast/ppx/_generated csrc/transport/ppx/ppx.fbs"


def _recorded_flatc_version() -> str:
    text = (REPO / "ppfast" / "ppx" / "__init__.py").read_text()
    found = re.search(r'GENERATED_WITH_FLATC\s*=\s*"([^"]+)"', text)
    assert found, "ppfast/ppx/__init__.py must record GENERATED_WITH_FLATC"
    return found.group(1)


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def flatc() -> str:
    exe = shutil.which("flatc")
    if exe is None:
        pytest.skip("flatc (FlatBuffers compiler) is not installed: cannot regenerate the PPX Python code")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    version = out.strip().split()[-1]
    recorded = _recorded_flatc_version()
    if version != recorded:
        # Other flatc versions format the same schema differently; comparing would only
        # report the version difference.
        pytest.skip(f"installed flatc {version} differs from {recorded}, which generated the committed code")
    return exe


def test_generated_python_matches_schema(flatc: str, tmp_path: Path) -> None:
    subprocess.run(
        [flatc, "--python", "--gen-onefile", "-o", str(tmp_path), str(SCHEMA)],
        check=True,
        capture_output=True,
    )
    fresh = _files(tmp_path)
    committed = _files(COMMITTED)
    assert fresh, "flatc generated nothing"
    assert sorted(committed) == sorted(fresh), f"file sets differ; regenerate with: {REGENERATE}"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{stale} differ from flatc's output for ppx.fbs; regenerate with: {REGENERATE}"


def test_schema_declares_the_ppx_layout() -> None:
    # A cheap guard that needs no flatc: the union member orders of PPX.md.
    text = SCHEMA.read_text()

    def union_members(name: str) -> list[str]:
        body = re.search(r"union\s+" + name + r"\s*\{([^}]*)\}", text)
        assert body, f"union {name} not found in {SCHEMA.name}"
        return [w.strip() for w in body.group(1).split(",") if w.strip()]

    assert union_members("MessageBody") == [
        "Handshake",
        "HandshakeResult",
        "Run",
        "RunResult",
        "Sample",
        "SampleResult",
        "Observe",
        "ObserveResult",
        "Tag",
        "TagResult",
        "Reset",
    ]
    assert union_members("Distribution") == [
        "Normal",
        "Uniform",
        "Categorical",
        "Poisson",
        "Bernoulli",
        "Beta",
        "Exponential",
        "Gamma",
        "LogNormal",
        "Binomial",
        "Weibull",
    ]
    assert re.search(r"root_type\s+Message\s*;", text)
    assert re.search(r'file_identifier\s+"PPXF"\s*;', text)
