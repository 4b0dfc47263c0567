"""A run's batch is the list of its per-worker (and per-call) chunks behind the one column
API: nothing is merged until a column is read, and the columns equal a merged batch's."""

import warnings

import numpy as np
import pytest

import ppfast
import ppfast.examples
from ppfast.distributions import Categorical, Normal
from ppfast.runtime import observation_map, warn_unused_observations
from ppfast.trace import TraceBatch

GROUPS = ("records", "traces", "arenas")


def _assert_same_columns(a, b):
    for group in GROUPS:
        x, y = getattr(a, group), getattr(b, group)
        assert sorted(x.keys()) == sorted(y.keys())
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{group}.{k}")


def test_per_worker_chunks_read_as_the_single_thread_batch():
    one = ppfast.examples.load("hundred", threads=1).prior_batch(3000, seed=4, progress=False)
    three = ppfast.examples.load("hundred", threads=3).prior_batch(3000, seed=4, progress=False)
    assert len(one._chunks) == 1 and len(three._chunks) == 3  # one range per worker, kept apart
    assert len(three) == 3000 and three.num_records == one.num_records
    # trace, begin, end, value / param offsets are shifted to the whole batch
    _assert_same_columns(one, three)
    assert three.records["trace"][-1] == 2999 and three.traces["end"][-1] == three.num_records


def test_concat_keeps_chunks_and_merges_only_for_native_consumers():
    model = ppfast.examples.load("gum", threads=2)
    a = model.simulate(2500, seed=5, first=0, progress=False)
    b = model.simulate(2500, seed=5, first=2500, progress=False)
    whole = model.simulate(5000, seed=5, progress=False)
    joined = TraceBatch.concat([a, b])
    assert all(x is y for x, y in zip(joined._chunks, a._chunks + b._chunks))  # not copied
    _assert_same_columns(whole, joined)
    merged = TraceBatch(joined._native)  # one native batch, for C++ consumers
    assert len(merged._chunks) == 1
    _assert_same_columns(whole, merged)


def test_chunked_columns_are_read_only_and_error_messages_follow_their_chunk():
    model = ppfast.examples.load("gum", threads=2)
    batch = model.simulate(3000, seed=1, progress=False)
    col = batch.traces["log_prior"]
    assert not col.flags.writeable and batch.traces["log_prior"] is col  # concatenated once
    # A failed trace in the second of two batches: its message index is shifted past the
    # first batch's messages.
    # (obs1 has no value in a run that requires every observation: each trace fails.)
    bad = model.simulate(10, observe={"obs0": 8.0}, required=True, seed=1, on_error="skip", progress=False)
    joined = TraceBatch.concat([bad, bad])
    assert len(joined.failed) == 20
    assert joined.error(int(joined.failed[-1])) == bad.error(int(bad.failed[-1]))
    assert joined.traces["message"][-1] == len(joined._messages) - 1


def test_recorded_normal_observes_equal_the_distribution_log_prob_bit_for_bit():
    # The recorder's fused Normal observe (cached log stddev) against the general
    # log-density, on every recorded observe of an IS run and of a prior run (simulated
    # observations).
    from ppfast.distributions import Normal
    from ppfast.trace import RecordKind

    model = ppfast.examples.load("gum", threads=2)
    for observe in ({"obs0": 8.0, "obs1": 9.0}, None):
        batch = model.simulate(2000, observe=observe, seed=7, progress=False)
        rec = batch.records
        obs = np.flatnonzero(rec["kind"] == RecordKind.OBSERVE)
        mu = rec["value"][rec["kind"] == RecordKind.SAMPLE][rec["trace"][obs]]
        expected = [float(Normal(m, np.sqrt(2.0)).log_prob(x)) for m, x in zip(mu[:300], rec["value"][obs][:300])]
        np.testing.assert_array_equal(rec["log_prob"][obs][:300], expected)


def test_failed_indices_and_observed_name_check_read_chunks_without_joining():
    model = ppfast.examples.load("gum", threads=2)
    bad = model.simulate(10, observe={"obs0": 8.0}, required=True, seed=1, on_error="skip", progress=False)
    good = model.simulate(10, seed=1, progress=False)
    joined = TraceBatch.concat([good, bad, good])
    np.testing.assert_array_equal(joined.failed, np.arange(10, 20))  # shifted past the first chunk
    assert not joined.traces._done  # no column was joined to find them
    # A name carried only by the last chunk is used; one no chunk carries warns.
    obs = observation_map({"mu": 1.0})
    names = [np.array([1, 2], np.uint32), np.array([], np.uint32), np.array([next(iter(obs))], np.uint32)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unused_observations(obs, names)
    with pytest.warns(UserWarning, match="no sample or observe of the model is named 'nowhere'"):
        warn_unused_observations(observation_map({"nowhere": 1.0}), names)


def _record_params(batch):
    rec, arena = batch.records, batch.arenas["params"]
    return [arena[o:o + n].tolist() for o, n in zip(rec["param_offset"], rec["param_len"])]


class _Params(ppfast.Model):
    """Sample parameters that repeat, change and come back, with observes in between."""

    def forward(self):
        a = ppfast.sample(Normal(0.0, 1.0), name="a")
        b = ppfast.sample(Normal(0.0, 1.0), name="b")
        c = ppfast.sample(Normal(1.0, 2.0), name="c")
        ppfast.observe(Normal(a, 1.0), 0.5, name="y")
        d = ppfast.sample(Categorical([0.25, 0.25, 0.5]), name="d")
        e = ppfast.sample(Normal(0.0, 1.0), name="e")
        return a + b + c + d + e


def test_sample_parameters_are_stored_once_while_they_repeat_and_observes_keep_none():
    batch = _Params().prior_batch(50, seed=3, progress=False)
    want = [[0.0, 1.0], [0.0, 1.0], [1.0, 2.0], [], [0.25, 0.25, 0.5], [0.0, 1.0]] * 50
    assert _record_params(batch) == want  # what every reader sees through the offsets
    kinds = batch.records["kind"]
    assert (batch.records["param_len"][kinds == 1] == 0).all()
    # Per trace: [0, 1] (a and b share it), [1, 2], the Categorical's, [0, 1] again (sharing
    # stays within a trace, so the arena does not depend on how threads split the run).
    assert len(batch.arenas["params"]) == 50 * (2 + 2 + 3 + 2)
    # The same for a compiled model: the 100-draw model's Normal(0, 1) is stored once per trace.
    hundred = ppfast.examples.load("hundred", threads=2).prior_batch(2000, seed=1, progress=False)
    assert len(hundred.arenas["params"]) == 2000 * 2
    samples = hundred.records["kind"] == 0
    assert _record_params(hundred)[:101] == [[0.0, 1.0]] * 100 + [[]]
    assert (hundred.records["param_len"][samples] == 2).all()
