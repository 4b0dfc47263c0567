"""Distributed generation and importance sampling under ``mpiexec -n 2`` (MPICH from
PyPI: ``pip install mpich mpi4py``; Open MPI works too, with its root flags)."""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_gum_posterior
from test_data import assert_same_columns

import ppfast.examples as ex
from ppfast.data import TraceDataset

pytestmark = pytest.mark.mpi

SCRIPTS = Path(__file__).parent / "mpi_scripts"
RANKS = 2


def mpiexec() -> list:
    """The launcher command: the one beside this Python first (pip's mpich puts it there,
    matching the MPI that mpi4py loads), else PATH's; a missing launcher fails the test:
    CI installs one."""
    exe = None
    for name in ("mpiexec", "mpirun"):
        cand = Path(sys.executable).parent / name
        if cand.exists():
            exe = str(cand)
            break
    exe = exe or shutil.which("mpiexec") or shutil.which("mpirun")
    if exe is None:
        pytest.fail("mpiexec not found on PATH or beside the Python executable: pip install mpich mpi4py")
    cmd = [exe]
    version = subprocess.run([exe, "--version"], check=False, capture_output=True, text=True, timeout=30)
    if "Open MPI" in version.stdout + version.stderr:
        cmd += ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return cmd


def launch(script: str, *args, ranks: int = RANKS, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PPFAST_PROGRESS="0")
    cmd = mpiexec() + ["-n", str(ranks), sys.executable, str(SCRIPTS / script)] + [str(a) for a in args]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} did not finish in 180 s:\n{e.stdout}\n{e.stderr}")
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("name, n, per_file", [("gum", 20001, 3000), ("tau_decay", 31, 6),
                                               ("python:branching", 3001, 700)])
def test_distributed_dataset_equals_single_process_run(tmp_path, name, n, per_file):
    out = tmp_path / "ds"
    proc = launch("gen_dataset.py", out, name, n, per_file, 17, RANKS)
    assert "rank 0 of 2" in proc.stdout and "rank 1 of 2" in proc.stdout, proc.stdout
    ds = TraceDataset(out)
    assert ds.manifest["world_size"] == RANKS and ds.seed == 17
    ranks = {s["rank"] for s in ds.manifest["shards"]}
    assert ranks == {0, 1}, "both ranks wrote shards"
    # Each rank's share, cut into files: rank r holds traces [n r / R, n (r + 1) / R).
    for s in ds.manifest["shards"]:
        lo, hi = n * s["rank"] // RANKS, n * (s["rank"] + 1) // RANKS
        assert lo <= s["first"] and s["first"] + s["count"] <= hi and s["count"] <= per_file
    model = ex.load(name.split(":")[1], mode="python") if name.startswith("python:") else ex.load(name, threads=1)
    single = model.prior_batch(n, seed=17)
    union = ds.to_batch()
    assert np.array_equal(union.traces["index"], np.arange(n, dtype=np.uint64))
    assert_same_columns(union, single, name)


def test_distributed_importance_sampling_matches_gum_posterior(tmp_path):
    n, seed = 40000, 23
    out = tmp_path / "post.npz"
    launch("dist_is.py", out, "gum", n, seed)
    got = np.load(out)
    assert int(got["size"]) == RANKS
    from ppfast import Empirical

    post = Empirical(got["values"], log_weights=got["log_weights"])
    assert len(post) == n
    assert_gum_posterior(post, "distributed IS, embedded GUM")
    assert_gum_posterior(Empirical(got["mu"], log_weights=got["log_weights"]), "post['mu']")
    # Trace for trace the single-process run with the same seed.
    single = ex.load("gum", threads=1).posterior_results(n, observe={"obs0": 8.0, "obs1": 9.0}, seed=seed)
    assert np.array_equal(got["index"], np.arange(n, dtype=np.uint64))
    assert np.array_equal(got["values"], single.values)
    assert np.array_equal(got["log_weights"], single.log_weights)
    assert math.isclose(post.mean, single.mean, rel_tol=1e-12)


def test_distributed_importance_sampling_python_model(tmp_path):
    out = tmp_path / "post.npz"
    launch("dist_is.py", out, "python:gum", 30000, 5)
    got = np.load(out)
    from ppfast import Empirical

    assert_gum_posterior(Empirical(got["mu"], log_weights=got["log_weights"]), "distributed IS, Python GUM")


def test_a_failing_rank_fails_every_rank(tmp_path):
    proc = launch("rank_failure.py", tmp_path / "ds", check=False)
    assert proc.returncode != 0
    assert "rank 1: ModelError" in proc.stdout, proc.stdout + proc.stderr
    assert "rank 0: RankError" in proc.stdout and "failed on rank 1" in proc.stdout, proc.stdout
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_shares_cover_the_trace_range():
    from ppfast.distributed import share

    for n in (0, 1, 7, 1000, 1001):
        for size in (1, 2, 3, 8):
            parts = [share(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and sum(c for _, c in parts) == n
            assert all(parts[r][0] + parts[r][1] == parts[r + 1][0] for r in range(size - 1))
            assert max(c for _, c in parts) - min(c for _, c in parts) <= 1


def test_single_process_world_needs_no_mpi():
    """Outside mpiexec the distributed calls run on this process alone, without MPI."""
    import ppfast.distributed as dist

    assert dist.world(False).size == 1
    model = ex.load("gum", threads=1)
    post = dist.posterior_results(model, 3000, observe={"obs0": 8.0, "obs1": 9.0}, seed=4, distributed=False)
    ref = model.posterior_results(3000, observe={"obs0": 8.0, "obs1": 9.0}, seed=4)
    assert np.array_equal(post.values, ref.values) and np.array_equal(post.log_weights, ref.log_weights)
    assert np.array_equal(post["mu"].values, ref["mu"].values)
    with pytest.raises(ValueError, match="Markov chain"):
        import ppfast

        dist.posterior_results(model, 10, ppfast.InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS,
                               observe={"obs0": 8.0, "obs1": 9.0}, distributed=False)
