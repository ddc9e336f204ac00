"""A fit stored in an AnnData by :func:`scmix.tl.fit_mixture`, read back for the tools,
getters and plots that use it. Nothing here writes to the AnnData."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from anndata import AnnData

from ._core.errors import InputError, InputKeyError
from ._core.families import Family, get_family
from ._core.validation import check_key
from ._design import stored_design
from ._inputs import check_adata, gene_columns, get_size_factors
from ._schema import responsibility_layer, size_factors_column
from ._warnings import warn

Model = Literal["mixture", "one_component"]


def fit_params(adata: AnnData, key: str, *, warn_cells: bool = True) -> dict:
    """``adata.uns[key]["params"]`` of a fit_mixture run, or a KeyError saying what to run;
    ``warn_cells``: warn when ``adata`` holds other cells than the fit (readers call
    this once with it, their helpers without)."""
    check_adata(adata)
    check_key(key, "key")
    if key not in adata.uns or "params" not in adata.uns[key]:
        raise InputKeyError(
            f"no scmix fit under key {key!r} (adata.uns[{key!r}] is missing): run "
            f"scmix.tl.fit_mixture(adata, key_added={key!r}) first."
        )
    _check_still_matches(adata, key, warn_cells)
    return adata.uns[key]["params"]


def _check_still_matches(adata: AnnData, key: str, warn_cells: bool) -> None:
    """A clear error when the ``.var`` columns of the fit are gone (``.uns`` survived,
    e.g. ``anndata.concat(..., uns_merge="first")``), and a warning when the AnnData
    holds other cells than the fit (a cell subset): the per-cell results (layers,
    size factors) follow the cells kept, the per-gene ones are those of the full fit."""
    stored = adata.uns[key]
    missing = [c for c in stored.get("var_columns", []) if c not in adata.var.columns]
    if missing:
        raise InputKeyError(
            f"the fit under key {key!r} lost its .var columns ({missing[:3]} ... missing) "
            f"although adata.uns[{key!r}] remains: refit with "
            f"scmix.tl.fit_mixture(adata, key_added={key!r})."
        )
    n_fitted = stored.get("n_obs")
    if warn_cells and n_fitted is not None and int(n_fitted) != adata.n_obs:
        warn(
            f"adata has {adata.n_obs} cells but the fit under key {key!r} was made on "
            f"{int(n_fitted)}: its parameters, log-likelihoods and BIC are those of the "
            "cells it was fitted to; responsibilities and size factors follow the cells "
            "kept. Refit to describe these cells alone."
        )


def fitted_positions(adata: AnnData, key: str) -> np.ndarray:
    """Positions in ``adata.var`` of the genes with parameters under ``key`` (per-gene or
    cell-level fit): those with a finite one-component mean."""
    fit_params(adata, key, warn_cells=False)
    return np.flatnonzero(np.isfinite(adata.var[f"{key}_single_mean"].to_numpy(dtype=float)))


def is_shared(adata: AnnData, key: str) -> bool:
    """Is the fit under ``key`` a cell-level mixture (``fit_mixture(shared=True)``)?"""
    return bool(fit_params(adata, key, warn_cells=False).get("shared", False))


def require_per_gene(adata: AnnData, key: str, what: str) -> None:
    """A clear error for tools that need the per-gene model selection of a fit."""
    if is_shared(adata, key):
        raise InputError(
            f"{what} needs per-gene fits, but key {key!r} holds a cell-level mixture "
            "(shared=True): fit per gene with scmix.tl.fit_mixture(adata, key_added=...)."
        )


def fitted_gene(adata: AnnData, gene: str, key: str) -> int:
    """Position of a gene that the fit under ``key`` covers."""
    fit_params(adata, key, warn_cells=False)
    if gene not in adata.var_names:
        raise InputKeyError(f"gene {gene!r} is not in adata.var_names.")
    position = adata.var_names.get_loc(gene)
    if position not in fitted_positions(adata, key):
        raise InputError(
            f"gene {gene!r} was not fitted under key {key!r} (outside mask_var, or no counts)."
        )
    return position


def stored_responsibilities(adata: AnnData, key: str, gene: str | None = None) -> np.ndarray:
    """The responsibilities (cells, K) float64 stored by the fit under ``key``: of
    ``gene`` for per-gene fits (from the layers ``{key}_responsibility_{k}``, k >= 1;
    component 0 is one minus their sum), of the cell-level classes for a shared fit
    (``.obsm``; ``gene`` is then not needed). KeyError / ValueError naming what is
    missing."""
    params = fit_params(adata, key, warn_cells=False)
    n_comp = int(params["n_components"])
    if params.get("shared"):
        resp_key = f"{key}_responsibilities"
        if resp_key not in adata.obsm:
            raise InputKeyError(
                f"adata.obsm[{resp_key!r}] is missing: refit with fit_mixture(..., "
                f"key_added={key!r}, shared=True)."
            )
        return np.asarray(adata.obsm[resp_key], dtype=np.float64)
    if gene is None:
        raise InputError(f"key {key!r} holds per-gene fits: name the gene.")
    names = [responsibility_layer(key, k) for k in range(1, n_comp)]
    absent = [name for name in names if name not in adata.layers]
    if absent:
        raise InputKeyError(
            f"adata.layers[{absent[0]!r}] is missing: run fit_mixture(..., "
            f"key_added={key!r}, store_responsibilities=True)."
        )
    position = fitted_gene(adata, gene, key)
    if n_comp == 1:  # one component: every cell belongs to it
        return np.ones((adata.n_obs, 1))
    upper = np.column_stack([_layer_column(adata.layers[name], position) for name in names])
    return np.column_stack([1.0 - upper.sum(axis=1), upper])


def _layer_column(layer, position: int) -> np.ndarray:
    """One gene's column of a dense or backed layer, as float64."""
    return np.asarray(layer[:, position], dtype=np.float64).ravel()


def gene_counts(adata: AnnData, positions, layer: str | None) -> np.ndarray:
    """Counts of the genes at ``positions`` as float64 (genes, cells), validated."""
    return gene_columns(adata, layer, np.atleast_1d(np.asarray(positions))).block(slice(None))


def fit_size_factors(adata: AnnData, params: dict, size_factors=None) -> np.ndarray:
    """The size factors of the fit, validated: given, or the ``.obs`` key it recorded,
    or, for size factors given as an array, the ``.obs["{key}_size_factors"]`` column
    the fit wrote (ones for a fit without size factors)."""
    if size_factors is not None:
        return get_size_factors(adata, size_factors)
    recorded = params["size_factors"]
    if recorded is None:
        return np.ones(adata.n_obs)
    if recorded == "array":
        recorded = size_factors_column(params["key_added"])
    if recorded not in adata.obs.columns:
        raise InputKeyError(
            f"the fit used the size factors adata.obs[{recorded!r}], which is gone: put "
            "them back, or pass them with size_factors=."
        )
    return get_size_factors(adata, recorded)


def gene_exposures(
    adata: AnnData, key: str, sf: np.ndarray, positions, model: Model = "mixture"
) -> np.ndarray:
    """Each cell's multiplier of the fitted means, (genes, cells): the size factors
    ``sf``, times :math:`\\exp(z_i^\top\\gamma_j)` for a fit with covariates (the
    ``{key}_coef_*`` columns; ``{key}_single_coef_*`` for the one-component model)."""
    params = fit_params(adata, key, warn_cells=False)
    positions = np.atleast_1d(np.asarray(positions))
    if not params.get("covariates"):
        return np.broadcast_to(sf, (positions.size, sf.size))
    prefix = f"{key}_coef_" if model == "mixture" else f"{key}_single_coef_"
    names = [prefix + column for column in params["design_columns"]]
    gamma = adata.var.iloc[positions][names].to_numpy(dtype=np.float64)
    return sf[None, :] * np.exp(np.einsum("gq,cq->gc", gamma, stored_design(adata.obs, params)))


@dataclass
class StoredModel:
    """Parameters of the fitted genes, as the engine uses them."""

    family: Family
    positions: np.ndarray  # fitted genes, positions in adata.var
    params: dict[str, np.ndarray]  # each (genes, K)
    weights: np.ndarray  # (genes, K)


def stored_components(adata: AnnData, key: str, positions) -> tuple[np.ndarray, ...]:
    """Means, dispersions and weights (genes, K) of the genes at ``positions`` under
    ``key``: the one reader of the ``{key}_mean_{k}`` / ``_dispersion_{k}`` /
    ``_weight_{k}`` columns (written by ``tl._write.component_columns``)."""
    n_comp = fit_params(adata, key, warn_cells=False)["n_components"]
    rows = adata.var.iloc[np.atleast_1d(positions)]
    return tuple(
        np.column_stack([rows[f"{key}_{what}_{k}"] for k in range(n_comp)]).astype(float)
        for what in ("mean", "dispersion", "weight")
    )


def stored_model(adata: AnnData, key: str, model: Model = "mixture") -> StoredModel:
    """The K-component (``"mixture"``) or the one-component fit stored under ``key``."""
    params = fit_params(adata, key, warn_cells=False)
    if model not in ("mixture", "one_component"):
        raise InputError(f"model must be 'mixture' or 'one_component', got {model!r}.")
    family = get_family(params["family"])
    positions = fitted_positions(adata, key)
    if model == "mixture":
        mean, phi, weights = stored_components(adata, key, positions)
    else:
        rows = adata.var.iloc[positions]
        mean = rows[[f"{key}_single_mean"]].to_numpy()
        phi = rows[[f"{key}_single_dispersion"]].to_numpy()
        weights = np.ones_like(mean)
    model_params = family.params_from_summary(mean.astype(float), phi.astype(float))
    return StoredModel(family, positions, model_params, weights.astype(float))
