"""Writing a tool's results into an AnnData: all of them, or nothing.

A refit removes every column of an earlier fit under the same key that it does not
write again (the columns of the key's schema, :mod:`scmix._schema`), even when
``.uns`` (which also lists them) was lost, e.g. by ``anndata.concat``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._schema import FIT_OBS_SCHEMA, FIT_SCHEMA, Schema, owned_columns


def var_frame(var_names: pd.Index, rows: np.ndarray, columns: dict) -> pd.DataFrame:
    """``.var`` columns from per-fitted-gene values: row i of each array goes to gene
    ``rows[i]``; the other genes get NaN (floats), False (booleans) or 0 (integers)."""
    full = {}
    for name, values in columns.items():
        values = np.asarray(values)
        fill = False if values.dtype == bool else 0 if values.dtype.kind in "iu" else np.nan
        full[name] = np.full(len(var_names), fill, dtype=values.dtype)
        full[name][rows] = values
    return pd.DataFrame(full, index=var_names)


def component_columns(key: str, means, dispersions, weights, single_means, single_disp) -> dict:
    """The per-component columns ``{key}_mean_{k}``, ``_dispersion_{k}``, ``_weight_{k}``
    (each array genes x K) and the one-component fit's ``{key}_single_*``."""
    columns = {}
    for k in range(means.shape[1]):
        columns[f"{key}_mean_{k}"] = means[:, k]
        columns[f"{key}_dispersion_{k}"] = dispersions[:, k]
        columns[f"{key}_weight_{k}"] = weights[:, k]
    columns[f"{key}_single_mean"] = single_means
    columns[f"{key}_single_dispersion"] = single_disp
    return columns


def replace_results(
    adata: AnnData,
    key: str,
    var: pd.DataFrame,
    uns: dict,
    *,
    schema: Schema = FIT_SCHEMA,
    obsm: np.ndarray | None = None,
    obs: pd.DataFrame | None = None,
) -> None:
    """Put a tool's results under ``key``, removing what an earlier run under the same key
    wrote and this one does not (its schema's columns, and the columns its ``.uns[key]``
    lists), so that no stale column survives. Called only once everything is computed.
    """
    old = adata.uns.get(key) if isinstance(adata.uns.get(key), dict) else {}
    stale_var = set(old.get("var_columns", [])) | set(owned_columns(adata.var, key, schema))
    stale_obs = set(old.get("obs_columns", [])) | set(
        owned_columns(adata.obs, key, FIT_OBS_SCHEMA) if schema is FIT_SCHEMA else []
    )
    new_obs = obs if obs is not None else pd.DataFrame(index=adata.obs_names)
    uns = {**uns, "var_columns": list(var.columns), "obs_columns": list(new_obs.columns)}
    resp_key = f"{key}_responsibilities"
    commit(
        adata,
        var=_merged(adata.var, var, drop=stale_var),
        obs=_merged(adata.obs, new_obs, drop=stale_obs),
        obsm={resp_key: obsm},
        uns={key: uns},
    )


def add_var_columns(adata: AnnData, key: str, var: pd.DataFrame, settings: dict) -> None:
    """Add columns to the fit under ``key`` (listed in its ``.uns[key]["var_columns"]``)
    and merge ``settings`` into ``.uns[key]``: all at once."""
    uns = dict(adata.uns[key])
    written = list(uns.get("var_columns", []))
    uns["var_columns"] = [*written, *(c for c in var.columns if c not in written)]
    for name, value in settings.items():
        uns[name] = {**uns.get(name, {}), **value} if isinstance(value, dict) else value
    commit(adata, var=_merged(adata.var, var, drop=()), uns={key: uns})


def _merged(frame: pd.DataFrame, new: pd.DataFrame, *, drop) -> pd.DataFrame:
    """A copy of ``frame`` without ``drop`` (that are not in ``new``) and with ``new``'s
    columns (values by position; categoricals kept)."""
    result = frame.drop(columns=[c for c in drop if c in frame and c not in new])
    for name in new.columns:
        result[name] = new[name].array
    return result


def commit(
    adata: AnnData,
    *,
    var: pd.DataFrame | None = None,
    obs: pd.DataFrame | None = None,
    obsm: dict | None = None,
    uns: dict | None = None,
) -> None:
    """Assign prepared results to ``adata``, restoring every part if one assignment fails,
    so that ``.var``, ``.obs``, ``.obsm`` and ``.uns`` never disagree. ``obsm`` / ``uns``
    entries set to ``None`` are removed."""
    saved_var, saved_obs = adata.var, adata.obs
    saved_obsm = {name: adata.obsm.get(name) for name in obsm or {}}
    saved_uns = {name: adata.uns.get(name) for name in uns or {}}
    try:
        if var is not None:
            adata.var = var
        if obs is not None:
            adata.obs = obs
        _set_entries(adata.obsm, obsm or {})
        _set_entries(adata.uns, uns or {})
    except BaseException:
        adata.var, adata.obs = saved_var, saved_obs
        _set_entries(adata.obsm, saved_obsm)
        _set_entries(adata.uns, saved_uns)
        raise


def _set_entries(mapping, entries: dict) -> None:
    for name, value in entries.items():
        if value is not None:
            mapping[name] = value
        elif name in mapping:
            del mapping[name]
