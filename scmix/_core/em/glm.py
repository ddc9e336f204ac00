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

from ..families import Family
from ..families.base import CountTable
from .covariate_kernels import exposure_of
from .covariate_rows import Steps, glm_rows

#: Step halvings tried before a gene is declared stationary.
_MAX_HALVINGS = 40


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
    (all ones) in column 0; ``weights``: (genes, cells) or None. Stops a gene when an
    accepted step changes its log-likelihood by at most ``tol`` (1 + |loglik|) and moves
    no parameter by more than 1e-7, or when no halving of the Newton step increases it
    (:func:`~scmix._core.em.covariate_rows.fit_glm_row`, gene by gene in numba).
    """
    counts = x if isinstance(x, CountTable) else CountTable.of(x)
    x = counts.x
    n_genes = x.shape[0]
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if not np.all(design[:, 0] == 1.0):
        raise ValueError("the design's first column must be the intercept (all ones)")
    fitted = (w * x).sum(axis=1) > 0
    coef = np.full((n_genes, design.shape[1]), np.nan)
    has_theta = _has_theta(family)
    log_theta = np.full(n_genes, np.nan) if has_theta else None
    loglik = np.full(n_genes, np.nan)
    converged = np.zeros(n_genes, dtype=bool)
    n_iter = np.zeros(n_genes, dtype=np.int64)
    if fitted.any():
        exposure = exposure_of(log_offset, design[:, 1:])
        steps = Steps(max_iter, tol, _MAX_HALVINGS, 1e-7)
        genes = np.flatnonzero(fitted)
        result = glm_rows(family.glm_kind, counts, exposure, w, genes, steps)
        coef[fitted] = result.coef
        if has_theta:
            log_theta[fitted] = result.log_theta
        loglik[fitted], converged[fitted] = result.loglik, result.converged
        n_iter[fitted] = result.n_iter
    return GlmFit(coef, log_theta, loglik, converged, n_iter, fitted)


def _has_theta(family: Family) -> bool:
    return "theta" in family.param_names


def _rows_times(coef: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``coef @ design.T`` (genes, cells) by einsum: each gene's row is computed the same
    whatever the other rows (BLAS blocks depend on the shape), so that a gene's fit does
    not depend on the chunk it is fitted in."""
    return np.einsum("gq,cq->gc", coef, design)
