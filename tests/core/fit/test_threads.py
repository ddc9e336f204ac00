"""Threads (chunks fitted at once, or a chunk's kernel calls split by rows) give the
results of one thread, bit for bit: each gene's fit depends on its counts and its start
uniforms only."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from adata_helpers import fit_matrix

import scmix
from scmix._core.families import get_family
from scmix._core.fit import matrix
from scmix._core.numerics import jit


@pytest.fixture(scope="module")
def counts():
    sim = scmix.datasets.simulate(n_cells=300, n_genes=40, n_components=2, random_state=4)
    return np.asarray(sim.X, dtype=np.float64), sim.obs["size_factors"].to_numpy()


@pytest.mark.parametrize("family", ["nb", "poisson"])
@pytest.mark.parametrize("how", ["rows", "chunks"])
def test_threads_give_the_results_of_one_thread(monkeypatch, counts, family, how):
    X, s = counts
    options = dict(
        family=get_family(family), n_components=2, n_init=3, random_state=0, store_resp=True
    )
    one = fit_matrix(X, s, n_jobs=1, **options)
    submitted = []

    class CountingPool(ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            submitted.append(how)
            return super().submit(*args, **kwargs)

    monkeypatch.setattr(jit, "_pools", {2: CountingPool(1)})
    monkeypatch.setattr(matrix, "ThreadPoolExecutor", CountingPool)
    monkeypatch.setattr(jit, "ROW_SPLIT_MIN_WORK", 1)  # split every call
    if how == "chunks":
        monkeypatch.setattr(matrix, "MIN_ENTRIES_PER_THREAD", 1)  # a chunk per thread
    monkeypatch.setattr(matrix, "worker_count", lambda n_jobs: 2)
    two = fit_matrix(X, s, n_jobs=2, chunk_size=7 if how == "chunks" else None, **options)
    for name in one.params:
        np.testing.assert_array_equal(two.params[name], one.params[name])
    np.testing.assert_array_equal(two.loglik, one.loglik)
    np.testing.assert_array_equal(two.n_iter, one.n_iter)
    np.testing.assert_array_equal(two.resp, one.resp)
    np.testing.assert_array_equal(two.single.loglik, one.single.loglik)
    assert submitted  # the work did go to another thread
