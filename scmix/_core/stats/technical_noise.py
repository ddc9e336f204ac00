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

Test (:func:`null_fits`, :func:`noise_test`). For gene j the null hypothesis is that
its dispersion is technical. Under the NB alone that would be
:math:`\phi_j = \phi_{\mathrm{tech}}(\mu_j)`, and the one-sided likelihood-ratio test
compares the free fit :math:`(\hat\mu_j, \hat\phi_j)` with the null fit
:math:`\tilde\mu_j = \arg\max_\mu \ell_j(\mu, \phi_{\mathrm{tech}}(\mu))` (the root of
the profile score in :math:`t = \log\mu`,

.. math::

    \frac{d\ell}{dt} = \sum_i \frac{\theta (x_{ij} - m_{ij})}{\theta + m_{ij}}
      + \frac{a_1 \theta^2}{\mu} \sum_i \Big[\psi(x_{ij} + \theta) - \psi(\theta)
      + \log\frac{\theta}{\theta + m_{ij}} + \frac{m_{ij} - x_{ij}}{\theta + m_{ij}}\Big],
    \qquad \theta = 1/\phi_{\mathrm{tech}}(\mu)),

by its signed root :math:`r_j = \operatorname{sign}(\hat\phi_j -
\phi_{\mathrm{tech}}(\hat\mu_j))\sqrt{\Lambda_j}`, :math:`\Lambda_j = 2(\hat\ell_j -
\tilde\ell_j)`, which is standard normal under that null for many cells.

Real spike-ins do not sit on the trend up to sampling: their dispersions scatter around
it by a factor of 1.4-1.65 (tau 0.35-0.50 on Svensson and Zeisel), and tested against the trend of
the others, 8-24% of them are rejected at 0.05. So the null is the spike-ins' own
behaviour: :math:`\log\phi_j = \log\phi_{\mathrm{tech}}(\mu_j) + \varepsilon_j`,
:math:`\varepsilon_j \sim N(0, \tau^2)`. Write :math:`\Delta_j = \log\hat\phi_j -
\log\phi_{\mathrm{tech}}(\hat\mu_j)` and :math:`\mathrm{se}_j = |\Delta_j| / |r_j|`, the
standard error of :math:`\log\hat\phi_j` that makes the Wald statistic equal the
likelihood-ratio one. Under the null :math:`\Delta_j` has variance about
:math:`\tau^2 + \mathrm{se}_j^2`, and

.. math::

    z_j = \frac{\Delta_j}{\sqrt{\mathrm{se}_j^2 + \tau^2}}
        = \frac{r_j}{\sqrt{1 + \tau^2 r_j^2 / \Delta_j^2}}, \qquad p_j = 1 - \Phi(z_j).

For :math:`\tau = 0`, or where sampling dominates (few counts; a gene fitted at the
Poisson boundary, :math:`\hat\phi_j = 0`, has :math:`\mathrm{se}_j = \infty`), this is the
LRT, :math:`p_j = \tfrac12 P(\chi^2_1 > \Lambda_j)` above the trend; where the scatter
dominates (many counts) it compares :math:`\Delta_j` with :math:`\tau`, like scran's
``modelGeneCV2WithSpikes`` (which uses one spread at all means, sampling included). The
likelihood-ratio standard error, not the Fisher information at the null, because the
log-likelihood is not symmetric in :math:`\log\phi` (the information grows with
:math:`\phi`): a first version, :math:`r_j / \sqrt{1 + \tau^2 I_j}` with the exact
information (since removed), rejected 7.5% of simulated null genes at 0.05 given the
true trend and :math:`\tau = 0.4`; with :math:`\mathrm{se}_j`,
``test_calibrated_under_the_true_trend_and_scatter`` requires 3.5-6.5%. :math:`\tau` is
estimated from the spike-ins, each compared with the trend of the others
(:func:`spike_in_scatter`, :func:`fit_scatter`), so that it includes the trend's own
error.

Speed: a numba kernel per gene (:mod:`._noise_kernels`) over compressed columns; the
root search, started next to the free fit's mean (mean and dispersion are orthogonal in
the NB, so the null mean is close to it), takes a few evaluations of the score, each one
pass over the cells plus a digamma per non-zero count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, sparse, stats

from ..numerics.jit import over_rows, row_threads
from . import _noise_kernels as kernels

#: Smallest technical dispersion used in the null fit (theta at most 1e6: below that
#: the NB is Poisson to double precision in the log-likelihood sums that matter).
MIN_TECH_DISPERSION = 1e-6
#: The median of chi^2_1: the robust scale equation of :func:`fit_scatter`.
CHI2_1_MEDIAN = float(stats.chi2.ppf(0.5, 1))


@dataclass
class Trend:
    r"""The fitted :math:`\phi_{\mathrm{tech}}(\mu) = a_0 + a_1/\mu`, and the spike-ins'
    scatter :math:`\tau` of :math:`\log\phi` around it beyond sampling."""

    a0: float
    a1: float
    n_used: int
    n_iter: int
    converged: bool
    scatter_sd: float = 0.0

    def __call__(self, mean) -> np.ndarray:
        mean = np.asarray(mean, dtype=float)
        with np.errstate(divide="ignore"):
            return self.a0 + self.a1 / mean

    def coefficients(self) -> np.ndarray:
        """``[a0, a1, floor]`` as the kernels take them."""
        return np.array([self.a0, self.a1, MIN_TECH_DISPERSION])

    def summary(self) -> dict:
        return {
            "a0": self.a0,
            "a1": self.a1,
            "scatter_sd": self.scatter_sd,
            "n_spike_ins_used": self.n_used,
            "n_iter": self.n_iter,
            "converged": self.converged,
            "formula": "dispersion = a0 + a1 / mean; log(dispersion) scatters with SD "
            "scatter_sd beyond sampling",
        }


def fit_trend(
    mean: np.ndarray,
    dispersion: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> Trend:
    r"""Gamma GLM (identity link) of ``dispersion`` on ``(1, 1/mean)`` by IRLS with
    non-negative coefficients; see the module docstring. The scatter is left at 0
    (:func:`fit_scatter` estimates it).

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


@dataclass
class Columns:
    """Counts of some genes as compressed columns (see :mod:`._noise_kernels`)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @classmethod
    def from_matrix(cls, x) -> Columns:
        """From a (cells, genes) dense array or scipy sparse matrix of counts."""
        csc = sparse.csc_matrix(x)
        csc.sort_indices()
        return cls(
            csc.indptr.astype(np.int64),
            csc.indices.astype(np.int64),
            csc.data.astype(np.float64),
        )

    @property
    def n_genes(self) -> int:
        return self.indptr.size - 1

    def take(self, j: int) -> Columns:
        """Gene ``j`` alone."""
        lo, hi = self.indptr[j], self.indptr[j + 1]
        return Columns(np.array([0, hi - lo]), self.indices[lo:hi], self.data[lo:hi])


def null_fits(
    columns: Columns,
    size_factors: np.ndarray,
    trend: Trend,
    start_mean: np.ndarray,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    r"""The null fit of every gene: :math:`\tilde\mu_j` maximising
    :math:`\ell_j(\mu, \phi_{\mathrm{tech}}(\mu))` (root of the profile score, bracketed
    from ``start_mean``, the free fit's mean) and :math:`\tilde\ell_j`, each (genes,).
    Genes run on ``n_jobs`` threads."""
    s = np.ascontiguousarray(size_factors, dtype=float)
    parts = (columns.indptr, columns.indices, columns.data)
    start = np.log(np.asarray(start_mean, dtype=float))
    out = np.empty((columns.n_genes, 2))
    coef = trend.coefficients()

    def run(rows):
        kernels.null_fits(parts, s, coef, start, rows, out)

    with row_threads(n_jobs):
        over_rows(run, np.arange(columns.n_genes), columns.n_genes * s.size)
    return np.exp(out[:, 0]), out[:, 1]


def signed_root(loglik, null_loglik, dispersion, technical) -> np.ndarray:
    r""":math:`r = \operatorname{sign}(\hat\phi - \phi_{\mathrm{tech}}(\hat\mu))
    \sqrt{\Lambda}`, :math:`\Lambda = 2(\hat\ell - \tilde\ell)` floored at 0 (the free fit
    nests the null; a negative value is the free fit's numerical error)."""
    statistic = np.maximum(2.0 * (np.asarray(loglik) - null_loglik), 0.0)
    return np.where(np.asarray(dispersion) > technical, 1.0, -1.0) * np.sqrt(statistic)


def scatter_z(root: np.ndarray, log_ratio: np.ndarray, scatter_sd: float) -> np.ndarray:
    r""":math:`z = r / \sqrt{1 + \tau^2 r^2 / \Delta^2}` (module docstring), from the signed
    roots ``root``, :math:`\Delta` = ``log_ratio`` (-inf for a Poisson fit) and
    :math:`\tau` = ``scatter_sd``; :math:`z = r` where :math:`r = 0`."""
    root = np.asarray(root, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(root == 0, 0.0, scatter_sd**2 * root**2 / np.square(log_ratio))
    return root / np.sqrt(1.0 + weight)


def fit_scatter(root: np.ndarray, log_ratio: np.ndarray) -> float:
    r""":math:`\hat\tau`, the SD of the spike-ins' :math:`\log\phi` around the trend
    beyond sampling, from their (leave-one-out) signed roots and log ratios
    :math:`\Delta_k`: under the model :math:`z_k(\tau)` (:func:`scatter_z`) is standard
    normal, so :math:`\hat\tau` solves :math:`\operatorname{median}_k z_k(\tau)^2 =
    \chi^2_{1,0.5}` (0.455), a robust moment equation: a few odd spike-ins do not move
    it (maximum likelihood doubles it on Svensson's and Tung's spike-ins, for one or two
    of them). 0 when the spike-ins scatter no more than sampling explains.
    """

    def excess(tau):
        return np.median(scatter_z(root, log_ratio, tau) ** 2) - CHI2_1_MEDIAN

    if excess(0.0) <= 0:
        return 0.0
    high = 1.0
    while excess(high) > 0:
        high *= 4.0
    return float(optimize.brentq(excess, 0.0, high, xtol=1e-12, rtol=1e-10))


def spike_in_scatter(
    columns: Columns,
    size_factors: np.ndarray,
    free: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Trend:
    r"""The trend of the spike-ins ``columns`` (their free NB fits ``free = (mean,
    dispersion, loglik)``) with its scatter: each spike-in k is compared with the trend
    fitted without it (its leave-one-out signed root :math:`r_k` and log ratio
    :math:`\Delta_k`), and :math:`\hat\tau` is :func:`fit_scatter` of those. Leaving k
    out counts the trend's own error at k's mean as scatter, as a gene at that mean meets
    it."""
    mean, dispersion, loglik = (np.asarray(a, dtype=float) for a in free)
    n = mean.size
    root, log_ratio = np.empty(n), np.empty(n)
    for k in range(n):
        others = np.arange(n) != k
        alone = fit_trend(mean[others], dispersion[others])
        one = (mean[[k]], dispersion[[k]], loglik[[k]])
        _, r, delta = _against_trend(columns.take(k), size_factors, one, alone)
        root[k], log_ratio[k] = r[0], delta[0]
    trend = fit_trend(mean, dispersion)
    trend.scatter_sd = fit_scatter(root, log_ratio)
    return trend


def _against_trend(columns, size_factors, free, trend, n_jobs=1):
    r"""Per gene, against the trend: the technical dispersion at the free fit's mean,
    the signed root :math:`r` and the log ratio :math:`\Delta` (-inf for a Poisson fit)."""
    mean, dispersion, loglik = free
    _, null_loglik = null_fits(columns, size_factors, trend, mean, n_jobs)
    technical = np.maximum(trend(mean), MIN_TECH_DISPERSION)
    with np.errstate(divide="ignore"):
        log_ratio = np.log(dispersion / technical)
    return technical, signed_root(loglik, null_loglik, dispersion, technical), log_ratio


@dataclass
class NoiseTest:
    """Per-gene results of :func:`noise_test` (each (genes,))."""

    technical_dispersion: np.ndarray  # phi_tech(mu_hat)
    statistic: np.ndarray  # Lambda = r^2
    z: np.ndarray  # Delta / sqrt(se^2 + tau^2)
    pvalue: np.ndarray


def noise_test(
    columns: Columns,
    size_factors: np.ndarray,
    free: tuple[np.ndarray, np.ndarray, np.ndarray],
    trend: Trend,
    n_jobs: int = 1,
) -> NoiseTest:
    r"""One-sided test of each gene (of ``columns``) for dispersion beyond the technical
    noise, given its free NB fit ``free = (mean, dispersion, loglik)`` (genes,); see the
    module docstring: :math:`z_j = \Delta_j / \sqrt{\mathrm{se}_j^2 + \tau^2}`,
    :math:`p_j = 1 - \Phi(z_j)`.
    """
    free = tuple(np.asarray(a, dtype=float) for a in free)
    technical, root, log_ratio = _against_trend(columns, size_factors, free, trend, n_jobs)
    z = scatter_z(root, log_ratio, trend.scatter_sd)
    return NoiseTest(technical, root**2, z, stats.norm.sf(z))
