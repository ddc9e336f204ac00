"""Goodness of fit: randomized quantile residuals against hand computations, calibration
under the model, power against wrong models, and the real ERCC data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import scmix
from scmix._core.families import get_family
from scmix._core.stats import gof


def test_residuals_match_a_hand_computation():
    """u = F(x-1) + v (F(x) - F(x-1)) for a two-component NB/Poisson mixture, by scipy.stats."""
    x = np.array([[0.0, 3.0, 10.0, 25.0]])
    sf = np.array([0.5, 1.0, 1.5, 2.0])
    mean, phi, w = np.array([[4.0, 12.0]]), np.array([[0.2, 0.0]]), np.array([[0.3, 0.7]])
    v = np.array([[0.1, 0.5, 0.9, 0.3]])
    family = get_family("nb")
    u = gof.quantile_residuals(family, x, sf, family.params_from_summary(mean, phi), w, v)
    for i in range(4):
        m0, m1 = sf[i] * 4.0, sf[i] * 12.0

        def cdf(value, m0=m0, m1=m1):
            return 0.3 * stats.nbinom.cdf(value, 5.0, 5.0 / (5.0 + m0)) + 0.7 * stats.poisson.cdf(
                value, m1
            )

        expected = cdf(x[0, i] - 1) + v[0, i] * (cdf(x[0, i]) - cdf(x[0, i] - 1))
        assert u[0, i] == pytest.approx(expected, rel=1e-12)


def test_residuals_are_uniform_at_the_true_parameters():
    rng = np.random.default_rng(0)
    n = 20000
    sf = np.exp(rng.normal(0, 0.5, n))
    family = get_family("nb")
    params = family.params_from_summary(np.array([[3.0]]), np.array([[0.5]]))
    x = family.sample(sf[None, :] * 3.0, params, rng)
    u = gof.quantile_residuals(family, x, sf, params, np.ones((1, 1)), rng.random((1, n)))
    assert stats.kstest(u[0], "uniform").pvalue > 0.01
    _, p = gof.ks_uniform(u)
    assert p[0] == pytest.approx(stats.kstest(u[0], "uniform").pvalue, rel=1e-6)


@pytest.fixture(scope="module")
def null_nb():
    """300 genes from one NB each, bimodal size factors (used as offsets)."""
    adata = scmix.datasets.simulate(
        n_cells=800, n_genes=300, n_components=1, dispersion=0.2, random_state=5
    )
    adata.var_names = [f"g{j}" for j in range(adata.n_vars)]
    return adata


def test_calibrated_under_the_model_and_powerful_against_poisson(null_nb):
    adata = null_nb.copy()
    scmix.tl.fit_mixture(adata, n_components=1, key_added="nb")
    # at the true parameters the p-values of 300 genes are uniform
    truth = adata.copy()
    truth.var["nb_single_mean"] = truth.var["true_mean_0"]
    truth.var["nb_single_dispersion"] = truth.var["true_dispersion_0"]
    scmix.tl.goodness_of_fit(truth, key="nb", model="one_component")
    assert stats.kstest(truth.var["nb_single_gof_pvalue"], "uniform").pvalue > 0.01
    # at the fitted parameters the test is conservative: few rejections, never many
    scmix.tl.goodness_of_fit(adata, key="nb")
    p = adata.var["nb_gof_pvalue"].to_numpy()
    assert np.mean(p < 0.05) <= 0.05
    scmix.tl.fit_mixture(adata, n_components=1, family="poisson", key_added="pois")
    scmix.tl.goodness_of_fit(adata, key="pois")
    over = adata.var["true_mean_0"] > 5  # overdispersion is visible once counts are not tiny
    assert (adata.var.loc[over, "pois_gof_pvalue"] < 0.05 / adata.n_vars).mean() > 0.9


def test_two_component_genes_reject_one_component_only():
    adata = scmix.datasets.simulate(
        n_cells=1000,
        n_genes=10,
        n_components=2,
        fold_change=6.0,
        dispersion=0.05,
        random_state=9,
    )
    scmix.tl.fit_mixture(adata, n_components=2)
    scmix.tl.goodness_of_fit(adata, model="one_component")
    scmix.tl.goodness_of_fit(adata, model="mixture")
    assert (adata.var["scmix_single_gof_pvalue"] < 1e-3).all()
    assert (adata.var["scmix_gof_pvalue"] > 1e-3).mean() >= 0.9
    assert set(adata.uns["scmix"]["goodness_of_fit"]) == {"mixture", "one_component"}


def test_a_gene_does_not_depend_on_the_others(null_nb):
    adata = null_nb[:, :40].copy()
    scmix.tl.fit_mixture(adata, n_components=1, n_init=1)
    scmix.tl.goodness_of_fit(adata, random_state=3)
    alone = adata[:, ["g7"]].copy()
    scmix.tl.goodness_of_fit(alone, random_state=3)
    assert alone.var["scmix_gof_pvalue"].iloc[0] == adata.var.loc["g7", "scmix_gof_pvalue"]
    residuals = scmix.tl._goodness_of_fit.quantile_residuals(adata, ["g7"], random_state=3)
    assert residuals.shape == (adata.n_obs, 1) and np.isfinite(residuals.to_numpy()).all()


def test_errors_say_what_to_run(null_nb):
    with pytest.raises(KeyError, match="fit_mixture"):
        scmix.tl.goodness_of_fit(null_nb.copy(), key="absent")
    adata = null_nb[:, :5].copy()
    scmix.tl.fit_mixture(adata, n_components=1, n_init=1)
    with pytest.raises(ValueError, match="model"):
        scmix.tl.goodness_of_fit(adata, model="two")


@pytest.mark.parametrize("sample", ["20312", "20311"])
def test_svensson_nb_fits_better_than_poisson(sample, data_dir):
    """K=1 with spike-in size factors: NB rejected for few ERCC, Poisson for more
    (published: 6-7 of 88 for NB, 9-14 for Poisson; see the closing notes)."""
    adata = scmix.datasets.svensson2017(sample, data_dir=data_dir)
    scmix.pp.size_factors(adata, method="spike_in")
    rejected = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the two ERCC without counts
        for family in ("nb", "poisson"):
            scmix.tl.fit_mixture(adata, n_components=1, family=family, key_added=family)
            scmix.tl.goodness_of_fit(adata, key=family)
            p = adata.var[f"{family}_gof_pvalue"]
            assert p.notna().sum() == 88
            rejected[family] = int((p < 0.05 / 88).sum())
    assert rejected["nb"] <= 7 < rejected["poisson"]
