"""Parametric bootstrap of the LRT: calibration under the null, power, BH adjustment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

import scmix
from scmix._core.stats import bootstrap, selection


def test_benjamini_hochberg_matches_statsmodels():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(200), rng.random(20) * 1e-3, [np.nan, np.nan]])
    ours = selection.benjamini_hochberg(p)
    reference = multipletests(p[:-2], method="fdr_bh")[1]
    np.testing.assert_allclose(ours[:-2], reference, rtol=1e-12)
    assert np.isnan(ours[-2:]).all()


@pytest.fixture(scope="module")
def null_fit():
    """300 genes from one NB each with bimodal size factors, used as offsets."""
    adata = scmix.datasets.simulate(
        n_cells=250, n_genes=300, n_components=1, dispersion=0.2, random_state=11
    )
    scmix.tl.fit_mixture(adata, n_init=1, n_bootstrap=39)
    return adata


def test_null_pvalues_are_uniform(null_fit):
    p = null_fit.var["scmix_lrt_pvalue"].to_numpy()
    assert np.all((p >= 1 / 40) & (p <= 1))
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert np.mean(p < 0.05) < 0.08
    assert null_fit.var["scmix_bimodal"].mean() <= 0.03  # the BIC call, under the null
    assert null_fit.uns["scmix"]["params"]["n_bootstrap"] == 39


def test_power_on_two_component_genes():
    """Measured: every gene with means 3x apart at 250 cells gets the smallest p-value."""
    adata = scmix.datasets.simulate(
        n_cells=250,
        n_genes=20,
        n_components=2,
        fold_change=3.0,
        dispersion=0.05,
        random_state=12,
    )
    scmix.tl.fit_mixture(adata, n_init=1, n_bootstrap=19)
    p = adata.var["scmix_lrt_pvalue"]
    assert (p <= 0.05).mean() >= 0.9
    assert (adata.var["scmix_lrt_padj"] >= p).all()


def test_a_gene_does_not_depend_on_the_others(null_fit):
    part = null_fit[:, ["gene_3", "gene_10"]].copy()
    scmix.tl.fit_mixture(part, n_init=1, n_bootstrap=39)
    np.testing.assert_array_equal(
        part.var["scmix_lrt_pvalue"], null_fit.var.loc[["gene_3", "gene_10"], "scmix_lrt_pvalue"]
    )


def test_bootstrap_needs_two_components(null_fit):
    adata = null_fit[:, :3].copy()
    with pytest.raises(ValueError, match="n_components > 1"):
        scmix.tl.fit_mixture(adata, n_components=1, n_bootstrap=10)
    with pytest.raises(ValueError, match="n_bootstrap"):
        scmix.tl.fit_mixture(adata, n_bootstrap=-1)


def test_random_starts_of_a_gene_do_not_depend_on_the_others(null_fit):
    """With k-means++ starts (n_init=3) each replicate's starts come from its gene's stream."""
    genes = ["gene_1", "gene_2", "gene_3"]
    full = null_fit[:, [*genes, "gene_4", "gene_5"]].copy()
    part = null_fit[:, genes[::-1]].copy()
    for adata in (full, part):
        scmix.tl.fit_mixture(adata, n_init=3, n_bootstrap=9)
    np.testing.assert_array_equal(
        full.var.loc[genes, "scmix_lrt_pvalue"], part.var.loc[genes, "scmix_lrt_pvalue"]
    )


def test_early_stop_is_valid_and_cheaper(null_fit):
    """Besag-Clifford stopping: P(p <= a) <= a over the null genes, with far fewer fits."""
    adata = null_fit[:, :150].copy()
    calls = []
    real = bootstrap.bootstrap_pvalues

    def counting(*args, **kwargs):
        pvalue, drawn = real(*args, **kwargs)
        calls.append(drawn)
        return pvalue, drawn

    bootstrap.bootstrap_pvalues = counting
    try:
        scmix.tl.fit_mixture(adata, n_init=1, n_bootstrap=99, bootstrap_early_stop=10)
    finally:
        bootstrap.bootstrap_pvalues = real
    p = adata.var["scmix_lrt_pvalue"].to_numpy()
    for level in (0.05, 0.1, 0.25):
        assert np.mean(p <= level) <= level + 2.5 * np.sqrt(level * (1 - level) / p.size)
    (drawn,) = calls
    assert drawn.mean() < 50  # measured 42 instead of 99 per gene


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_glm_replicates_have_the_glm_mean_and_variance(family):
    """Replicates of a fit with covariates: mean s_i exp(d_i' beta_j) per cell, variance
    m + m^2 / theta_j (NB) or m (Poisson), each gene's from its own generator."""
    from scmix._core.families import get_family

    fam = get_family(family)
    rng = np.random.default_rng(0)
    n_cells, m = 12, 20000
    size_factors = rng.lognormal(0, 0.5, n_cells)
    design = np.column_stack(
        [np.ones(n_cells), np.arange(n_cells) % 3 == 1, rng.normal(size=n_cells)]
    )
    glm = {"coef": np.array([[1.0, 0.8, -0.3], [2.0, -1.0, 0.5]]), "log_theta": np.log([2.0, 8.0])}
    counts = bootstrap.simulate_glm_replicates(
        fam, glm, size_factors, design, [bootstrap.gene_rng(0, g, 1) for g in "ab"], m
    )
    assert counts.shape == (2 * m, n_cells)
    for j in range(2):
        block = counts[j * m : (j + 1) * m]
        mean = size_factors * np.exp(design @ glm["coef"][j])
        variance = mean + (mean**2 / np.exp(glm["log_theta"][j]) if family == "nb" else 0)
        # 5 standard errors of the mean, 10% on the variance (20,000 draws)
        np.testing.assert_array_less(np.abs(block.mean(axis=0) - mean), 5 * np.sqrt(variance / m))
        np.testing.assert_allclose(block.var(axis=0), variance, rtol=0.1)
    # gene b alone draws what it drew beside gene a
    alone = bootstrap.simulate_glm_replicates(
        fam,
        {key: values[1:] for key, values in glm.items()},
        size_factors,
        design,
        [bootstrap.gene_rng(0, "b", 1)],
        m,
    )
    np.testing.assert_array_equal(alone, counts[m:])
