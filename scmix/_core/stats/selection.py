r"""Model selection between the one-component and the K-component fit.

For a gene with log-likelihoods :math:`\ell_1` and :math:`\ell_K` on n cells,
a mixture with p free parameters per component has
:math:`\nu_K = Kp + K - 1` free parameters and

.. math::

    \mathrm{BIC}_K = -2\ell_K + \nu_K \log n, \qquad
    \Delta\mathrm{BIC} = \mathrm{BIC}_1 - \mathrm{BIC}_K, \qquad
    \mathrm{LRT} = 2(\ell_K - \ell_1).

Positive delta BIC favours K components. A gene is called bimodal when
delta BIC exceeds ``bic_threshold`` (default 10: "very strong" evidence on the
Kass & Raftery 1995 scale of 2 log Bayes factor), its smallest component weight
is at least ``min_weight`` (default 0.05: a mode, not a handful of outliers),
the K-component fit converged and no component is degenerate (see
:func:`degenerate_components`). The chi-square reference distribution is not
valid for the LRT of a mixture (the null is on the boundary), so no p-value is
derived from it here: calibrated p-values come from simulation
(:mod:`.bootstrap`, :mod:`.null_grid`), and ``call="padj"`` calls a gene bimodal when
its Benjamini-Hochberg adjusted p-value is at most ``padj_threshold`` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # fit imports the engine, which this module serves
    from ..fit.matrix import MixtureFit

DEFAULT_BIC_THRESHOLD = 10.0
DEFAULT_MIN_WEIGHT = 0.05
#: ``call="padj"``: the false discovery rate of the calls (adjusted p-value at most this,
#: and :func:`a_proper_mixture`).
DEFAULT_PADJ_THRESHOLD = 0.05


def n_parameters(n_components: int, params_per_component: int) -> int:
    """Free parameters of a K-component mixture: K p + (K - 1) weights."""
    return n_components * params_per_component + n_components - 1


def bic(
    loglik: np.ndarray, n_components: int, params_per_component: int, n_cells: int
) -> np.ndarray:
    """Bayesian information criterion, ``-2 loglik + nu log n``."""
    return -2.0 * loglik + n_parameters(n_components, params_per_component) * np.log(n_cells)


#: A component whose mean count per unit size factor is below this is a point mass at zero.
POINT_MASS_MEAN = 1e-3
#: Components closer than this (relative, in mean and in dispersion) are the same component.
SAME_COMPONENT_RTOL = 0.01


def degenerate_components(means: np.ndarray, dispersions: np.ndarray) -> np.ndarray:
    """Per gene: does the K-component fit have a degenerate component?

    Degenerate means (a) a point mass at zero: mean below ``POINT_MASS_MEAN``
    per unit size factor, or a dispersion of at least ``1 / THETA_MIN`` (all mass at 0)
    -- zero-inflation, not a second mode; or (b) two components that are the same
    distribution (means and dispersions within ``SAME_COMPONENT_RTOL``): the fit is
    the one-component model written twice. ``means`` and ``dispersions``: (genes, K).
    """
    from ..families.nb import THETA_MIN

    point_mass = (means < POINT_MASS_MEAN) | (dispersions >= (1.0 - 1e-9) / THETA_MIN)
    degenerate = point_mass.any(axis=1)
    n_comp = means.shape[1]
    for a in range(n_comp):
        for b in range(a + 1, n_comp):
            same_mean = np.isclose(means[:, a], means[:, b], rtol=SAME_COMPONENT_RTOL, atol=0)
            same_phi = np.isclose(
                dispersions[:, a], dispersions[:, b], rtol=SAME_COMPONENT_RTOL, atol=1e-8
            )
            degenerate |= same_mean & same_phi
    return degenerate


def bimodal_call(
    delta_bic: np.ndarray,
    weights: np.ndarray,
    converged: np.ndarray,
    means: np.ndarray,
    dispersions: np.ndarray,
    *,
    bic_threshold: float = DEFAULT_BIC_THRESHOLD,
    min_weight: float = DEFAULT_MIN_WEIGHT,
) -> np.ndarray:
    """delta BIC above the threshold, every weight at least ``min_weight``, converged,
    and no degenerate component."""
    with np.errstate(invalid="ignore"):
        evidence = delta_bic > bic_threshold
    return evidence & a_proper_mixture(weights, converged, means, dispersions, min_weight)


def a_proper_mixture(weights, converged, means, dispersions, min_weight: float) -> np.ndarray:
    """Every weight at least ``min_weight`` (a mode, not a handful of outliers), converged,
    and no degenerate component."""
    with np.errstate(invalid="ignore"):
        large = np.min(weights, axis=1) >= min_weight
    return large & converged & ~degenerate_components(means, dispersions)


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, at most 1); NaN stays NaN
    and does not count towards the number of tests."""
    pvalues = np.asarray(pvalues, dtype=float)
    adjusted = np.full(pvalues.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(pvalues))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(pvalues[finite], kind="stable")]
    scaled = pvalues[order] * m / np.arange(1, m + 1)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted


def model_selection_table(
    fit: MixtureFit, n_cells: int, *, bic_threshold: float, min_weight: float
) -> dict[str, np.ndarray]:
    """Per-gene BIC, delta BIC, LRT and the bimodality call (NaN / False where not fitted)."""
    single = fit.single
    p = fit.family.n_free_params
    bic_k = bic(fit.loglik, fit.n_components, p, n_cells)
    bic_1 = bic(single.loglik, 1, p, n_cells)
    delta = bic_1 - bic_k
    return {
        "loglik": fit.loglik,
        "loglik_1": single.loglik,
        "bic": bic_k,
        "bic_1": bic_1,
        "delta_bic": delta,
        "lrt": 2.0 * (fit.loglik - single.loglik),
        "bimodal": bimodal_call(
            delta,
            fit.weights,
            fit.converged,
            fit.params["mu"],
            fit.dispersion,
            bic_threshold=bic_threshold,
            min_weight=min_weight,
        )
        & fit.fitted,
    }


def shared_selection(fit, single_loglik: np.ndarray, family, n_cells: int) -> dict:
    r"""Totals of a cell-level (shared) fit against the genes' one-component fits:
    ``loglik``, ``loglik_1``, ``bic``, ``bic_1``, ``delta_bic``, ``lrt``. With G genes
    and p parameters per component, :math:`\nu_K = KpG + K - 1` and :math:`\nu_1 = pG`."""
    n_genes, p = single_loglik.size, family.n_free_params
    k = fit.weights.size
    loglik_1 = float(single_loglik.sum())
    bic_k = -2.0 * fit.loglik + (k * p * n_genes + k - 1) * np.log(n_cells)
    bic_1 = -2.0 * loglik_1 + p * n_genes * np.log(n_cells)
    return {
        "loglik": fit.loglik,
        "loglik_1": loglik_1,
        "bic": bic_k,
        "bic_1": bic_1,
        "delta_bic": bic_1 - bic_k,
        "lrt": 2.0 * (fit.loglik - loglik_1),
    }


def covariate_summary(
    fit, family, n_cells: int, *, bic_threshold: float, min_weight: float
) -> dict[str, np.ndarray]:
    """The reported per-gene results of a fit with covariates (``fit``, a
    :class:`~scmix._core.fit.covariates.CovariateResults`): ``mean``, ``dispersion``,
    ``weight`` (genes, K), the one-component ``single_mean`` / ``single_dispersion``, and the model
    selection (``loglik``, ``loglik_1``, ``bic``, ``bic_1``, ``delta_bic``, ``lrt``,
    ``bimodal``, ``converged``, ``n_iter``); both BICs count the covariate effects."""
    n_comp, n_cov = fit.log_mu.shape[1], fit.gamma.shape[1]
    p = family.n_free_params
    mean, phi = np.exp(fit.log_mu), _dispersion(family, fit.log_theta)
    extra = n_cov * np.log(n_cells)
    bic_k = bic(fit.loglik, n_comp, p, n_cells) + extra
    bic_1 = bic(fit.loglik_1, 1, p, n_cells) + extra
    delta = bic_1 - bic_k
    call = bimodal_call(
        delta,
        fit.weights,
        fit.converged,
        mean,
        phi,
        bic_threshold=bic_threshold,
        min_weight=min_weight,
    )
    return {
        "mean": mean,
        "dispersion": phi,
        "weight": fit.weights,
        "single_mean": np.exp(fit.single_coef[:, 0]),
        "single_dispersion": _dispersion(family, fit.single_log_theta[:, None])[:, 0],
        "loglik": fit.loglik,
        "loglik_1": fit.loglik_1,
        "bic": bic_k,
        "bic_1": bic_1,
        "delta_bic": delta,
        "lrt": 2.0 * (fit.loglik - fit.loglik_1),
        "bimodal": call & fit.fitted & (n_comp > 1),
        "converged": fit.converged,
        "n_iter": fit.n_iter,
    }


def _dispersion(family, log_theta: np.ndarray) -> np.ndarray:
    """phi = 1 / theta as the family reports it (0 for Poisson or at the theta bound)."""
    if "theta" not in family.param_names:
        return np.where(np.isnan(log_theta), np.nan, 0.0)
    return family.dispersion({"theta": np.exp(log_theta)})
