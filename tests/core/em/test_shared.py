"""Cell-level mixtures (fit_mixture(shared=True)): one class per cell across genes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from sklearn.metrics import adjusted_rand_score

import scmix


def cell_level_data(n_cells=600, n_genes=25, seed=0):
    """A class per cell (40% in class 1) that raises every gene 3-fold, NB counts."""
    rng = np.random.default_rng(seed)
    sf = np.exp(rng.normal(0, 0.3, n_cells))
    cls = (rng.random(n_cells) < 0.4).astype(int)
    mu = np.exp(rng.uniform(0, 3, n_genes))
    mean = sf[:, None] * mu[None, :] * np.where(cls[:, None] == 1, 3.0, 1.0)
    theta = 10.0
    counts = rng.poisson(rng.gamma(theta, mean / theta))
    adata = AnnData(counts.astype(np.int64))
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    adata.obs["size_factors"] = sf
    adata.obs["truth"] = cls
    adata.var["true_mu"] = mu
    return adata


def test_recovers_the_cell_classes_and_is_monotone():
    adata = cell_level_data()
    scmix.tl.fit_mixture(adata, shared=True, keep_trace=True)
    uns = adata.uns["scmix"]
    trace = uns["trace"]
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    assert uns["converged"] and uns["loglik"] == pytest.approx(trace[-1])
    labels = adata.obs["scmix_component"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert adjusted_rand_score(adata.obs["truth"], labels) > 0.9
    resp = adata.obsm["scmix_responsibilities"]
    assert resp.shape == (adata.n_obs, 2) and resp.dtype == np.float32
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, atol=1e-5)
    # classes ordered by expression: class 1 has the 3-fold higher means
    ratio = adata.var["scmix_mean_1"] / adata.var["scmix_mean_0"]
    assert ratio.between(2.4, 3.6).all()
    np.testing.assert_allclose(adata.var["scmix_mean_0"], adata.var["true_mu"], rtol=0.25)
    assert adata.var["scmix_weight_1"].iloc[0] == pytest.approx(0.4, abs=0.05)
    assert uns["delta_bic"] > 0 and uns["lrt"] > 0


def test_shared_replaces_an_earlier_per_gene_fit_cleanly():
    adata = cell_level_data(n_cells=200, n_genes=6, seed=1)
    scmix.tl.fit_mixture(adata, n_init=1)
    scmix.tl.goodness_of_fit(adata)
    scmix.tl.fit_mixture(adata, shared=True, n_init=1)
    assert "scmix_delta_bic" not in adata.var and "scmix_gof_pvalue" not in adata.var
    scmix.tl.fit_mixture(adata, n_init=1)  # and back: the cell-level column goes
    assert "scmix_component" not in adata.obs and "scmix_responsibilities" not in adata.obsm
    assert adata.layers["scmix_responsibility_1"].shape == (200, 6)


def test_shared_rejects_bootstrap():
    adata = cell_level_data(n_cells=100, n_genes=3, seed=2)
    with pytest.raises(ValueError, match="shared"):
        scmix.tl.fit_mixture(adata, shared=True, n_bootstrap=5)


def test_svensson_low_capture_cells(svensson_20312):
    """Without offsets, the cell-level mixture of the ERCC separates the two capture modes:
    its classes agree with the split of the log size factors at their density minimum."""
    adata = svensson_20312.copy()
    expressed = np.asarray((adata.X > 0).mean(axis=0)).ravel() >= 0.1
    scmix.tl.fit_mixture(adata, shared=True, size_factors=None, mask_var=expressed)
    log_sf = np.log(adata.obs["size_factors"].to_numpy())
    counts, edges = np.histogram(log_sf, bins=40)
    centre = (edges[:-1] + edges[1:]) / 2
    inner = (centre > np.quantile(log_sf, 0.2)) & (centre < np.quantile(log_sf, 0.9))
    valley = centre[inner][np.argmin(counts[inner])]
    low_capture = (adata.obs["scmix_component"] == "0").to_numpy()
    agreement = np.mean(low_capture == (log_sf < valley))
    assert agreement > 0.9
