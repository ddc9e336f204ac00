"""Getters: results of scmix tools as plain pandas / numpy objects."""

from __future__ import annotations

import re

import pandas as pd
from anndata import AnnData

from ._fitted import fit_params
from .tl._goodness_of_fit import quantile_residuals

__all__ = ["mixture_df", "quantile_residuals"]


def mixture_df(adata: AnnData, key: str = "scmix") -> pd.DataFrame:
    """One row per fitted gene with every per-gene result of the fit under ``key``,
    sorted by the evidence for K components (largest delta BIC first).

    Columns are the ``.var`` columns ``{key}_*`` without the prefix: ``bimodal``,
    ``delta_bic``, ``lrt``, ``loglik``, ``loglik_1``, ``bic``, ``bic_1``,
    ``mean_{k}``, ``dispersion_{k}``, ``weight_{k}``, ``single_mean``,
    ``single_dispersion``, ``converged``, ``n_iter`` and, when
    :func:`scmix.tl.goodness_of_fit` ran, ``gof_ks`` / ``gof_pvalue``. The index
    (named ``gene``) holds the gene names; genes not fitted are left out.
    """
    fit_params(adata, key)
    pattern = re.compile(rf"{re.escape(key)}_(.+)")
    columns = {c: pattern.fullmatch(c).group(1) for c in adata.var.columns if pattern.fullmatch(c)}
    table = adata.var.loc[adata.var[f"{key}_loglik"].notna(), list(columns)].rename(columns=columns)
    first = ["bimodal", "delta_bic", "lrt"]
    table = table[first + [c for c in table.columns if c not in first]]
    table = table.sort_values("delta_bic", ascending=False, kind="stable")
    table.index.name = "gene"
    return table
