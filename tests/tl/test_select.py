"""Choosing K per gene by BIC."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import scmix


@pytest.fixture(scope="module")
def one_two_three():
    """Ten genes each with 1, 2 and 3 well-separated components, the same size factors."""
    parts = []
    sf = None
    for k in (1, 2, 3):
        part = scmix.datasets.simulate(
            n_cells=1500,
            n_genes=10,
            n_components=k,
            fold_change=5.0,
            dispersion=0.02,
            size_factors="lognormal" if sf is None else sf,
            random_state=30 + k,
        )
        sf = part.obs["size_factors"].to_numpy()
        part.var_names = [f"k{k}_{j}" for j in range(10)]
        parts.append(part)
    adata = ad.concat(parts, axis=1)
    adata.obs["size_factors"] = sf
    adata.var["true_k"] = np.repeat([1, 2, 3], 10)
    return adata


def test_bic_chooses_the_true_number_of_components(one_two_three):
    adata = one_two_three.copy()
    scmix.tl.select_n_components(adata, [1, 2, 3], n_init=2)
    chosen = adata.var["scmix_k_n_components"]
    assert (chosen == adata.var["true_k"]).mean() >= 0.9
    assert adata.uns["scmix_k"]["params"]["n_components"] == [1, 2, 3]


def test_bic_columns_match_fit_mixture(one_two_three):
    adata = one_two_three[:, ::3].copy()
    scmix.tl.select_n_components(adata, [2, 1], n_init=1, mask_var=adata.var_names[:5])
    scmix.tl.fit_mixture(adata, 2, n_init=1, mask_var=adata.var_names[:5])
    np.testing.assert_allclose(adata.var["scmix_k_bic_2"], adata.var["scmix_bic"], rtol=1e-12)
    np.testing.assert_allclose(adata.var["scmix_k_bic_1"], adata.var["scmix_bic_1"], rtol=1e-12)
    assert (adata.var["scmix_k_n_components"].iloc[5:] == 0).all()  # not selected


def test_invalid_range():
    adata = scmix.datasets.simulate(n_cells=50, n_genes=2)
    with pytest.raises(ValueError, match="n_components"):
        scmix.tl.select_n_components(adata, [0, 2])
