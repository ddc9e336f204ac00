r"""Cell-level mixtures: one latent class per cell, shared by all the fitted genes.

Cell i belongs to class k with probability :math:`\pi_k`; given the class, the genes
are independent with their own parameters:

.. math::

    p(x_{i\cdot}) = \sum_k \pi_k \prod_j f(x_{ij} \mid s_i \mu_{jk}, \theta_{jk}).

EM: the E-step sums the per-gene log-pmfs of each class,
:math:`r_{ik} \propto \pi_k \exp \sum_j \log f(x_{ij} \mid \ldots)` (in log space); the
M-step sets :math:`\pi_k = \bar r_{\cdot k}` and updates each gene's parameters with the
family's M-step, every gene weighted by the same :math:`r_{ik}`. Each M-step does not
decrease the expected complete-data log-likelihood, so the marginal log-likelihood
never decreases. Starts: cells ranked by their mean standardised log1p(x/s), then
k-means++ / Lloyd on the standardised log1p(x/s) of all genes; the best start is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from ..families import Family
from ..families.base import ChunkData
from ..numerics.jit import row_threads, worker_count
from .best import best_start, component_order
from .starts import one_hot

_LLOYD_ITERATIONS = 20


@dataclass
class SharedFit:
    params: dict[str, np.ndarray]  # each (n_genes, K), classes sorted by mean log mu
    weights: np.ndarray  # (K,)
    resp: np.ndarray  # (K, n_cells)
    loglik: float
    converged: bool
    n_iter: int
    trace: np.ndarray  # log-likelihood after each E-step of the best start


def _standardised(x: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
    """Cells x genes, log1p(x / s) centred and scaled per gene."""
    y = np.log1p(x / size_factors[None, :]).T
    sd = y.std(axis=0)
    return (y - y.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _kmeans_labels(z: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    """k-means of the rows of ``z`` (cells x genes): scikit-learn's, k-means++ seeds and
    Lloyd iterations. (The per-gene starts of :mod:`.starts` keep a numba k-means++:
    there every gene is its own one-dimensional problem, thousands per chunk.)"""
    from sklearn.cluster import KMeans  # imported here: scikit-learn is slow to import

    seed = int(rng.integers(2**31 - 1))
    kmeans = KMeans(
        n_components, init="k-means++", n_init=1, max_iter=_LLOYD_ITERATIONS, random_state=seed
    )
    return kmeans.fit_predict(z)


def starting_labels(x, size_factors, n_components, n_init, rng) -> list[np.ndarray]:
    z = _standardised(x, size_factors)
    score = z.mean(axis=1)
    ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
    labels = [(ranks * n_components) // z.shape[0]]
    labels += [_kmeans_labels(z, n_components, rng) for _ in range(n_init - 1)]
    return labels


def run_shared_em(family: Family, data: ChunkData, params, weights, *, max_iter, tol, constant):
    """EM from ``params`` (updated in place) and ``weights`` (K,); returns
    ``(weights, resp, loglik, converged, n_iter, trace)``."""
    n_genes, n_cells = data.x.shape
    n_comp = weights.size
    genes = np.arange(n_genes)
    work = np.empty((n_genes, n_comp, n_cells))
    threshold = tol * n_cells * n_genes
    trace = []
    converged = False
    n_iter = 0
    while True:
        family.log_prob(data, params, genes, work)
        with np.errstate(divide="ignore"):
            joint = np.log(weights)[:, None] + work.sum(axis=0)
        per_cell = logsumexp(joint, axis=0)
        loglik = float(per_cell.sum() + constant)
        resp = np.exp(joint - per_cell[None, :])
        if trace and loglik - trace[-1] <= threshold:
            converged = True
        trace.append(loglik)
        if converged or n_iter >= max_iter:
            break
        weights = resp.mean(axis=1)
        work[:] = resp[None, :, :]
        family.m_step(data, work, params, genes)
        n_iter += 1
    return weights, resp, loglik, converged, n_iter, np.array(trace)


def fit_shared(
    family: Family,
    x: np.ndarray,
    size_factors: np.ndarray,
    n_components: int,
    *,
    n_init: int,
    max_iter: int,
    tol: float,
    random_state: int | None,
    n_jobs: int | None = None,
) -> SharedFit:
    """Fit the cell-level mixture to ``x`` (genes, cells; every gene with a count); the
    family's kernel calls split their genes over ``n_jobs`` threads (None: every core)."""
    with row_threads(worker_count(n_jobs)):
        data = ChunkData(np.ascontiguousarray(x, dtype=np.float64), size_factors)
        constant = float(family.log_prob_constant(data).sum())
        rng = np.random.default_rng(random_state)
        runs = []
        n_genes, n_cells = data.x.shape
        resp0 = np.empty((n_genes, n_components, n_cells))
        for labels in starting_labels(data.x, size_factors, n_components, n_init, rng):
            one_hot(np.broadcast_to(labels, (n_genes, n_cells)), n_components, resp0)
            params = family.initial_params(data, resp0)
            weights = np.maximum(resp0[0].mean(axis=1), 1.0 / n_cells)
            weights /= weights.sum()
            result = run_shared_em(
                family, data, params, weights, max_iter=max_iter, tol=tol, constant=constant
            )
            runs.append((params, result))
        params, (weights, resp, loglik, converged, n_iter, trace) = runs[
            best_start([result[2] for _, result in runs])
        ]
        order = component_order(np.log(params["mu"]).mean(axis=0))
        return SharedFit(
            {name: values[:, order] for name, values in params.items()},
            weights[order],
            resp[order],
            loglik,
            converged,
            n_iter,
            trace,
        )
