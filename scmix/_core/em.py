"""The EM driver for one chunk of genes. It knows no distribution: a
:class:`~scmix._core.families.Family` supplies the log-pmf and the M-step.

For each gene j, EM maximises the marginal log-likelihood

.. math::

    \\ell_j = \\sum_i \\log \\sum_k \\pi_{jk} f(x_{ij} \\mid s_i \\mu_{jk}, \\theta_{jk}).

One iteration: E-step (responsibilities and :math:`\\ell_j` at the current
parameters), convergence test, then the M-step (:math:`\\pi_{jk} = \\bar r_{jk}`
and the family's update). A gene has converged when :math:`\\ell_j` rose by at
most ``tol * n_cells`` (``tol`` is per cell, as in scikit-learn) and then leaves
the active set, so that the kernels skip it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels import e_step, responsibility_sums
from .families import Family
from .families.base import ChunkData
from .init import one_hot, starting_labels


@dataclass
class ChunkFit:
    """EM results for a chunk of ``n_genes`` genes, components sorted by mean."""

    params: dict[str, np.ndarray]  # each (n_genes, K)
    weights: np.ndarray  # (n_genes, K)
    loglik: np.ndarray  # (n_genes,), the full marginal log-likelihood
    converged: np.ndarray  # (n_genes,) bool
    n_iter: np.ndarray  # (n_genes,) M-steps taken by the best start
    resp: np.ndarray  # (n_genes, K, n_cells): responsibilities at the returned parameters
    trace: np.ndarray | None  # (n_iter + 1, n_genes) log-likelihood per iteration, NaN after stopping


def run_em(
    family: Family, data: ChunkData, params, weights, resp, *,
    max_iter: int, tol: float, constant, keep_trace: bool = False,
):
    """Iterate EM from ``params`` / ``weights`` (updated in place) for every gene.

    ``resp`` is the work buffer; on return it holds each gene's responsibilities
    at its returned parameters. Returns ``(loglik, converged, n_iter, trace)``.
    """
    n_genes, n_cells = data.x.shape
    loglik = np.full(n_genes, -np.inf)
    previous = np.full(n_genes, -np.inf)
    converged = np.zeros(n_genes, dtype=bool)
    n_iter = np.zeros(n_genes, dtype=np.int64)
    trace = np.full((max_iter + 1, n_genes), np.nan) if keep_trace else None
    active = np.arange(n_genes)
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    for iteration in range(max_iter + 1):
        family.log_prob(data, params, active, resp)
        e_step(resp, log_weights, active, loglik)
        if trace is not None:
            trace[iteration, active] = loglik[active] + constant[active]
        if iteration > 0:
            done = loglik[active] - previous[active] <= tol * n_cells
            converged[active[done]] = True
            active = active[~done]
        if iteration == max_iter or active.size == 0:
            break
        weights[active] = responsibility_sums(resp, active) / n_cells
        with np.errstate(divide="ignore"):
            log_weights[active] = np.log(weights[active])
        family.m_step(data, resp, params, active)
        previous[active] = loglik[active]
        n_iter[active] += 1
    if trace is not None:
        trace = trace[: n_iter.max() + 1]
    return loglik + constant, converged, n_iter, trace


def fit_chunk(
    family: Family, x: np.ndarray, size_factors: np.ndarray, n_components: int, *,
    n_init: int, max_iter: int, tol: float, uniforms: np.ndarray, keep_trace: bool = False,
) -> ChunkFit:
    """Fit a K-component mixture to every gene (row) of ``x`` from ``n_init`` starts.

    Parameters
    ----------
    x
        Counts, float64, shape ``(n_genes, n_cells)``, C-contiguous.
    size_factors
        Shape ``(n_cells,)``, positive.
    uniforms
        Uniform draws for the random starts, shape ``(n_genes, n_init, K)``.

    The best start per gene (highest marginal log-likelihood) is kept; its
    components are sorted by increasing mean and a final E-step makes the
    responsibilities match the returned parameters.
    """
    n_genes, n_cells = x.shape
    data = ChunkData(x, size_factors)
    constant = family.log_prob_constant(data)
    resp = np.empty((n_genes, n_components, n_cells))
    n_starts = 1 if n_components == 1 else n_init
    best = None
    for start in range(n_starts):
        labels = starting_labels(x, size_factors, n_components, start, uniforms)
        one_hot(labels, n_components, resp)
        params = family.initial_params(data, resp)
        weights = resp.mean(axis=2)
        # no component starts empty: a floor of one cell's worth of weight
        np.maximum(weights, 1.0 / n_cells, out=weights)
        weights /= weights.sum(axis=1, keepdims=True)
        loglik, converged, n_iter, trace = run_em(
            family, data, params, weights, resp,
            max_iter=max_iter, tol=tol, constant=constant, keep_trace=keep_trace,
        )
        run = ChunkFit(params, weights, loglik, converged, n_iter, None, trace)
        best = run if best is None else _keep_better(best, run)

    order = np.argsort(best.params["mu"], axis=1, kind="stable")
    params = {name: np.take_along_axis(v, order, axis=1) for name, v in best.params.items()}
    weights = np.take_along_axis(best.weights, order, axis=1)
    # final E-step at the kept parameters, in sorted component order
    every = np.arange(n_genes)
    loglik = np.empty(n_genes)
    family.log_prob(data, params, every, resp)
    with np.errstate(divide="ignore"):
        e_step(resp, np.log(weights), every, loglik)
    return ChunkFit(params, weights, loglik + constant, best.converged, best.n_iter, resp, best.trace)


def _keep_better(best: ChunkFit, run: ChunkFit) -> ChunkFit:
    """Per gene, the run with the higher log-likelihood (ties keep the earlier one)."""
    better = run.loglik > best.loglik
    if not better.any():
        return best
    for name in best.params:
        best.params[name][better] = run.params[name][better]
    best.weights[better] = run.weights[better]
    best.loglik[better] = run.loglik[better]
    best.converged[better] = run.converged[better]
    best.n_iter[better] = run.n_iter[better]
    if best.trace is not None:
        rows = max(best.trace.shape[0], run.trace.shape[0])
        merged = np.full((rows, best.trace.shape[1]), np.nan)
        merged[: best.trace.shape[0]] = best.trace
        merged[: run.trace.shape[0], better] = run.trace[:, better]
        merged[run.trace.shape[0]:, better] = np.nan
        best.trace = merged
    return best
