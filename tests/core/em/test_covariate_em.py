"""Mixtures with covariate effects shared by the components: GEM then Newton, never
decreasing, and at least as good as a multi-start scipy maximisation of the exact
marginal likelihood."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, special

from scmix._core.em.covariates import fit_covariate_mixture
from scmix._core.families import get_family


def _data(family, n_cells=800, seed=0):
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 3, n_cells)
    z = np.column_stack([batch == 1, batch == 2]).astype(float)
    s = rng.lognormal(0, 0.3, n_cells)
    s /= s.mean()
    means = np.array([[10, 10], [3, 30], [5, 25], [2, 12]], dtype=float)
    upper = rng.random((len(means), n_cells)) < 0.4
    m = s[None] * np.exp(z @ [1.2, -0.8])[None] * np.where(upper, means[:, 1:], means[:, :1])
    x = rng.poisson(m if family == "poisson" else rng.gamma(5.0, m / 5.0)).astype(float)
    return x, s, z


def _negative_loglik(params, family, x, s, z):
    """The exact marginal log-likelihood of a K = 2 mixture, parameters unconstrained."""
    log_mu, gamma, weight = params[:2], params[2:4], special.expit(params[-1])
    eta = np.log(s) + z @ gamma
    parts = []
    for k, w in enumerate([1 - weight, weight]):
        m = np.exp(eta + log_mu[k])
        if family == "poisson":
            log_f = x * np.log(m) - m - special.gammaln(x + 1)
        else:
            th = np.exp(params[4 + k])
            log_f = (
                special.gammaln(x + th)
                - special.gammaln(th)
                - special.gammaln(x + 1)
                + th * np.log(th / (th + m))
                + x * np.log(m / (th + m))
            )
        parts.append(np.log(w) + log_f)
    return -special.logsumexp(np.array(parts), axis=0).sum()


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_at_least_as_good_as_multistart_scipy(family):
    x, s, z = _data(family)
    fit = fit_covariate_mixture(get_family(family), x, np.log(s), z, 2)
    assert fit.converged.all()
    rng = np.random.default_rng(1)
    n_params = 5 if family == "poisson" else 7
    for j in range(x.shape[0]):
        best = np.inf
        for _ in range(6):
            start = rng.normal(0, 1, n_params)
            start[:2] = np.log(np.sort(rng.uniform(1, 40, 2)))
            args = (family, x[j], s, z)
            with np.errstate(all="ignore"):
                result = optimize.minimize(_negative_loglik, start, args=args, method="BFGS")
            best = min(best, result.fun)
        assert fit.loglik[j] >= -best - 1e-6 * abs(best), (j, fit.loglik[j], -best)


def test_log_likelihood_never_decreases_and_components_are_ordered():
    x, s, z = _data("nb", seed=2)
    fit = fit_covariate_mixture(get_family("nb"), x, np.log(s), z, 2, keep_trace=True)
    trace = np.array(fit.trace)
    steps = np.diff(trace, axis=0)
    assert (steps >= -1e-9 * np.abs(trace[1:])).all()
    assert (steps > 1e-3).any()  # it climbed, so the check could fail
    assert (np.diff(fit.log_mu, axis=1) >= 0).all()
    np.testing.assert_allclose(fit.resp.sum(axis=1), 1.0, atol=1e-10)
    np.testing.assert_allclose(fit.weights, fit.resp.mean(axis=2), atol=1e-3)
    # the shared batch effects are recovered
    np.testing.assert_allclose(fit.gamma.mean(axis=0), [1.2, -0.8], atol=0.1)
    np.testing.assert_allclose(fit.gamma, np.tile([1.2, -0.8], (4, 1)), atol=0.3)
