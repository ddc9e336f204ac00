r"""Count GLMs with size-factor offsets and a design, fitted gene by gene (side by side).

For gene j and cell i with size factor :math:`s_i` and design row :math:`d_i` (an
intercept first, then the covariates :math:`z_i`),

.. math::

    x_{ij} \sim f\bigl(x \mid m_{ij} = s_i \exp(d_i^\top \beta_j), \theta_j\bigr),

with f the family's count model (NB: also :math:`\alpha_j = \log\theta_j`). This is the
one-component model with covariates, glmGamPoi's ``glm_gp(Y, design, size_factors)``
without its Cox-Reid adjustment: plain maximum likelihood. Optional cell weights
:math:`w_{ij}` give the weighted log-likelihood :math:`\sum_i w_{ij} \ell_{ij}`, the
form a mixture's M-step maximises for the covariate effects.

Each iteration takes a Newton step in :math:`(\beta_j, \alpha_j)` on the exact
Hessian, made negative definite (its eigenvalues floored) so that the step ascends,
and halves it until the log-likelihood does not decrease: the log-likelihood of
every gene is non-decreasing along the iterations. The start is a Poisson fit
(the same steps without theta), and theta starts from the moments of the Pearson
residuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import THETA_MAX, THETA_MIN, Family, get_family
from ..families.base import CountTable

#: Step halvings tried before a gene is declared stationary.
_MAX_HALVINGS = 40
_LOG_THETA = (float(np.log(THETA_MIN)), float(np.log(THETA_MAX)))


@dataclass
class GlmFit:
    """Per-gene results; genes without any count are not fitted (NaN, ``fitted=False``)."""

    coef: np.ndarray  # (genes, q): the intercept (log mean at z = 0) then the covariates
    log_theta: np.ndarray | None  # (genes,), None for a family without theta
    loglik: np.ndarray  # (genes,), the (weighted) log-likelihood
    converged: np.ndarray  # (genes,) bool
    n_iter: np.ndarray  # (genes,) int
    fitted: np.ndarray  # (genes,) bool


def fit_glm(
    family: Family,
    x: np.ndarray,
    log_offset: np.ndarray,
    design: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> GlmFit:
    """Maximum-likelihood fit of every row of ``x`` (genes, cells).

    ``log_offset``: :math:`\\log s_i` (cells,); ``design``: (cells, q) with the intercept
    in column 0; ``weights``: (genes, cells) or None. Stops a gene when an accepted step
    changes its log-likelihood by at most ``tol`` (1 + |loglik|) and moves no parameter
    by more than 1e-7, or when no halving of the Newton step increases it.
    """
    counts = x if isinstance(x, CountTable) else CountTable.of(x)
    x = counts.x
    n_genes = x.shape[0]
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    fitted = (w * x).sum(axis=1) > 0
    coef = np.full((n_genes, design.shape[1]), np.nan)
    log_theta = np.full(n_genes, np.nan) if _has_theta(family) else None
    loglik = np.full(n_genes, np.nan)
    converged = np.zeros(n_genes, dtype=bool)
    n_iter = np.zeros(n_genes, dtype=np.int64)
    if fitted.any():
        problem = _Problem(family, counts.take(fitted), log_offset, design, w[fitted])
        result = problem.solve(max_iter, tol)
        coef[fitted] = result[0]
        if log_theta is not None:
            log_theta[fitted] = result[1]
        loglik[fitted], converged[fitted], n_iter[fitted] = result[2:]
    return GlmFit(coef, log_theta, loglik, converged, n_iter, fitted)


def _has_theta(family: Family) -> bool:
    return "theta" in family.param_names


class _Problem:
    """The genes of one fit, their data and the Newton iterations."""

    def __init__(self, family, counts: CountTable, log_offset, design, weights):
        self.family, self.counts, self.x, self.w = family, counts, counts.x, weights
        self.log_offset, self.design = np.asarray(log_offset, dtype=np.float64), design

    def eta(self, coef: np.ndarray) -> np.ndarray:
        return self.log_offset[None, :] + _rows_times(coef, self.design)

    def loglik(self, coef, log_theta) -> np.ndarray:
        eta = self.eta(coef)
        terms = self.family.glm_terms(self.counts, eta, _column(log_theta), derivatives=False)
        return (self.w * terms.loglik).sum(axis=1)

    def derivatives(self, coef, log_theta):
        """Gradient (genes, P) and Hessian (genes, P, P) in (beta, alpha)."""
        t = self.family.glm_terms(self.counts, self.eta(coef), _column(log_theta))
        d = self.design
        grad = _rows_times_t(self.w * t.d_eta, d)
        hess = weighted_gram(self.w * t.d2_eta, d)
        if log_theta is None:
            return grad, hess
        cross = _rows_times_t(self.w * t.d_eta_alpha, d)
        grad = np.column_stack([grad, (self.w * t.d_alpha).sum(axis=1)])
        corner = (self.w * t.d2_alpha).sum(axis=1)
        hess = np.concatenate([hess, cross[:, None, :]], axis=1)
        hess = np.concatenate([hess, np.column_stack([cross, corner])[:, :, None]], axis=2)
        return grad, hess

    def start(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Intercept at the weighted rate, no covariate effect; then a Poisson fit and,
        for theta, the moments of its Pearson residuals."""
        rate = (self.w * self.x).sum(axis=1) / (self.w * np.exp(self.log_offset)).sum(axis=1)
        coef = np.zeros((self.x.shape[0], self.design.shape[1]))
        coef[:, 0] = np.log(rate)
        if not _has_theta(self.family):
            return coef, None
        poisson = _Problem(get_family("poisson"), self.counts, self.log_offset, self.design, self.w)
        coef, _, _, _, _ = poisson.iterate(coef, None, max_iter=20, tol=1e-8)
        m = np.exp(self.eta(coef))
        excess = (self.w * ((self.x - m) ** 2 - self.x)).sum(axis=1)
        phi = excess / (self.w * m**2).sum(axis=1)
        log_theta = np.clip(-np.log(np.clip(phi, 1e-4, 1e4)), *_LOG_THETA)
        return coef, log_theta

    def solve(self, max_iter: int, tol: float):
        coef, log_theta = self.start()
        return self.iterate(coef, log_theta, max_iter=max_iter, tol=tol)

    def iterate(self, coef, log_theta, *, max_iter: int, tol: float):
        """Newton steps with step halving; every gene's log-likelihood non-decreasing."""
        n = coef.shape[0]
        current = self.loglik(coef, log_theta)
        converged = np.zeros(n, dtype=bool)
        n_iter = np.zeros(n, dtype=np.int64)
        for _ in range(max_iter):
            active = np.flatnonzero(~converged)
            if active.size == 0:
                break
            sub = self._subset(active)
            params = _stack(coef[active], None if log_theta is None else log_theta[active])
            grad, hess = sub.derivatives(*_split(params, log_theta is not None))
            step = _bounded(_ascent_direction(grad, hess))
            accepted, new_params, new_ll = sub._halve(params, step, current[active])
            n_iter[active] += 1
            moved = np.abs(new_params - params).max(axis=1)
            gain = new_ll - current[active]
            done = ~accepted | ((gain <= tol * (1.0 + np.abs(new_ll))) & (moved <= 1e-7))
            coef[active], theta_part = _split(new_params, log_theta is not None)
            if log_theta is not None:
                log_theta[active] = theta_part
            current[active] = new_ll
            converged[active[done]] = True
        return coef, log_theta, current, converged, n_iter

    def _subset(self, rows) -> _Problem:
        counts = self.counts.take(rows)
        return _Problem(self.family, counts, self.log_offset, self.design, self.w[rows])

    def _halve(self, params, step, current):
        """The longest of the steps 1, 1/2, 1/4, ... that does not lower the
        log-likelihood (alpha kept within the theta bounds); no move where none does."""
        has_theta = step.shape[1] > self.design.shape[1]
        new_params, new_ll = params.copy(), current.copy()
        accepted = np.zeros(params.shape[0], dtype=bool)
        scale = 1.0
        for _ in range(_MAX_HALVINGS):
            pending = np.flatnonzero(~accepted)
            if pending.size == 0:
                break
            trial = params[pending] + scale * step[pending]
            if has_theta:
                trial[:, -1] = np.clip(trial[:, -1], *_LOG_THETA)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                value = self._subset(pending).loglik(*_split(trial, has_theta))
            good = np.isfinite(value) & (value >= current[pending])
            new_params[pending[good]] = trial[good]
            new_ll[pending[good]] = value[good]
            accepted[pending[good]] = True
            scale *= 0.5
        return accepted, new_params, new_ll


def _rows_times(coef: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``coef @ design.T`` (genes, cells) by einsum: each gene's row is computed the same
    whatever the other rows (BLAS blocks depend on the shape), so that a gene's fit does
    not depend on the chunk it is fitted in."""
    return np.einsum("gq,cq->gc", coef, design)


def _rows_times_t(values: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``values @ design`` (genes, q), row by row as :func:`_rows_times`."""
    return np.einsum("gc,cq->gq", values, design)


def weighted_gram(weights: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``sum_c w_gc d_c d_c^T`` (genes, q, q), one matrix product per gene (a stacked
    matmul: the same arithmetic for a gene whatever the other genes)."""
    return np.matmul(weights[:, None, :] * design.T[None, :, :], design)


def _column(log_theta):
    return None if log_theta is None else log_theta[:, None]


def _stack(coef, log_theta):
    return coef.copy() if log_theta is None else np.column_stack([coef, log_theta])


def _split(params, has_theta: bool):
    return (params[:, :-1], params[:, -1]) if has_theta else (params, None)


#: Largest first move of a log-parameter (a factor e^3 of a mean or theta): a step
#: beyond it overflows the densities before its halvings are tried.
_MAX_MOVE = 3.0


def _bounded(step: np.ndarray) -> np.ndarray:
    """``step`` shortened (direction kept) so that no coordinate moves by more than
    ``_MAX_MOVE``."""
    largest = np.abs(step).max(axis=1, keepdims=True)
    return step * np.minimum(1.0, _MAX_MOVE / np.maximum(largest, 1e-300))


def _ascent_direction(grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """Newton direction ``(-H)^{-1} g`` with the eigenvalues of -H floored at a small
    fraction of the largest, so that the direction ascends even where H is not
    negative definite."""
    values, vectors = np.linalg.eigh(-hess)
    floor = np.maximum(1e-10 * np.abs(values).max(axis=1, keepdims=True), 1e-12)
    values = np.maximum(values, floor)
    projected = np.einsum("gpq,gp->gq", vectors, grad)
    return np.einsum("gpq,gq->gp", vectors, projected / values)
