"""Many simulator libraries in one process: each links the core, so any initial-exec TLS in
it would take glibc's small static-TLS reserve at dlopen, and after a handful of libraries
(beside torch's own) loading failed with "cannot allocate memory in static TLS block"."""

import shutil
import subprocess
import sys
import textwrap

import ppfast.examples


def test_forty_simulator_libraries_load_in_one_process(tmp_path):
    source = ppfast.examples.load("gum").path
    copies = []
    for i in range(40):  # distinct files: the loader maps each as its own module
        copies.append(tmp_path / f"gum_{i}.so")
        shutil.copy(source, copies[-1])
    script = textwrap.dedent(f"""
        import torch, ppfast
        paths = {[str(p) for p in copies]!r}
        models = [ppfast.NativeModel(p, threads=1) for p in paths]
        for m in models:
            assert len(m.prior_batch(10, seed=1, progress=False)) == 10
        print("loaded", len(models))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded 40" in out.stdout
