"""Exports: ArviZ keeps discrete variables as integers; trace batches become pandas /
Arrow tables with address names."""

import numpy as np
import pytest

import ppfast
import ppfast.diagnostics
from ppfast.distributions import Categorical, Normal, Poisson
from ppfast.examples import load


class Mixed(ppfast.Model):
    """A discrete and a continuous latent at every trace."""

    def forward(self):
        k = ppfast.sample(Categorical(probs=[0.2, 0.3, 0.5]), name="k")
        n = ppfast.sample(Poisson(3.0), name="n")
        mu = ppfast.sample(Normal(float(k), 1.0), name="mu")
        if mu > 3.5:  # about 3.5% of prior traces fail
            raise ValueError("mu too large")
        ppfast.observe(Normal(mu + n, 1.0), name="y")
        return mu


def test_to_arviz_exports_discrete_variables_as_integers():
    pytest.importorskip("arviz")
    post = Mixed().posterior_results(2000, observe={"y": 4.0}, seed=3, on_error="skip")
    idata = ppfast.diagnostics.to_arviz(post)
    for name in ("k", "n"):
        values = idata.posterior[name].values
        assert values.dtype == np.int64, (name, values.dtype)
        assert values.min() >= 0
    assert set(np.unique(idata.posterior["k"].values)) <= {0, 1, 2}
    assert idata.posterior["mu"].values.dtype == np.float64


def test_to_pandas_has_address_names_and_every_record():
    pytest.importorskip("pandas")
    batch = Mixed().simulate(200, seed=1, on_error="skip", required=False)
    df = batch.to_pandas()
    assert len(df) == batch.num_records
    first = batch.trace(0)
    rows = df[df.trace == 0]
    assert list(rows.address) == [v.address for v in first.variables]
    assert list(rows.name) == ["k", "n", "mu", "y"]
    assert list(rows.kind) == ["sample", "sample", "sample", "observe"]
    assert list(rows.dist) == ["Categorical", "Poisson", "Normal", "Normal"]
    np.testing.assert_array_equal(df.value.to_numpy(), batch.records["value"])
    traces = batch.to_pandas("traces")
    assert len(traces) == len(batch)
    np.testing.assert_array_equal(traces.log_weight.to_numpy(), batch.log_weights)
    failed = traces[traces.failed]
    assert len(failed) == len(batch.failed) > 0  # with this seed, several of 200
    assert all("mu too large" in e for e in failed.error)
    assert traces[~traces.failed].error.isna().all()
    with pytest.raises(ValueError, match="'records' or 'traces'"):
        batch.to_pandas("everything")


def test_to_arrow_matches_to_pandas_and_keeps_tensor_values():
    pa = pytest.importorskip("pyarrow")
    batch = load("tau_decay").prior_batch(5, seed=2)
    table = batch.to_arrow()
    assert table.num_rows == batch.num_records
    assert pa.types.is_dictionary(table.schema.field("address").type)
    assert table.column("address").to_pylist() == list(batch.to_pandas().address)
    calorimeter = [v for v in table.column("tensor").to_pylist() if v is not None]
    assert len(calorimeter) == 5 and all(len(v) == 20 * 35 * 35 for v in calorimeter)
    assert batch.to_arrow("traces").column("failed").to_pylist() == [False] * 5
