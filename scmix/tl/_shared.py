"""``fit_mixture(..., shared=True)``: one latent class per cell across the fitted genes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import __version__
from .._core.em.shared import fit_shared
from .._core.errors import InputError
from .._core.families import Family
from .._core.fit.chunks import GeneColumns
from .._core.fit.matrix import fit_matrix
from ._write import replace_results


def fit_cell_level(
    adata: AnnData,
    X: GeneColumns,
    selected: np.ndarray,
    sf: np.ndarray,
    *,
    family: Family,
    n_components: int,
    options: dict,
    params: dict,
    key: str,
    keep_trace: bool,
) -> None:
    """Fit the cell-level mixture to the selected genes and write it under ``key``.

    Genes without any count cannot inform the classes and are left out (NaN).
    """
    x = X.block(slice(None))
    has_counts = x.any(axis=1)
    genes, x = selected[has_counts], np.ascontiguousarray(x[has_counts])
    if genes.size == 0:
        raise InputError("shared=True: none of the selected genes has a non-zero count.")
    fit = fit_shared(
        family,
        x,
        sf,
        n_components,
        n_init=options["n_init"],
        max_iter=options["max_iter"],
        tol=options["tol"],
        random_state=options["random_state"],
    )
    single = fit_matrix(x.T, sf, family=family, n_components=1, store_resp=False, **options)
    n_cells, p = adata.n_obs, family.n_free_params
    n_params_k = n_components * p * genes.size + n_components - 1
    n_params_1 = p * genes.size
    loglik_1 = float(single.loglik.sum())
    bic_k = -2.0 * fit.loglik + n_params_k * np.log(n_cells)
    bic_1 = -2.0 * loglik_1 + n_params_1 * np.log(n_cells)

    def spread(values):
        full = np.full(adata.n_vars, np.nan)
        full[genes] = values
        return full

    columns = {}
    dispersion = family.dispersion(fit.params)
    for k in range(n_components):
        columns[f"{key}_mean_{k}"] = spread(fit.params["mu"][:, k])
        columns[f"{key}_dispersion_{k}"] = spread(dispersion[:, k])
        columns[f"{key}_weight_{k}"] = spread(np.full(genes.size, fit.weights[k]))
    columns[f"{key}_single_mean"] = spread(single.params["mu"][:, 0])
    columns[f"{key}_single_dispersion"] = spread(single.dispersion[:, 0])
    columns[f"{key}_loglik_1"] = spread(single.loglik)
    labels = fit.resp.argmax(axis=0)
    obs = pd.DataFrame(
        {
            f"{key}_component": pd.Categorical(
                labels.astype(str), categories=[str(k) for k in range(n_components)]
            )
        },
        index=adata.obs_names,
    )
    uns = {
        "params": params,
        "var_names": np.asarray(adata.var_names[genes], dtype=object),
        "n_components": n_components,
        "family": family.name,
        "version": __version__,
        "shared": True,
        "weights": fit.weights,
        "loglik": fit.loglik,
        "loglik_1": loglik_1,
        "bic": bic_k,
        "bic_1": bic_1,
        "delta_bic": bic_1 - bic_k,
        "lrt": 2.0 * (fit.loglik - loglik_1),
        "converged": fit.converged,
        "n_iter": fit.n_iter,
    }
    if keep_trace:
        uns["trace"] = fit.trace
    replace_results(
        adata,
        key,
        pd.DataFrame(columns, index=adata.var_names),
        uns,
        obsm=fit.resp.T.astype(np.float32),
        obs=obs,
    )
