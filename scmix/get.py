"""Getters: results of scmix tools as plain pandas / numpy objects."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from ._core.errors import InputKeyError
from ._fitted import fit_params, fitted_positions, is_shared, stored_responsibilities
from ._schema import FIT_SCHEMA, TECHNICAL_NOISE_SCHEMA, owned_columns
from .tl._goodness_of_fit import quantile_residuals

__all__ = ["mixture_df", "quantile_residuals", "responsibilities", "technical_noise_df"]


def mixture_df(adata: AnnData, *, key: str = "scmix") -> pd.DataFrame:
    """One row per fitted gene with every per-gene result of the fit under ``key``,
    sorted by the evidence for K components (largest delta BIC first).

    Columns are the ``.var`` columns ``{key}_*`` without the prefix: ``bimodal``,
    ``delta_bic``, ``lrt``, ``loglik``, ``loglik_1``, ``bic``, ``bic_1``,
    ``mean_{k}``, ``dispersion_{k}``, ``weight_{k}``, ``single_mean``,
    ``single_dispersion``, ``converged``, ``n_iter`` and, when
    :func:`scmix.tl.goodness_of_fit` ran, ``gof_ks`` / ``gof_pvalue``. The index
    (named ``gene``) holds the gene names; genes not fitted are left out. After
    ``goodness_of_fit(model="one_component")`` there are also ``single_gof_ks`` and
    ``single_gof_pvalue``. For a cell-level fit (``shared=True``) the table starts with
    ``log2_fold_change`` (last over first class mean) and is sorted by it.
    """
    fit_params(adata, key)
    owned = owned_columns(adata.var.columns, key, FIT_SCHEMA)
    columns = {c: c[len(key) + 1 :] for c in owned}
    rows = adata.var.index[fitted_positions(adata, key)]
    table = adata.var.loc[rows, list(columns)].rename(columns=columns)
    if is_shared(adata, key):  # cell-level classes: no per-gene test; rank by separation
        last = adata.uns[key]["n_components"] - 1
        table.insert(0, "log2_fold_change", np.log2(table[f"mean_{last}"] / table["mean_0"]))
        return _sorted(table, "log2_fold_change")
    first = ["bimodal", "delta_bic", "lrt"]
    table = table[first + [c for c in table.columns if c not in first]]
    return _sorted(table, "delta_bic")


def technical_noise_df(adata: AnnData, *, key: str = "noise") -> pd.DataFrame:
    """One row per gene tested by :func:`scmix.tl.technical_noise` under ``key``, the
    strongest first (largest ``z``).

    Columns are the ``.var`` columns ``{key}_*`` without the prefix (``mean``,
    ``dispersion``, ``technical_dispersion``, ``statistic``, ``z``, ``pvalue``, ``padj``,
    ``variable``), with ``ratio`` = dispersion / technical dispersion after
    ``technical_dispersion``. Spike-ins and genes without counts (not tested) are left
    out. The index (named ``gene``) holds the gene names.
    """
    if key not in adata.uns or f"{key}_pvalue" not in adata.var:
        raise InputKeyError(
            f"no technical-noise results under key {key!r}: run "
            f"scmix.tl.technical_noise(adata, key_added={key!r}) first."
        )
    owned = owned_columns(adata.var.columns, key, TECHNICAL_NOISE_SCHEMA)
    columns = {c: c[len(key) + 1 :] for c in owned if c != f"{key}_trend_spike_in"}
    tested = adata.var[f"{key}_pvalue"].notna().to_numpy()
    table = adata.var.loc[tested, list(columns)].rename(columns=columns)
    at = list(table.columns).index("technical_dispersion") + 1
    table.insert(at, "ratio", table["dispersion"] / table["technical_dispersion"])
    return _sorted(table, "z")


def responsibilities(
    adata: AnnData, gene: str | None = None, *, key: str = "scmix"
) -> pd.DataFrame:
    """Each cell's posterior probability of each component,
    :math:`r_{ik} = \\pi_k f_k(x_i) / \\sum_l \\pi_l f_l(x_i)`, for ``gene`` (per-gene
    fits) or for the cell-level classes of a ``shared=True`` fit (``gene`` not needed),
    as a DataFrame: cells (``adata.obs_names``) x ``component_0`` to ``component_{K-1}``.

    Reads the layers ``{key}_responsibility_{k}`` (k = 1 .. K-1; component 0 is one
    minus their sum) of a per-gene fit, or ``.obsm["{key}_responsibilities"]`` of a
    cell-level fit, as :func:`scmix.tl.fit_mixture` stored them
    (``store_responsibilities``); a KeyError says so when they are missing. After a
    cell subset they follow the cells kept (with a warning that the fit was made on
    other cells).
    """
    fit_params(adata, key)
    values = stored_responsibilities(adata, key, gene)
    columns = [f"component_{k}" for k in range(values.shape[1])]
    values = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(values, index=adata.obs_names, columns=columns)


def _sorted(table: pd.DataFrame, column: str) -> pd.DataFrame:
    table = table.sort_values(column, ascending=False, kind="stable")
    table.index.name = "gene"
    return table
