"""Writing a tool's results into an AnnData: all of them, or nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def replace_results(
    adata: AnnData,
    key: str,
    var: pd.DataFrame,
    uns: dict,
    *,
    obsm: np.ndarray | None = None,
    obs: pd.DataFrame | None = None,
) -> None:
    """Put a fit's results under ``key``, removing what an earlier fit under the same key
    wrote and this one does not (listed in its ``.uns[key]``), so that no stale column
    survives. Called only once everything is computed: plain assignments from here on.
    """
    old = adata.uns.get(key, {}) if isinstance(adata.uns.get(key), dict) else {}
    stale_var = [c for c in old.get("var_columns", []) if c in adata.var and c not in var]
    stale_obs = [
        c for c in old.get("obs_columns", []) if c in adata.obs and (obs is None or c not in obs)
    ]
    uns = {**uns, "var_columns": list(var.columns)}
    uns["obs_columns"] = [] if obs is None else list(obs.columns)

    adata.var.drop(columns=stale_var, inplace=True)
    adata.obs.drop(columns=stale_obs, inplace=True)
    for name in var.columns:
        adata.var[name] = var[name].to_numpy()
    if obs is not None:
        for name in obs.columns:
            adata.obs[name] = obs[name].array  # keeps categoricals
    resp_key = f"{key}_responsibilities"
    if obsm is not None:
        adata.obsm[resp_key] = obsm
    elif resp_key in adata.obsm:
        del adata.obsm[resp_key]
    adata.uns[key] = uns
