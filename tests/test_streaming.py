"""Streamed prior and importance sampling: the figures equal an in-memory run's for the
same seed (trace i uses RNG stream i either way), whatever the chunking."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

import ppfast
import ppfast.examples
from ppfast import streaming
from ppfast.streaming import RunningSummary, StreamedEmpirical, StreamingNotice

OBS = {"obs0": 8, "obs1": 9}
# GUM: closed-form posterior of mu given obs0=8, obs1=9.
POST_MEAN, POST_SD = 7.25, 0.9129


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # Many small chunks, so the merging of chunk summaries is what is tested.
    monkeypatch.setattr(streaming, "_FIRST_CHUNK", 1000)
    monkeypatch.setattr(streaming, "_CHUNK_RECORDS", 7000)
    ppfast.set_progress(False)


@pytest.mark.parametrize("mode,n", [("embedded", 200_000), ("numba", 200_000), ("python", 20_000)])
def test_streamed_posterior_equals_in_memory_run(mode, n):
    model = ppfast.examples.load("gum", mode=mode)
    full = model.posterior_results(n, observe=OBS, seed=11)
    post = model.posterior_results(n, observe=OBS, seed=11, stream=True, keep=["mu"])
    assert isinstance(post, StreamedEmpirical) and len(post) == n
    # Same traces, different summation order: equal up to rounding.
    assert post.mean == pytest.approx(full.mean, rel=1e-12)
    assert post.stddev == pytest.approx(full.stddev, rel=1e-9)
    assert post.effective_sample_size == pytest.approx(full.effective_sample_size, rel=1e-12)
    assert post.min == full.min and post.max == full.max
    # Kept values and weights are exactly the in-memory run's.
    np.testing.assert_array_equal(post["mu"].values, full["mu"].values)
    np.testing.assert_array_equal(post.log_weights, full.log_weights)
    # The estimate itself: sd of the mean ~ POST_SD / sqrt(ESS) (ESS ~ n / 125 here), 5 sd.
    assert abs(post.mean - POST_MEAN) < 5 * POST_SD / math.sqrt(post.effective_sample_size)


def test_streamed_prior_summaries_equal_in_memory_run():
    model = ppfast.examples.load("gum")
    full = model.prior_results(100_000, seed=4)
    prior = model.prior_results(100_000, seed=4, summarize="mu")
    assert prior.mean == pytest.approx(full.mean, rel=1e-12)
    assert prior["mu"].variance == pytest.approx(full.variance, rel=1e-9)
    assert prior.effective_sample_size == pytest.approx(100_000, rel=1e-12)
    with pytest.raises(KeyError, match="keep=\\['obs0'\\]"):
        prior["obs0"]
    with pytest.raises(AttributeError, match="keep="):
        prior.log_weights


def test_large_runs_stream_automatically_with_a_notice(monkeypatch):
    monkeypatch.setattr(streaming, "AUTO_STREAM_TRACES", 5000)
    model = ppfast.examples.load("gum")
    with pytest.warns(StreamingNotice, match="streaming"):
        post = model.posterior_results(6000, observe=OBS, seed=1)
    assert isinstance(post, StreamedEmpirical)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(model.posterior_results(5000, observe=OBS, seed=1), ppfast.Empirical)
        assert isinstance(model.posterior_results(6000, observe=OBS, seed=1, stream=False), ppfast.Empirical)


def test_bad_streaming_options_are_refused():
    model = ppfast.examples.load("gum")
    with pytest.raises(ValueError, match="stream=False"):
        model.posterior_results(10, observe=OBS, stream=False, keep=["mu"])
    with pytest.raises(ValueError, match="importance sampling"):
        model.posterior_results(10, ppfast.InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS, observe=OBS,
                                stream=True)
    with pytest.raises(TypeError, match="names"):
        model.posterior_results(10, observe=OBS, keep=[1])
    with pytest.raises(ValueError, match="stream must be"):
        model.posterior_results(10, observe=OBS, stream="yes")


def test_running_summary_rescales_when_the_largest_weight_grows():
    rng = np.random.default_rng(0)
    lw = np.concatenate([rng.normal(-800, 1, 500), rng.normal(0, 3, 500), [-np.inf] * 5])
    v = rng.normal(size=len(lw))
    v[-5:] = np.nan  # failed traces: weight 0, value NaN, no part in the statistics
    s = RunningSummary("x")
    for i in range(0, len(lw), 97):
        s.add(lw[i:i + 97], v[i:i + 97])
    e = ppfast.Empirical(v, log_weights=lw)
    assert s.mean == pytest.approx(e.mean, rel=1e-12)
    assert s.variance == pytest.approx(e.variance, rel=1e-10)
    assert s.effective_sample_size == pytest.approx(e.effective_sample_size, rel=1e-12)
    assert len(s) == len(lw)


def test_all_weights_zero_raise():
    s = RunningSummary("x")
    s.add(np.full(3, -np.inf), np.full(3, np.nan))
    with pytest.raises(ValueError, match="all weights are zero"):
        s.mean


@pytest.mark.parametrize("name", ["gum", "branching"])
def test_chunked_run_concatenates_to_the_one_call_batch(name, monkeypatch):
    # A run in several chunks (and several worker parts per chunk) is concatenated into
    # exactly the batch of one call: same records, traces and arenas.
    model = ppfast.examples.load(name, threads=2)
    whole = model.prior_batch(5000, seed=9)
    monkeypatch.setattr(model, "chunk_size", 1500)
    chunked = model.prior_batch(5000, seed=9)
    for group in ("records", "traces", "arenas"):
        a, b = getattr(whole, group), getattr(chunked, group)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{group}.{k}")


def test_streamed_histogram_quantiles_within_a_bin_of_the_exact_ones():
    model = ppfast.examples.load("gum")
    edges = np.linspace(0.0, 15.0, 301)  # bins of 0.05
    full = model.posterior_results(100_000, observe=OBS, seed=2)
    post = model.posterior_results(100_000, observe=OBS, seed=2, histograms={"mu": edges})
    frac, got_edges = post["mu"].histogram
    assert got_edges is post["mu"].edges and frac.sum() == pytest.approx(1.0, abs=1e-12)
    qs = [0.1, 0.5, 0.9]
    # The sample quantile lies in the same bin as the interpolated one.
    np.testing.assert_allclose(post["mu"].quantile(qs), full["mu"].quantile(qs), atol=0.05)
    with pytest.raises(ValueError, match="outside the histogram edges"):
        model.posterior_results(1000, observe=OBS, seed=2, histograms={"mu": [7.0, 8.0]})["mu"].quantile(0.01)
    with pytest.raises(ValueError, match="increasing"):
        model.posterior_results(10, observe=OBS, histograms={"mu": [1.0, 1.0]})
    with pytest.raises(AttributeError, match="no histogram"):
        model.posterior_results(10, observe=OBS, summarize=["mu"])["mu"].histogram


def test_pool_keeps_a_bounded_total_after_a_large_run():
    # Regression: every chunk of a large in-memory run went back to the pool of spare
    # batches (16 of up to 2^26 records each), so the memory of the run stayed allocated.
    from ppfast import _core

    model = ppfast.examples.load("hundred")
    model.chunk_size = 40_000  # 4M records (~200 MB) per chunk, 12M records (~600 MB) concatenated
    model.prior_batch(120_000, seed=0)
    assert _core.pooled_bytes() <= 512 << 20


def test_runs_of_one_size_reuse_the_pooled_batch():
    # Regression: a run sizes its batch from its first 256 traces, and a pooled batch sized
    # for exactly one run was reallocated by the next run of the same size whenever that
    # run's first traces were a little longer (one run in two): the whole batch on fresh
    # pages again (Pythia's Z events: a quarter of the run's time).  A fresh process: the
    # pool is process-wide.
    code = """if True:
        import ppfast.examples
        from ppfast import _core
        model = ppfast.examples.load("branching", threads=1)
        pooled = []
        for seed in range(8):
            model.prior_batch(20_000, seed=seed)
            pooled.append(_core.pooled_bytes())
        print(pooled)
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    pooled = ast.literal_eval(done.stdout)
    assert len(set(pooled)) == 1, pooled


def test_pool_keeps_large_spares_with_lazily_freed_pages_and_reuses_them():
    # The chunks of a run over kMaxPooledBytes go back with their pages lazily freed: the
    # next run of that size writes the same pages again instead of faulting in fresh ones.
    # In a fresh process: the pool is process-wide, and other tests' runs fill it.
    code = """if True:
        import resource
        import ppfast.examples
        from ppfast import _core
        model = ppfast.examples.load("hundred", threads=2)

        def faults(n):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            batch = model.prior_batch(n, seed=0, progress=False)
            del batch
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

        faults(150_000)  # 15M records, 2 chunks of ~400 MB: they fill the pool
        print([_core.pooled_bytes(), _core.lazily_pooled_bytes(), faults(150_000), faults(150_000)])
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    pooled, lazily, first, again = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert pooled <= 512 << 20 and lazily > 0
    # (~190k pages of 4 KiB are written per run: faulted in when fresh.)
    assert again < 20_000 and first < 20_000, (first, again)
