"""fit_mixture(covariates=..., n_bootstrap=B): the parametric bootstrap of the LRT with
replicates drawn from each gene's one-component GLM, calibrated under the null."""

from __future__ import annotations

import copy

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from adata_helpers import assert_adata_unchanged

import scmix
from scmix._core.stats import bootstrap

LEVELS = np.array(["a", "b", "c"])


def batch_null_data(n_cells=200, n_genes=160, n_bimodal=0, seed=0) -> ad.AnnData:
    """NB counts with bimodal size factors (modes 0.5 and 2) and a three-level batch
    whose effect on each gene's log mean is 0, +-U(0.5, 1), +-U(0.5, 1); one component,
    except the first ``n_bimodal`` genes: two, means 4x apart, weights 0.5 in every batch,
    with dispersion 1 / theta = 0.05 (1 / U(3, 10) for the others)."""
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 3, n_cells)
    s = np.exp(np.log(np.where(rng.random(n_cells) < 0.5, 0.5, 2.0)) + rng.normal(0, 0.2, n_cells))
    columns, shifts = [], []
    for j in range(n_genes):
        shift = np.r_[0.0, rng.uniform(0.5, 1.0, 2) * rng.choice([-1.0, 1.0], 2)]
        theta, level = rng.uniform(3.0, 10.0), rng.uniform(3.0, 15.0)
        if j < n_bimodal:
            theta, level = 20.0, level * np.where(rng.random(n_cells) < 0.5, 1.0, 4.0)
        mean = s * level * np.exp(shift[batch])
        columns.append(rng.poisson(rng.gamma(theta, mean / theta)))
        shifts.append(shift[1:])
    adata = ad.AnnData(np.array(columns, dtype=np.float32).T)
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    adata.obs["batch"] = pd.Categorical(LEVELS[batch])
    adata.obs["size_factors"] = s
    adata.var["shift_b"], adata.var["shift_c"] = np.array(shifts).T
    return adata


def discrete_uniform_ks(p: np.ndarray, n_bootstrap: int, n_draws: int = 20000):
    """Kolmogorov-Smirnov distance of ``p`` from the uniform on {1, ..., B+1} / (B+1)
    (the null law of the bootstrap p-value without ties) and its Monte-Carlo p-value.
    Both CDFs step at the grid points, so the distance is their largest gap there."""
    n_levels = n_bootstrap + 1
    grid = np.arange(1, n_levels + 1) / n_levels
    level = np.rint(p * n_levels).astype(int) - 1
    np.testing.assert_allclose(grid[level], p, rtol=1e-12)  # p on the grid

    def distance(counts):
        return np.abs(np.cumsum(counts, axis=-1) / p.size - grid).max(axis=-1)

    observed = distance(np.bincount(level, minlength=n_levels))
    rng = np.random.default_rng(1)
    null = distance(rng.multinomial(p.size, np.full(n_levels, 1 / n_levels), size=n_draws))
    return observed, (1 + np.sum(null >= observed - 1e-12)) / (n_draws + 1)


B_NULL = 19


@pytest.fixture(scope="module")
def null_fit():
    """160 null genes at 200 cells, B = 19, one start (measured: 11-16 s here)."""
    adata = batch_null_data()
    scmix.tl.fit_mixture(adata, covariates="batch", n_init=1, n_bootstrap=B_NULL)
    return adata


def test_null_pvalues_with_a_batch_effect_are_uniform(null_fit):
    """Measured: 13 of 160 p-values (0.081) at most 0.1, where 0.1 is expected, and a
    KS p-value of 0.91 (seeds 1-5 of the data: 0.075-0.15 and 0.17-0.97)."""
    var = null_fit.var
    p = var["scmix_lrt_pvalue"].to_numpy()
    assert np.isfinite(p).all() and p.min() >= 1 / (B_NULL + 1) and p.max() <= 1
    # P(p <= 0.1) = 2 / 20 exactly under the null; a 3-sigma binomial band
    level, band = 0.1, 3 * np.sqrt(0.1 * 0.9 / p.size)
    assert abs(np.mean(p <= level) - level) <= band
    _, ks_pvalue = discrete_uniform_ks(p, B_NULL)
    assert ks_pvalue > 1e-3
    assert (var["scmix_lrt_padj"] >= var["scmix_lrt_pvalue"]).all()
    assert null_fit.uns["scmix"]["params"]["n_bootstrap"] == B_NULL
    # the GLM the replicates come from found the simulated shifts
    for column in ("b", "c"):
        error = var[f"scmix_single_coef_batch_{column}"] - var[f"shift_{column}"]
        assert np.abs(error).median() < 0.1


def test_two_components_within_batches_get_the_smallest_pvalue():
    """Means 4x apart, weights 0.5 in each batch, with a batch shift: measured p = 1/20
    for all 12 genes."""
    adata = batch_null_data(n_genes=12, n_bimodal=12, seed=1)
    scmix.tl.fit_mixture(adata, covariates="batch", n_init=1, n_bootstrap=19)
    np.testing.assert_array_equal(adata.var["scmix_lrt_pvalue"], 1 / 20)


def test_a_genes_pvalue_depends_on_its_counts_and_the_seed_only(null_fit):
    genes = ["g3", "g10", "g57"]
    want = null_fit.var["scmix_lrt_pvalue"]
    # alone, in another order, with other genes: the same replicates, the same p-values
    for subset in (genes[::-1], [genes[1]], [*genes, "g0", "g1", "g2"]):
        part = null_fit[:, subset].copy()
        scmix.tl.fit_mixture(part, covariates="batch", n_init=1, n_bootstrap=B_NULL)
        pd.testing.assert_series_equal(part.var.loc[subset, "scmix_lrt_pvalue"], want[subset])
    # another seed draws other replicates
    part = null_fit[:, genes].copy()
    scmix.tl.fit_mixture(part, covariates="batch", n_init=1, n_bootstrap=B_NULL, random_state=7)
    assert (part.var["scmix_lrt_pvalue"] != want[genes]).any()


def test_early_stop_with_covariates_gives_besag_clifford_pvalues(null_fit, monkeypatch):
    """h = 2 of B = 39: a gene stops once 2 of its replicates reached its LRT, after L
    replicates (a multiple of 2), with p = #exceed / L >= 2 / L."""
    calls = []
    real = bootstrap.bootstrap_pvalues

    def counting(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(bootstrap, "bootstrap_pvalues", counting)
    adata = null_fit[:, :30].copy()
    scmix.tl.fit_mixture(
        adata, covariates="batch", n_init=1, n_bootstrap=39, bootstrap_early_stop=2
    )
    ((pvalue, drawn),) = calls
    np.testing.assert_array_equal(adata.var["scmix_lrt_pvalue"], pvalue)
    stopped = drawn < 39
    exceed = pvalue[stopped] * drawn[stopped]
    np.testing.assert_allclose(exceed, np.rint(exceed))
    assert (exceed >= 2).all() and (drawn % 2 == 0)[stopped].all()
    assert stopped.mean() > 0.8 and drawn.mean() < 12  # null genes: measured 27 of 30, 8.2
    # a gene that drew all 39 saw fewer than 2 exceedances: p = (1 + #exceed) / 40
    assert (pvalue[~stopped] <= 2 / 40).all()


def test_shared_init_and_one_component_are_still_refused_with_covariates():
    adata = batch_null_data(n_cells=60, n_genes=3)
    adata.obsm["modes"] = np.full((adata.n_obs, 2), 0.5)
    before = copy.deepcopy(adata)
    with pytest.raises(ValueError, match="covariates cannot be combined with shared=True, init"):
        scmix.tl.fit_mixture(adata, covariates="batch", shared=True)
    with pytest.raises(ValueError, match="covariates cannot be combined with shared=True, init"):
        scmix.tl.fit_mixture(adata, covariates="batch", init="modes", n_bootstrap=9)
    with pytest.raises(ValueError, match="n_components > 1"):
        scmix.tl.fit_mixture(adata, 1, covariates="batch", n_bootstrap=9)
    assert_adata_unchanged(before, adata)
