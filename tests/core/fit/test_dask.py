"""fit_mixture on dask arrays: gene blocks as dask tasks, identical to the in-memory path."""

from __future__ import annotations

import anndata as ad
import dask
import dask.array as da
import h5py
import numpy as np
import pytest
from anndata.experimental import read_elem_lazy

import scmix

# the reference has one gene without counts on purpose
pytestmark = pytest.mark.filterwarnings("ignore:1 of 30 genes have no non-zero count")


@pytest.fixture(scope="module")
def reference():
    adata = scmix.datasets.simulate(n_cells=400, n_genes=30, random_state=3, as_sparse=True)
    adata.X[:, 4] = 0  # a gene without counts
    adata.X.eliminate_zeros()
    fitted = adata.copy()
    scmix.tl.fit_mixture(fitted, keep_trace=True)
    return adata, fitted


def _same_results(got, want):
    for column in ("scmix_loglik", "scmix_loglik_1", "scmix_mean_1", "scmix_dispersion_0"):
        np.testing.assert_allclose(got.var[column], want.var[column], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(got.var["scmix_converged"], want.var["scmix_converged"])
    np.testing.assert_allclose(
        got.layers["scmix_responsibility_1"], want.layers["scmix_responsibility_1"], atol=1e-7
    )


@pytest.mark.parametrize("layout", ["dense", "sparse_blocks", "cells_split"])
def test_threaded_scheduler_matches_in_memory(reference, layout):
    adata, want = reference
    got = adata.copy()
    if layout == "dense":
        got.X = da.from_array(adata.X.toarray(), chunks=(400, 7))
    elif layout == "sparse_blocks":
        got.X = da.from_array(adata.X, chunks=(400, 11))
    else:  # cells split over blocks: rechunked so that each gene is in one block
        got.X = da.from_array(adata.X.toarray(), chunks=(150, 30))
    with dask.config.set(scheduler="threads"):
        scmix.tl.fit_mixture(got, keep_trace=True, chunk_size=6)
    _same_results(got, want)


def test_anndata_lazy_reader(reference, tmp_path):
    adata, want = reference
    path = tmp_path / "lazy.h5ad"
    adata.write_h5ad(path)
    with h5py.File(path, "r") as handle:
        lazy = ad.AnnData(X=read_elem_lazy(handle["X"]), obs=adata.obs.copy(), var=adata.var.copy())
        assert isinstance(lazy.X, da.Array)
        scmix.tl.fit_mixture(lazy, keep_trace=True)
    _same_results(lazy, want)


def test_bad_counts_in_a_block_name_the_gene_and_write_nothing(reference):
    adata, _ = reference
    dense = adata.X.toarray().astype(float)
    dense[7, 20] = 2.5
    bad = adata.copy()
    bad.X = da.from_array(dense, chunks=(400, 10))
    before = bad.var.copy()
    with pytest.raises(ValueError, match="gene_20"):
        scmix.tl.fit_mixture(bad)
    assert bad.var.equals(before) and "scmix" not in bad.uns


def test_distributed_local_cluster(reference):
    distributed = pytest.importorskip("distributed")
    adata, want = reference
    got = adata.copy()
    got.X = da.from_array(adata.X.toarray(), chunks=(400, 8))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        scmix.tl.fit_mixture(got, keep_trace=True, chunk_size=8)
    _same_results(got, want)
