r"""numba kernels of :mod:`scmix._core.stats.technical_noise`: the null fit of each gene
along the technical trend.

Counts come per gene as compressed columns (``indptr``, ``indices``, ``data``: the
non-zero counts of gene ``g`` are ``data[indptr[g]:indptr[g+1]]`` in the cells
``indices[...]``). A sum over cells is split into the part every cell has, as if its
count were 0 (a loop over all cells, which vectorises), and the corrections of the
non-zero counts: so that sparse genes cost little beyond the pass over the cells.

NB in the mean parametrisation, :math:`m_i = s_i\mu`, :math:`\theta = 1/\phi`:

.. math::

    \ell_i = \log\frac{\Gamma(x_i + \theta)}{\Gamma(\theta)\,x_i!}
       + x_i \log\frac{m_i}{\theta + m_i} - \theta \log\Big(1 + \frac{m_i}{\theta}\Big).
"""

from __future__ import annotations

import math

from ..numerics.jit import inline_jit, jit, sum_jit
from ..numerics.special import digamma_ratio, lgamma_ratio, simd_log1p

#: Trend coefficients are passed as ``[a0, a1, floor]``: phi_tech(mu) = max(a0 + a1/mu, floor).
A0, A1, FLOOR = 0, 1, 2
#: Root search in t = log mu: half-width of the first bracket around the free fit's
#: mean (the null mean is close to it: mean and dispersion are orthogonal in the NB),
#: step tolerance, most steps.
FIRST_HALF_WIDTH = 0.02
ROOT_TOL = 1e-10
MAX_STEPS = 200
MAX_WIDENING = 40


@inline_jit
def _dispersion(coef, mu: float) -> float:
    return max(coef[A0] + coef[A1] / mu, coef[FLOOR])


@sum_jit
def _zero_counts(s, mu: float, theta: float) -> tuple[float, float]:
    """The score's sums over every cell as if its count were 0 (a loop LLVM vectorises:
    ``reassoc`` lets it add in vector registers)."""
    mean_part = 0.0
    theta_part = 0.0
    for i in range(s.shape[0]):
        m = s[i] * mu
        share = m / (theta + m)
        mean_part -= theta * share
        theta_part += share - simd_log1p(m / theta)
    return mean_part, theta_part


@sum_jit
def _zero_loglik(s, mu: float, theta: float) -> float:
    """The log-likelihood's sum over every cell as if its count were 0."""
    total = 0.0
    for i in range(s.shape[0]):
        total -= theta * simd_log1p(s[i] * mu / theta)
    return total


@jit
def _score(indptr, indices, data, s, g: int, t: float, coef) -> float:
    r""":math:`d\ell/dt` along :math:`\phi = \phi_{\mathrm{tech}}(e^t)` for gene ``g``:
    the mean score plus :math:`(d\theta/dt)` times the :math:`\theta` score, with
    :math:`d\theta/dt = a_1\theta^2/\mu` (0 where the trend sits at its floor)."""
    mu = math.exp(t)
    phi = _dispersion(coef, mu)
    theta = 1.0 / phi
    mean_part, theta_part = _zero_counts(s, mu, theta)
    for p in range(indptr[g], indptr[g + 1]):  # the non-zero counts
        x = data[p]
        inverse = 1.0 / (theta + s[indices[p]] * mu)
        mean_part += theta * x * inverse
        theta_part += digamma_ratio(x, theta) - x * inverse
    if coef[A0] + coef[A1] / mu <= coef[FLOOR]:
        return mean_part
    return mean_part + coef[A1] * theta * theta / mu * theta_part


@jit
def _loglik(indptr, indices, data, s, g: int, mu: float, phi: float) -> float:
    """The NB log-likelihood of gene ``g`` at mean ``mu``, dispersion ``phi`` > 0."""
    theta = 1.0 / phi
    total = _zero_loglik(s, mu, theta)
    for p in range(indptr[g], indptr[g + 1]):
        x = data[p]
        m = s[indices[p]] * mu
        total += lgamma_ratio(x, theta) - math.lgamma(x + 1.0) + x * math.log(m / (theta + m))
    return total


@jit
def null_fits(columns, size_factors, coef, start, rows, out) -> None:
    r"""For every gene ``g`` in ``rows``: the null mean maximising
    :math:`\ell(\mu, \phi_{\mathrm{tech}}(\mu))` and its log-likelihood.

    ``columns``: ``(indptr, indices, data)``; ``size_factors``: (cells,); ``coef``:
    ``[a0, a1, floor]``; ``start``: (genes,) log of the free fit's mean; ``out``:
    (genes, 2) written as ``[log mu0, loglik0]``.

    The root of the score in :math:`t = \log\mu` is bracketed from
    ``start ± FIRST_HALF_WIDTH`` (widened by doubling) and found by the Illinois method
    (regula falsi halving the stale end), which cannot leave the bracket.
    """
    indptr, indices, data = columns
    s = size_factors
    for g in rows:
        lo, hi = start[g] - FIRST_HALF_WIDTH, start[g] + FIRST_HALF_WIDTH
        f_lo = _score(indptr, indices, data, s, g, lo, coef)
        f_hi = _score(indptr, indices, data, s, g, hi, coef)
        width = 2.0 * FIRST_HALF_WIDTH
        for _ in range(MAX_WIDENING):  # the score falls through 0 at the root
            if f_lo < 0.0:
                lo -= width
                f_lo = _score(indptr, indices, data, s, g, lo, coef)
            elif f_hi > 0.0:
                hi += width
                f_hi = _score(indptr, indices, data, s, g, hi, coef)
            else:
                break
            width *= 2.0
        root = 0.5 * (lo + hi)
        side = 0
        for _ in range(MAX_STEPS):
            new = (lo * f_hi - hi * f_lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (lo + hi)
            if not (lo < new < hi):
                new = 0.5 * (lo + hi)
            done = abs(new - root) < ROOT_TOL or hi - lo < ROOT_TOL
            root = new
            if done:
                break
            f_new = _score(indptr, indices, data, s, g, root, coef)
            if f_new > 0.0:  # the root is above
                if side > 0:
                    f_hi *= 0.5
                lo, f_lo, side = root, f_new, 1
            else:
                if side < 0:
                    f_lo *= 0.5
                hi, f_hi, side = root, f_new, -1
        mu = math.exp(root)
        phi = _dispersion(coef, mu)
        out[g, 0] = root
        out[g, 1] = _loglik(indptr, indices, data, s, g, mu, phi)
