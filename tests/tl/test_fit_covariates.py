"""fit_mixture(covariates=...): a shift between batches is not a second component."""

from __future__ import annotations

import copy
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from adata_helpers import assert_adata_unchanged
from scipy import sparse

import scmix
from scmix._core.fit import covariates as covariate_fit
from scmix._fitted import gene_exposures

BATCH_EFFECT = np.array([0.0, 1.2, -0.9])


def batch_data(n_cells=1000, n_shifted=10, n_bimodal=10, seed=0) -> ad.AnnData:
    """Genes with one component whose mean shifts between three batches, then genes
    with two components within every batch (and the same shifts)."""
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 3, n_cells)
    s = rng.lognormal(0, 0.3, n_cells)
    s /= s.mean()
    shift = np.exp(BATCH_EFFECT[batch])
    columns = []
    for j in range(n_shifted + n_bimodal):
        if j < n_shifted:
            m = s * shift * rng.uniform(3, 20)
        else:
            low = rng.uniform(2, 5)
            upper = rng.random(n_cells) < rng.uniform(0.3, 0.6)
            m = s * shift * np.where(upper, low * rng.uniform(5, 8), low)
        columns.append(rng.poisson(rng.gamma(8.0, m / 8.0)))
    adata = ad.AnnData(np.array(columns, dtype=np.float32).T)
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.var_names = [f"g{j}" for j in range(n_shifted + n_bimodal)]
    adata.obs["batch"] = pd.Categorical(np.array(["a", "b", "c"])[batch])
    adata.obs["size_factors"] = s
    adata.var["bimodal_within_batch"] = np.arange(n_shifted + n_bimodal) >= n_shifted
    return adata


@pytest.fixture(scope="module")
def fitted():
    adata = batch_data()
    scmix.tl.fit_mixture(adata, key_added="plain")
    scmix.tl.fit_mixture(adata, covariates="batch")
    return adata


def test_batch_shifts_are_bimodal_without_covariates_and_not_with_them(fitted):
    truth = fitted.var["bimodal_within_batch"].to_numpy()
    plain, adjusted = fitted.var["plain_bimodal"], fitted.var["scmix_bimodal"]
    assert plain[~truth].all()  # the confusion covariates remove
    assert not adjusted[~truth].any()
    assert adjusted[truth].mean() >= 0.9
    # the shared effects are the simulated ones
    for column, value in zip(["batch_b", "batch_c"], BATCH_EFFECT[1:], strict=True):
        np.testing.assert_allclose(fitted.var[f"scmix_coef_{column}"], value, atol=0.15)


def test_outputs_record_the_design_and_the_bic_counts_it(fitted):
    params = fitted.uns["scmix"]["params"]
    assert params["covariates"] == ["batch"]
    assert list(params["design_columns"]) == ["batch_b", "batch_c"]
    assert dict(params["reference_levels"]) == {"batch": "a"}
    var, n = fitted.var, fitted.n_obs
    # K = 2 NB: 2 x (mu, theta) + 1 weight + 2 covariate effects
    np.testing.assert_allclose(var["scmix_bic"], -2 * var["scmix_loglik"] + 7 * np.log(n))
    np.testing.assert_allclose(var["scmix_bic_1"], -2 * var["scmix_loglik_1"] + 4 * np.log(n))
    assert (var["scmix_lrt"] >= -1e-6).all() and var["scmix_converged"].all()
    upper = fitted.layers["scmix_responsibility_1"]
    assert upper.shape == fitted.shape and ((upper >= 0) & (upper <= 1)).all()


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_one_component_equals_statsmodels_glm(family):
    adata = batch_data(n_cells=400, n_shifted=4, n_bimodal=0, seed=3)
    scmix.tl.fit_mixture(adata, 1, family=family, covariates="batch")
    s = adata.obs["size_factors"].to_numpy()
    design = np.column_stack(
        [np.ones(adata.n_obs), pd.get_dummies(adata.obs["batch"], drop_first=True, dtype=float)]
    )
    for j, gene in enumerate(adata.var_names):
        x = adata.X[:, j].astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if family == "nb":
                model = sm.NegativeBinomial(x, design, offset=np.log(s), loglike_method="nb2")
                result = model.fit(method="newton", maxiter=500, tol=1e-12, disp=0)
            else:
                poisson = sm.families.Poisson()
                result = sm.GLM(x, design, family=poisson, offset=np.log(s)).fit(tol=1e-12)
        var = adata.var.loc[gene]
        assert var["scmix_loglik"] == pytest.approx(result.llf, rel=1e-8)
        assert var["scmix_loglik_1"] == pytest.approx(result.llf, rel=1e-8)
        assert np.log(var["scmix_mean_0"]) == pytest.approx(result.params[0], abs=1e-5)
        assert var["scmix_coef_batch_c"] == pytest.approx(result.params[2], abs=1e-5)
        assert not var["scmix_bimodal"]


def test_dense_sparse_dask_and_chunks_give_identical_results(monkeypatch):
    import dask.array as da

    adata = batch_data(n_cells=300, n_shifted=3, n_bimodal=3, seed=5)
    options = {"covariates": "batch", "n_init": 2}
    want = scmix.tl.fit_mixture(adata, copy=True, **options)
    forms = {
        "csr": sparse.csr_matrix(adata.X),
        "dask": da.from_array(np.asarray(adata.X), chunks=(300, 2)),
    }
    for name, matrix in forms.items():
        other = adata.copy()
        other.X = matrix
        got = scmix.tl.fit_mixture(other, copy=True, **options)
        pd.testing.assert_frame_equal(got.var, want.var, obj=name)
    monkeypatch.setattr(covariate_fit, "CHUNK_BYTES", 1)  # one gene per chunk
    got = scmix.tl.fit_mixture(adata, copy=True, **options)
    pd.testing.assert_frame_equal(got.var, want.var, obj="chunks")
    np.testing.assert_array_equal(
        got.layers["scmix_responsibility_1"], want.layers["scmix_responsibility_1"]
    )


def test_bad_covariates_are_named_and_change_nothing():
    adata = batch_data(n_cells=100, n_shifted=2, n_bimodal=0)
    adata.obs["depth"] = np.where(np.arange(100) == 7, np.nan, 1.0 + np.arange(100) % 3)
    before = copy.deepcopy(adata)
    with pytest.raises(ValueError, match="'depth' has 1 missing values: cells 'c7'"):
        scmix.tl.fit_mixture(adata, covariates=["batch", "depth"])
    with pytest.raises(KeyError, match=r"'donor' is not a column of adata\.obs"):
        scmix.tl.fit_mixture(adata, covariates="donor")
    with pytest.raises(ValueError, match="shared=True, init"):
        scmix.tl.fit_mixture(adata, covariates="batch", shared=True)
    assert_adata_unchanged(before, adata)


def test_a_refit_without_covariates_drops_their_columns():
    adata = batch_data(n_cells=200, n_shifted=2, n_bimodal=0)
    scmix.tl.fit_mixture(adata, covariates="batch", n_init=1)
    assert "scmix_coef_batch_b" in adata.var and "scmix_single_coef_batch_c" in adata.var
    scmix.tl.fit_mixture(adata, n_init=1)
    assert not [c for c in adata.var if "coef" in c]
    assert adata.uns["scmix"]["params"]["covariates"] is None


def test_readers_use_each_genes_covariate_effects():
    adata = batch_data(n_cells=1000, n_shifted=3, n_bimodal=0, seed=7)
    scmix.tl.fit_mixture(adata, 1, covariates="batch")
    scmix.tl.fit_mixture(adata, 1, key_added="plain")
    # the fitted multiplier of each cell: s_i exp(z_i' gamma_j)
    var, s = adata.var, adata.obs["size_factors"].to_numpy()
    batch = adata.obs["batch"].to_numpy()
    for j, gene in enumerate(adata.var_names):
        gamma = {"a": 0.0, "b": var.loc[gene, "scmix_coef_batch_b"]}
        gamma["c"] = var.loc[gene, "scmix_coef_batch_c"]
        want = s * np.exp([gamma[b] for b in batch])
        np.testing.assert_allclose(gene_exposures(adata, "scmix", s, j)[0], want, rtol=1e-12)
    # so the residuals test the model with the effects: kept with them, rejected without
    scmix.tl.goodness_of_fit(adata)
    scmix.tl.goodness_of_fit(adata, key="plain")
    assert (adata.var["scmix_gof_pvalue"] > 1e-3).all()
    assert (adata.var["plain_gof_pvalue"] < 1e-2).all()
    # and a cell subset keeps them (with the warning that the fit saw other cells)
    part = adata[adata.obs["batch"] != "c"].copy()
    with pytest.warns(UserWarning, match="was made on 1000"):
        residuals = scmix.get.quantile_residuals(part, ["g0"])
    assert np.isfinite(residuals.to_numpy()).all() and residuals.shape == (part.n_obs, 1)


def test_select_n_components_with_covariates_prefers_one_component_for_shifts():
    adata = batch_data(n_cells=600, n_shifted=3, n_bimodal=3, seed=11)
    scmix.tl.select_n_components(adata, [1, 2], key_added="plain", n_init=2)
    scmix.tl.select_n_components(adata, [1, 2], covariates="batch", n_init=2)
    truth = np.where(adata.var["bimodal_within_batch"], 2, 1)
    assert (adata.var["plain_n_components"] == 2).all()
    np.testing.assert_array_equal(adata.var["scmix_k_n_components"], truth)
    # the same log-likelihoods as fit_mixture's, and the BIC counts the two effects
    scmix.tl.fit_mixture(adata, covariates="batch", n_init=2)
    var = adata.var
    np.testing.assert_allclose(var["scmix_k_loglik_2"], var["scmix_loglik"], rtol=1e-10)
    np.testing.assert_allclose(var["scmix_k_bic_1"], var["scmix_bic_1"], rtol=1e-10)


def test_cli_fits_with_covariates(tmp_path):
    from scmix.cli import main

    adata = batch_data(n_cells=300, n_shifted=2, n_bimodal=1, seed=12)
    source, output = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    adata.write_h5ad(source)
    main(["fit", str(source), "--output", str(output), "--covariates", "batch", "--quiet"])
    result = ad.read_h5ad(output)
    assert list(result.uns["scmix"]["params"]["covariates"]) == ["batch"]
    assert "scmix_coef_batch_b" in result.var


def test_estimators_take_covariates_as_a_design_matrix():
    from scmix.models import NegativeBinomialMixture

    adata = batch_data(n_cells=400, n_shifted=2, n_bimodal=2, seed=13)
    scmix.tl.fit_mixture(adata, covariates="batch", n_init=2)
    s = adata.obs["size_factors"].to_numpy()
    z = pd.get_dummies(adata.obs["batch"], drop_first=True, dtype=float).to_numpy()
    model = NegativeBinomialMixture(2, n_init=2).fit(adata.X, size_factors=s, covariates=z)
    var = adata.var
    # the same engine on the same numbers: the same results, to the last bit
    np.testing.assert_array_equal(model.lower_bound_, var["scmix_loglik"])
    np.testing.assert_array_equal(model.coef_[:, 1], var["scmix_coef_batch_c"])
    np.testing.assert_array_equal(model.single_coef_[:, 0], var["scmix_single_coef_batch_b"])
    np.testing.assert_array_equal(model.bimodal_, var["scmix_bimodal"])
    # evaluation at the fit: the fitted log-likelihood and the stored responsibilities
    loglik = model.log_likelihood(adata.X, size_factors=s, covariates=z)
    np.testing.assert_allclose(loglik, model.lower_bound_, rtol=1e-9)
    proba = model.predict_proba(adata.X, size_factors=s, covariates=z)
    np.testing.assert_allclose(proba[:, :, 1], adata.layers["scmix_responsibility_1"], atol=1e-6)
    bic = model.bic(adata.X, size_factors=s, covariates=z)
    np.testing.assert_allclose(bic, var["scmix_bic"], rtol=1e-9)
    with pytest.raises(ValueError, match="fitted with 2 covariate columns"):
        model.predict(adata.X, size_factors=s)
    with pytest.raises(ValueError, match="full rank"):
        NegativeBinomialMixture(2).fit(adata.X, size_factors=s, covariates=np.c_[z, z[:, :1]])
