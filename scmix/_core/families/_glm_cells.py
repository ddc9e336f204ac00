r"""The per-cell log-pmf of each family and its derivatives in :math:`\eta = \log m` and
:math:`\alpha = \log\theta`: what the fits with covariates sum over cells
(:mod:`scmix._core.em.covariate_kernels`). The family is a code (``kind``), so that one
compiled kernel serves every family; each family's formulas are here, none in the EM.

Poisson (``POISSON``), with :math:`m = e^\eta`:

.. math::

    \ell = x\eta - m - \log x!, \qquad \partial_\eta\ell = x - m, \qquad
    \partial^2_\eta\ell = -m.

Negative binomial (``NB``), with :math:`L = \log(\theta + m)`:

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
function ratios depend on a cell only through its count: :func:`fill_level_table`
computes them once per distinct count (:func:`~scmix._core.numerics.special.level_ratios`).
"""

from __future__ import annotations

import math

from ..numerics.jit import jit
from ..numerics.special import level_ratios, lgamma_ratio, simd_exp, simd_log1p

#: Family codes of the kernels.
POISSON, NB = 0, 1


@jit
def fill_level_table(kind, values, theta, derivatives, table):
    """``table[:, u] = (lgamma, digamma, trigamma ratios)`` of the count ``values[u]``
    at ``theta`` (NB; only the first row without ``derivatives``); nothing for Poisson.

    ``values`` is 0, then the distinct counts in increasing order (then padding): level
    by level, each ratio grows by the ratio of the step from the level below, usually
    a single log (and reciprocal), not a special function per level."""
    if kind != NB:
        return
    table[0, 0] = table[1, 0] = table[2, 0] = 0.0
    below = 0.0
    lgamma = digamma = trigamma = 0.0
    for u in range(1, values.shape[0]):
        value = values[u]
        if value <= below:  # the padding after the last level
            break
        if derivatives:
            step = level_ratios(value - below, theta + below)
            lgamma += step[0]
            digamma += step[1]
            trigamma += step[2]
            table[1, u] = digamma
            table[2, u] = trigamma
        else:
            lgamma += lgamma_ratio(value - below, theta + below)
        table[0, u] = lgamma
        below = value


@jit
def fill_cell_terms(kind, counts, table, eta, log_theta, derivatives, out):
    """One component's terms over a gene's cells: ``out[0]`` the log-pmf + log x! and,
    with ``derivatives``, ``out[1:6]`` (d_eta, d2_eta, d_alpha, d2_alpha, d_eta_alpha;
    the alpha terms 0 for Poisson). ``counts`` is ``(x, level)`` of the gene, ``table``
    its :func:`fill_level_table` at ``theta = exp(log_theta)``, ``eta`` (cells,) the log
    means. Branch-free loops over the cells, which LLVM vectorises."""
    x, level = counts
    n_cells = x.shape[0]
    if kind != NB:
        for i in range(n_cells):
            m = simd_exp(eta[i])
            out[0, i] = x[i] * eta[i] - m
            if derivatives:
                out[1, i] = x[i] - m
                out[2, i] = -m
                out[3, i] = 0.0
                out[4, i] = 0.0
                out[5, i] = 0.0
        return
    alpha = log_theta
    theta = math.exp(alpha)
    # the table read in loops of their own: a gather in the main loop keeps LLVM from
    # vectorising it (six times slower)
    lgamma, digamma, trigamma = out[0], out[3], out[4]
    for i in range(n_cells):
        lgamma[i] = table[0, level[i]]
    if not derivatives:
        for i in range(n_cells):
            e = eta[i]
            l1 = simd_log1p(simd_exp(e) / theta)
            out[0, i] = lgamma[i] - theta * l1 + x[i] * (e - alpha - l1)
        return
    for i in range(n_cells):
        digamma[i] = table[1, level[i]]
    for i in range(n_cells):
        trigamma[i] = table[2, level[i]]
    for i in range(n_cells):
        e = eta[i]
        xi = x[i]
        m = simd_exp(e)
        l1 = simd_log1p(m / theta)
        inverse = 1.0 / (theta + m)
        d_theta = digamma[i] + 1.0 - l1 - (xi + theta) * inverse
        d2_theta = trigamma[i] + 1.0 / theta - 2.0 * inverse + (xi + theta) * inverse * inverse
        out[0, i] = lgamma[i] - theta * l1 + xi * (e - alpha - l1)
        out[1, i] = theta * (xi - m) * inverse
        out[2, i] = -theta * m * (xi + theta) * inverse * inverse
        out[3, i] = theta * d_theta
        out[4, i] = theta * theta * d2_theta + theta * d_theta
        out[5, i] = theta * (xi - m) * m * inverse * inverse
