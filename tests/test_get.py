"""scmix.get: tidy tables of the results."""

from __future__ import annotations

import numpy as np
import pytest

import scmix


def test_mixture_df_is_the_fitted_genes_sorted_by_evidence():
    adata = scmix.datasets.simulate(n_cells=300, n_genes=12, random_state=1)
    mask = np.ones(adata.n_vars, dtype=bool)
    mask[[2, 5]] = False
    scmix.tl.fit_mixture(adata, mask_var=mask, n_init=1)
    scmix.tl.goodness_of_fit(adata)
    table = scmix.get.mixture_df(adata)
    assert list(table.index) == list(
        adata.var_names[mask][np.argsort(-adata.var["scmix_delta_bic"][mask], kind="stable")]
    )
    assert table.index.name == "gene" and list(table.columns[:3]) == ["bimodal", "delta_bic", "lrt"]
    for column in ("mean_1", "weight_0", "single_dispersion", "converged", "gof_pvalue"):
        np.testing.assert_array_equal(table[column], adata.var.loc[table.index, f"scmix_{column}"])
    with pytest.raises(KeyError, match="fit_mixture"):
        scmix.get.mixture_df(adata, key="none")


def test_quantile_residuals_on_the_normal_scale():
    adata = scmix.datasets.simulate(n_cells=2000, n_genes=2, n_components=1, random_state=2)
    scmix.tl.fit_mixture(adata, n_components=1, n_init=1)
    residuals = scmix.get.quantile_residuals(adata, ["gene_0", "gene_1"])
    assert residuals.shape == (2000, 2)
    assert abs(residuals.to_numpy().mean()) < 0.1 and abs(residuals.to_numpy().std() - 1) < 0.1


def test_responsibilities_are_the_posterior_of_each_component():
    """Per gene: pi_k f_k(x_i) / sum_l pi_l f_l(x_i), recomputed here with scipy.stats
    from the .var parameters and the size factors; for a shared fit, the cell classes."""
    from scipy import stats

    adata = scmix.datasets.simulate(n_cells=400, n_genes=3, random_state=3)
    scmix.tl.fit_mixture(adata, n_init=1)
    gene = "gene_1"
    table = scmix.get.responsibilities(adata, gene)
    assert list(table.columns) == ["component_0", "component_1"]
    assert list(table.index) == list(adata.obs_names)
    x = np.asarray(adata[:, gene].X).ravel()
    s = adata.obs["size_factors"].to_numpy()
    var = adata.var.loc[gene]
    joint = []
    for k in range(2):
        mean = s * var[f"scmix_mean_{k}"]
        phi = var[f"scmix_dispersion_{k}"]
        pmf = (
            stats.nbinom.pmf(x, 1 / phi, 1 / (1 + mean * phi))
            if phi > 0
            else stats.poisson.pmf(x, mean)
        )
        joint.append(var[f"scmix_weight_{k}"] * pmf)
    expected = np.array(joint) / np.sum(joint, axis=0)
    np.testing.assert_allclose(table.to_numpy().T, expected, atol=1e-5)  # stored as float32

    scmix.tl.fit_mixture(adata, shared=True, n_init=1, key_added="cells")
    classes = scmix.get.responsibilities(adata, key="cells")
    assert classes.shape == (adata.n_obs, 2)
    np.testing.assert_allclose(classes.sum(axis=1), 1.0, atol=1e-5)
    labels = adata.obs["cells_component"].astype(int).to_numpy()
    np.testing.assert_array_equal(classes.to_numpy().argmax(axis=1), labels)


def test_responsibilities_errors_name_what_is_missing():
    adata = scmix.datasets.simulate(n_cells=200, n_genes=2, random_state=4)
    scmix.tl.fit_mixture(adata, n_init=1, store_responsibilities=False)
    with pytest.raises(KeyError, match="store_responsibilities=True"):
        scmix.get.responsibilities(adata, "gene_0")
    scmix.tl.fit_mixture(adata, n_init=1, key_added="kept")
    with pytest.raises(ValueError, match="name the gene"):
        scmix.get.responsibilities(adata, key="kept")
    with pytest.raises(KeyError, match="'nope'"):
        scmix.get.responsibilities(adata, "nope", key="kept")
