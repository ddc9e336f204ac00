"""scmix.tl.technical_noise and its engine: the trend recovers known coefficients, the
null fit's log-likelihood matches scipy and maximises the constrained likelihood, the
spike-ins' scatter is recovered, the test is calibrated under the technical model
(trend and scatter, bimodal size factors) and on real spike-ins left out of the trend,
finds extra biological dispersion, and bad inputs are refused without touching the
AnnData."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import stats
from scipy.sparse import csc_matrix

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
    return _adata_of(_nb(rng, s, gene_mu, gene_phi), spikes, s)


def _adata_of(genes, spikes, s):
    """Genes then spike-ins (cells x genes counts), size factors at any scale."""
    adata = ad.AnnData(np.hstack([genes, spikes]).astype(np.float32))
    n_genes, n_spikes = genes.shape[1], spikes.shape[1]
    adata.var_names = [f"g{j}" for j in range(n_genes)] + [f"ERCC-{j}" for j in range(n_spikes)]
    adata.var["spike_in"] = np.r_[np.zeros(n_genes, bool), np.ones(n_spikes, bool)]
    adata.obs["size_factors"] = s * 2.5  # rescaled to mean 1 by the tool
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


def _free(x, s):
    fit = fit_matrix(x, s, family=get_family("nb"), n_components=1, store_resp=False)
    return fit.params["mu"][:, 0], fit.dispersion[:, 0], fit.loglik


def _scattered(rng, s, mu, tau, trend=None):
    """Counts with log dispersion N(log trend, tau^2) around the trend."""
    technical = (A0 + A1 / mu) if trend is None else trend(mu)
    return _nb(rng, s, mu, technical * np.exp(rng.normal(0.0, tau, mu.size))).astype(float)


def test_null_loglik_matches_scipy_and_maximises_the_constrained_likelihood():
    rng = np.random.default_rng(1)
    s = _size_factors(rng, 300)
    trend = engine.Trend(A0, A1, 0, 0, True)
    mu = np.array([0.3, 5.0, 80.0])
    x = _nb(rng, s, mu, A0 + A1 / mu + 0.4).astype(float)
    start = x.sum(axis=0) / s.sum() * np.array([0.5, 1.3, 1.0])  # off the optimum
    mean, loglik = engine.null_fits(engine.Columns.from_matrix(x), s, trend, start)
    phi = trend(mean)
    reference = stats.nbinom.logpmf(x, 1 / phi, 1 / (1 + s[:, None] * mean * phi)).sum(axis=0)
    np.testing.assert_allclose(loglik, reference, rtol=1e-11)
    for j in range(mu.size):
        grid = mean[j] * np.exp(np.linspace(-0.05, 0.05, 201))
        profile = stats.nbinom.logpmf(
            x[:, [j]], 1 / trend(grid), 1 / (1 + s[:, None] * grid * trend(grid))
        ).sum(axis=0)
        assert loglik[j] >= profile.max() - 1e-8


def test_sparse_and_dense_columns_agree():
    rng = np.random.default_rng(4)
    s = _size_factors(rng, 200)
    x = _nb(rng, s, np.array([0.05, 0.5, 20.0]), np.array([2.0, 0.5, 0.1])).astype(float)
    trend = engine.Trend(A0, A1, 0, 0, True, 0.3)
    dense = engine.noise_test(engine.Columns.from_matrix(x), s, _free(x, s), trend)
    sparse_ = engine.noise_test(engine.Columns.from_matrix(csc_matrix(x)), s, _free(x, s), trend)
    np.testing.assert_array_equal(dense.z, sparse_.z)


def test_without_scatter_the_pvalue_is_half_chi2_above_the_trend():
    rng = np.random.default_rng(2)
    s = _size_factors(rng, 400)
    trend = engine.Trend(A0, A1, 0, 0, True)
    x = _nb(rng, s, np.array([10.0, 10.0]), np.array([0.6, 0.6])).astype(float)
    free = _free(x, s)
    result = engine.noise_test(engine.Columns.from_matrix(x), s, free, trend)
    assert (free[1] > trend(free[0])).all()
    np.testing.assert_allclose(result.pvalue, 0.5 * stats.chi2.sf(result.statistic, 1))


def test_scatter_z_limits():
    root = np.array([3.0, -2.0, 0.0, -1.5])
    log_ratio = np.array([0.3, -0.4, 0.0, -np.inf])  # the last: a Poisson fit
    np.testing.assert_array_equal(engine.scatter_z(root, log_ratio, 0.0), root)
    z = engine.scatter_z(root, log_ratio, 0.5)
    se = np.abs(log_ratio[:2] / root[:2])  # Wald with the likelihood-ratio SE
    np.testing.assert_allclose(z[:2], log_ratio[:2] / np.sqrt(se**2 + 0.25))
    assert z[2] == 0.0 and z[3] == root[3]


@pytest.mark.parametrize("tau", [0.0, 0.4])
def test_scatter_recovered_from_spike_ins(tau):
    rng = np.random.default_rng(5)
    s = _size_factors(rng, 400)
    mu = _log_uniform(rng, 1, 2000, 300)
    x = _scattered(rng, s, mu, tau)
    trend = engine.spike_in_scatter(engine.Columns.from_matrix(x), s, _free(x, s))
    assert trend.scatter_sd == pytest.approx(tau, abs=0.07)


def test_calibrated_under_the_true_trend_and_scatter():
    """The test itself, the trend and scatter known: null genes scattered like spike-ins."""
    rng = np.random.default_rng(6)
    s = _size_factors(rng)
    mu = _log_uniform(rng, 0.5, 500, 3000)
    x = _scattered(rng, s, mu, 0.4)
    free = _free(x, s)
    trend = engine.Trend(A0, A1, 0, 0, True, 0.4)
    p = engine.noise_test(engine.Columns.from_matrix(x), s, free, trend).pvalue
    assert 0.035 <= np.mean(p < 0.05) <= 0.065
    assert np.mean(p < 0.01) <= 0.02
    exact = engine.noise_test(
        engine.Columns.from_matrix(x), s, free, engine.Trend(A0, A1, 0, 0, True)
    )
    assert np.mean(exact.pvalue < 0.05) > 0.1  # ignoring the scatter is anti-conservative


# --- calibration and power ------------------------------------------------------------


def _null_rate(adata, genes):
    return float((adata.var["noise_pvalue"].to_numpy()[genes] < 0.05).mean())


@pytest.mark.parametrize("tau", [0.0, 0.4])
def test_calibrated_under_the_fitted_technical_model(tau):
    """Genes simulated from the trend and scatter fitted on the spike-ins (which scatter
    by tau around the true trend), bimodal size factors."""
    rng = np.random.default_rng(20)
    s = _size_factors(rng)
    spike_mu = _log_uniform(rng, 0.5, 2000, N_SPIKES)
    spikes = _scattered(rng, s, spike_mu, tau)
    first = _adata_of(_nb(rng, s, np.array([5.0]), np.array([0.1])), spikes, s)
    scmix.tl.technical_noise(first, spike_in_size_factors="size_factors")
    fitted = first.uns["noise"]["trend"]
    gene_mu = _log_uniform(rng, 0.5, 500, 2000)
    trend = engine.Trend(fitted["a0"], fitted["a1"], 0, 0, True)
    genes = _scattered(rng, s, gene_mu, fitted["scatter_sd"], trend)
    adata = _adata_of(genes, spikes, s)
    scmix.tl.technical_noise(adata, spike_in_size_factors="size_factors")
    assert adata.uns["noise"]["trend"]["scatter_sd"] == pytest.approx(tau, abs=0.12)
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


# --- real spike-ins -----------------------------------------------------------------


def test_real_spike_ins_left_out_of_the_trend_are_not_called(data_dir):
    """Zeisel's spike-ins, each tested against the trend and scatter of the others: the
    false-positive rate on real technical noise (24% at 0.05 with the trend as exact)."""
    adata = scmix.datasets.zeisel2015(data_dir=data_dir)
    x = adata.X[:, np.flatnonzero(adata.var["spike_in"].to_numpy())]
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=float)
    x = x[x.sum(axis=1) > 0]
    s = x.sum(axis=1) / x.sum(axis=1).mean()
    mean, disp, loglik = _free(x, s)
    keep = np.flatnonzero(mean >= 1.0)
    x, mean, disp, loglik = x[:, keep], mean[keep], disp[keep], loglik[keep]
    p, p_exact = np.empty(keep.size), np.empty(keep.size)
    for k in range(keep.size):
        others = np.arange(keep.size) != k
        trend = engine.spike_in_scatter(
            engine.Columns.from_matrix(x[:, others]),
            s,
            (mean[others], disp[others], loglik[others]),
        )
        one, free = engine.Columns.from_matrix(x[:, [k]]), (mean[[k]], disp[[k]], loglik[[k]])
        p[k] = engine.noise_test(one, s, free, trend).pvalue[0]
        trend.scatter_sd = 0.0
        p_exact[k] = engine.noise_test(one, s, free, trend).pvalue[0]
    assert keep.size >= 30
    assert np.mean(p < 0.05) <= 0.1
    assert np.mean(p_exact < 0.05) >= 0.15


def test_get_technical_noise_df(small):
    scmix.tl.technical_noise(small)
    table = scmix.get.technical_noise_df(small)
    genes = small.var_names[~small.var["spike_in"].to_numpy()]
    assert sorted(table.index) == sorted(genes)  # the tested genes, no spike-in
    assert table.index.name == "gene"
    assert (np.diff(table["z"].to_numpy()) <= 0).all()
    np.testing.assert_allclose(table["ratio"], table["dispersion"] / table["technical_dispersion"])
    np.testing.assert_array_equal(
        table["padj"], small.var.loc[table.index, "noise_padj"].to_numpy()
    )
    with pytest.raises(InputKeyError, match="technical_noise"):
        scmix.get.technical_noise_df(small, key="other")
