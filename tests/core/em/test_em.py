"""The EM engine: monotone log-likelihood, independent references, recovery, invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from adata_helpers import fit_chunk, fit_matrix, stored_resp
from scipy import optimize, sparse, special

import scmix
from scmix._core.em.starts import quantile_labels
from scmix._core.families import THETA_MAX, get_family
from scmix._core.numerics.kernels import count_levels, log_factorial_sums, row_dot, row_sum
from scmix.models import NegativeBinomialMixture, PoissonMixture


def _fit(X, s, family="nb", n_components=2, **options):
    settings = dict(n_init=3, max_iter=1000, tol=1e-6, random_state=0, store_resp=False)
    settings.update(options)
    return fit_matrix(X, s, family=get_family(family), n_components=n_components, **settings)


def _assert_non_decreasing(trace, scale):
    """Every step of every gene's trace rises, up to rounding of the log-likelihood."""
    assert trace is not None and trace.shape[0] >= 2
    for j in range(trace.shape[1]):
        values = trace[:, j][np.isfinite(trace[:, j])]
        steps = np.diff(values)
        assert steps.min(initial=0.0) >= -1e-10 * scale[j], (j, steps.min())


def nb_loglik(x, s, weights, mu, theta):
    """Marginal log-likelihood of a NB mixture, straight from scipy.stats."""
    from scipy import stats

    m = s[:, None] * mu[None, :]
    logpmf = stats.nbinom.logpmf(x[:, None], theta[None, :], theta[None, :] / (theta + m))
    return special.logsumexp(logpmf + np.log(weights)[None, :], axis=1).sum()


def poisson_loglik(x, s, weights, mu):
    from scipy import stats

    logpmf = stats.poisson.logpmf(x[:, None], s[:, None] * mu[None, :])
    return special.logsumexp(logpmf + np.log(weights)[None, :], axis=1).sum()


# -- monotonicity ----------------------------------------------------------------------


@pytest.mark.parametrize("family", ["nb", "poisson"])
@pytest.mark.parametrize("accelerate", [True, False])
def test_em_loglik_never_decreases_simulated(family, accelerate):
    adata = scmix.datasets.simulate(
        n_cells=600, n_genes=30, n_components=2, fold_change=2.0, random_state=3
    )
    s = adata.obs["size_factors"].to_numpy()
    for k in (1, 2, 3):
        fit = _fit(adata.X, s, family, k, keep_trace=True, accelerate=accelerate, tol=1e-8)
        if family == "poisson" and k == 1:
            # the start (sum x / sum s) is the closed-form optimum: no step is taken
            assert fit.trace.shape[0] == 1 and (fit.n_iter == 0).all() and fit.converged.all()
        else:
            _assert_non_decreasing(fit.trace, np.abs(fit.loglik))
        # the trace ends at the reported log-likelihood
        last = [t[np.isfinite(t)][-1] for t in fit.trace.T]
        np.testing.assert_allclose(last, fit.loglik, rtol=1e-12)


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_em_loglik_never_decreases_real(svensson_20312, family):
    adata = svensson_20312
    s = adata.obs["size_factors"].to_numpy()
    for size_factors in (s, np.ones_like(s)):
        fit = _fit(adata.X, size_factors, family, 2, keep_trace=True, tol=1e-8)
        fitted = fit.fitted
        _assert_non_decreasing(fit.trace[:, fitted], np.abs(fit.loglik[fitted]))


# -- K = 1 against independent maximum-likelihood fits ---------------------------------


def test_k1_nb_matches_statsmodels_nb2_with_offset():
    import statsmodels.api as sm

    rng = np.random.default_rng(11)
    n = 800
    s = np.exp(rng.normal(0, 0.5, n))
    genes = [(3.0, 2.0), (20.0, 0.5), (0.7, 5.0), (150.0, 0.05)]  # (mu, phi)
    X = np.column_stack(
        [rng.negative_binomial(1 / phi, 1 / (1 + phi * s * mu)) for mu, phi in genes]
    )
    fit = _fit(X, s, "nb", 1, tol=1e-12)
    for j in range(len(genes)):
        model = sm.NegativeBinomial(
            X[:, j], np.ones((n, 1)), offset=np.log(s), loglike_method="nb2"
        )
        result = model.fit(method="newton", maxiter=200, tol=1e-12, disp=0)
        assert result.mle_retvals["converged"], (
            j
        )  # a reference that did not converge proves nothing
        mu_ref = np.exp(result.params[0])
        theta_ref = 1.0 / result.params[1]
        assert fit.params["mu"][j, 0] == pytest.approx(mu_ref, rel=1e-4)
        assert fit.params["theta"][j, 0] == pytest.approx(theta_ref, rel=1e-4)
        assert fit.loglik[j] == pytest.approx(result.llf, rel=1e-9)


def test_k1_poisson_is_the_closed_form():
    rng = np.random.default_rng(2)
    s = rng.uniform(0.3, 3.0, 500)
    X = rng.poisson(np.outer(s, [0.2, 4.0, 40.0]))
    fit = _fit(X, s, "poisson", 1)
    np.testing.assert_allclose(fit.params["mu"][:, 0], X.sum(0) / s.sum(), rtol=1e-12)


# -- K = 2 against a multi-start scipy maximisation -------------------------------------


def _scipy_mixture_fit(x, s, family, n_starts, rng):
    """Maximise the exact two-component marginal likelihood with L-BFGS-B from many starts."""

    def unpack(z):
        w = special.expit(z[0])
        mu = np.exp(z[1:3])
        theta = np.exp(z[3:5]) if family == "nb" else None
        return np.array([1 - w, w]), mu, theta

    def objective(z):
        w, mu, theta = unpack(z)
        if family == "nb":
            return -nb_loglik(x, s, w, mu, theta)
        return -poisson_loglik(x, s, w, mu)

    best = None
    for _ in range(n_starts):
        lo, hi = np.sort(rng.choice(x / s, 2, replace=False)) + 0.1
        z0 = [rng.normal(0, 1), np.log(lo), np.log(hi)]
        if family == "nb":
            z0 += list(rng.normal(np.log(5.0), 1.0, 2))
        res = optimize.minimize(objective, z0, method="L-BFGS-B")
        res = optimize.minimize(
            objective,
            res.x,
            method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 5000},
        )
        if best is None or res.fun < best.fun:
            best = res
    return -best.fun


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_k2_loglik_at_least_multistart_scipy(family):
    rng = np.random.default_rng(5)
    adata = scmix.datasets.simulate(
        n_cells=400,
        n_genes=5,
        n_components=2,
        fold_change=3.0,
        dispersion=0.2 if family == "nb" else 0.0,
        random_state=8,
    )
    X = np.asarray(adata.X)
    s = adata.obs["size_factors"].to_numpy()
    fit = _fit(X, s, family, 2, tol=1e-10)
    for j in range(X.shape[1]):
        reference = _scipy_mixture_fit(X[:, j].astype(float), s, family, 10, rng)
        assert fit.loglik[j] >= reference - 1e-6 * abs(reference), (j, fit.loglik[j], reference)
        # and scmix's own number is the likelihood of its parameters
        w, mu = fit.weights[j], fit.params["mu"][j]
        direct = (
            nb_loglik(X[:, j], s, w, mu, fit.params["theta"][j])
            if family == "nb"
            else poisson_loglik(X[:, j], s, w, mu)
        )
        assert fit.loglik[j] == pytest.approx(direct, rel=1e-10)


# -- recovery of simulated truth --------------------------------------------------------


def test_parameter_recovery_with_bimodal_size_factors():
    adata = scmix.datasets.simulate(
        n_cells=2000,
        n_genes=10,
        n_components=2,
        means=[20.0, 100.0],
        weights=[0.3, 0.7],
        dispersion=0.05,
        size_factors="bimodal",
        random_state=21,
    )
    fit = _fit(adata.X, adata.obs["size_factors"].to_numpy(), "nb", 2)
    assert fit.converged.all()
    np.testing.assert_allclose(fit.params["mu"], [[20.0, 100.0]] * 10, rtol=0.05)
    np.testing.assert_allclose(fit.weights, [[0.3, 0.7]] * 10, atol=0.03)
    np.testing.assert_allclose(1 / fit.params["theta"], 0.05, rtol=0.5)


def test_components_are_sorted_by_mean():
    adata = scmix.datasets.simulate(n_cells=500, n_genes=20, n_components=3, random_state=4)
    fit = _fit(adata.X, adata.obs["size_factors"].to_numpy(), "nb", 3)
    assert (np.diff(fit.params["mu"], axis=1) >= 0).all()


def test_poisson_data_fitted_with_nb_is_poisson_like():
    rng = np.random.default_rng(9)
    s = rng.uniform(0.5, 2.0, 3000)
    X = rng.poisson(np.outer(s, [5.0, 30.0]))
    nb = _fit(X, s, "nb", 1, tol=1e-10)
    poisson = _fit(X, s, "poisson", 1)
    # Poisson is the theta -> infinity limit: the NB can only gain, and not much (up to
    # the M-step's precision, a relative 1e-9 of Q per Newton step, on the plateau)
    gain = nb.loglik - poisson.loglik
    assert (gain >= -1e-7 * np.abs(poisson.loglik)).all() and (gain < 3.0).all(), gain
    assert (nb.dispersion < 1e-2).all()
    assert nb.params["theta"].max() <= THETA_MAX


# -- invariances ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sparse_data():
    adata = scmix.datasets.simulate(
        n_cells=300, n_genes=25, n_components=2, means=[0.3, 3.0], random_state=6
    )
    X = np.asarray(adata.X)
    X[:, 7] = 0  # an all-zero gene inside a chunk
    return X, adata.obs["size_factors"].to_numpy()


def test_dense_csr_csc_and_chunk_sizes_give_identical_results(sparse_data):
    X, s = sparse_data
    reference = _fit(X, s, "nb", 2, store_resp=True, chunk_size=None)
    variants = [
        (sparse.csr_matrix(X), 4),
        (sparse.csc_matrix(X), 1),
        (X.astype(np.float32), 7),
        (X.astype(np.int32), 25),
        (sparse.csr_matrix(X.astype(np.float32)), 3),
    ]
    for matrix, chunk in variants:
        fit = _fit(matrix, s, "nb", 2, store_resp=True, chunk_size=chunk)
        np.testing.assert_allclose(fit.loglik, reference.loglik, rtol=1e-12)
        for name in reference.params:
            np.testing.assert_allclose(fit.params[name], reference.params[name], rtol=1e-10)
        np.testing.assert_allclose(fit.weights, reference.weights, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(fit.resp, reference.resp, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(fit.n_iter, reference.n_iter)


def test_deterministic_for_a_given_random_state(sparse_data):
    X, s = sparse_data
    first = _fit(X, s, "nb", 2, random_state=3)
    second = _fit(X, s, "nb", 2, random_state=3)
    np.testing.assert_array_equal(first.loglik, second.loglik)
    np.testing.assert_array_equal(first.params["mu"], second.params["mu"])


def test_more_starts_never_lower_the_likelihood(sparse_data):
    X, s = sparse_data
    one = _fit(X, s, "nb", 3, n_init=1)
    many = _fit(X, s, "nb", 3, n_init=6)
    fitted = one.fitted
    assert (many.loglik[fitted] >= one.loglik[fitted] - 1e-9 * np.abs(one.loglik[fitted])).all()


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_a_start_with_an_empty_group_begins_at_the_overall_rate(family):
    """Hard labels that leave a component without cells give it the gene's overall
    rate (no NaN), the others their group's rate."""
    from scmix._core.families.base import ChunkData

    x = np.array([[0.0, 0.0, 1.0, 5.0], [2.0, 0.0, 3.0, 1.0]])
    s = np.array([1.0, 0.5, 2.0, 1.5])
    resp = np.zeros((2, 3, 4))
    resp[:, 0, :2] = 1.0  # component 1 gets no cell
    resp[:, 2, 2:] = 1.0
    params = get_family(family).initial_params(ChunkData(x, s), resp)
    for name, values in params.items():
        assert np.isfinite(values).all(), name
    np.testing.assert_allclose(params["mu"][:, 1], x.sum(axis=1) / s.sum())
    np.testing.assert_allclose(params["mu"][:, 2], x[:, 2:].sum(axis=1) / s[2:].sum())


def test_three_components_on_sparse_real_genes_give_finite_fits(svensson_20312):
    """K=3 on the Svensson ERCC: k-means++ on two sparse ERCC left a group empty, the
    start got a NaN mean, EM ran 1000 NaN iterations and the NaN start was kept. Every
    gene with a count now gets finite parameters and log-likelihood."""
    adata = svensson_20312.copy()
    with pytest.warns(UserWarning, match="2 of 90 genes have no non-zero count"):
        scmix.tl.fit_mixture(adata, n_components=3, n_init=3)
    fitted = adata.var["scmix_single_mean"].notna()
    columns = ["scmix_loglik", "scmix_mean_0", "scmix_mean_1", "scmix_mean_2", "scmix_weight_1"]
    assert np.isfinite(adata.var.loc[fitted, columns].to_numpy(dtype=float)).all()
    assert (adata.var.loc[fitted, "scmix_n_iter"] < 1000).all()


def test_the_lrt_is_not_negative_beyond_rounding(svensson_20312):
    """Where every start ends below the one-component fit (by up to 1e-7 with K=4
    Poisson components on these ERCC, next to the saddle of equal components), the
    fit is K copies of it: LRT >= 0 up to rounding, and those genes have equal
    components."""
    adata = svensson_20312.copy()
    with pytest.warns(UserWarning, match="no non-zero count"):
        scmix.tl.fit_mixture(adata, n_components=4, family="poisson", n_init=1)
    fitted = adata.var["scmix_single_mean"].notna()
    var = adata.var[fitted]
    assert (var["scmix_lrt"] >= -1e-11 * var["scmix_loglik"].abs()).all()
    copies = var["scmix_lrt"] <= 1e-11 * var["scmix_loglik"].abs()
    assert copies.any()
    means = var.loc[copies, [f"scmix_mean_{k}" for k in range(4)]].to_numpy()
    np.testing.assert_allclose(means, means[:, :1] * np.ones((1, 4)), rtol=1e-12)


def test_a_start_that_is_not_a_number_stops_at_once_and_is_not_kept(sparse_data, monkeypatch):
    """A row whose log-likelihood is NaN stops at its first point (not converged)
    instead of iterating to max_iter."""
    from scmix._core.em.driver import run_em
    from scmix._core.families.base import ChunkData

    family = get_family("nb")
    x = np.ascontiguousarray(sparse_data[0].T[:2], dtype=np.float64)
    s = sparse_data[1]
    data = ChunkData(x, s)
    params = {"mu": np.array([[np.nan, 2.0], [0.5, 2.0]]), "theta": np.full((2, 2), 5.0)}
    weights = np.full((2, 2), 0.5)
    loglik, converged, n_iter, _ = run_em(
        family,
        data,
        params,
        weights,
        np.empty((2, 2, x.shape[1])),
        max_iter=1000,
        tol=1e-6,
        constant=family.log_prob_constant(data),
    )
    assert np.isnan(loglik[0]) and not converged[0] and n_iter[0] == 0
    assert np.isfinite(loglik[1]) and converged[1]

    # among several starts, a NaN one is never the one kept
    from scmix._core.em import driver as em

    original = em.starts

    def first_is_nan(*args, **kwargs):
        for number, (start_params, start_weights) in enumerate(original(*args, **kwargs)):
            if number == 0:
                start_params["mu"][0] = np.nan
            yield start_params, start_weights

    monkeypatch.setattr(em, "starts", first_is_nan)
    uniforms = np.random.default_rng(0).random((2, 2, 2))
    fit = fit_chunk(family, x, s, 2, n_init=2, max_iter=1000, tol=1e-6, uniforms=uniforms)
    assert np.isfinite(fit.loglik).all() and np.isfinite(fit.params["mu"]).all()


def test_identical_starts_run_once_with_the_same_result(sparse_data, monkeypatch):
    """k-means++ and the nested split often give a sparse gene the same labels: such a
    start is run once, and the fit equals one where every start is run."""
    from scmix._core.em import driver as em

    X, s = sparse_data
    rows = []
    run_em = em.run_em

    def counting(family, data, *args, **kwargs):
        rows.append(data.x.shape[0])
        return run_em(family, data, *args, **kwargs)

    monkeypatch.setattr(em, "run_em", counting)
    deduplicated = _fit(X, s, "nb", 2, n_init=4)
    n_genes = int(deduplicated.fitted.sum())
    assert rows[1] < 5 * n_genes  # 4 label starts + the split, some left out
    monkeypatch.setattr(
        em,
        "_distinct_starts",
        lambda starts, names: np.ones((len(starts), starts[0][1].shape[0]), dtype=bool),
    )
    every = _fit(X, s, "nb", 2, n_init=4)
    np.testing.assert_array_equal(deduplicated.loglik, every.loglik)
    np.testing.assert_array_equal(deduplicated.params["mu"], every.params["mu"])
    np.testing.assert_array_equal(deduplicated.n_iter, every.n_iter)


# -- the two faces share one engine -----------------------------------------------------


def test_estimators_and_fit_mixture_agree():
    adata = scmix.datasets.simulate(n_cells=400, n_genes=6, random_state=2)
    s = adata.obs["size_factors"].to_numpy()
    for cls, family in ((NegativeBinomialMixture, "nb"), (PoissonMixture, "poisson")):
        model = cls(n_components=2, random_state=0).fit(adata.X, size_factors=s)
        scmix.tl.fit_mixture(adata, family=family, key_added=family)
        np.testing.assert_allclose(model.means_[:, 1], adata.var[f"{family}_mean_1"], rtol=1e-12)
        np.testing.assert_allclose(model.lower_bound_, adata.var[f"{family}_loglik"], rtol=1e-12)
        np.testing.assert_allclose(
            model.log_likelihood(adata.X, size_factors=s), model.lower_bound_, rtol=1e-10
        )
        proba = model.predict_proba(adata.X, size_factors=s)
        assert proba.shape == (adata.n_obs, adata.n_vars, 2)
        np.testing.assert_allclose(proba, stored_resp(adata, family), atol=1e-6)
        np.testing.assert_allclose(
            model.bic(adata.X, size_factors=s), adata.var[f"{family}_bic"], rtol=1e-10
        )
        assert model.score(adata.X, size_factors=s) == pytest.approx(
            model.lower_bound_.sum() / adata.n_obs
        )
        assert model.converged_.all() and (model.n_iter_ > 0).all()
        assert model.predict(adata.X, size_factors=s).shape == (adata.n_obs, adata.n_vars)


def test_estimator_needs_fit_first():
    with pytest.raises(RuntimeError, match="not fitted"):
        NegativeBinomialMixture().predict_proba(np.ones((3, 2)))


def test_count_levels_match_numpy_unique_by_table_and_by_sort():
    """Each cell's level indexes the sorted distinct non-zero counts of its gene (-1 for
    a zero), whether a row goes through the table of every count (small integers) or
    is sorted (counts far above the number of cells, or not integers)."""
    rng = np.random.default_rng(3)
    n_cells = 300
    rows = [
        rng.negative_binomial(0.5, 0.2, n_cells),  # small integers: the table
        rng.integers(0, 5, n_cells) * 10**9,  # huge integers: sorted
        rng.integers(0, 40, n_cells) + 0.5 * rng.integers(0, 2, n_cells),  # halves: sorted
        np.zeros(n_cells),
    ]
    x = np.ascontiguousarray(np.vstack(rows), dtype=np.float64)
    x[2, :3] = 0.0
    values, n_levels, level = count_levels(x)
    for g, row in enumerate(x):
        distinct = np.unique(row[row > 0])
        assert n_levels[g] == distinct.size
        np.testing.assert_array_equal(values[g, : distinct.size], distinct)
        expected = np.where(row > 0, np.searchsorted(distinct, row), -1)
        np.testing.assert_array_equal(level[g], expected)
    assert (values[:, n_levels.max() :] == 0).all()
    # log x! summed over a gene's cells, from the levels
    expected = special.gammaln(x + 1.0).sum(axis=1)
    np.testing.assert_allclose(log_factorial_sums(values, n_levels, level), expected, rtol=1e-13)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_row_sums_in_vector_order_match_exact_sums(n):
    """row_sum and row_dot may add in any order (``reassoc``): they stay within a few
    ulp of the correctly rounded sum (math.fsum) on terms of mixed sign and size."""
    rng = np.random.default_rng(n)
    a = rng.normal(size=n) * 10.0 ** rng.integers(-3, 4, n)
    b = rng.uniform(0.5, 2.0, n)
    scale = np.abs(a).sum() * 4 + 1e-300
    assert abs(row_sum(a) - math.fsum(a)) <= 1e-15 * scale
    assert abs(row_dot(a, b) - math.fsum(a * b)) <= 1e-15 * scale * 2
    assert row_sum(a) == row_sum(a.copy())  # the same order every call


def _quantile_labels_by_sorting(y, n_components):
    """Reference: sort each row (stable); a cell's group is floor(K r / n), r the rank
    of the first cell with its value; equal-size groups (by position) where a group
    would be empty."""
    n_cells = y.shape[1]
    labels = np.empty(y.shape, dtype=np.int64)
    for g, row in enumerate(y):
        order = np.argsort(row, kind="stable")
        first = np.searchsorted(row[order], row, side="left")
        labels[g] = (first * n_components) // n_cells
        if np.bincount(labels[g], minlength=n_components).min() == 0:
            labels[g, order] = (np.arange(n_cells) * n_components) // n_cells
    return labels


@pytest.mark.parametrize("n_components", [2, 3, 4])
def test_quantile_labels_match_a_sort_with_ties_kept_together(n_components):
    rng = np.random.default_rng(n_components)
    n_cells = 301
    y = np.log1p(
        np.vstack(
            [
                rng.negative_binomial(0.3, 0.3, n_cells),  # mostly zeros: a large tie
                rng.poisson(3.0, n_cells),  # many small ties
                rng.uniform(0, 5, n_cells),  # no ties
                np.full(n_cells, 2.0),  # one tie: every group but one empty
                np.repeat([0.0, 1.0], [200, 101]),  # a tie across a boundary
            ]
        )
    )
    np.testing.assert_array_equal(
        quantile_labels(y, n_components), _quantile_labels_by_sorting(y, n_components)
    )


def test_nb_start_is_the_weighted_moment_estimate():
    """The start from responsibilities: mu_k = sum r x / sum r s and
    1/theta_k = sum r [(x - s mu)^2 - s mu] / sum r (s mu)^2, capped at THETA_START."""
    from scmix._core.families._nb_kernels import THETA_START
    from scmix._core.families.base import ChunkData

    rng = np.random.default_rng(11)
    s = rng.lognormal(0.0, 0.4, 500)
    x = np.ascontiguousarray(rng.negative_binomial(3.0, 3.0 / (3.0 + 8.0 * s), (4, 500)), float)
    resp = rng.dirichlet([1.0, 1.0], size=(4, 500)).transpose(0, 2, 1).copy()
    params = get_family("nb").initial_params(ChunkData(x, s), resp)
    mu = np.einsum("gki,gi->gk", resp, x) / np.einsum("gki,i->gk", resp, s)
    fitted = s[None, None, :] * mu[:, :, None]
    phi = np.einsum("gki,gki->gk", resp, (x[:, None, :] - fitted) ** 2 - fitted) / np.einsum(
        "gki,gki->gk", resp, fitted**2
    )
    np.testing.assert_allclose(params["mu"], mu, rtol=1e-12)
    np.testing.assert_allclose(params["theta"], np.minimum(1.0 / phi, THETA_START), rtol=1e-10)
    assert (params["theta"] < THETA_START).any()  # the moments, not only the cap


def test_estimators_are_scikit_learn_estimators():
    """clone, get_params / set_params work; score is a float; size factors go by keyword;
    the one-component fit and the call come with the fit."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    adata = scmix.datasets.simulate(n_cells=300, n_genes=6, random_state=1)
    s = adata.obs["size_factors"].to_numpy()
    model = NegativeBinomialMixture(3, n_init=1, tol=1e-5)
    twin = clone(model)
    assert twin.get_params() == model.get_params() and twin is not model
    assert twin.set_params(n_components=2).n_components == 2
    twin.fit(adata.X, size_factors=s)
    assert isinstance(twin.score(adata.X, size_factors=s), float)
    assert twin.score(adata.X, size_factors=s) == pytest.approx(
        twin.lower_bound_.sum() / adata.n_obs
    )
    scmix.tl.fit_mixture(adata, n_init=1, tol=1e-5)
    np.testing.assert_allclose(twin.delta_bic_, adata.var["scmix_delta_bic"], rtol=1e-10)
    np.testing.assert_array_equal(twin.bimodal_, adata.var["scmix_bimodal"])
    np.testing.assert_allclose(twin.single_means_, adata.var["scmix_single_mean"], rtol=1e-12)
    with pytest.raises(ValueError, match="by keyword"):
        NegativeBinomialMixture().fit(adata.X, s)  # positional size factors would be y
    with pytest.raises(NotFittedError):
        NegativeBinomialMixture().score(adata.X)


def test_predict_proba_of_sparse_input_by_chunks():
    from scipy import sparse

    adata = scmix.datasets.simulate(n_cells=200, n_genes=7, random_state=2)
    s = adata.obs["size_factors"].to_numpy()
    dense = PoissonMixture(n_init=1, chunk_size=3).fit(adata.X, size_factors=s)
    whole = dense.predict_proba(np.asarray(adata.X), size_factors=s)
    by_chunks = dense.predict_proba(sparse.csc_matrix(adata.X), size_factors=s)
    np.testing.assert_allclose(by_chunks, whole, rtol=1e-12)
    assert np.allclose(whole.sum(axis=2), 1.0)


def test_best_start_is_the_highest_and_the_earliest_on_ties_never_nan():
    from scmix._core.em.best import best_start, component_order

    objectives = np.array(
        [[1.0, np.nan, 2.0, np.nan], [3.0, 5.0, 2.0, np.nan], [3.0, 4.0, 1.0, np.nan]]
    )
    np.testing.assert_array_equal(best_start(objectives), [1, 1, 0, 0])
    assert best_start([np.nan, -1.0, -1.0]) == 1
    np.testing.assert_array_equal(component_order(np.array([[2.0, 1.0, 2.0]])), [[1, 0, 2]])


def test_shared_fit_and_cavi_keep_their_best_start(monkeypatch):
    """Both keep the start that best_start picks (the rule fit_chunk uses per gene): made
    to pick the first start, whose objective is not the highest here (a step or two
    from different starts), they return that start's objective."""
    from scmix._core.em import shared
    from scmix._core.vi import cavi

    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, 300)
    x[:150] += 6.0
    chosen = {}

    def pick(values):
        chosen["values"] = list(values)
        return 0

    monkeypatch.setattr(cavi, "best_start", pick)
    fit = cavi.fit_cavi(x, 3, n_init=3, max_iter=2, random_state=0)
    assert len(chosen["values"]) == 3 and chosen["values"][0] < max(chosen["values"])
    assert fit.elbo == chosen["values"][0]
    counts = rng.poisson(np.where(np.arange(200) < 100, 2.0, 12.0), (5, 200)).astype(float)
    monkeypatch.setattr(shared, "best_start", pick)
    result = shared.fit_shared(
        get_family("poisson"),
        counts,
        np.ones(200),
        3,
        n_init=3,
        max_iter=1,
        tol=1e-8,
        random_state=0,
    )
    assert len(chosen["values"]) == 3 and chosen["values"][0] < max(chosen["values"])
    assert result.loglik == chosen["values"][0]
