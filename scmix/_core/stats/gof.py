r"""Goodness of fit by randomized quantile residuals (Dunn and Smyth 1996).

For a count x with model cdf F (here the cell's mixture,
:math:`F_i(x) = \sum_k \pi_k F(x \mid s_i\mu_k, \ldots)`), the randomized quantile
residual is :math:`u = F_i(x-1) + v\,(F_i(x) - F_i(x-1))` with :math:`v \sim U(0, 1)`:
exactly uniform when the model is right, so that :math:`\Phi^{-1}(u)` is standard
normal. Each gene is tested with the one-sample Kolmogorov-Smirnov test of its u
against U(0, 1) (exact distribution of the statistic, ``scipy.stats.kstwo``).
With parameters estimated from the same counts the test is conservative (the
fitted model is closer to the data than the true one, as for Lilliefors' test):
p-values pile up towards 1 under the model, and a rejection is strong evidence.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy import stats

from ..families import Family


def gene_uniforms(random_state: int | None, names, n_cells: int) -> np.ndarray:
    """The v of each gene from its own stream, keyed by the seed and the gene's name, so
    that a gene's residuals do not depend on the other genes; shape (len(names), n_cells)."""
    entropy = np.random.SeedSequence(random_state).entropy
    out = np.empty((len(names), n_cells))
    for row, name in enumerate(names):
        stream = np.random.SeedSequence(entropy, spawn_key=(zlib.crc32(str(name).encode()),))
        out[row] = np.random.default_rng(stream).random(n_cells)
    return out


def mixture_cdf_pair(family: Family, x, size_factors, params, weights):
    """``(F(x - 1), F(x))`` of each cell's mixture, each (genes, cells); ``size_factors``
    (cells,) or, with covariate effects, each gene's own (genes, cells)."""
    size_factors = np.asarray(size_factors)
    if size_factors.ndim == 1:
        size_factors = size_factors[None, :]
    below = np.zeros_like(x, dtype=np.float64)
    upto = np.zeros_like(below)
    for k in range(weights.shape[1]):
        component = {name: values[:, k : k + 1] for name, values in params.items()}
        mean = size_factors * component["mu"]
        pi = weights[:, k : k + 1]
        below += pi * family.cdf(x - 1.0, mean, component)
        upto += pi * family.cdf(x, mean, component)
    return below, upto


def quantile_residuals(family: Family, x, size_factors, params, weights, uniforms):
    """Randomized quantile residuals on the uniform scale, (genes, cells), in (0, 1)."""
    below, upto = mixture_cdf_pair(family, x, size_factors, params, weights)
    u = below + uniforms * (upto - below)
    tiny = np.finfo(np.float64).tiny
    return np.clip(u, tiny, 1.0 - np.finfo(np.float64).epsneg)


def ks_uniform(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sample KS statistic of each row of ``u`` against U(0, 1), and its p-value."""
    n = u.shape[1]
    ordered = np.sort(u, axis=1)
    ranks = np.arange(1, n + 1) / n
    statistic = np.maximum((ranks - ordered).max(axis=1), (ordered - (ranks - 1.0 / n)).max(axis=1))
    return statistic, stats.kstwo.sf(statistic, n)
