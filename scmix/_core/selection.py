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
and the K-component fit converged. The chi-square reference distribution is not
valid for the LRT of a mixture (the null is on the boundary), so no p-value is
derived from it here.
"""

from __future__ import annotations

import numpy as np

DEFAULT_BIC_THRESHOLD = 10.0
DEFAULT_MIN_WEIGHT = 0.05


def n_parameters(n_components: int, params_per_component: int) -> int:
    """Free parameters of a K-component mixture: K p + (K - 1) weights."""
    return n_components * params_per_component + n_components - 1


def bic(
    loglik: np.ndarray, n_components: int, params_per_component: int, n_cells: int
) -> np.ndarray:
    """Bayesian information criterion, ``-2 loglik + nu log n``."""
    return -2.0 * loglik + n_parameters(n_components, params_per_component) * np.log(n_cells)


def bimodal_call(
    delta_bic: np.ndarray,
    weights: np.ndarray,
    converged: np.ndarray,
    *,
    bic_threshold: float = DEFAULT_BIC_THRESHOLD,
    min_weight: float = DEFAULT_MIN_WEIGHT,
) -> np.ndarray:
    """delta BIC above the threshold, every weight at least ``min_weight``, converged."""
    with np.errstate(invalid="ignore"):
        return (delta_bic > bic_threshold) & (np.min(weights, axis=1) >= min_weight) & converged
