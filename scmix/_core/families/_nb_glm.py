r"""The NB log-pmf and its derivatives in :math:`\eta = \log m` and :math:`\alpha = \log\theta`,
cell by cell, for the fits with covariates (:meth:`NegativeBinomial.glm_terms`).

With :math:`L = \log(\theta + m)`:

.. math::

    \ell &= \log\Gamma(x+\theta) - \log\Gamma(\theta) - \log x! + \theta(\alpha - L)
            + x(\eta - L) \\
    \partial_\eta \ell &= \theta (x - m) / (\theta + m), \qquad
    \partial^2_\eta \ell = -\theta m (x + \theta) / (\theta + m)^2 \\
    \partial_\theta \ell &= \psi(x+\theta) - \psi(\theta) + \alpha + 1 - L
            - (x+\theta)/(\theta+m) \\
    \partial^2_\theta \ell &= \psi'(x+\theta) - \psi'(\theta) + 1/\theta - 2/(\theta+m)
            + (x+\theta)/(\theta+m)^2

and :math:`\partial_\alpha = \theta\partial_\theta`,
:math:`\partial^2_\alpha = \theta^2\partial^2_\theta + \theta\partial_\theta`,
:math:`\partial_\eta\partial_\alpha \ell = \theta (x - m) m / (\theta + m)^2`. The gamma
function ratios depend on a cell only through its count: they are computed once per
distinct count (:func:`~scmix._core.numerics.special.level_ratios`), then one fused pass
over the cells writes every term.
"""

from __future__ import annotations

import math

import numpy as np

from ..numerics.jit import jit
from ..numerics.special import level_ratios


@jit
def _nb_glm_kernel(counts, eta, log_theta, table, out, derivatives):
    """``out[0]`` the log-pmf and, with ``derivatives``, ``out[1:6]`` the derivatives
    (d_eta, d2_eta, d_alpha, d2_alpha, d_eta_alpha), each (genes, cells), of the
    ``counts`` (a :class:`~scmix._core.families.base.CountTable`); ``table`` (genes,
    levels, 3) is scratch for the gamma ratios."""
    x, index, values, log_factorial = counts.x, counts.index, counts.values, counts.log_factorial
    n_genes, n_cells = x.shape
    for g in range(n_genes):
        alpha = log_theta[g]
        theta = math.exp(alpha)
        for level in range(values.shape[1]):
            ratios = level_ratios(values[g, level], theta)
            table[g, level, 0] = ratios[0]
            table[g, level, 1] = ratios[1]
            table[g, level, 2] = ratios[2]
        for i in range(n_cells):
            xi = x[g, i]
            e = eta[g, i]
            m = math.exp(e)
            total = theta + m
            log_total = alpha + math.log1p(m / theta)
            level = index[g, i]
            out[0, g, i] = (
                table[g, level, 0]
                - log_factorial[g, i]
                + theta * (alpha - log_total)
                + xi * (e - log_total)
            )
            if derivatives:
                inverse = 1.0 / total
                d_theta = table[g, level, 1] + alpha + 1.0 - log_total - (xi + theta) * inverse
                d2_theta = (
                    table[g, level, 2]
                    + 1.0 / theta
                    - 2.0 * inverse
                    + (xi + theta) * inverse * inverse
                )
                out[1, g, i] = theta * (xi - m) * inverse
                out[2, g, i] = -theta * m * (xi + theta) * inverse * inverse
                out[3, g, i] = theta * d_theta
                out[4, g, i] = theta * theta * d2_theta + theta * d_theta
                out[5, g, i] = theta * (xi - m) * m * inverse * inverse


def nb_glm_terms(counts, eta: np.ndarray, log_theta: np.ndarray, derivatives: bool):
    """The six arrays (loglik, d_eta, d2_eta, d_alpha, d2_alpha, d_eta_alpha), the
    last five None without ``derivatives``; ``log_theta`` (genes, 1) or (genes,)."""
    eta = np.ascontiguousarray(eta, dtype=np.float64)
    alpha = np.ascontiguousarray(np.ravel(log_theta), dtype=np.float64)
    out = np.empty((6 if derivatives else 1, *eta.shape))
    table = np.empty((eta.shape[0], counts.values.shape[1], 3))
    # one array layout (C) for every field: one compiled signature
    counts = type(counts)(*(np.ascontiguousarray(field) for field in counts))
    _nb_glm_kernel(counts, eta, alpha, table, out, derivatives)
    if not derivatives:
        return out[0], None, None, None, None, None
    return tuple(out)
