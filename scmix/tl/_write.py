"""Writing a tool's results into an AnnData: all of them, or nothing.

A refit removes every column and layer of an earlier fit under the same key that it
does not write again (the columns of the key's schema, :mod:`scmix._schema`), even when
``.uns`` (which also lists them) was lost, e.g. by ``anndata.concat``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import __version__
from .._core.stats import selection
from .._schema import (
    FIT_LAYER_SCHEMA,
    FIT_OBS_SCHEMA,
    FIT_SCHEMA,
    Schema,
    owned_columns,
    responsibility_layer,
)


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


def responsibility_layers(key: str, resp, selected, n_vars: int) -> dict:
    """``{key}_responsibility_{k}`` (k >= 1): (cells, n_vars) float32, NaN off the fit."""
    if resp is None:
        return {}
    layers = {}
    for k in range(1, resp.shape[2]):
        layer = np.full((resp.shape[0], n_vars), np.nan, dtype=np.float32)
        layer[:, selected] = resp[:, :, k]
        layers[responsibility_layer(key, k)] = layer
    return layers


def replace_results(
    adata: AnnData,
    key: str,
    var: pd.DataFrame,
    uns: dict,
    *,
    schema: Schema = FIT_SCHEMA,
    obsm: np.ndarray | None = None,
    obs: pd.DataFrame | None = None,
    layers: dict[str, np.ndarray] | None = None,
) -> None:
    """Put a tool's results under ``key``, removing what an earlier run under the same key
    wrote and this one does not (its schema's ``.var`` / ``.obs`` columns and ``.layers``,
    and what its ``.uns[key]`` lists), so that no stale result survives. Called only once
    everything is computed.
    """
    old = adata.uns.get(key) if isinstance(adata.uns.get(key), dict) else {}
    fit = schema is FIT_SCHEMA
    stale_var = set(old.get("var_columns", [])) | set(owned_columns(adata.var, key, schema))
    stale_obs = set(old.get("obs_columns", [])) | set(
        owned_columns(adata.obs, key, FIT_OBS_SCHEMA) if fit else []
    )
    layers = dict(layers or {})
    stale_layers = set(old.get("layers", [])) | set(
        owned_columns(adata.layers.keys(), key, FIT_LAYER_SCHEMA) if fit else []
    )
    new_obs = obs if obs is not None else pd.DataFrame(index=adata.obs_names)
    uns = {
        **uns,
        "var_columns": list(var.columns),
        "obs_columns": list(new_obs.columns),
        "layers": list(layers),
    }
    commit(
        adata,
        var=_merged(adata.var, var, drop=stale_var),
        obs=_merged(adata.obs, new_obs, drop=stale_obs),
        obsm={f"{key}_responsibilities": obsm},
        layers={**dict.fromkeys(stale_layers - set(layers)), **layers},
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
    layers: dict | None = None,
    uns: dict | None = None,
) -> None:
    """Assign prepared results to ``adata``, restoring every part if one assignment fails,
    so that ``.var``, ``.obs``, ``.obsm``, ``.layers`` and ``.uns`` never disagree.
    ``obsm`` / ``layers`` / ``uns`` entries set to ``None`` are removed."""
    saved_var, saved_obs = adata.var, adata.obs
    entries = [(adata.obsm, obsm or {}), (adata.layers, layers or {}), (adata.uns, uns or {})]
    saved = [(mapping, {name: mapping.get(name) for name in new}) for mapping, new in entries]
    try:
        if var is not None:
            adata.var = var
        if obs is not None:
            adata.obs = obs
        for mapping, new in entries:
            _set_entries(mapping, new)
    except BaseException:
        adata.var, adata.obs = saved_var, saved_obs
        for mapping, old in saved:
            _set_entries(mapping, old)
        raise


def _set_entries(mapping, entries: dict) -> None:
    for name, value in entries.items():
        if value is not None:
            mapping[name] = value
        elif name in mapping:
            del mapping[name]


def write_fit(adata: AnnData, key: str, selected, fit, params: dict, *, extra: dict, obs) -> None:
    """Write every output of a fit without covariates at once (the columns are built
    first, then assigned); the call follows ``params["call"]``."""
    columns = component_columns(
        key,
        fit.params["mu"],
        fit.dispersion,
        fit.weights,
        fit.single.params["mu"][:, 0],
        fit.single.dispersion[:, 0],
    )
    table = selection.model_selection_table(
        fit, adata.n_obs, bic_threshold=params["bic_threshold"], min_weight=params["min_weight"]
    )
    table.update(extra)
    if params["call"] == "padj":
        mixture = (fit.weights, fit.converged, fit.params["mu"], fit.dispersion)
        table["bimodal"] = call_by_padj(table["lrt_padj"], mixture, params) & fit.fitted
    columns.update({f"{key}_{name}": values for name, values in table.items()})
    columns[f"{key}_converged"] = fit.converged
    columns[f"{key}_n_iter"] = fit.n_iter
    new_var = var_frame(adata.var_names, selected, columns)
    uns = {
        "params": params,
        "var_names": np.asarray(adata.var_names[selected], dtype=object),
        "n_obs": adata.n_obs,
        "n_components": fit.n_components,
        "family": fit.family.name,
        "version": __version__,
    }
    if fit.trace is not None:
        uns["trace"] = fit.trace

    layers = responsibility_layers(key, fit.resp, selected, adata.n_vars)
    fit.resp = None  # the layers hold them now: free the engine's copy
    replace_results(adata, key, new_var, uns, obs=obs, layers=layers)


def call_by_padj(padj: np.ndarray, mixture: tuple, params: dict) -> np.ndarray:
    """``call="padj"``: adjusted p-value at most ``params["padj_threshold"]``, and a proper
    mixture (``mixture``: weights, converged, means and dispersions, as for the BIC call)."""
    with np.errstate(invalid="ignore"):
        evidence = padj <= params["padj_threshold"]
    return evidence & selection.a_proper_mixture(*mixture, params["min_weight"])
