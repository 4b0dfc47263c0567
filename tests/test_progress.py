"""Progress output: plain periodic lines and a summary when stderr is not a terminal, a
live bar on a terminal, nothing at all with PPFAST_PROGRESS=0."""

import os
import pty
import re
import subprocess
import sys
import textwrap

RUN_1M = """
    from ppfast._progress import Progress
    from ppfast.examples import load
    Progress.log_interval = 0.0     # the worst case: a line as often as the 5% step allows
    model = load("gum")
    model.chunk_size = 4096         # 245 progress updates
    model.posterior_results(1_000_000, observe={"obs0": 8, "obs1": 9}, seed=1)
"""

SUMMARY = re.compile(r"^Importance sampling: 1,000,000 traces in [0-9.]+ s \([0-9,]+ traces/s\), ESS [0-9,.]+$")


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, **env))


def test_non_tty_run_of_a_million_traces_writes_a_few_lines_and_a_summary():
    r = _run(RUN_1M, PPFAST_PROGRESS="1")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr  # no bar frames in a log
    lines = r.stderr.splitlines()
    assert 2 <= len(lines) <= 21, lines  # at most one per 5% of the work, then the summary
    assert all(re.match(r"^Importance sampling: [0-9,]+/1,000,000 traces \(\d+%\)", line) for line in lines[:-1])
    assert SUMMARY.match(lines[-1]), lines[-1]


def test_terminal_gets_a_live_bar_then_the_summary():
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(RUN_1M)], stderr=slave,
                            stdout=subprocess.DEVNULL, env=dict(os.environ, PPFAST_PROGRESS="1"))
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=600) == 0
    text = out.decode()
    assert "\r" in text and "it/s" not in text  # tqdm frames, in traces/s
    last = text.replace("\r\n", "\n").split("\n")[-2].split("\r")[-1].strip()
    assert SUMMARY.match(last), repr(text[-400:])


def test_ppfast_progress_0_silences_runs_and_the_demo():
    r = _run(RUN_1M.replace("1_000_000", "50_000"), PPFAST_PROGRESS="0")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    demo = subprocess.run([sys.executable, "-m", "ppfast", "demo", "--traces", "20000"], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PPFAST_PROGRESS="0"))
    assert demo.returncode == 0, demo.stderr
    assert demo.stderr == ""
    assert "posterior mean" in demo.stdout
