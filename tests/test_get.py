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
