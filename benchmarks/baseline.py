"""Reference EM for a K-component negative-binomial mixture with size-factor offsets.

This is the approach of the original notebook, done right: one gene at a time, plain
numpy / scipy, the M-step by ``scipy.optimize.minimize``. It is a reference for the
benchmarks (speed and log-likelihood), not a fast implementation, and it is
deliberately independent of scmix (it imports nothing from it).

Model, for gene j and cell i with size factor s_i::

    p(x_ij) = sum_k pi_jk NB(x_ij | m_ijk = s_i mu_jk, theta_jk)
    log NB(x | m, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                           + theta log(theta / (theta + m)) + x log(m / (theta + m))

EM, per gene:

* start: split the cells into K groups of equal size by the rank of ``log1p(x / s)``,
  tied values by position (a stable sort; scmix's own first start keeps tied counts in
  one group instead); per group ``mu = sum x / sum s`` and theta by moments,
  ``1/theta = sum[(x - s mu)^2 - s mu] / sum (s mu)^2`` (clipped to the theta range);
  weights = group sizes / n (floored at one cell's worth);
* E-step: ``log r_ik = log pi_k + log f_ik - logsumexp_k(...)`` (``scipy.special.logsumexp``);
* M-step: ``pi_k = mean_i r_ik``; for each component separately, L-BFGS-B with the
  analytic gradient maximises ``Q_k(a, b) = sum_i r_ik log f(x_i | s_i e^a, e^b)`` over
  ``a = log mu``, ``b = log theta``, warm-started at the current parameters (so Q_k never
  decreases and the marginal log-likelihood never decreases: a generalised EM). Near the
  Poisson limit Q_k is nearly flat in log theta and L-BFGS-B stalls there, so when its
  result has theta > 1e4 it is restarted from the moment estimate of theta and the better
  of the two results is kept;
* stop when the marginal log-likelihood rises by at most ``tol * n_cells``, or after
  ``max_iter`` M-steps.

Numerical care: ``lgamma(x + theta) - lgamma(theta)`` and ``digamma(x + theta) -
digamma(theta)`` are evaluated as finite sums over ``l < x`` (exact for integer counts),
not as differences of two huge numbers, so the log-pmf stays accurate near the Poisson
limit (theta up to 1e8); ``theta log(theta / (theta + m))`` is ``-theta log1p(m / theta)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, logsumexp

#: The parameter ranges (the same as scmix's): mu >= MU_MIN, THETA_MIN <= theta <= THETA_MAX.
MU_MIN = 1e-10
THETA_MIN = 1e-6
THETA_MAX = 1e8
_BOUNDS = [(np.log(MU_MIN), None), (np.log(THETA_MIN), np.log(THETA_MAX))]
#: L-BFGS-B options for the M-step; the objective is Q_k divided by the component's weight
#: (a mean log-likelihood per cell), so these tolerances do not depend on the number of cells.
_LBFGSB_OPTIONS = {"ftol": 1e-12, "gtol": 1e-9, "maxiter": 200}
#: Above this theta a second L-BFGS-B start is tried (see ``m_step_component``).
_FLAT_THETA = 1e4


def _count_sums(x_max: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """For n = 0 .. x_max: ``sum_{l<n} log1p(l / theta)`` and ``sum_{l<n} 1 / (theta + l)``.

    With them, exactly and without cancellation for any theta (integer counts x):
    ``lgamma(x + theta) - lgamma(theta) = x log(theta) + sum_{l<x} log1p(l / theta)`` and
    ``digamma(x + theta) - digamma(theta) = sum_{l<x} 1 / (theta + l)``.
    """
    ell = np.arange(x_max, dtype=np.float64)
    log_terms = np.concatenate(([0.0], np.cumsum(np.log1p(ell / theta))))
    inverse_terms = np.concatenate(([0.0], np.cumsum(1.0 / (theta + ell))))
    return log_terms, inverse_terms


def nb_logpmf(x: np.ndarray, m: np.ndarray, theta: float) -> np.ndarray:
    """Full NB log-pmf (including ``-lgamma(x + 1)``) of integer counts x at means m.

    ``lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) + theta log(theta / (theta + m))
    + x log(m / (theta + m))``, rearranged (the ``x log theta`` terms cancel) into
    ``sum_{l<x} log1p(l / theta) - lgamma(x + 1) - theta log1p(m / theta)
    + x (log m - log1p(m / theta))``, which stays accurate up to the Poisson limit.
    """
    counts = x.astype(np.int64)
    log_terms, _ = _count_sums(int(counts.max(initial=0)), theta)
    log1p_m_over_theta = np.log1p(m / theta)
    return (
        log_terms[counts]
        - gammaln(x + 1.0)
        - theta * log1p_m_over_theta
        + x * (np.log(m) - log1p_m_over_theta)
    )


def _negative_q(params, x, s, r, total_weight):
    """-Q_k / W and its gradient in (log mu, log theta); Q_k = sum_i r_i log f(x_i)."""
    log_mu, log_theta = params
    mu = np.exp(log_mu)
    theta = np.exp(log_theta)
    m = s * mu
    q = np.dot(r, nb_logpmf(x, m, theta))
    # d log f / d log mu = theta (x - m) / (theta + m)
    d_log_mu = theta * (x - m) / (theta + m)
    # d log f / d theta = psi(x + theta) - psi(theta) - log1p(m / theta) + (m - x) / (theta + m)
    counts = x.astype(np.int64)
    _, inverse_terms = _count_sums(int(counts.max(initial=0)), theta)
    d_theta = inverse_terms[counts] - np.log1p(m / theta) + (m - x) / (theta + m)
    grad = np.array([np.dot(r, d_log_mu), theta * np.dot(r, d_theta)])
    return -q / total_weight, -grad / total_weight


def moment_theta(x, s, r, mu):
    """theta by weighted moments at mean s * mu: 1/theta = sum r[(x - m)^2 - m] / sum r m^2."""
    m = s * mu
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.dot(r, (x - m) ** 2 - m) / np.dot(r, m * m)
    if not (np.isfinite(phi) and phi > 1.0 / THETA_MAX):
        phi = 1.0 / THETA_MAX
    return float(np.clip(1.0 / phi, THETA_MIN, THETA_MAX))


def _lbfgsb(x, s, r, total_weight, log_mu, log_theta):
    start = np.array([max(log_mu, np.log(MU_MIN)), np.clip(log_theta, *_BOUNDS[1])])
    return minimize(
        _negative_q,
        start,
        args=(x, s, r, total_weight),
        jac=True,
        method="L-BFGS-B",
        bounds=_BOUNDS,
        options=_LBFGSB_OPTIONS,
    )


def m_step_component(x, s, r, mu, theta):
    """Maximise the responsibility-weighted NB log-likelihood of one component.

    L-BFGS-B warm-started at (mu, theta). Near the Poisson limit the objective is flat in
    log theta (its gradient there is O(1/theta)), so L-BFGS-B can stop long before the
    optimum; where the result has theta above ``_FLAT_THETA`` we also start from the
    moment estimate of theta and keep the better of the two. A component without weight
    keeps its parameters.
    """
    total_weight = r.sum()
    if total_weight < 1e-10:
        return mu, theta
    result = _lbfgsb(x, s, r, total_weight, np.log(mu), np.log(theta))
    if np.exp(result.x[1]) > _FLAT_THETA:
        other = _lbfgsb(x, s, r, total_weight, result.x[0], np.log(moment_theta(x, s, r, mu)))
        if other.fun < result.fun:
            result = other
    # L-BFGS-B only accepts steps that decrease the objective; keep the start to be safe
    if result.fun > _negative_q(np.log([mu, theta]), x, s, r, total_weight)[0]:
        return mu, theta
    return float(np.exp(result.x[0])), float(np.exp(result.x[1]))


def initial_parameters(x, s, n_components):
    """The start: equal-size groups by the rank of log1p(x / s), ties by position."""
    n_cells = x.shape[0]
    y = np.log1p(x / s)
    ranks = np.empty(n_cells, dtype=np.int64)
    ranks[np.argsort(y, kind="stable")] = np.arange(n_cells)
    labels = (ranks * n_components) // n_cells
    mu = np.empty(n_components)
    theta = np.empty(n_components)
    weights = np.empty(n_components)
    for k in range(n_components):
        member = (labels == k).astype(np.float64)
        mu[k] = max(np.dot(member, x) / np.dot(member, s), MU_MIN)
        theta[k] = moment_theta(x, s, member, mu[k])
        weights[k] = member.mean()
    weights = np.maximum(weights, 1.0 / n_cells)
    return mu, theta, weights / weights.sum()


def e_step(x, s, mu, theta, weights):
    """Responsibilities (K, n_cells) and the marginal log-likelihood."""
    with np.errstate(divide="ignore"):
        log_joint = np.log(weights)[:, None] + np.array(
            [nb_logpmf(x, s * mu[k], theta[k]) for k in range(mu.size)]
        )
    log_marginal = logsumexp(log_joint, axis=0)
    return np.exp(log_joint - log_marginal), float(log_marginal.sum())


@dataclass
class GeneFit:
    mu: np.ndarray  # (K,), components by increasing mu
    theta: np.ndarray
    weights: np.ndarray
    loglik: float  # full marginal log-likelihood (with -lgamma(x + 1))
    n_iter: int  # M-steps taken
    converged: bool


def fit_gene(x, s, n_components=2, *, tol=1e-6, max_iter=1000, init=None) -> GeneFit:
    """EM for one gene: counts x and size factors s, both of shape (n_cells,).

    ``init``: optional starting ``(mu, theta, weights)`` instead of the quantile start
    (the benchmark uses it to polish another implementation's solution).
    """
    x = np.asarray(x, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("x must hold non-negative integer counts")
    n_cells = x.shape[0]
    if init is None:
        mu, theta, weights = initial_parameters(x, s, n_components)
    else:
        mu, theta, weights = (np.array(v, dtype=np.float64) for v in init)
    previous = -np.inf
    converged = False
    n_iter = 0
    for iteration in range(max_iter + 1):
        resp, loglik = e_step(x, s, mu, theta, weights)
        if iteration > 0 and loglik - previous <= tol * n_cells:
            converged = True
            break
        if iteration == max_iter:
            break
        weights = resp.mean(axis=1)
        for k in range(n_components):
            mu[k], theta[k] = m_step_component(x, s, resp[k], mu[k], theta[k])
        previous = loglik
        n_iter += 1
    order = np.argsort(mu, kind="stable")
    mu, theta, weights = mu[order], theta[order], weights[order]
    _, loglik = e_step(x, s, mu, theta, weights)
    return GeneFit(mu, theta, weights, loglik, n_iter, converged)


@dataclass
class BaselineFit:
    mu: np.ndarray  # (n_genes, K)
    theta: np.ndarray
    weights: np.ndarray
    loglik: np.ndarray  # (n_genes,)
    n_iter: np.ndarray
    converged: np.ndarray
    seconds: np.ndarray  # wall time per gene


def fit_genes(X, size_factors, n_components=2, *, tol=1e-6, max_iter=1000) -> BaselineFit:
    """Fit every column of the dense (n_cells, n_genes) count matrix X, one after another."""
    X = np.asarray(X, dtype=np.float64)
    n_genes = X.shape[1]
    fits, seconds = [], np.empty(n_genes)
    for j in range(n_genes):
        start = time.perf_counter()
        fits.append(fit_gene(X[:, j], size_factors, n_components, tol=tol, max_iter=max_iter))
        seconds[j] = time.perf_counter() - start
    return BaselineFit(
        mu=np.array([f.mu for f in fits]).reshape(n_genes, n_components),
        theta=np.array([f.theta for f in fits]).reshape(n_genes, n_components),
        weights=np.array([f.weights for f in fits]).reshape(n_genes, n_components),
        loglik=np.array([f.loglik for f in fits]),
        n_iter=np.array([f.n_iter for f in fits]),
        converged=np.array([f.converged for f in fits]),
        seconds=seconds,
    )
