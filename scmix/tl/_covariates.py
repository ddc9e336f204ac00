r"""``fit_mixture(..., covariates=...)``: per-gene mixtures whose components share the
gene's covariate effects, :math:`m_{ijk} = s_i e^{z_i^\top\gamma_j}\mu_{jk}`
(:mod:`scmix._core.fit.covariates`), optionally with bootstrap p-values of their LRT
(:mod:`scmix._core.stats.bootstrap`), written to the AnnData."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import __version__
from .._core.families import Family
from .._core.fit.chunks import GeneColumns
from .._core.fit.covariates import CovariateOptions, fit_covariate_matrix
from .._core.stats.bootstrap import covariate_lrt_pvalues
from .._core.stats.selection import covariate_summary
from .._design import Design
from ._write import call_by_padj, replace_results, responsibility_layers, var_frame


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
    """Fit the selected genes and write every output under ``key``.

    ``options``: ``n_init``, ``max_iter``, ``tol``, ``store``, ``bic_threshold``,
    ``min_weight``, ``n_jobs``, ``obs`` (the ``.obs`` columns to write), and for the parametric
    bootstrap of the LRT (:func:`~scmix._core.stats.bootstrap.covariate_lrt_pvalues`,
    written as ``{key}_lrt_pvalue`` and ``{key}_lrt_padj``) ``n_bootstrap``,
    ``bootstrap_early_stop``, ``random_state`` and ``progress`` (a context manager
    ``progress(n_genes, what)`` that yields a progress callback or None).
    """
    settings = CovariateOptions(
        n_init=options["n_init"],
        max_iter=options["max_iter"],
        tol=options["tol"],
        store_resp=options["store"] and n_components > 1,
        n_jobs=options["n_jobs"],
    )
    results = fit_covariate_matrix(
        X, sf, design.matrix, family=family, n_components=n_components, options=settings
    )
    extra = {}
    if options["n_bootstrap"]:
        with options["progress"](int(results.fitted.sum()), "bootstrap") as advance:
            extra = covariate_lrt_pvalues(
                results,
                sf,
                design.matrix,
                adata.var_names[selected],
                family=family,
                options=settings,
                n_bootstrap=options["n_bootstrap"],
                early_stop=options["bootstrap_early_stop"],
                random_state=options["random_state"],
                progress=advance,
            )
    _write(adata, selected, results, design, family, options, params, key, extra)


def _write(adata, selected, res, design, family, options, params, key, extra) -> None:
    n_comp = res.log_mu.shape[1]
    n_cells = adata.n_obs
    table = covariate_summary(
        res,
        family,
        n_cells,
        bic_threshold=options["bic_threshold"],
        min_weight=options["min_weight"],
    )
    if params["call"] == "padj":
        mixture = (res.weights, res.converged, table["mean"], table["dispersion"])
        table["bimodal"] = call_by_padj(extra["lrt_padj"], mixture, params) & res.fitted
    columns = {}
    for k in range(n_comp):
        for what in ("mean", "dispersion", "weight"):
            columns[f"{key}_{what}_{k}"] = table[what][:, k]
    names = ("single_mean", "single_dispersion", "loglik", "loglik_1", "bic", "bic_1")
    names += ("delta_bic", "lrt", "bimodal", "converged", "n_iter")
    columns.update({f"{key}_{name}": table[name] for name in names})
    columns.update({f"{key}_{name}": values for name, values in extra.items()})
    for c, name in enumerate(design.columns):
        columns[f"{key}_coef_{name}"] = res.gamma[:, c]
        columns[f"{key}_single_coef_{name}"] = res.single_coef[:, c + 1]
    layers = responsibility_layers(key, res.resp, selected, adata.n_vars)
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
