"""Ctrl-C during a run: it takes effect at once (between traces, or at the simulator's
next draw), the exception carries the finished traces as ``partial``, and the model
stays usable."""

import _thread
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import ppfast
import ppfast.examples
from ppfast._paths import INCLUDE_DIR, NATIVE_ROOT

ENDLESS = """
    #include <ppfast/ppfast.hpp>
    // Never returns on its own: only the recorder stopping a draw ends a trace.
    static double endless() {
      for (;;) {
        double u = ppfast::sample(ppfast::Uniform(0.0, 1.0), "u", nullptr, true, true);
        if (u > 2.0) return u;
      }
    }
    PPFAST_MODEL(endless, endless)
"""


def build_library(tmp_path, source: str):
    """A simulator library compiled straight against the installed headers and libppfast.a."""
    src, lib = tmp_path / "sim.cpp", tmp_path / "sim.so"
    src.write_text(textwrap.dedent(source))
    subprocess.run(["g++", "-std=c++17", "-O1", "-shared", "-fPIC", f"-I{INCLUDE_DIR}", str(src),
                    str(NATIVE_ROOT / "lib" / "libppfast.a"), "-o", str(lib), "-pthread"], check=True)
    return lib


def interrupted_run(run, after: float = 0.3):
    """Runs ``run()`` with a Ctrl-C ``after`` seconds in; returns the KeyboardInterrupt."""
    timer = threading.Timer(after, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            run()
    finally:
        timer.cancel()
    return info.value


def assert_finished_traces(partial, reference_model, seed):
    assert partial is not None and len(partial) > 0
    assert len(partial.failed) == 0
    index = partial.traces["index"]
    assert len(np.unique(index)) == len(index)
    # Each kept trace is the one an uninterrupted run gives for its index.
    for i in (0, len(index) // 2, len(index) - 1):
        again = reference_model.simulate(1, seed=seed, first=int(index[i]))
        assert again.results[0] == partial.results[i]


def test_ctrl_c_stops_an_embedded_run_and_keeps_finished_traces():
    model = ppfast.examples.load("gum", threads=2)
    err = interrupted_run(lambda: model.prior_batch(10**9, seed=3))
    assert_finished_traces(err.partial, model, 3)
    assert len(err.partial) < 10**9
    after = model.prior_batch(5000, seed=4)  # still usable, same traces as ever
    np.testing.assert_array_equal(after.results, ppfast.examples.load("gum", threads=1).prior_batch(5000, seed=4).results)


def test_ctrl_c_stops_a_python_model_and_keeps_finished_traces(gum_python):
    err = interrupted_run(lambda: gum_python.prior_batch(10**8, seed=5))
    assert_finished_traces(err.partial, gum_python, 5)
    assert len(gum_python.prior_batch(100, seed=1)) == 100


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_ctrl_c_stops_an_endless_embedded_simulator(tmp_path):
    lib = build_library(tmp_path, ENDLESS)
    # In a child interpreter: before the fix this hung for ever.
    code = textwrap.dedent(f"""
        import _thread, threading, ppfast
        ppfast.set_progress(False)
        model = ppfast.NativeModel({str(lib)!r}, threads=2)
        for attempt in range(2):  # the model is usable again after a Ctrl-C
            threading.Timer(0.3, _thread.interrupt_main).start()
            try:
                model.prior_batch(10, seed=1)
            except KeyboardInterrupt as e:
                print("interrupted", len(e.partial) if e.partial is not None else 0)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["interrupted", "0", "interrupted", "0"]
