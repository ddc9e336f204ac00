"""Poisson family: the theta -> infinity limit of the negative binomial."""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import stats

from .._kernels import weighted_rate
from .._threading import gene_kernel
from .base import MU_MIN, ChunkData, Family


@gene_kernel
def _poisson_log_prob(x, size_factors, log_size_factors, mu, active, out):
    n_cells = x.shape[1]
    n_comp = mu.shape[1]
    for a in numba.prange(active.shape[0]):
        g = active[a]
        for k in range(n_comp):
            log_mu = math.log(mu[g, k])
            for i in range(n_cells):
                m = size_factors[i] * mu[g, k]
                xi = x[g, i]
                if xi == 0.0:
                    out[g, k, i] = -m
                else:
                    out[g, k, i] = xi * (log_size_factors[i] + log_mu) - m


class Poisson(Family):
    r"""Poisson with mean :math:`m_{ijk} = s_i \mu_{jk}`.

    :math:`\log f = x \log m - m - \log x!`. The M-step is closed form,
    :math:`\mu_{jk} = \sum_i r_{ijk} x_{ij} / \sum_i r_{ijk} s_i`, the exact maximiser
    of the expected complete-data log-likelihood.
    """

    name = "poisson"
    param_names = ("mu",)

    def log_prob(self, data: ChunkData, params, active, out) -> None:
        _poisson_log_prob(
            data.x,
            data.size_factors,
            data.log_size_factors,
            params["mu"],
            active,
            out,
            work=active.size * out[0].size,
        )

    def m_step(self, data: ChunkData, resp, params, active, state=None) -> None:
        mu = weighted_rate(data.x, data.size_factors, resp, active)
        # a component with no weight left keeps its mean (it no longer matters)
        keep = ~np.isfinite(mu)
        mu[keep] = params["mu"][active][keep]
        params["mu"][active] = np.maximum(mu, MU_MIN)

    def cdf(self, x, mean, params) -> np.ndarray:
        return stats.poisson.cdf(x, mean)

    def sample(self, mean, params, rng) -> np.ndarray:
        return rng.poisson(mean).astype(np.float64)

    def dispersion(self, params) -> np.ndarray:
        # NaN where the gene was not fitted, as for the other parameters
        return np.where(np.isnan(params["mu"]), np.nan, 0.0)
