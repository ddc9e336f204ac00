"""scmix.pp: spike-in flags and size factors against hand computations and DESeq2's rule."""

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import scmix


def _toy(as_sparse=False):
    X = np.array([[1, 2, 0, 5], [0, 4, 4, 1], [3, 0, 3, 0]])
    adata = ad.AnnData(sparse.csr_matrix(X) if as_sparse else X)
    adata.obs_names = ["c0", "c1", "c2"]
    adata.var_names = ["ERCC-1", "g1", "ERCC-2", "g2"]
    scmix.pp.flag_spike_ins(adata)
    return adata


def test_flag_spike_ins_by_prefix():
    adata = _toy()
    assert adata.var["spike_in"].tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="no gene name starts with 'MT-'"):
        scmix.pp.flag_spike_ins(adata, prefix="MT-")


@pytest.mark.parametrize("as_sparse", [False, True])
def test_spike_in_factors_are_spike_totals_with_mean_one(as_sparse):
    adata = _toy(as_sparse)
    scmix.pp.size_factors(adata, "spike_in")
    np.testing.assert_allclose(adata.obs["size_factors"], np.array([1, 4, 6]) / (11 / 3))


def test_library_factors_name_zero_cells_or_exclude_them():
    adata = _toy()
    with pytest.raises(ValueError, match=r"zero for 1 cells .*'c2'.*exclude_zero=True"):
        scmix.pp.size_factors(adata, "library")
    assert "size_factors" not in adata.obs  # nothing written
    with pytest.warns(UserWarning, match="removed 1 cells .*'c2'"):
        scmix.pp.size_factors(adata, "library", exclude_zero=True)
    assert list(adata.obs_names) == ["c0", "c1"]
    np.testing.assert_allclose(adata.obs["size_factors"], [7 / 6, 5 / 6])


def test_factors_keep_the_ratios_between_cells():
    rng = np.random.default_rng(0)
    X = rng.poisson(5.0, (50, 30))
    adata = ad.AnnData(X)
    scmix.pp.size_factors(adata, "library")
    totals = X.sum(axis=1)
    np.testing.assert_allclose(adata.obs["size_factors"], totals / totals.mean())
    assert adata.obs["size_factors"].mean() == pytest.approx(1.0)


def _deseq2_poscounts(X):
    """DESeq2's estimateSizeFactorsForMatrix with poscounts geometric means, in plain numpy."""
    X = np.asarray(X, dtype=float)
    geo = np.array(
        [np.exp(np.log(col[col > 0]).sum() / col.size) if (col > 0).any() else 0.0 for col in X.T]
    )
    factors = []
    for row in X:
        use = (row > 0) & (geo > 0)
        factors.append(np.exp(np.median(np.log(row[use]) - np.log(geo[use]))))
    return np.array(factors)


@pytest.mark.parametrize("as_sparse", [False, True])
def test_median_ratio_matches_deseq2_poscounts(as_sparse):
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.3, 3.0, 80)
    X = rng.negative_binomial(2, 2 / (2 + np.outer(depth, rng.uniform(0.05, 3, 40))))
    adata = ad.AnnData(sparse.csr_matrix(X) if as_sparse else X)
    scmix.pp.size_factors(adata, "median_ratio")
    expected = _deseq2_poscounts(X)
    np.testing.assert_allclose(adata.obs["size_factors"], expected / expected.mean(), rtol=1e-12)
    assert (X == 0).mean() > 0.2  # the zero-rich case the poscounts rule exists for


def test_median_ratio_without_zeros_is_the_classic_estimator():
    rng = np.random.default_rng(4)
    X = rng.poisson(np.outer(rng.uniform(0.5, 2, 30), rng.uniform(20, 60, 25))) + 1
    adata = ad.AnnData(X)
    scmix.pp.size_factors(adata, "median_ratio")
    log_geo = np.log(X).mean(axis=0)
    classic = np.exp(np.median(np.log(X) - log_geo, axis=1))
    np.testing.assert_allclose(adata.obs["size_factors"], classic / classic.mean(), rtol=1e-12)


def test_spike_in_method_needs_flags_or_a_mask():
    adata = ad.AnnData(np.ones((3, 2)))
    with pytest.raises(KeyError, match="flag_spike_ins"):
        scmix.pp.size_factors(adata, "spike_in")
    scmix.pp.size_factors(adata, "spike_in", mask_var=[adata.var_names[0]])
    np.testing.assert_allclose(adata.obs["size_factors"], 1.0)
    with pytest.raises(ValueError, match="method must be"):
        scmix.pp.size_factors(adata, "tmm")


def test_svensson_spike_in_factors_are_the_ercc_totals(svensson_20312):
    adata = svensson_20312.copy()
    scmix.pp.flag_spike_ins(adata)
    assert adata.var["spike_in"].all()
    scmix.pp.size_factors(adata, "spike_in")
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    # the published per-cell ERCC totals of sample 20312 (data README)
    assert (totals.min(), np.median(totals), totals.max()) == (225, 1526.5, 14011)
    np.testing.assert_allclose(adata.obs["size_factors"], totals / totals.mean())
    np.testing.assert_allclose(adata.obs["size_factors"], svensson_20312.obs["size_factors"])
