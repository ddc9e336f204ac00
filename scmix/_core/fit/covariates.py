r"""Every gene of a matrix fitted with covariate effects shared by its components, gene
chunk by gene chunk: the one-component GLM (:mod:`scmix._core.em.glm`) and, for K > 1,
the mixture (:mod:`scmix._core.em.covariates`). A gene's fit depends on its counts only
(deterministic starts, row-wise arithmetic), not on its chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..em.covariates import CovariateMixture, covariate_e_step, fit_covariate_mixture
from ..em.glm import fit_glm
from ..families import Family
from ..numerics.jit import (
    announce_covariate_compilation,
    mark_covariate_kernels_cached,
    row_threads,
    worker_count,
)
from .chunks import GeneColumns, iter_chunks

#: Bytes of working memory per chunk of genes.
CHUNK_BYTES = 64 * 2**20
#: GEM runs until an iteration gains at most this (relative), then Newton finishes: a
#: looser switch (1e-4) is a fifth faster but ends lower on some flat genes.
EM_TOL = 1e-5


@dataclass(frozen=True)
class CovariateOptions:
    """How the covariate fits run: starts, iterations, tolerance, responsibilities."""

    n_init: int
    max_iter: int
    tol: float
    store_resp: bool = False
    #: Threads the kernels split each chunk's genes over (None or -1: every core).
    n_jobs: int | None = None


def _chunk_genes(n_genes: int, n_cells: int, n_comp: int, n_cov: int) -> int:
    """Genes per chunk: per gene the counts with their levels and log factorials, the
    responsibilities of the best start and of the start being fitted, and the design's
    share (numba's scratch is per thread, not per gene)."""
    per_gene = 8 * n_cells * (4 + 2 * n_comp) + 8 * n_cov
    return max(1, min(n_genes, CHUNK_BYTES // max(per_gene, 1)))


def _fits_by_chunk(X, size_factors, covariates, *, family, components, options):
    """Per chunk of genes with counts: (genes, the one-component GLM, {K: mixture} for
    each K > 1 in ``components``). The GLM is fitted once and starts every mixture."""
    n_cells, n_cov = covariates.shape
    design = np.column_stack([np.ones(n_cells), covariates])
    log_sf = np.log(size_factors)
    with_mixture = max(components, default=1) > 1
    announce_covariate_compilation()
    chunk = _chunk_genes(X.n_genes, n_cells, max(components, default=1), n_cov)
    for rows in iter_chunks(X.n_genes, chunk):
        x = X.block(rows)
        has_counts = x.any(axis=1)
        genes = np.arange(X.n_genes)[rows][has_counts]
        if genes.size == 0:
            continue
        x = x[has_counts]
        single = fit_glm(family, x, log_sf, design, tol=options.tol * 1e-2)
        mixtures = {
            k: fit_covariate_mixture(
                family,
                x,
                log_sf,
                covariates,
                k,
                n_init=max(options.n_init, 1),
                max_iter=options.max_iter,
                tol=options.tol * 1e-2,
                em_tol=EM_TOL,
                single=single,
            )
            for k in components
            if k > 1
        }
        yield genes, single, mixtures
    if with_mixture:  # both kernels compiled (and cached) now
        mark_covariate_kernels_cached()


def fit_covariate_matrix(
    X: GeneColumns,
    size_factors: np.ndarray,
    covariates: np.ndarray,
    *,
    family: Family,
    n_components: int,
    options: CovariateOptions,
) -> CovariateResults:
    """Fit every column of ``X``; ``covariates`` (cells, p) without an intercept."""
    # one memory layout, so that the arithmetic (and the result) does not depend on it
    covariates = np.ascontiguousarray(covariates, dtype=np.float64)
    n_cells, n_cov = covariates.shape
    results = CovariateResults.empty(X.n_genes, n_components, n_cov, n_cells, options.store_resp)
    chunks = _fits_by_chunk(
        X, size_factors, covariates, family=family, components=[n_components], options=options
    )
    with row_threads(worker_count(options.n_jobs)):
        for genes, single, mixtures in chunks:
            results.put_single(genes, single, single_only=n_components == 1)
            if n_components > 1:
                results.put_mixture(genes, mixtures[n_components])
    return results


def covariate_logliks(
    X: GeneColumns,
    size_factors: np.ndarray,
    covariates: np.ndarray,
    *,
    family: Family,
    candidates: list[int],
    options: CovariateOptions,
) -> dict[int, np.ndarray]:
    """Log-likelihood (genes,) of each K in ``candidates`` with the covariates (the GLM
    for K = 1), as :func:`fit_covariate_matrix` fits them; NaN for genes without counts."""
    covariates = np.ascontiguousarray(covariates, dtype=np.float64)
    out = {k: np.full(X.n_genes, np.nan) for k in candidates}
    chunks = _fits_by_chunk(
        X, size_factors, covariates, family=family, components=candidates, options=options
    )
    with row_threads(worker_count(options.n_jobs)):
        for genes, single, mixtures in chunks:
            for k in candidates:
                out[k][genes] = single.loglik if k == 1 else mixtures[k].loglik
    return out


def covariate_predict(
    X: GeneColumns,
    size_factors: np.ndarray,
    covariates: np.ndarray,
    fit: CovariateResults,
    family,
    n_jobs: int | None = None,
):
    """Responsibilities (genes, K, cells) and log-likelihoods (genes,) of ``X`` under the
    fitted parameters (NaN for genes not fitted)."""
    covariates = np.ascontiguousarray(covariates, dtype=np.float64)
    n_cells = covariates.shape[0]
    n_comp = fit.log_mu.shape[1]
    resp = np.full((X.n_genes, n_comp, n_cells), np.nan)
    loglik = np.full(X.n_genes, np.nan)
    log_sf = np.log(size_factors)
    with row_threads(worker_count(n_jobs)):
        for rows in iter_chunks(X.n_genes, _chunk_genes(X.n_genes, n_cells, n_comp, 1)):
            genes = np.arange(X.n_genes)[rows]
            genes = genes[fit.fitted[genes]]
            if genes.size == 0:
                continue
            x = X.block(rows)[genes - rows.start]
            loglik[genes], resp[genes] = covariate_e_step(
                family, x, log_sf, covariates, fit.mixture(genes)
            )
    return resp, loglik


@dataclass
class CovariateResults:
    """Per-gene arrays of :func:`fit_covariate_matrix` (NaN for genes without counts)."""

    log_mu: np.ndarray  # (genes, K)
    log_theta: np.ndarray  # (genes, K), NaN for a family without theta
    weights: np.ndarray  # (genes, K)
    gamma: np.ndarray  # (genes, p)
    single_coef: np.ndarray  # (genes, p + 1), the intercept first
    single_log_theta: np.ndarray  # (genes,)
    loglik: np.ndarray
    loglik_1: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    fitted: np.ndarray
    resp: np.ndarray | None  # (cells, genes, K) float32 when stored

    @classmethod
    def empty(cls, n_genes, n_comp, n_cov, n_cells, store) -> CovariateResults:
        self = cls.__new__(cls)
        self.log_mu = np.full((n_genes, n_comp), np.nan)
        self.log_theta = np.full((n_genes, n_comp), np.nan)
        self.weights = np.full((n_genes, n_comp), np.nan)
        self.gamma = np.full((n_genes, n_cov), np.nan)
        self.single_coef = np.full((n_genes, n_cov + 1), np.nan)
        self.single_log_theta = np.full(n_genes, np.nan)
        self.loglik = np.full(n_genes, np.nan)
        self.loglik_1 = np.full(n_genes, np.nan)
        self.converged = np.zeros(n_genes, dtype=bool)
        self.n_iter = np.zeros(n_genes, dtype=np.int64)
        self.fitted = np.zeros(n_genes, dtype=bool)
        store = store and n_comp > 1
        self.resp = np.full((n_cells, n_genes, n_comp), np.nan, np.float32) if store else None
        return self

    def put_single(self, genes, single, *, single_only=False) -> None:
        self.single_coef[genes] = single.coef
        if single.log_theta is not None:
            self.single_log_theta[genes] = single.log_theta
        self.loglik_1[genes] = single.loglik
        self.fitted[genes] = True
        if single_only:  # K = 1: the GLM is the fit
            self.log_mu[genes, 0] = single.coef[:, 0]
            self.log_theta[genes, 0] = self.single_log_theta[genes]
            self.weights[genes] = 1.0
            self.gamma[genes] = single.coef[:, 1:]
            self.loglik[genes] = single.loglik
            self.converged[genes], self.n_iter[genes] = single.converged, single.n_iter

    def put_mixture(self, genes, fit) -> None:
        self.log_mu[genes], self.weights[genes] = fit.log_mu, fit.weights
        if fit.log_theta is not None:
            self.log_theta[genes] = fit.log_theta
        self.gamma[genes], self.loglik[genes] = fit.gamma, fit.loglik
        self.converged[genes], self.n_iter[genes] = fit.converged, fit.n_iter
        if self.resp is not None:
            self.resp[:, genes, :] = fit.resp.transpose(2, 0, 1)

    def mixture(self, genes) -> CovariateMixture:
        """The fitted parameters of ``genes`` as the E-step takes them."""
        theta = self.log_theta[genes]
        return CovariateMixture(
            log_mu=self.log_mu[genes],
            log_theta=None if np.isnan(theta).all() else theta,
            gamma=self.gamma[genes],
            weights=self.weights[genes],
            loglik=self.loglik[genes],
            converged=self.converged[genes],
            n_iter=self.n_iter[genes],
        )
