r"""Negative binomial family, parametrised by mean and inverse dispersion theta.

With :math:`m = s_i \mu_{jk}` and :math:`\theta = \theta_{jk}`,

.. math::

    \log f(x) = \log\Gamma(x+\theta) - \log\Gamma(\theta) - \log x!
                - \theta \log(1 + m/\theta) + x \log\frac{m}{\theta + m},

written with ``log1p`` so that it stays exact as theta grows towards the
Poisson limit. The M-step maximises the weighted log-likelihood
:math:`Q(a, b) = \sum_i r_{ijk} \log f(x_{ij})` over :math:`a = \log\mu`,
:math:`b = \log\theta` by Newton's method (falling back to a scaled gradient
step where the Hessian is not negative definite) with step halving: a step is
taken only if Q does not decrease, so EM stays monotone (a generalised EM).
theta is kept in ``[THETA_MIN, THETA_MAX]``; a component at ``THETA_MAX`` is
Poisson-like (dispersion below 1e-8) and reported with dispersion 0.

During EM, the cells of a gene that share a frequent count (the zeros, and the
ones of a sparse gene) are summed on quadrature nodes in ``log s``
(:mod:`scmix._core.numerics.quadrature`), so that an iteration costs O(other cells + nodes);
the error of those sums is estimated at every E-step and the gene summed cell by
cell when it exceeds the tolerance. The final E-step always sums every cell.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..numerics.jit import over_rows
from ..numerics.quadrature import CountQuadrature
from ._glm_cells import NB
from ._nb_kernels import THETA_MAX, THETA_MIN, THETA_START, _nb_e_step, _nb_log_prob, _nb_moments
from ._nb_mstep import _nb_m_step, _nb_marginal_derivatives
from .base import ChunkData, EStepOutput, Family

__all__ = ["THETA_MAX", "THETA_MIN", "NegativeBinomial"]

#: Private switch: False computes ``log(1 + s mu / theta)`` at the quadrature nodes
#: again for each pooled count in the E-step (the same values, slower), for the
#: before/after timing of benchmarks/fit_speed.py.
_SHARED_NODE_LOG1P = True


def _pooling(data: ChunkData, state, n_comp: int) -> tuple[CountQuadrature, tuple]:
    """The quadrature the kernels use and the ``(node_resp, on_nodes)`` of the state;
    without a state nothing is pooled (every cell summed, every ``resp`` set)."""
    if state is None:
        quad, on_nodes = data.pooling(None)
        n_rows, n_pooled, n_nodes = quad.weights.shape
        return quad, (np.zeros((n_rows, n_comp, n_pooled, n_nodes)), on_nodes)
    return data.quadrature, state


class NegativeBinomial(Family):
    """Negative binomial with mean ``s_i * mu_jk`` and inverse dispersion ``theta_jk``.

    Parameters
    ----------
    max_newton
        Newton iterations per M-step. One is enough for a monotone (generalised)
        EM; a few make each EM iteration closer to an exact M-step.
    newton_tol
        Stop the inner Newton iterations once a step moves ``log mu`` and
        ``log theta`` by less than this.
    """

    name = "nb"
    param_names = ("mu", "theta")
    glm_kind = NB

    def __init__(self, max_newton: int = 4, newton_tol: float = 1e-8):
        self.max_newton = max_newton
        self.newton_tol = newton_tol

    def initial_params(self, data: ChunkData, resp) -> dict[str, np.ndarray]:
        """Means as in the Poisson case; theta from the moments with offsets,
        ``1/theta = sum r [(x - s mu)^2 - s mu] / sum r (s mu)^2``, at most ``THETA_START``.

        The cap matters: towards the Poisson limit the likelihood is flat in
        log theta, so a start there (groups of a hard split often look
        under-dispersed) sees no gradient towards a moderate theta and EM stops
        early; from a moderate start it climbs towards large theta when that fits.
        """
        params = super().initial_params(data, resp)
        excess, scale = _nb_moments(data.x, data.size_factors, resp, params["mu"])
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = excess / scale
        phi = np.where(np.isfinite(phi) & (phi > 1.0 / THETA_MAX), phi, 1.0 / THETA_MAX)
        params["theta"] = np.clip(1.0 / phi, THETA_MIN, THETA_START)
        return params

    def params_from_summary(self, mean, dispersion) -> dict:
        with np.errstate(divide="ignore"):
            theta = np.where(dispersion > 0, 1.0 / dispersion, THETA_MAX)
        return {"mu": mean, "theta": np.clip(theta, THETA_MIN, THETA_MAX)}

    def clip_params(self, params, genes) -> None:
        super().clip_params(params, genes)
        params["theta"][genes] = np.clip(params["theta"][genes], THETA_MIN, THETA_MAX)

    def log_prob(self, data: ChunkData, params, active, out) -> None:
        counts, mu, theta = data.counts, params["mu"], params["theta"]

        def kernel(rows):
            _nb_log_prob(counts, mu, theta, rows, out)

        over_rows(kernel, active, work=active.size * out[0].size)

    def new_state(self, data: ChunkData, n_components: int) -> tuple[np.ndarray, np.ndarray]:
        """The responsibilities on the quadrature nodes of each pooled count, and per
        gene whether its last E-step used them (:mod:`scmix._core.numerics.quadrature`)."""
        quad = data.quadrature
        n_rows, n_pooled, n_nodes = quad.weights.shape
        return np.zeros((n_rows, n_components, n_pooled, n_nodes)), np.zeros(n_rows, dtype=bool)

    def e_step(
        self, data: ChunkData, params, log_weights, active, resp, loglik, resp_sums, state=None
    ) -> None:
        """Fused with the log-pmf; with a state, cells sharing a count summed on
        quadrature nodes where that is accurate (see :func:`_nb_e_step`)."""
        quad, (node_resp, on_nodes) = _pooling(data, state, resp.shape[1])
        out = EStepOutput(resp, loglik, resp_sums, node_resp, on_nodes)
        counts, mu, theta = data.counts, params["mu"], params["theta"]

        def kernel(rows):
            _nb_e_step(counts, quad, mu, theta, log_weights, rows, out, _SHARED_NODE_LOG1P)

        over_rows(kernel, active, work=active.size * resp[0].size)

    def m_step(self, data: ChunkData, resp, params, active, state=None) -> None:
        quad, (node_resp, on_nodes) = _pooling(data, state, resp.shape[1])
        counts, mu, theta = data.counts, params["mu"], params["theta"]
        newton = (self.max_newton, self.newton_tol)

        def kernel(rows):
            _nb_m_step(counts, quad, resp, node_resp, on_nodes, mu, theta, rows, newton)

        over_rows(kernel, active, work=active.size * resp[0].size)

    def log_bounds(self) -> dict[str, tuple[float, float]]:
        return {**super().log_bounds(), "theta": (np.log(THETA_MIN), np.log(THETA_MAX))}

    def marginal_derivatives(self, data: ChunkData, params, log_weights, active, state, grad, hess):
        quad, on_nodes = data.pooling(None if state is None else state[1])
        counts, mu, theta = data.counts, params["mu"], params["theta"]

        def kernel(rows):
            _nb_marginal_derivatives(
                counts, quad, on_nodes, mu, theta, log_weights, rows, grad, hess
            )

        over_rows(kernel, active, work=active.size * data.n_cells * log_weights.shape[1])

    def cdf(self, x, mean, params) -> np.ndarray:
        """NB cdf; at the Poisson bound (theta = THETA_MAX) the Poisson cdf, which the
        NB's regularised incomplete beta function no longer resolves."""
        theta = np.broadcast_to(params["theta"], np.shape(mean))
        poisson = theta >= THETA_MAX * (1 - 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            nb = stats.nbinom.cdf(x, theta, theta / (theta + mean))
        return np.where(poisson, stats.poisson.cdf(x, mean), nb)

    def sample(self, mean, params, rng) -> np.ndarray:
        """Gamma-Poisson draws: rate ~ Gamma(theta, mean / theta), x ~ Poisson(rate)."""
        theta = np.broadcast_to(params["theta"], np.shape(mean))
        return rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float64)

    def dispersion(self, params) -> np.ndarray:
        theta = params["theta"]
        return np.where(theta >= THETA_MAX * (1 - 1e-12), 0.0, 1.0 / theta)
