r"""Technical noise from spike-ins: a dispersion-mean trend, and a test of each gene
for dispersion beyond it.

Model. Counts :math:`x_{ij} \sim \mathrm{NB}(s_i \mu_j, \phi_j)` (mean
:math:`m_{ij} = s_i\mu_j`, variance :math:`m_{ij} + \phi_j m_{ij}^2`), with size factors
:math:`s_i` (mean 1, so :math:`\mu_j` is the mean count of an average cell). The
spike-ins receive the same molecules in every cell, so their dispersions measure the
technical noise. Following Brennecke et al. (2013, Nat Methods 10:1093), whose squared
coefficient of variation of normalised counts is :math:`\mathrm{CV}^2 = a_1/\mu + a_0`,
the technical dispersion at mean :math:`\mu` is

.. math::

    \phi_{\mathrm{tech}}(\mu) = a_0 + \frac{a_1}{\mu}, \qquad a_0, a_1 \ge 0:

:math:`a_0` is the noise proportional to the mean (amplification, capture differences
not absorbed by :math:`s_i`), :math:`a_1/\mu` the extra-Poisson noise of sampling few
molecules. (The Poisson part :math:`1/(s_i\mu)` of Brennecke's :math:`\mathrm{CV}^2` is
already in the NB variance.)

Trend fit (:func:`fit_trend`). The spike-ins' one-component NB estimates
:math:`(\hat\mu_j, \hat\phi_j)` are regressed by a gamma generalised linear model with
identity link on the covariates :math:`(1, 1/\hat\mu_j)`, the model Brennecke et al. fit
to :math:`\mathrm{CV}^2`: :math:`E\hat\phi_j = a_0 + a_1/\hat\mu_j`,
:math:`\mathrm{Var}\,\hat\phi_j \propto (E\hat\phi_j)^2`. The quasi-likelihood equations
are solved by iteratively reweighted least squares with weights
:math:`w_j = 1/\hat\phi_{\mathrm{tech}}(\hat\mu_j)^2`, each step a non-negative least
squares problem (so :math:`a_0, a_1 \ge 0`). Why this and not pooled maximum
likelihood: it is the established model (and scran's ``modelGeneCV2WithSpikes`` fits
the same form), it needs only the per-spike-in fits, and the relative-error weighting
keeps the many low-mean spike-ins from dominating; its weakness is that
:math:`\hat\phi_j` of a spike-in with few counts is noisy and biased, hence
``min_mean``. Spike-ins whose fitted dispersion is 0 (Poisson-like) enter with
:math:`\hat\phi_j = 0`: the quasi-likelihood equations allow it.

Test (:func:`constrained_fit`, :func:`noise_test`). For gene j,
:math:`H_0: \phi_j = \phi_{\mathrm{tech}}(\mu_j)` against
:math:`H_1: \phi_j > \phi_{\mathrm{tech}}(\mu_j)`. Under :math:`H_0` the model has one
free parameter: :math:`\tilde\mu_j` maximises
:math:`\ell_j(\mu, \phi_{\mathrm{tech}}(\mu))` (the score in :math:`t = \log\mu`,

.. math::

    \frac{d\ell}{dt} = \sum_i \frac{\theta (x_{ij} - m_{ij})}{\theta + m_{ij}}
      + \frac{a_1 \theta^2}{\mu} \sum_i \Big[\psi(x_{ij} + \theta) - \psi(\theta)
      + \log\frac{\theta}{\theta + m_{ij}} + \frac{m_{ij} - x_{ij}}{\theta + m_{ij}}\Big],
    \qquad \theta = 1/\phi_{\mathrm{tech}}(\mu),

is found by a bracketed root search). Under :math:`H_1` both are free (the scmix NB fit,
:math:`(\hat\mu_j, \hat\phi_j)`). With :math:`\Lambda_j = 2(\ell_j(\hat\mu_j, \hat\phi_j) -
\ell_j(\tilde\mu_j, \phi_{\mathrm{tech}}(\tilde\mu_j)))` and the signed root
:math:`r_j = \operatorname{sign}(\hat\phi_j - \phi_{\mathrm{tech}}(\hat\mu_j))
\sqrt{\Lambda_j}`, the one-sided p-value is :math:`p_j = 1 - \Phi(r_j)`: for
:math:`\hat\phi_j` above the trend this is :math:`\tfrac12 P(\chi^2_1 > \Lambda_j)` (the
:math:`\tfrac12\chi^2_0 + \tfrac12\chi^2_1` reference of a one-sided test), below it
:math:`p_j > 1/2`. Under :math:`H_0` and n large, :math:`r_j` is standard normal and
:math:`p_j` uniform. The trend is treated as known: the error of :math:`(a_0, a_1)`,
estimated from tens of spike-ins, is ignored (it makes the test anti-conservative for
genes whose mean lies where the spike-ins are few).

Speed: everything is vectorised numpy over (cells, genes) dense blocks; the null fit
takes about 10 evaluations of the score (a digamma per count) plus the bracket's, so it
costs about 12-15 passes over the dense block; it dominates the run time (the free NB fit
of scmix is much faster).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

#: Smallest technical dispersion used in the null fit (theta at most 1e6: below that
#: the NB is Poisson to double precision in the log-likelihood sums that matter).
MIN_TECH_DISPERSION = 1e-6
#: The null fit's root finder in log mu: step tolerance, most steps, most widenings.
ROOT_TOL = 1e-9
MAX_ROOT_STEPS = 100
MAX_WIDENING = 12


@dataclass
class Trend:
    r"""The fitted :math:`\phi_{\mathrm{tech}}(\mu) = a_0 + a_1/\mu`."""

    a0: float
    a1: float
    n_used: int
    n_iter: int
    converged: bool

    def __call__(self, mean) -> np.ndarray:
        mean = np.asarray(mean, dtype=float)
        with np.errstate(divide="ignore"):
            return self.a0 + self.a1 / mean

    def summary(self) -> dict:
        return {
            "a0": self.a0,
            "a1": self.a1,
            "n_spike_ins_used": self.n_used,
            "n_iter": self.n_iter,
            "converged": self.converged,
            "formula": "dispersion = a0 + a1 / mean",
        }


def fit_trend(
    mean: np.ndarray,
    dispersion: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> Trend:
    r"""Gamma GLM (identity link) of ``dispersion`` on ``(1, 1/mean)`` by IRLS with
    non-negative coefficients; see the module docstring.

    ``mean`` and ``dispersion``: (n,) finite, ``mean > 0``, ``dispersion >= 0``; the
    caller selects the spike-ins (at least 2 with a positive dispersion).
    """
    mean = np.asarray(mean, dtype=float)
    y = np.asarray(dispersion, dtype=float)
    design = np.column_stack([np.ones_like(mean), 1.0 / mean])
    fitted = np.full_like(y, max(y.mean(), 1e-12))  # first step: equal weights
    coef = np.zeros(2)
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        root_w = 1.0 / np.maximum(fitted, 1e-12)
        new, _ = optimize.nnls(design * root_w[:, None], y * root_w)
        change = np.max(np.abs(new - coef) / np.maximum(np.abs(new), 1e-12))
        coef = new
        fitted = design @ coef
        if change < tol:
            converged = True
            break
    return Trend(float(coef[0]), float(coef[1]), int(mean.size), n_iter, converged)


def nb_loglik(x: np.ndarray, size_factors: np.ndarray, mean, dispersion) -> np.ndarray:
    r"""Per-gene NB log-likelihood :math:`\sum_i \log f(x_{ij} \mid s_i\mu_j, \phi_j)`
    (the log-pmf of :mod:`scmix._core.families.nb`, with :math:`\log x!`); ``x`` (cells,
    genes), ``mean`` and ``dispersion`` (genes,); dispersion 0 is the Poisson."""
    m = size_factors[:, None] * np.asarray(mean, dtype=float)[None, :]
    phi = np.asarray(dispersion, dtype=float)[None, :]
    poisson = special.xlogy(x, m) - m - special.gammaln(x + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = 1.0 / phi
        nb = (
            special.gammaln(x + theta)
            - special.gammaln(theta)
            - special.gammaln(x + 1)
            - theta * np.log1p(m / theta)
            + special.xlogy(x, m / (theta + m))
        )
    return np.where(phi > 0, nb, poisson).sum(axis=0)


def _null_score(x, s, log_mu, trend: Trend) -> np.ndarray:
    """d loglik / d log mu along phi = trend(mu) (module docstring), per gene."""
    mu = np.exp(log_mu)
    phi = np.maximum(trend(mu), MIN_TECH_DISPERSION)
    theta = 1.0 / phi
    m = s[:, None] * mu[None, :]
    denom = theta[None, :] + m
    mean_part = (theta[None, :] * (x - m) / denom).sum(axis=0)
    if trend.a1 == 0:
        return mean_part
    d_theta = (
        special.digamma(x + theta[None, :])
        - special.digamma(theta)[None, :]
        + np.log(theta[None, :] / denom)
        + (m - x) / denom
    ).sum(axis=0)
    # phi clipped at its floor does not move with mu
    slope = np.where(trend(mu) > MIN_TECH_DISPERSION, trend.a1 * theta**2 / mu, 0.0)
    return mean_part + slope * d_theta


def constrained_fit(
    x: np.ndarray, size_factors: np.ndarray, trend: Trend
) -> tuple[np.ndarray, np.ndarray]:
    r"""The null fit: per gene (columns of ``x``, cells x genes, every column with a
    count), :math:`\tilde\mu` maximising :math:`\ell(\mu, \phi_{\mathrm{tech}}(\mu))`:
    the root of the score in :math:`t = \log\mu` by the Illinois (modified regula falsi)
    method, from the bracket :math:`\log\bar\mu \pm 1/2` around the Poisson estimate
    :math:`\bar\mu = \sum_i x_{ij} / \sum_i s_i` (its width doubled until the score
    changes sign). The root is kept bracketed, so the method cannot diverge; it stops
    when every gene's step is below ``ROOT_TOL`` (typically 6-10 score evaluations).

    Returns ``(mean, loglik)``, each (genes,).
    """
    s = np.asarray(size_factors, dtype=float)
    centre = np.log(x.sum(axis=0) / s.sum())
    lo, hi = centre - 0.5, centre + 0.5
    f_lo, f_hi = _null_score(x, s, lo, trend), _null_score(x, s, hi, trend)
    for width in 2.0 ** np.arange(MAX_WIDENING):  # widen where the bracket misses the root
        low_bad, high_bad = f_lo < 0, f_hi > 0
        if not (low_bad.any() or high_bad.any()):
            break
        lo = np.where(low_bad, lo - width, lo)
        hi = np.where(high_bad, hi + width, hi)
        f_lo = np.where(low_bad, _null_score(x, s, lo, trend), f_lo)
        f_hi = np.where(high_bad, _null_score(x, s, hi, trend), f_hi)
    root = 0.5 * (lo + hi)
    side = np.zeros(lo.size)  # +1: the last step moved lo, -1: hi
    for _ in range(MAX_ROOT_STEPS):
        with np.errstate(divide="ignore", invalid="ignore"):
            new = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        new = np.where(np.isfinite(new) & (new > lo) & (new < hi), new, 0.5 * (lo + hi))
        done = np.abs(new - root) < ROOT_TOL
        root = new
        if done.all():
            break
        f_new = _null_score(x, s, root, trend)
        up = f_new > 0  # the root is above: move lo
        f_hi = np.where(up & (side > 0), 0.5 * f_hi, f_hi)  # Illinois: halve the stale end
        f_lo = np.where(~up & (side < 0), 0.5 * f_lo, f_lo)
        lo, f_lo = np.where(up, root, lo), np.where(up, f_new, f_lo)
        hi, f_hi = np.where(up, hi, root), np.where(up, f_hi, f_new)
        side = np.where(up, 1.0, -1.0)
    mean = np.exp(root)
    phi = np.maximum(trend(mean), MIN_TECH_DISPERSION)
    return mean, nb_loglik(x, s, mean, phi)


@dataclass
class NoiseTest:
    """Per-gene results of :func:`noise_test` (each (genes,))."""

    technical_dispersion: np.ndarray  # phi_tech(mu_hat)
    null_mean: np.ndarray  # mu tilde
    statistic: np.ndarray  # Lambda
    signed_root: np.ndarray  # r
    pvalue: np.ndarray


def noise_test(
    x: np.ndarray,
    size_factors: np.ndarray,
    mean: np.ndarray,
    dispersion: np.ndarray,
    loglik: np.ndarray,
    trend: Trend,
) -> NoiseTest:
    r"""One-sided likelihood-ratio test of :math:`\phi_j > \phi_{\mathrm{tech}}(\mu_j)`
    for the genes (columns) of ``x`` (cells x genes, dense), given their free NB fit
    ``mean``, ``dispersion``, ``loglik`` (genes,); see the module docstring.

    :math:`\Lambda` is floored at 0 (the free fit nests the null; a negative value is
    the free fit's numerical error).
    """
    null_mean, null_loglik = constrained_fit(x, size_factors, trend)
    statistic = np.maximum(2.0 * (loglik - null_loglik), 0.0)
    technical = np.maximum(trend(mean), MIN_TECH_DISPERSION)
    sign = np.where(dispersion > technical, 1.0, -1.0)
    root = sign * np.sqrt(statistic)
    return NoiseTest(technical, null_mean, statistic, root, stats.norm.sf(root))
