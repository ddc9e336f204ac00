r"""``fit_mixture(..., covariates=...)``: per-gene mixtures whose components share the
gene's covariate effects, :math:`m_{ijk} = s_i e^{z_i^\top\gamma_j}\mu_{jk}`
(:mod:`scmix._core.em.covariates`), and the one-component GLM beside them
(:mod:`scmix._core.em.glm`)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import __version__
from .._core.em.covariates import fit_covariate_mixture
from .._core.em.glm import fit_glm
from .._core.families import Family
from .._core.fit.chunks import GeneColumns, iter_chunks
from .._core.stats import selection
from .._design import Design
from .._schema import responsibility_layer
from ._write import replace_results, var_frame

#: Bytes of working memory per chunk of genes (the Newton steps hold K x cells x P^2
#: products per gene).
_CHUNK_BYTES = 64 * 2**20
#: GEM runs until an iteration gains at most this (relative), then Newton finishes: a
#: looser switch (1e-4) is a third faster but ends lower on some flat genes.
EM_TOL = 1e-5


def fit_with_covariates(
    adata: AnnData,
    X: GeneColumns,
    selected: np.ndarray,
    sf: np.ndarray,
    design: Design,
    *,
    family: Family,
    n_components: int,
    options: dict,
    params: dict,
    key: str,
) -> None:
    """Fit the selected genes, chunk by chunk, and write every output under ``key``.

    ``options``: ``n_init``, ``max_iter``, ``tol``, ``keep_trace``, ``store``,
    ``bic_threshold``, ``min_weight`` and ``obs`` (the ``.obs`` columns to write).
    """
    n_cells = adata.n_obs
    z = design.matrix
    full_design = np.column_stack([np.ones(n_cells), z])
    log_sf = np.log(sf)
    n_params = 2 * n_components + z.shape[1] + n_components
    per_gene = 8 * n_cells * n_components * (n_params + 4) * 4
    results = _Results(X.n_genes, n_components, z.shape[1], n_cells, options["store"])
    chunk = max(1, min(X.n_genes, _CHUNK_BYTES // max(per_gene, 1)))
    for rows in iter_chunks(X.n_genes, chunk):
        x = X.block(rows)
        has_counts = x.any(axis=1)
        genes = np.arange(X.n_genes)[rows][has_counts]
        if genes.size == 0:
            continue
        x = x[has_counts]
        single = fit_glm(family, x, log_sf, full_design, tol=options["tol"] * 1e-2)
        if n_components == 1:
            results.put_single(genes, single, single_only=True)
            continue
        mixture = fit_covariate_mixture(
            family,
            x,
            log_sf,
            z,
            n_components,
            n_init=max(options["n_init"], 1),
            max_iter=options["max_iter"],
            tol=options["tol"] * 1e-2,
            em_tol=EM_TOL,
        )
        results.put_single(genes, single)
        results.put_mixture(genes, mixture)
    _write(adata, selected, results, design, family, n_components, options, params, key)


def covariate_logliks(
    X: GeneColumns,
    sf: np.ndarray,
    design: Design,
    *,
    family: Family,
    candidates: list[int],
    n_init: int,
    max_iter: int,
    tol: float,
) -> dict[int, np.ndarray]:
    """Log-likelihood (genes,) of each K in ``candidates`` with the covariates (the GLM
    for K = 1), for :func:`scmix.tl.select_n_components`; NaN for genes without counts."""
    n_cells = sf.size
    full_design = np.column_stack([np.ones(n_cells), design.matrix])
    out = {k: np.full(X.n_genes, np.nan) for k in candidates}
    per_gene = 8 * n_cells * max(candidates) * (3 * max(candidates) + design.matrix.shape[1]) * 4
    for rows in iter_chunks(X.n_genes, max(1, _CHUNK_BYTES // per_gene)):
        x = X.block(rows)
        genes = np.arange(X.n_genes)[rows][x.any(axis=1)]
        x = x[x.any(axis=1)]
        if genes.size == 0:
            continue
        for k in candidates:
            if k == 1:
                fit = fit_glm(family, x, np.log(sf), full_design, tol=tol * 1e-2)
            else:
                fit = fit_covariate_mixture(
                    family,
                    x,
                    np.log(sf),
                    design.matrix,
                    k,
                    n_init=max(n_init, 1),
                    max_iter=max_iter,
                    tol=tol * 1e-2,
                    em_tol=EM_TOL,
                )
            out[k][genes] = fit.loglik
    return out


class _Results:
    """Per-fitted-gene arrays (NaN for genes without counts), filled chunk by chunk."""

    def __init__(self, n_genes, n_comp, n_cov, n_cells, store):
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


def _dispersion(family: Family, log_theta: np.ndarray) -> np.ndarray:
    """phi = 1 / theta as the family reports it (0 for Poisson or at the theta bound)."""
    if "theta" not in family.param_names:
        return np.where(np.isnan(log_theta), np.nan, 0.0)
    return family.dispersion({"theta": np.exp(log_theta)})


def _write(adata, selected, res, design, family, n_comp, options, params, key) -> None:
    n_cells, n_cov = adata.n_obs, len(design.columns)
    p = family.n_free_params
    columns = {}
    mean, phi = np.exp(res.log_mu), _dispersion(family, res.log_theta)
    for k in range(n_comp):
        columns[f"{key}_mean_{k}"] = mean[:, k]
        columns[f"{key}_dispersion_{k}"] = phi[:, k]
        columns[f"{key}_weight_{k}"] = res.weights[:, k]
    columns[f"{key}_single_mean"] = np.exp(res.single_coef[:, 0])
    columns[f"{key}_single_dispersion"] = _dispersion(family, res.single_log_theta[:, None])[:, 0]
    # the covariates' parameters count in both BICs
    bic_k = selection.bic(res.loglik, n_comp, p, n_cells) + n_cov * np.log(n_cells)
    bic_1 = selection.bic(res.loglik_1, 1, p, n_cells) + n_cov * np.log(n_cells)
    delta = bic_1 - bic_k
    bimodal = selection.bimodal_call(
        delta,
        res.weights,
        res.converged,
        mean,
        phi,
        bic_threshold=options["bic_threshold"],
        min_weight=options["min_weight"],
    )
    columns.update(
        {
            f"{key}_loglik": res.loglik,
            f"{key}_loglik_1": res.loglik_1,
            f"{key}_bic": bic_k,
            f"{key}_bic_1": bic_1,
            f"{key}_delta_bic": delta,
            f"{key}_lrt": 2.0 * (res.loglik - res.loglik_1),
            f"{key}_bimodal": bimodal & res.fitted & (n_comp > 1),
            f"{key}_converged": res.converged,
            f"{key}_n_iter": res.n_iter,
        }
    )
    for c, name in enumerate(design.columns):
        columns[f"{key}_coef_{name}"] = res.gamma[:, c]
        columns[f"{key}_single_coef_{name}"] = res.single_coef[:, c + 1]
    layers = {}
    if res.resp is not None:
        for k in range(1, n_comp):
            layer = np.full((n_cells, adata.n_vars), np.nan, dtype=np.float32)
            layer[:, selected] = res.resp[:, :, k]
            layers[responsibility_layer(key, k)] = layer
    uns = {
        "params": {**params, **design.describe()},
        "var_names": np.asarray(adata.var_names[selected], dtype=object),
        "n_obs": n_cells,
        "n_components": n_comp,
        "family": family.name,
        "version": __version__,
    }
    replace_results(
        adata,
        key,
        var_frame(adata.var_names, selected, columns),
        uns,
        obs=options["obs"],
        layers=layers,
    )
