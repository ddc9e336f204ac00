"""The fused kernels of the fits with covariates against independent references: the
marginal log-likelihood and responsibilities against scipy's pmfs, the gradient and
Hessian (of Q and, by Louis' identity, of the marginal log-likelihood) against finite
differences of that scipy objective, the per-count gamma-function tables against scipy's
special functions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from scmix._core.em.covariate_kernels import (
    Components,
    derivatives,
    exposure_of,
    marginal_loglik,
)
from scmix._core.families import get_family
from scmix._core.families._glm_cells import NB, fill_level_table
from scmix._core.families.base import CountTable


def _problem(family: str, n_comp: int, n_cov: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_genes, n_cells = 3, 150
    x = rng.negative_binomial(2, 0.2, (n_genes, n_cells)).astype(float)
    x[0, :5] = [0, 40, 120, 3, 0]  # some large counts (the special-function branch)
    log_offset = rng.normal(0, 0.4, n_cells)
    covariates = rng.normal(0, 1, (n_cells, n_cov)) if n_cov else np.zeros((n_cells, 0))
    covariates = np.where(rng.random((n_cells, n_cov)) < 0.5, 1.0, covariates)  # mixed
    weights = rng.dirichlet(np.ones(n_comp), n_genes)
    params = Components(
        rng.normal(1.2, 0.6, (n_genes, n_comp)),
        rng.normal(0.5, 0.8, (n_genes, n_comp)) if family == "nb" else np.zeros((n_genes, n_comp)),
        rng.normal(0, 0.3, (n_genes, n_cov)),
        np.log(weights),
    )
    return get_family(family), x, log_offset, covariates, params


def _log_pmfs(family, x, log_offset, covariates, params, g):
    """(K, cells) log f_ik by scipy."""
    eta = log_offset + covariates @ params.gamma[g]
    out = []
    for k in range(params.log_mu.shape[1]):
        m = np.exp(eta + params.log_mu[g, k])
        if family.name == "nb":
            theta = np.exp(params.log_theta[g, k])
            out.append(stats.nbinom.logpmf(x[g], theta, theta / (theta + m)))
        else:
            out.append(stats.poisson.logpmf(x[g], m))
    return np.array(out)


def _vector(params, g, has_theta, logits):
    parts = [params.log_mu[g], params.gamma[g]]
    if has_theta:
        parts.append(params.log_theta[g])
    if logits:
        parts.append(params.log_weights[g, 1:] - params.log_weights[g, 0])
    return np.concatenate(parts)


def _params_of(vector, like, g, has_theta, logits):
    n_comp, n_cov = like.log_mu.shape[1], like.gamma.shape[1]
    log_mu, gamma = vector[:n_comp], vector[n_comp : n_comp + n_cov]
    rest = vector[n_comp + n_cov :]
    log_theta = rest[:n_comp] if has_theta else like.log_theta[g]
    log_weights = like.log_weights[g]
    if logits:
        full = np.concatenate([[0.0], rest[n_comp if has_theta else 0 :]])
        log_weights = full - special.logsumexp(full)
    return Components(*(np.atleast_2d(v) for v in (log_mu, log_theta, gamma, log_weights)))


def _objective(family, x, log_offset, covariates, params, resp):
    """Marginal log-likelihood (resp None) or Q without the weights' term, by scipy."""
    log_f = _log_pmfs(family, x, log_offset, covariates, params, 0)
    if resp is None:
        return special.logsumexp(log_f + params.log_weights[0][:, None], axis=0).sum()
    return (resp * log_f).sum()


def _numerical(function, vector, step=1e-5):
    """Central-difference gradient of a scalar function and Hessian (of the gradient)."""
    size = vector.size
    grad = np.empty(size)
    for p in range(size):
        e = np.zeros(size)
        e[p] = step
        grad[p] = (function(vector + e) - function(vector - e)) / (2 * step)
    return grad


@pytest.mark.parametrize("family_name", ["nb", "poisson"])
@pytest.mark.parametrize("n_comp, n_cov", [(1, 2), (2, 0), (2, 2), (3, 1)])
def test_marginal_loglik_and_responsibilities_match_scipy(family_name, n_comp, n_cov):
    family, x, log_offset, covariates, params = _problem(family_name, n_comp, n_cov)
    counts, exposure = CountTable.of(x), exposure_of(log_offset, covariates)
    loglik, resp = marginal_loglik(family.glm_kind, counts, exposure, params, with_resp=True)
    for g in range(x.shape[0]):
        joint = _log_pmfs(family, x, log_offset, covariates, params, g)
        joint = joint + params.log_weights[g][:, None]
        total = special.logsumexp(joint, axis=0)
        np.testing.assert_allclose(loglik[g], total.sum(), rtol=1e-11)
        np.testing.assert_allclose(resp[g], np.exp(joint - total), atol=1e-12)


# Q for any K (K = 1: the GLM); the marginal likelihood (with logits) for K > 1
CASES = [(1, 2, False), (2, 0, False), (2, 2, False), (3, 1, False)]
CASES += [(2, 0, True), (2, 2, True), (3, 1, True)]


@pytest.mark.parametrize("family_name", ["nb", "poisson"])
@pytest.mark.parametrize("n_comp, n_cov, marginal", CASES)
def test_gradient_and_hessian_match_finite_differences(family_name, n_comp, n_cov, marginal):
    family, x, log_offset, covariates, params = _problem(family_name, n_comp, n_cov, seed=2)
    has_theta = family_name == "nb"
    counts, exposure = CountTable.of(x), exposure_of(log_offset, covariates)
    rng = np.random.default_rng(3)
    resp = None if marginal else rng.dirichlet(np.ones(n_comp), (x.shape[0], x.shape[1]))
    if resp is not None:
        resp = np.ascontiguousarray(resp.transpose(0, 2, 1))  # (genes, K, cells)
    grad, hess = derivatives(family.glm_kind, counts, exposure, params, resp)
    for g in range(x.shape[0]):
        start = _vector(params, g, has_theta, marginal)
        gene_resp = None if resp is None else resp[g]

        def value(v, g=g, gene_resp=gene_resp):
            p = _params_of(v, params, g, has_theta, marginal)
            return _objective(family, x[g : g + 1], log_offset, covariates, p, gene_resp)

        numeric = _numerical(value, start)
        scale = np.abs(numeric).max() + 1.0
        np.testing.assert_allclose(grad[g], numeric, atol=1e-6 * scale)

        def gradient(v, g=g):
            p = _params_of(v, params, g, has_theta, marginal)
            one = CountTable.of(x[g : g + 1])
            r = None if resp is None else resp[g : g + 1]
            return derivatives(family.glm_kind, one, exposure, p, r)[0][0]

        numeric_hess = np.array(
            [(gradient(start + e) - gradient(start - e)) / 2e-6 for e in 1e-6 * np.eye(start.size)]
        )
        h_scale = np.abs(numeric_hess).max() + 1.0
        np.testing.assert_allclose(hess[g], hess[g].T, atol=1e-12 * h_scale)
        np.testing.assert_allclose(hess[g], numeric_hess, atol=1e-5 * h_scale)


def test_level_tables_match_scipy_special_functions():
    values = np.array([0.0, 1, 2, 3, 7, 8, 9, 30, 31, 250, 5000, 0, 0])  # padded with 0
    for theta in (1e-5, 0.3, 2.0, 80.0, 1e7):
        table = np.full((3, values.size), np.nan)
        fill_level_table(NB, values, theta, True, table)
        used = values[:11]
        expected_lgamma = special.gammaln(used + theta) - special.gammaln(theta)
        expected_digamma = special.digamma(used + theta) - special.digamma(theta)
        expected_trigamma = special.polygamma(1, used + theta) - special.polygamma(1, theta)
        scale = 1.0 + np.abs(expected_lgamma)
        np.testing.assert_allclose(table[0, :11] / scale, expected_lgamma / scale, atol=1e-11)
        np.testing.assert_allclose(table[1, :11], expected_digamma, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            table[2, :11], expected_trigamma, rtol=1e-7, atol=1e-9 * abs(expected_trigamma[1])
        )
