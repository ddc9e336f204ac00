"""Count GLMs with offsets and a design (the one-component model with covariates) against
statsmodels' maximum likelihood, with a non-decreasing log-likelihood."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm

from scmix._core.em.glm import fit_glm
from scmix._core.families import THETA_MAX, get_family


def _batch_data(n_cells=500, n_genes=8, seed=0, theta=None):
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 3, n_cells)
    depth = rng.normal(0, 1, n_cells)
    design = np.column_stack([np.ones(n_cells), batch == 1, batch == 2, depth]).astype(float)
    s = rng.lognormal(0, 0.5, n_cells)
    s /= s.mean()
    beta = np.column_stack(
        [rng.normal(1, 1, n_genes), rng.normal(0, 0.7, (n_genes, 2)), rng.normal(0, 0.2, n_genes)]
    )
    theta = rng.lognormal(1, 1, n_genes) if theta is None else np.full(n_genes, theta)
    mean = s[None] * np.exp(beta @ design.T)
    x = rng.poisson(rng.gamma(theta[:, None], mean / theta[:, None])).astype(float)
    return x, s, design


def _statsmodels_loglik(family, x, s, design):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "nb":
            model = sm.NegativeBinomial(x, design, offset=np.log(s), loglike_method="nb2")
            return model.fit(method="newton", maxiter=500, tol=1e-12, disp=0).llf
        glm = sm.GLM(x, design, family=sm.families.Poisson(), offset=np.log(s))
        return glm.fit(tol=1e-12).llf


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_matches_statsmodels_maximum_likelihood(family):
    x, s, design = _batch_data()
    fit = fit_glm(get_family(family), x, np.log(s), design)
    assert fit.converged.all() and fit.fitted.all()
    for j in range(x.shape[0]):
        reference = _statsmodels_loglik(family, x[j], s, design)
        assert fit.loglik[j] == pytest.approx(reference, rel=1e-8), j
        assert fit.loglik[j] >= reference - 1e-8 * abs(reference)


def test_loglik_never_decreases_along_the_iterations():
    x, s, design = _batch_data(seed=1)
    path = [fit_glm(get_family("nb"), x, np.log(s), design, max_iter=k).loglik for k in range(1, 9)]
    steps = np.diff(np.array(path), axis=0)
    assert (steps >= -1e-9 * np.abs(np.array(path[1:]))).all()
    assert (steps > 0).any()  # it moved, so the check could fail


def test_integer_weights_equal_repeated_cells():
    x, s, design = _batch_data(n_cells=200, n_genes=4, seed=2)
    weights = np.random.default_rng(3).integers(0, 3, size=x.shape).astype(float)
    weighted = fit_glm(get_family("nb"), x, np.log(s), design, weights=weights)
    for j in range(x.shape[0]):
        cells = np.repeat(np.arange(x.shape[1]), weights[j].astype(int))
        repeated = fit_glm(get_family("nb"), x[j : j + 1, cells], np.log(s[cells]), design[cells])
        assert weighted.loglik[j] == pytest.approx(repeated.loglik[0], rel=1e-9)
        np.testing.assert_allclose(weighted.coef[j], repeated.coef[0], rtol=1e-5, atol=1e-7)


def test_poisson_data_reach_the_theta_bound_and_genes_without_counts_are_skipped():
    rng = np.random.default_rng(4)
    x, s, design = _batch_data(n_genes=3, seed=5, theta=THETA_MAX)
    x = np.vstack([x, np.zeros(x.shape[1])])
    x[0] = rng.poisson(5 * s)  # no covariate effect, no overdispersion at all
    nb = fit_glm(get_family("nb"), x, np.log(s), design)
    poisson = fit_glm(get_family("poisson"), x, np.log(s), design)
    assert not nb.fitted[-1] and np.isnan(nb.loglik[-1]) and np.isnan(nb.coef[-1]).all()
    # the NB contains the Poisson: never a worse fit, and theta large where it is Poisson
    assert (nb.loglik[:-1] >= poisson.loglik[:-1] - 1e-8 * np.abs(poisson.loglik[:-1])).all()
    assert np.exp(nb.log_theta[0]) > 50
