"""Distributed generation and importance sampling under ``mpiexec -n 2`` (MPICH from
PyPI: ``pip install mpich mpi4py``; Open MPI works too, with its root flags)."""

import json
import math
import os
import re
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


# -- data-parallel IC training and distributed guided inference ------------------------------


@pytest.fixture(scope="module")
def train_sync(tmp_path_factory):
    """One run of mpi_scripts/train_sync.py (its outputs serve two tests)."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("train_sync")
    import torch.distributed

    proc = launch("train_sync.py", out)
    if not torch.distributed.is_mpi_available():  # the default then: gradients over mpi4py
        assert proc.stdout.count("all-reduce via mpi4py") == RANKS, proc.stdout
    return out


def _rank_states(out, case: str):
    import torch

    return [torch.load(out / f"{case}.rank{r}.pt", weights_only=False) for r in range(RANKS)]


def _assert_identical(a: dict, b: dict, what: str) -> None:
    import torch

    assert a.keys() == b.keys(), (what, set(a) ^ set(b))
    for k, x in a.items():
        if torch.is_tensor(x):
            assert x.dtype == b[k].dtype and torch.equal(x, b[k]), f"{what}: {k} differs between ranks"
        else:
            assert x == b[k], f"{what}: {k} differs between ranks: {x} vs {b[k]}"


def test_data_parallel_steps_leave_every_rank_bit_identical(train_sync):
    """Two online steps of a model whose traces differ by rank (an address and a wider
    categorical on rank 1 only, a rare branch on rank 0 only): parameters, table rows,
    row-wise and dense optimizer state bit-identical on both ranks, for Adam, LAMB, and
    after resuming from rank 0's checkpoint."""
    tmp_path = train_sync
    for case in ("adam", "lamb", "resumed", "sgd1"):
        a, b = _rank_states(tmp_path, case)
        _assert_identical(a, b, case)
    a = _rank_states(tmp_path, "adam")[0]
    rows = a["rows"]
    assert "only_on_rank1|0|1" in rows and "rank0_rare|0|1" in rows, rows
    steps = dict(zip(rows, a["tables.steps"].tolist()))
    assert steps["only_on_rank1|0|1"] == 2 and steps["x|0|1"] == 2, steps  # updated on both ranks' copies
    assert any(k.startswith("dense.") for k in a), "dense optimizer state compared"
    assert a["tables.shapes"][3] == [9], "the head widened for rank 1's 9-way categorical on both ranks"
    assert a["traces_trained"] == 2 * 24 * RANKS and len(a["history"]) == 2
    assert _rank_states(tmp_path, "resumed")[0]["traces_trained"] == 3 * 24 * RANKS
    assert (tmp_path / "adam.pt").exists() and not list(tmp_path.glob(".*.tmp")), "checkpoint written whole"


def test_data_parallel_step_equals_one_process_step_on_the_global_minibatch(train_sync):
    """An SGD step on 2 ranks (each its half of a dataset; only rank 1's half has the
    'extra' address) equals, to float rounding, one single-process step on all of it."""
    import torch

    tmp_path = train_sync
    sys.path.insert(0, str(SCRIPTS))
    try:
        from train_sync import BATCH, SMALL, GUMExtra, state_of
    finally:
        sys.path.remove(str(SCRIPTS))
    from ppfast.data import TraceDataset
    from ppfast.nn import load_inference_network

    torch.set_num_threads(1)
    before = state_of(load_inference_network(tmp_path / "sgd0.pt"))
    model = GUMExtra(BATCH)
    model.inference_network = load_inference_network(tmp_path / "sgd0.pt")
    data = TraceDataset(tmp_path / "gum-extra").to_batch()  # one minibatch of both halves
    ref = state_of(model.learn_inference_network(dataset=data, batch_size=2 * BATCH, optimizer="sgd",
                                                 learning_rate=0.05, seed=3, **SMALL))
    got = _rank_states(tmp_path, "sgd1")[0]
    assert got["rows"] == ref["rows"] == ["extra|0|1", "mu|0|1"]
    moved = 0.0
    for k, v in got.items():
        if torch.is_tensor(v) and v.is_floating_point() and v.numel():
            assert (v - ref[k]).abs().max() < 1e-6, k
            if k in before:  # the loaded network's optimizer (momentum buffers) is not built yet
                moved = max(moved, float((v - before[k]).abs().max()))
    assert moved > 1e-3, "the step moved the parameters"


def test_a_failing_rank_fails_every_rank_in_training(tmp_path):
    """A shape error in rank 1's second step, then a corrupted shard in rank 1's share:
    rank 1 raises its error, rank 0 a RankError quoting it, and the ranks stay in step."""
    pytest.importorskip("torch")
    out = launch("train_failure.py", tmp_path).stdout
    assert "step rank 1: DataError: observation 'obs' has 2 elements" in out, out
    assert "step rank 0: RankError: inference network training failed on rank 1 of 2: rank 1: DataError" in out, out
    assert "shard rank 1: DatasetError" in out and "shard-000003-records.arrow" in out, out
    assert "shard rank 0: RankError: setting up inference network training failed on rank 1" in out, out
    assert out.count("after rank") == 2 and "no error" not in out, out
    # (the launcher may interleave the ranks' lines: find the values, not whole lines)
    digests = re.findall(r"digest rank \d: (-?[0-9.e+-]+)", out)
    assert len(digests) == RANKS and len(set(digests)) == 1, out  # the same network on both ranks again
    assert "backend='gloo')" in out and "mpi4py" not in out, out  # all collectives on gloo here


def test_distributed_guided_inference_after_distributed_training(tmp_path):
    """Each rank writes its shards, trains from its share of them, and runs its share of
    a guided IS run: the gathered posterior is GUM's, equals (trace for trace) rank 0 alone
    with the same network and seed, and beats the prior's ESS by far."""
    pytest.importorskip("torch")
    out = tmp_path / "post.npz"
    n = 20000
    proc = launch("guided_gum.py", out, tmp_path, n, 11)
    digests = re.findall(r"digest (-?[0-9.e+-]+)", proc.stdout)
    assert len(digests) == RANKS and len(set(digests)) == 1, proc.stdout  # the same network on both ranks
    assert "rank 0 of 2: shards [0, 1]" in proc.stdout and "rank 1 of 2: shards [2, 3]" in proc.stdout, proc.stdout
    got = np.load(out)
    from ppfast import Empirical

    post = Empirical(got["values"], log_weights=got["log_weights"])
    assert len(post) == n and np.array_equal(got["index"], np.arange(n, dtype=np.uint64))
    assert_gum_posterior(post, "distributed IC, embedded GUM")
    assert post.effective_sample_size / n > 0.15, post.effective_sample_size / n  # prior IS: about 0.01
    np.testing.assert_allclose(got["values"], got["alone_values"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got["log_weights"], got["alone_log_weights"], rtol=1e-5, atol=1e-6)


def test_guided_run_from_a_first_trace_number_continues_the_same_traces():
    torch = pytest.importorskip("torch")
    from ppfast.inference import guided

    torch.set_num_threads(1)
    model = ex.load("gum", threads=1)
    model.learn_inference_network(512, batch_size=64, lstm_dim=16, observe_embedding_dim=8, address_embedding_dim=4,
                                  proposal_dim=8, seed=0)
    obs = {"obs0": 8.0, "obs1": 9.0}
    whole = guided.run(model, 400, observe=obs, seed=3, slots=32)
    tail = guided.run(model, 150, observe=obs, seed=3, slots=32, first=250)
    assert np.array_equal(tail.traces["index"], np.arange(250, 400, dtype=np.uint64))
    np.testing.assert_allclose(tail.log_weights, whole.log_weights[250:], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="first"):
        guided.run(model, 10, observe=obs, first=-1)


def test_training_options_in_one_process():
    """lr_scaling and optimizer are checked; LAMB learns; a checkpoint resumes bit for bit
    where training stopped."""
    torch = pytest.importorskip("torch")
    import tempfile

    from ppfast.examples.python_models import GUM
    from ppfast.nn import load_inference_network
    from ppfast.nn.distributed import lr_factor

    torch.set_num_threads(1)
    torch.manual_seed(0)
    assert lr_factor("linear", 4) == 4 and lr_factor("sqrt", 4) == 2 and lr_factor("none", 4) == 1
    small = {"lstm_dim": 16, "observe_embedding_dim": 8, "address_embedding_dim": 4, "proposal_dim": 8}
    with pytest.raises(ValueError, match="lr_scaling"):
        GUM().learn_inference_network(64, lr_scaling="cubic", **small)
    with pytest.raises(ValueError, match="optimizer"):
        GUM().learn_inference_network(64, optimizer="adagrad", **small)
    net = GUM().learn_inference_network(6000, batch_size=100, optimizer="lamb", learning_rate=3e-2, seed=1,
                                        **small)
    losses = np.array(net.history)[:, 1]  # from about 2.2 towards the posterior's entropy, 1.33
    assert len(losses) == 60 and losses[-10:].mean() < losses[:5].mean() - 0.4, losses

    data = GUM().prior_batch(1200, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/net.pt"
        m = GUM()
        m.learn_inference_network(dataset=data, num_traces=600, batch_size=100, seed=4, checkpoint=path,
                                  checkpoint_every=300, **small)
        assert m.inference_network.traces_trained == 600
        m.learn_inference_network(dataset=data, num_traces=600, batch_size=100, seed=5, **small)
        resumed = GUM()
        resumed.inference_network = load_inference_network(path)
        assert resumed.inference_network.traces_trained == 600
        resumed.learn_inference_network(dataset=data, num_traces=600, batch_size=100, seed=5, **small)
    a, b = m.inference_network, resumed.inference_network
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    assert torch.equal(a.tables.storage[: a.tables.n], b.tables.storage[: b.tables.n])
    assert a.history == b.history


def test_data_parallel_training_takes_one_validation_and_schedule_decision_on_every_rank(tmp_path):
    pytest.importorskip("torch")
    launch("train_watch.py", tmp_path)
    a, b = (json.loads((tmp_path / f"watch.rank{r}.json").read_text()) for r in range(RANKS))
    assert a == b
    assert a["traces_trained"] == 4 * 128  # early stopping after three validations without improvement
    assert [t for t, _ in a["valid"]] == [128, 256, 384, 512]
    assert [lr for _, lr in a["lr"]] == [1e-9, 1e-9, 1e-9, 5e-10]
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1  # rank 0 only
    assert len((tmp_path / "train.csv").read_text().splitlines()) == 1 + 4
