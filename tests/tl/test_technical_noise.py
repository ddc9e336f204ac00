"""scmix.tl.technical_noise and its engine: the trend recovers known coefficients, the
NB log-likelihood matches scipy, the null fit maximises the constrained likelihood, the
test is calibrated under the technical model with bimodal size factors, finds extra
biological dispersion, and bad inputs are refused without touching the AnnData."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import stats

import scmix
from scmix import InputError, InputKeyError
from scmix._core.families import get_family
from scmix._core.fit.matrix import fit_matrix
from scmix._core.stats import technical_noise as engine

A0, A1 = 0.05, 0.5
N_CELLS = 600
N_SPIKES = 90


def _size_factors(rng, n=N_CELLS):
    """Bimodal size factors (two modes a factor 4 apart), mean 1."""
    s = np.where(rng.random(n) < 0.5, 0.5, 2.0) * np.exp(rng.normal(0.0, 0.2, n))
    return s / s.mean()


def _nb(rng, s, mu, phi):
    """Counts (cells, genes) with mean s_i mu_j and dispersion phi_j."""
    return rng.negative_binomial(1.0 / phi, 1.0 / (1.0 + s[:, None] * mu * phi))


def _adata(rng, s, spike_mu, gene_mu, gene_phi, a0=A0, a1=A1):
    spikes = _nb(rng, s, spike_mu, a0 + a1 / spike_mu)
    genes = _nb(rng, s, gene_mu, gene_phi)
    adata = ad.AnnData(np.hstack([genes, spikes]).astype(np.float32))
    adata.var_names = [f"g{j}" for j in range(gene_mu.size)] + [
        f"ERCC-{j}" for j in range(spike_mu.size)
    ]
    adata.var["spike_in"] = np.r_[np.zeros(gene_mu.size, bool), np.ones(spike_mu.size, bool)]
    adata.obs["size_factors"] = s * 2.5  # any scale: rescaled to mean 1
    return adata


def _log_uniform(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


# --- engine -------------------------------------------------------------------------


def test_trend_recovers_exact_coefficients():
    mean = np.geomspace(0.5, 5000, 40)
    trend = engine.fit_trend(mean, 0.1 + 2.0 / mean)
    assert trend.converged
    assert trend.a0 == pytest.approx(0.1, rel=1e-8)
    assert trend.a1 == pytest.approx(2.0, rel=1e-8)


def test_trend_coefficients_are_non_negative():
    mean = np.geomspace(1, 1000, 30)
    trend = engine.fit_trend(mean, 0.2 - 0.0001 * mean)  # would want a negative a1/a0
    assert trend.a0 >= 0 and trend.a1 >= 0


def test_nb_loglik_matches_scipy():
    rng = np.random.default_rng(0)
    s = _size_factors(rng, 50)
    mu, phi = np.array([0.7, 20.0, 300.0]), np.array([0.5, 0.1, 0.0])
    x = _nb(rng, s, mu, np.maximum(phi, 1e-9)).astype(float)
    m = s[:, None] * mu
    expected = np.where(
        phi > 0,
        stats.nbinom.logpmf(x, 1 / np.where(phi > 0, phi, 1), 1 / (1 + m * phi)),
        stats.poisson.logpmf(x, m),
    ).sum(axis=0)
    np.testing.assert_allclose(engine.nb_loglik(x, s, mu, phi), expected, rtol=1e-10)


def test_null_fit_maximises_the_constrained_likelihood():
    rng = np.random.default_rng(1)
    s = _size_factors(rng, 300)
    trend = engine.Trend(A0, A1, 0, 0, True)
    mu = np.array([0.3, 5.0, 80.0])
    x = _nb(rng, s, mu, A0 + A1 / mu + 0.4).astype(float)
    mean, loglik = engine.constrained_fit(x, s, trend)
    for j in range(mu.size):
        grid = mean[j] * np.exp(np.linspace(-0.05, 0.05, 201))
        profile = [engine.nb_loglik(x[:, [j]], s, [g], [trend(g)])[0] for g in grid]
        assert loglik[j] >= max(profile) - 1e-8


def test_pvalue_is_half_chi2_above_the_trend():
    rng = np.random.default_rng(2)
    s = _size_factors(rng, 400)
    trend = engine.Trend(A0, A1, 0, 0, True)
    mu = np.array([10.0, 10.0])
    x = _nb(rng, s, mu, np.array([0.6, 0.6])).astype(float)
    free = fit_matrix(x, s, family=get_family("nb"), n_components=1, store_resp=False)
    disp = free.dispersion[:, 0]
    result = engine.noise_test(x, s, free.params["mu"][:, 0], disp, free.loglik, trend)
    assert (disp > trend(free.params["mu"][:, 0])).all()
    np.testing.assert_allclose(result.pvalue, 0.5 * stats.chi2.sf(result.statistic, 1))


# --- calibration and power ------------------------------------------------------------


def _null_rate(adata, genes):
    return float((adata.var["noise_pvalue"].to_numpy()[genes] < 0.05).mean())


def test_calibrated_under_the_fitted_technical_trend():
    """Genes simulated from the trend fitted on the spike-ins (bimodal size factors)."""
    rng = np.random.default_rng(20)
    s = _size_factors(rng)
    spike_mu = _log_uniform(rng, 0.5, 2000, N_SPIKES)
    first = _adata(rng, s, spike_mu, np.array([5.0]), np.array([0.1]))
    scmix.tl.technical_noise(first, spike_in_size_factors="size_factors")
    fitted = first.uns["noise"]["trend"]
    gene_mu = _log_uniform(rng, 0.5, 500, 2000)
    adata = _adata(rng, s, spike_mu, gene_mu, fitted["a0"] + fitted["a1"] / gene_mu)
    scmix.tl.technical_noise(adata, spike_in_size_factors="size_factors")
    rate = _null_rate(adata, np.arange(gene_mu.size))
    assert 0.02 <= rate <= 0.08, rate


def test_calibrated_with_the_trend_estimated_and_default_spike_in_factors():
    """Genes and spike-ins from the same true trend: the trend's estimation error and the
    default spike-in size factors (totals) included."""
    rng = np.random.default_rng(21)
    s = _size_factors(rng)
    spike_mu = _log_uniform(rng, 0.5, 2000, N_SPIKES)
    gene_mu = _log_uniform(rng, 0.5, 500, 2000)
    adata = _adata(rng, s, spike_mu, gene_mu, A0 + A1 / gene_mu)
    scmix.tl.technical_noise(adata)
    trend = adata.uns["noise"]["trend"]
    assert trend["a0"] == pytest.approx(A0, rel=0.3)
    assert trend["a1"] == pytest.approx(A1, rel=0.3)
    rate = _null_rate(adata, np.arange(gene_mu.size))
    assert 0.02 <= rate <= 0.08, rate


def test_power_grows_with_extra_dispersion():
    rng = np.random.default_rng(22)
    s = _size_factors(rng)
    spike_mu = _log_uniform(rng, 0.5, 2000, N_SPIKES)
    extras = [0.0, 0.05, 0.2, 1.0]
    per = 300
    gene_mu = np.tile(_log_uniform(rng, 2, 200, per), len(extras))
    extra = np.repeat(extras, per)
    adata = _adata(rng, s, spike_mu, gene_mu, A0 + A1 / gene_mu + extra)
    scmix.tl.technical_noise(adata, spike_in_size_factors="size_factors")
    called = adata.var["noise_variable"].to_numpy()[: gene_mu.size].reshape(len(extras), per)
    power = called.mean(axis=1)
    assert power[0] <= 0.05
    assert np.all(np.diff(power) >= 0), power
    assert power[-1] >= 0.95, power


# --- outputs and inputs ----------------------------------------------------------------


@pytest.fixture
def small():
    rng = np.random.default_rng(3)
    s = _size_factors(rng, 200)
    return _adata(
        rng,
        s,
        _log_uniform(rng, 1, 500, 20),
        np.array([1.0, 10.0, 100.0]),
        np.array([0.5, 0.5, 0.5]),
    )


def test_outputs(small):
    out = scmix.tl.technical_noise(small, key_added="tn", copy=True)
    assert "tn_mean" not in small.var
    var = out.var
    for name in ("mean", "dispersion", "technical_dispersion", "pvalue", "padj", "variable"):
        assert f"tn_{name}" in var
    spikes = var["spike_in"].to_numpy()
    assert var["tn_pvalue"][spikes].isna().all()
    assert var["tn_pvalue"][~spikes].notna().all()
    assert var["tn_variable"].dtype == bool
    uns = out.uns["tn"]
    assert set(uns["trend"]) >= {"a0", "a1", "n_spike_ins_used"}
    assert uns["params"]["spike_in_size_factors"] == "spike-in totals"
    assert out.obs["tn_spike_in_size_factors"].mean() == pytest.approx(1.0)


def _refused(adata, error, match, **kwargs):
    before = adata.copy()
    with pytest.raises(error, match=match):
        scmix.tl.technical_noise(adata, **kwargs)
    assert list(adata.var.columns) == list(before.var.columns)
    assert list(adata.obs.columns) == list(before.obs.columns)
    assert set(adata.uns) == set(before.uns)


def test_missing_spike_in_column(small):
    _refused(small, InputKeyError, "not a column", spike_in="ercc")


def test_no_spike_in_flagged(small):
    small.var["spike_in"] = False
    _refused(small, InputError, "flags no spike-in")


def test_every_gene_a_spike_in(small):
    small.var["spike_in"] = True
    _refused(small, InputError, "nothing to test")


def test_cell_without_spike_in_counts(small):
    small.X[0, small.var["spike_in"].to_numpy()] = 0
    _refused(small, InputError, "no spike-in count")


def test_too_few_spike_ins_for_the_trend(small):
    _refused(small, InputError, "min_mean", min_mean=1e6)


def test_missing_size_factors(small):
    _refused(small, InputKeyError, "size_factors", size_factors="sf")


@pytest.mark.parametrize("fdr", [-0.1, 1.5])
def test_fdr_out_of_range(small, fdr):
    _refused(small, InputError, "fdr", fdr=fdr)
