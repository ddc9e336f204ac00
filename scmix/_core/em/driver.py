"""The EM driver for one chunk of genes: every start of every gene side by side,
the best start kept, its components ordered, a final E-step. It knows no
distribution: a :class:`~scmix._core.families.Family` supplies the log-pmf and the
M-step; the iterations themselves are :func:`~scmix._core.em.iteration.run_em`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import Family
from ..families.base import ChunkData
from ..settings import FitSettings
from .best import best_start, component_order
from .iteration import run_em
from .starts import starts


@dataclass
class ChunkFit:
    """EM results for a chunk of ``n_genes`` genes, components sorted by mean."""

    params: dict[str, np.ndarray]  # each (n_genes, K)
    weights: np.ndarray  # (n_genes, K)
    loglik: np.ndarray  # (n_genes,), the full marginal log-likelihood
    converged: np.ndarray  # (n_genes,) bool
    n_iter: np.ndarray  # (n_genes,) M-steps taken by the best start
    resp: np.ndarray  # (n_genes, K, n_cells): responsibilities at the returned parameters
    # (points, n_genes): log-likelihood along the EM path, NaN after a gene stopped
    trace: np.ndarray | None


def fit_chunk(
    family: Family,
    x: np.ndarray,
    size_factors: np.ndarray,
    n_components: int,
    *,
    settings: FitSettings,
    uniforms: np.ndarray,
    single: ChunkFit | None = None,
    data: ChunkData | None = None,
    start_resp: np.ndarray | None = None,
) -> ChunkFit:
    """Fit a K-component mixture to every gene (row) of ``x`` from ``n_init`` starts.

    Parameters
    ----------
    x
        Counts, float64, shape ``(n_genes, n_cells)``, C-contiguous.
    size_factors
        Shape ``(n_cells,)``, positive.
    settings
        The starts (``n_init``), the stopping rule (``max_iter``, ``tol``), SQUAREM
        (``accelerate``, see :func:`run_em`) and ``keep_trace``.
    uniforms
        Uniform draws for the random starts, shape ``(n_genes, n_init, K)``.
    single
        The one-component fit of the same genes. When given (K > 1), one more
        start splits it into K almost equal components where needed, and where
        every start still ends below it, the fit is K identical copies of it: the
        K-component log-likelihood does not end below the one-component one (the
        LRT stays >= 0, up to rounding).
    data
        ``ChunkData(x, size_factors)`` when the caller already has it (its count
        levels are then computed once for the K=1 and the K-component fit).
    start_resp
        Responsibilities (K, n_cells) shared by all genes: one more start from them
        (``n_init`` may then be 0).

    All starts run in one EM with one row per start and gene (start-major), which
    shares the driver's per-iteration cost and gives the threads more work; a start
    identical to an earlier start of its gene is not run again. The split of
    ``single`` runs afterwards, and only for the genes where no other start rose above
    the one-component log-likelihood by more than ``tol * n_cells``. The best start per
    gene (highest marginal log-likelihood, the earliest on ties) is kept; its
    components are sorted by increasing mean and a final E-step makes the
    responsibilities match the returned parameters.
    """
    n_genes, n_cells = x.shape
    n_init, tol = settings.n_init, settings.tol
    if data is None:
        data = ChunkData(x, size_factors)
    work = np.empty((n_genes, n_components, n_cells))
    start_list = list(
        starts(family, data, n_components, n_init, uniforms, work, single, start_resp)
    )
    n_starts = len(start_list)
    # a start identical to an earlier one of the same gene (k-means++ and the nested
    # split often give the same labels) would repeat its EM exactly: it is left out
    keep = _distinct_starts(start_list, family.param_names)
    options = {
        "max_iter": settings.max_iter,
        "tol": tol,
        "keep_trace": settings.keep_trace,
        "accelerate": settings.accelerate,
    }
    split = single is not None and n_components > 1
    runs = []
    if split:
        # the split of the one-component fit runs only where no other start rose
        # above the one-component log-likelihood by more than the convergence
        # tolerance (tol per cell): its purpose is LRT >= 0, and a start that ends
        # within that tolerance (often at a near-empty component) is the
        # one-component fit again, which must not keep the split from exploring
        label_starts = keep.copy()
        label_starts[-1] = False
        if label_starts.any():
            runs.append(_run_starts(family, data, start_list, label_starts, **options))
            best = np.full(n_genes, -np.inf)
            np.fmax.at(best, runs[0][1], runs[0][2]["loglik"])  # NaN rows ignored
            keep[-1] &= best <= single.loglik + tol * n_cells
        keep[:-1] = False
        # the split sits next to the saddle of two equal components, where EM barely
        # moves and may stop: Newton steps from the start leave along the negative
        # curvature (or stop at a true maximum)
        options["newton_after"] = 0
    if keep.any():
        runs.append(_run_starts(family, data, start_list, keep, **options))
    row_start, row_gene, result = _concatenate_runs(runs)
    params, weights = result["params"], result["weights"]
    loglik, converged, n_iter, trace = (
        result[name] for name in ("loglik", "converged", "n_iter", "trace")
    )

    genes = np.arange(n_genes)
    by_start = np.full((n_starts, n_genes), -np.inf)
    by_start[row_start, row_gene] = np.where(np.isnan(loglik), -np.inf, loglik)  # never kept
    row_of = np.zeros((n_starts, n_genes), dtype=np.int64)
    row_of[row_start, row_gene] = np.arange(row_gene.size)
    # the best start of each gene (the earliest on ties), as a row of the stacked arrays
    rows = row_of[best_start(by_start), genes]
    order = component_order(params["mu"][rows])
    params = {name: np.take_along_axis(v[rows], order, axis=1) for name, v in params.items()}
    weights = np.take_along_axis(weights[rows], order, axis=1)
    converged, n_iter = converged[rows], n_iter[rows]
    # final E-step at the kept parameters, in sorted component order (every cell
    # summed: the EM's log-likelihoods may come from pooled node sums)
    final = e_step_at(family, data, params, weights, out=work)
    below = final < single.loglik if split else np.zeros(n_genes, dtype=bool)
    if below.any():
        # the one-component model is nested in the K-component one: where the kept
        # start ended below it (EM from the split can stop a hair below, next to the
        # saddle of equal components), K identical copies of it are the better fit
        for name in params:
            params[name][below] = single.params[name][below]
        weights[below] = 1.0 / n_components
        converged[below] = single.converged[below]
        final = e_step_at(family, data, params, weights, out=work)
    return ChunkFit(
        params,
        weights,
        final,
        converged,
        n_iter,
        work,
        None if trace is None else trace[:, rows],
    )


def _run_starts(family, data, start_list, keep, **options):
    """EM from the starts ``keep[s, g]`` of ``start_list``, one row per kept start and
    gene (start-major). Returns ``(row_start, row_gene, result)``."""
    row_start, row_gene = np.nonzero(keep)
    stacked = data.take(row_gene)
    params = {
        name: np.concatenate([p[name][keep[s]] for s, (p, _) in enumerate(start_list)])
        for name in family.param_names
    }
    weights = np.concatenate([w[keep[s]] for s, (_, w) in enumerate(start_list)])
    constant = family.log_prob_constant(data)[row_gene]
    resp = np.empty((row_gene.size, weights.shape[1], data.n_cells))
    loglik, converged, n_iter, trace = run_em(
        family, stacked, params, weights, resp, constant=constant, **options
    )
    result = {
        "params": params,
        "weights": weights,
        "loglik": loglik,
        "converged": converged,
        "n_iter": n_iter,
        "trace": trace,
    }
    return row_start, row_gene, result


def _concatenate_runs(runs):
    """The rows of several :func:`_run_starts` results as one; traces padded with NaN."""
    if len(runs) == 1:
        return runs[0]
    row_start = np.concatenate([r[0] for r in runs])
    row_gene = np.concatenate([r[1] for r in runs])
    results = [r[2] for r in runs]
    merged = {
        "params": {
            name: np.concatenate([r["params"][name] for r in results])
            for name in results[0]["params"]
        }
    }
    for name in ("weights", "loglik", "converged", "n_iter"):
        merged[name] = np.concatenate([r[name] for r in results])
    merged["trace"] = None
    if results[0]["trace"] is not None:
        length = max(r["trace"].shape[0] for r in results)
        merged["trace"] = np.concatenate(
            [
                np.pad(
                    r["trace"], ((0, length - r["trace"].shape[0]), (0, 0)), constant_values=np.nan
                )
                for r in results
            ],
            axis=1,
        )
    return row_start, row_gene, merged


def _distinct_starts(start_list, param_names) -> np.ndarray:
    """(n_starts, n_genes) bool: False where a start equals an earlier start of the gene
    in every parameter and weight (exactly, so that its EM would be the same)."""
    keep = np.ones((len(start_list), start_list[0][1].shape[0]), dtype=bool)
    for s, (params, weights) in enumerate(start_list):
        for t in range(s):
            earlier, earlier_weights = start_list[t]
            same = (weights == earlier_weights).all(axis=1)
            for name in param_names:
                same &= (params[name] == earlier[name]).all(axis=1)
            keep[s] &= ~same
    return keep


def e_step_at(family: Family, data: ChunkData, params, weights, out=None) -> np.ndarray:
    """Responsibilities at given parameters (into ``out``, shape (n_genes, K, n_cells))
    and the full log-likelihood of every gene, which is returned."""
    n_genes, n_comp = weights.shape
    if out is None:
        out = np.empty((n_genes, n_comp, data.n_cells))
    every = np.arange(n_genes)
    loglik = np.empty(n_genes)
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    # without a state every cell is summed and every responsibility set
    family.e_step(data, params, log_weights, every, out, loglik, np.empty_like(weights))
    return loglik + family.log_prob_constant(data)
