"""``fit_mixture(pvalues="fast")``: LRT p-values from a null distribution simulated on
a grid shared by the genes (scmix._core.stats.null_grid), checked for calibration under
the one-component model with bimodal size factors, power, agreement with the exact
bootstrap, and independence from the other genes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import scmix
from scmix._core.errors import InputError


def bimodal_size_factors(n_cells: int, rng) -> np.ndarray:
    """Two modes a factor 4 apart (a third of the cells in the upper one)."""
    upper = rng.random(n_cells) < 1 / 3
    s = rng.lognormal(np.where(upper, np.log(4.0), 0.0), 0.25)
    return s / s.mean()


def counts_of(mean: np.ndarray, dispersion: np.ndarray, rng) -> np.ndarray:
    """NB counts (cells, genes) with means (cells, genes) and per-gene dispersions."""
    theta = 1.0 / dispersion
    return rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)


def null_data(n_genes: int, n_cells: int, seed: int) -> ad.AnnData:
    """One-component NB genes, means 0.05-50 per unit size factor, dispersions 0.01-2."""
    rng = np.random.default_rng(seed)
    s = bimodal_size_factors(n_cells, rng)
    mu = np.exp(rng.uniform(np.log(0.05), np.log(50), n_genes))
    phi = np.exp(rng.uniform(np.log(0.01), np.log(2), n_genes))
    adata = ad.AnnData(counts_of(s[:, None] * mu[None], phi, rng))
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    adata.obs["size_factors"] = s
    return adata


def test_fast_pvalues_are_calibrated_under_the_null():
    adata = null_data(n_genes=300, n_cells=400, seed=11)
    scmix.tl.fit_mixture(adata, pvalues="fast")
    p = adata.var["scmix_lrt_pvalue"]
    fitted = adata.var["scmix_loglik"].notna()
    assert p[fitted].notna().all() and p[~fitted].isna().all()
    p = p[fitted].to_numpy()
    assert p.size >= 280
    assert 0.02 <= np.mean(p <= 0.05) <= 0.08  # the band at the 5% level
    assert stats.kstest(p, "uniform").pvalue > 1e-3
    padj = adata.var["scmix_lrt_padj"][fitted].to_numpy()
    assert (padj >= p - 1e-12).all()
    assert adata.uns["scmix"]["params"]["pvalues"] == "fast"
    assert adata.uns["scmix"]["params"]["n_bootstrap"] == 39


def test_fast_pvalues_find_two_components_three_fold_apart():
    rng = np.random.default_rng(3)
    n_cells, n_genes = 1000, 20
    s = bimodal_size_factors(n_cells, rng)
    upper = rng.random((n_cells, n_genes)) < 0.5
    mean = s[:, None] * 4.0 * np.where(upper, 3.0, 1.0)
    adata = ad.AnnData(counts_of(mean, np.full(n_genes, 0.05), rng))
    adata.obs["size_factors"] = s
    scmix.tl.fit_mixture(adata, pvalues="fast", call="padj")
    # every LRT lies far beyond the null replicates (the exponential tail takes the
    # p-value below the Monte Carlo floor 1 / 50), and call="padj" calls every gene
    assert (adata.var["scmix_lrt_pvalue"] < 1e-6).all()
    assert adata.var["scmix_bimodal"].all()


def test_fast_pvalues_agree_with_the_exact_bootstrap():
    rng = np.random.default_rng(5)
    n_cells, n_genes = 300, 40
    s = bimodal_size_factors(n_cells, rng)
    # half one-component, half with an upper component of growing size and weight
    ratio = np.where(np.arange(n_genes) < n_genes // 2, 1.0, np.linspace(1.5, 3.0, n_genes))
    upper = rng.random((n_cells, n_genes)) < 0.3
    mean = s[:, None] * rng.uniform(1, 20, n_genes) * np.where(upper, ratio, 1.0)
    adata = ad.AnnData(counts_of(mean, rng.uniform(0.02, 0.5, n_genes), rng))
    adata.obs["size_factors"] = s
    scmix.tl.fit_mixture(adata, pvalues="fast", key_added="fast")
    scmix.tl.fit_mixture(adata, pvalues="bootstrap", n_bootstrap=199, key_added="exact")
    rho = stats.spearmanr(adata.var["fast_lrt_pvalue"], adata.var["exact_lrt_pvalue"]).statistic
    assert rho >= 0.9


def test_a_genes_fast_pvalue_depends_on_its_counts_and_the_seed_only():
    adata = null_data(n_genes=12, n_cells=200, seed=2)
    scmix.tl.fit_mixture(adata, pvalues="fast")
    together = adata.var["scmix_lrt_pvalue"].copy()
    part = adata[:, ["g7", "g3", "g10"]].copy()
    scmix.tl.fit_mixture(part, pvalues="fast")
    pd.testing.assert_series_equal(part.var["scmix_lrt_pvalue"], together[part.var_names])
    again = adata.copy()
    scmix.tl.fit_mixture(again, pvalues="fast")
    pd.testing.assert_series_equal(again.var["scmix_lrt_pvalue"], together)
    scmix.tl.fit_mixture(again, pvalues="fast", random_state=1)
    assert not np.allclose(again.var["scmix_lrt_pvalue"], together, equal_nan=True)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pvalues": "exact"}, "pvalues must be"),
        ({"pvalues": "fast", "n_components": 1}, "n_components > 1"),
        ({"pvalues": "fast", "bootstrap_early_stop": 5}, "bootstrap_early_stop"),
        ({"pvalues": "fast", "covariates": "batch"}, "pvalues='fast'"),
        ({"pvalues": "bootstrap", "shared": True}, "shared=True"),
        ({"call": "padj"}, "call='padj' needs p-values"),
        ({"call": "fdr", "pvalues": "fast"}, "call must be"),
        ({"call": "padj", "pvalues": "fast", "padj_threshold": 1.5}, "padj_threshold"),
    ],
)
def test_bad_pvalue_options_are_refused_and_change_nothing(options, message):
    adata = null_data(n_genes=3, n_cells=50, seed=0)
    adata.obs["batch"] = pd.Categorical(np.arange(50) % 2)
    before = adata.copy()
    with pytest.raises(InputError, match=message):
        scmix.tl.fit_mixture(adata, **options)
    assert list(adata.var.columns) == list(before.var.columns)
    assert set(adata.uns) == set(before.uns)


def test_call_padj_calls_by_the_adjusted_pvalue_of_a_proper_mixture():
    rng = np.random.default_rng(8)
    n_cells, n_genes = 400, 30
    s = bimodal_size_factors(n_cells, rng)
    ratio = np.where(np.arange(n_genes) % 2 == 0, 1.0, 4.0)  # half of them bimodal
    upper = rng.random((n_cells, n_genes)) < 0.4
    mean = s[:, None] * rng.uniform(0.5, 10, n_genes) * np.where(upper, ratio, 1.0)
    adata = ad.AnnData(counts_of(mean, np.full(n_genes, 0.1), rng))
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    adata.obs["size_factors"] = s
    scmix.tl.fit_mixture(adata, pvalues="fast", call="padj", padj_threshold=0.01)
    var = adata.var
    weights = var[["scmix_weight_0", "scmix_weight_1"]].min(axis=1)
    expected = (var["scmix_lrt_padj"] <= 0.01) & (weights >= 0.05) & var["scmix_converged"]
    pd.testing.assert_series_equal(var["scmix_bimodal"], expected, check_names=False)
    assert var["scmix_bimodal"].iloc[1::2].mean() >= 0.8  # the bimodal half is found
    assert not var["scmix_bimodal"].iloc[::2].any()
    params = adata.uns["scmix"]["params"]
    assert (params["call"], params["padj_threshold"]) == ("padj", 0.01)
    # the default call is by delta BIC, with the p-values only written alongside
    scmix.tl.fit_mixture(adata, pvalues="fast", key_added="bic")
    var = adata.var
    bic_call = (var["bic_delta_bic"] > 10) & (weights >= 0.05) & var["bic_converged"]
    assert (adata.var["bic_bimodal"] == bic_call).all()
