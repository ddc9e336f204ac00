"""Poisson family: the theta -> infinity limit of the negative binomial."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..numerics.jit import inline_jit, jit, over_rows
from ..numerics.kernels import (
    add_cell_scores,
    add_weight_curvature,
    normalise,
    normalise_cells,
    row_dot,
    weighted_rate,
)
from ..numerics.quadrature import UNUSED, compact_cells, estimated_error, unit_weights
from ._glm_cells import POISSON
from .base import MU_MIN, ChunkData, EStepOutput, Family


@inline_jit
def _log_pmf(xi, s, log_s, mu, log_mu):
    """log f(x | s mu) + log x!"""
    m = s * mu
    if xi == 0.0:
        return -m
    return xi * (log_s + log_mu) - m


@jit
def _log_pmf_cells(x, size_factors, log_size_factors, mu, log_mu, out):
    """``out[i] = log f(x_i | s_i mu) + log x_i!`` for every cell: :func:`_log_pmf`
    without a branch, so that LLVM vectorises the loop."""
    for i in range(x.shape[0]):
        m = size_factors[i] * mu
        value = x[i] * (log_size_factors[i] + log_mu) - m
        out[i] = -m if x[i] == 0.0 else value


@jit
def _poisson_log_prob(counts, mu, active, out):
    """``out[g, k, i] = log f(x_gi | s_i mu_gk) + log x_gi!`` for the active genes."""
    n_comp = mu.shape[1]
    for a in range(active.shape[0]):
        g = active[a]
        for k in range(n_comp):
            log_mu = math.log(mu[g, k])
            _log_pmf_cells(
                counts.x[g],
                counts.size_factors,
                counts.log_size_factors,
                mu[g, k],
                log_mu,
                out[g, k],
            )


@inline_jit
def _add_point(joint, x, s, log_s, mu, log_mu, log_weights, weight, sums, stats):
    """Responsibilities of one (pseudo-)cell into ``joint``; adds ``weight`` times them
    to ``sums`` and to the M-step's ``stats`` (sum r x, sum r s); returns the log-sum."""
    top = -np.inf
    for k in range(joint.shape[0]):
        joint[k] = log_weights[k] + _log_pmf(x, s, log_s, mu[k], log_mu[k])
        top = max(top, joint[k])
    value = normalise(joint, top)
    for k in range(joint.shape[0]):
        r = weight * joint[k]
        sums[k] += r
        stats[k, 0] += r * x
        stats[k, 1] += r * s
    return value


@jit
def _poisson_e_step(counts, quad, mu, log_weights, active, out):
    """E-step fused with the log-pmf and the M-step's sums ``out.nodes[g, k]`` =
    (sum_i r x, sum_i r s); pooled counts on quadrature nodes as in the NB family
    (the error check also covers sum_i r s, which the M-step uses). ``out.on_nodes[g]``
    tells :func:`_poisson_marginal_derivatives` which way the gene went."""
    x, size_factors, log_size_factors = counts.x, counts.size_factors, counts.log_size_factors
    node_size_factors, node_log_size_factors = quad.size_factors, quad.log_size_factors
    pooled_level, pooled_count = quad.pooled_level, quad.pooled_count
    node_weights, node_low_weights = quad.weights, quad.low_weights
    single_cells, n_single = quad.cells, quad.n_cells
    resp, stats = out.resp, out.nodes
    n_cells = x.shape[1]
    n_comp = mu.shape[1]
    n_nodes = node_size_factors.shape[0]
    for a in range(active.shape[0]):
        g = active[a]
        log_mu = np.empty(n_comp)
        for k in range(n_comp):
            log_mu[k] = math.log(mu[g, k])
        joint = np.empty(n_comp)
        sums = np.zeros(n_comp)
        sufficient = np.zeros((n_comp, 2))
        total = 0.0
        quadrature = pooled_level[g, 0] != UNUSED
        if quadrature:
            low_sums = np.zeros(n_comp)
            low_scaled = np.zeros(n_comp)  # sum r s by the low rule
            low_total = 0.0
            for p in range(pooled_level.shape[1]):
                if pooled_level[g, p] == UNUSED:
                    break
                for n in range(n_nodes):
                    count = pooled_count[g, p]
                    s_n = node_size_factors[n]
                    value = _add_point(
                        joint,
                        count,
                        s_n,
                        node_log_size_factors[n],
                        mu[g],
                        log_mu,
                        log_weights[g],
                        node_weights[g, p, n],
                        sums,
                        sufficient,
                    )
                    total += node_weights[g, p, n] * value
                    low_total += node_low_weights[g, p, n] * value
                    for k in range(n_comp):
                        r = node_low_weights[g, p, n] * joint[k]
                        low_sums[k] += r
                        low_scaled[k] += r * s_n
            error = estimated_error(total, low_total, sums, low_sums)
            error += estimated_error(0.0, 0.0, sufficient[:, 1], low_scaled)
            if error > quad.tolerance[g]:
                quadrature = False
                total = 0.0
                sums[:] = 0.0
                sufficient[:] = 0.0
        out.on_nodes[g] = quadrature
        if not quadrature:
            # every cell: loops that vectorise (log-pmf, responsibilities, sums)
            for k in range(n_comp):
                _log_pmf_cells(
                    x[g], size_factors, log_size_factors, mu[g, k], log_mu[k], resp[g, k]
                )
            total = normalise_cells(resp[g], log_weights[g], single_cells[g], n_cells, False, sums)
            for k in range(n_comp):
                sufficient[k, 0] = row_dot(resp[g, k], x[g])
                sufficient[k, 1] = row_dot(resp[g, k], size_factors)
        for t in range(n_single[g] if quadrature else 0):
            i = single_cells[g, t]
            total += _add_point(
                joint,
                x[g, i],
                size_factors[i],
                log_size_factors[i],
                mu[g],
                log_mu,
                log_weights[g],
                1.0,
                sums,
                sufficient,
            )
            for k in range(n_comp):
                resp[g, k, i] = joint[k]
        out.loglik[g] = total
        for k in range(n_comp):
            out.resp_sums[g, k] = max(sums[k], 0.0)  # negative node weights: see the NB E-step
            stats[g, k, 0] = sufficient[k, 0]
            stats[g, k, 1] = sufficient[k, 1]


@jit
def _poisson_marginal_derivatives(counts, quad, on_nodes, mu, log_weights, active, grad, hess):
    """Gradient and Hessian of each active gene's marginal log-likelihood in the
    coordinates of :func:`~scmix._core.numerics.kernels.add_cell_scores` (parameter
    ``log mu``; the derivatives of ``log f_k`` are ``x - m`` and ``-m``). Where the
    gene's last E-step summed on the quadrature nodes (``on_nodes``), so do these
    sums."""
    n_cells = counts.x.shape[1]
    n_comp = mu.shape[1]
    ones, node_ones = unit_weights(quad, n_cells)
    weights = np.empty(n_comp)
    for a in range(active.shape[0]):
        g = active[a]
        for k in range(n_comp):
            weights[k] = math.exp(log_weights[g, k])
        xg, sg, lsg, cell_weight, _ = compact_cells(on_nodes[g], counts, quad, g, ones, node_ones)
        n = xg.shape[0]
        resp_cells = np.empty((n_comp, n))
        score = np.empty((n_comp, 1, n))
        curv = np.empty((n_comp, 1, 1, n))
        for k in range(n_comp):
            _log_pmf_cells(xg, sg, lsg, mu[g, k], math.log(mu[g, k]), resp_cells[k])
            for i in range(n):
                m = sg[i] * mu[g, k]
                score[k, 0, i] = xg[i] - m
                curv[k, 0, 0, i] = -m
        normalise_cells(resp_cells, log_weights[g], quad.cells[g], n, False, np.zeros(n_comp))
        grad[g] = 0.0
        hess[g] = 0.0
        add_cell_scores(cell_weight, resp_cells, score, curv, weights, grad[g], hess[g])
        add_weight_curvature(float(n_cells), weights, hess[g])


class Poisson(Family):
    r"""Poisson with mean :math:`m_{ijk} = s_i \mu_{jk}`.

    :math:`\log f = x \log m - m - \log x!`. The M-step is closed form,
    :math:`\mu_{jk} = \sum_i r_{ijk} x_{ij} / \sum_i r_{ijk} s_i`, the exact maximiser
    of the expected complete-data log-likelihood.
    """

    name = "poisson"
    param_names = ("mu",)
    glm_kind = POISSON

    def log_prob(self, data: ChunkData, params, active, out) -> None:
        counts, mu = data.counts, params["mu"]

        def kernel(rows):
            _poisson_log_prob(counts, mu, rows, out)

        over_rows(kernel, active, work=active.size * out[0].size)

    def new_state(self, data: ChunkData, n_components: int) -> tuple[np.ndarray, np.ndarray]:
        """The M-step's sums (sum_i r x, sum_i r s) per gene and component, and per gene
        whether its last E-step summed on the quadrature nodes."""
        n_rows = data.x.shape[0]
        return np.zeros((n_rows, n_components, 2)), np.zeros(n_rows, dtype=bool)

    def e_step(
        self, data: ChunkData, params, log_weights, active, resp, loglik, resp_sums, state=None
    ) -> None:
        """With a state: fused with the log-pmf and the M-step's sums, cells sharing a
        count summed on quadrature nodes where that is accurate."""
        if state is None:
            super().e_step(data, params, log_weights, active, resp, loglik, resp_sums)
            return
        out = EStepOutput(resp, loglik, resp_sums, *state)
        counts, quad, mu = data.counts, data.quadrature, params["mu"]

        def kernel(rows):
            _poisson_e_step(counts, quad, mu, log_weights, rows, out)

        over_rows(kernel, active, work=active.size * resp[0].size)

    def m_step(self, data: ChunkData, resp, params, active, state=None) -> None:
        if state is None:
            mu = weighted_rate(data.x, data.size_factors, resp, active)
        else:  # the E-step's sums at the current parameters
            stats = state[0][active]
            with np.errstate(divide="ignore", invalid="ignore"):
                mu = np.where(stats[..., 1] > 0, stats[..., 0] / stats[..., 1], np.nan)
        # a component with no weight left keeps its mean (it no longer matters)
        keep = ~np.isfinite(mu)
        mu[keep] = params["mu"][active][keep]
        params["mu"][active] = np.maximum(mu, MU_MIN)

    def marginal_derivatives(self, data: ChunkData, params, log_weights, active, state, grad, hess):
        quad, on_nodes = data.pooling(None if state is None else state[1])
        counts, mu = data.counts, params["mu"]

        def kernel(rows):
            _poisson_marginal_derivatives(counts, quad, on_nodes, mu, log_weights, rows, grad, hess)

        over_rows(kernel, active, work=active.size * data.n_cells * log_weights.shape[1])

    def cdf(self, x, mean, params) -> np.ndarray:
        return stats.poisson.cdf(x, mean)

    def sample(self, mean, params, rng) -> np.ndarray:
        return rng.poisson(mean).astype(np.float64)

    def dispersion(self, params) -> np.ndarray:
        # NaN where the gene was not fitted, as for the other parameters
        return np.where(np.isnan(params["mu"]), np.nan, 0.0)
