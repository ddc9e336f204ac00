"""``fit_mixture(..., shared=True)``: one latent class per cell across the fitted genes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import __version__
from .._core.em.shared import fit_shared
from .._core.errors import InputError
from .._core.families import Family
from .._core.fit.chunks import GeneColumns
from .._core.fit.matrix import fit_matrix
from .._core.settings import FitSettings
from .._core.stats.selection import shared_selection
from ._write import component_columns, replace_results, var_frame


def fit_cell_level(
    adata: AnnData,
    X: GeneColumns,
    selected: np.ndarray,
    sf: np.ndarray,
    *,
    family: Family,
    n_components: int,
    settings: FitSettings,
    params: dict,
    key: str,
    obs: pd.DataFrame,
) -> None:
    """Fit the cell-level mixture to the selected genes and write it under ``key``.

    Genes without any count cannot inform the classes and are left out (NaN).
    ``obs``: further ``.obs`` columns to write with the fit (its size factors).
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
        n_init=settings.n_init,
        max_iter=settings.max_iter,
        tol=settings.tol,
        random_state=settings.random_state,
        n_jobs=settings.n_jobs,
    )
    one = replace(settings, keep_trace=False)
    single = fit_matrix(x.T, sf, family=family, n_components=1, settings=one, store_resp=False)
    totals = shared_selection(fit, single.loglik, family, adata.n_obs)
    columns = component_columns(
        key,
        fit.params["mu"],
        family.dispersion(fit.params),
        np.tile(fit.weights, (genes.size, 1)),
        single.params["mu"][:, 0],
        single.dispersion[:, 0],
    )
    columns[f"{key}_loglik_1"] = single.loglik
    labels = fit.resp.argmax(axis=0)
    obs = obs.assign(
        **{
            f"{key}_component": pd.Categorical(
                labels.astype(str), categories=[str(k) for k in range(n_components)]
            )
        }
    )
    uns = {
        "params": params,
        "var_names": np.asarray(adata.var_names[genes], dtype=object),
        "n_obs": adata.n_obs,
        "n_components": n_components,
        "family": family.name,
        "version": __version__,
        "shared": True,
        "weights": fit.weights,
        **totals,
        "converged": fit.converged,
        "n_iter": fit.n_iter,
    }
    if settings.keep_trace:
        uns["trace"] = fit.trace
    replace_results(
        adata,
        key,
        var_frame(adata.var_names, genes, columns),
        uns,
        obsm=fit.resp.T.astype(np.float32),
        obs=obs,
    )
