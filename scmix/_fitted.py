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
from ._inputs import check_adata, gene_columns, get_size_factors

Model = Literal["mixture", "one_component"]


def fit_params(adata: AnnData, key: str) -> dict:
    """``adata.uns[key]["params"]`` of a fit_mixture run, or a KeyError saying what to run."""
    check_adata(adata)
    check_key(key, "key")
    if key not in adata.uns or "params" not in adata.uns[key]:
        raise InputKeyError(
            f"no scmix fit under key {key!r} (adata.uns[{key!r}] is missing): run "
            f"scmix.tl.fit_mixture(adata, key_added={key!r}) first."
        )
    return adata.uns[key]["params"]


def fitted_positions(adata: AnnData, key: str) -> np.ndarray:
    """Positions in ``adata.var`` of the genes with parameters under ``key`` (per-gene or
    cell-level fit): those with a finite one-component mean."""
    fit_params(adata, key)
    return np.flatnonzero(np.isfinite(adata.var[f"{key}_single_mean"].to_numpy(dtype=float)))


def is_shared(adata: AnnData, key: str) -> bool:
    """Is the fit under ``key`` a cell-level mixture (``fit_mixture(shared=True)``)?"""
    return bool(fit_params(adata, key).get("shared", False))


def require_per_gene(adata: AnnData, key: str, what: str) -> None:
    """A clear error for tools that need the per-gene model selection of a fit."""
    if is_shared(adata, key):
        raise InputError(
            f"{what} needs per-gene fits, but key {key!r} holds a cell-level mixture "
            "(shared=True): fit per gene with scmix.tl.fit_mixture(adata, key_added=...)."
        )


def fitted_gene(adata: AnnData, gene: str, key: str) -> int:
    """Position of a gene that the fit under ``key`` covers."""
    fit_params(adata, key)
    if gene not in adata.var_names:
        raise InputKeyError(f"gene {gene!r} is not in adata.var_names.")
    position = adata.var_names.get_loc(gene)
    if position not in fitted_positions(adata, key):
        raise InputError(
            f"gene {gene!r} was not fitted under key {key!r} (outside mask_var, or no counts)."
        )
    return position


def stored_responsibilities(adata: AnnData, key: str, gene: str | None = None) -> np.ndarray:
    """The responsibilities (cells, K) stored by the fit under ``key``: of ``gene`` for
    per-gene fits, of the cell-level classes for a shared fit (``gene`` is then not
    needed). KeyError / ValueError naming what is missing."""
    params = fit_params(adata, key)
    resp_key = f"{key}_responsibilities"
    if resp_key not in adata.obsm:
        raise InputKeyError(
            f"adata.obsm[{resp_key!r}] is missing: run fit_mixture(..., key_added={key!r}, "
            "store_responsibilities=True)."
        )
    if params.get("shared"):
        return adata.obsm[resp_key]
    if gene is None:
        raise InputError(f"key {key!r} holds per-gene fits: name the gene.")
    fitted_gene(adata, gene, key)
    column = list(adata.uns[key]["var_names"]).index(gene)
    return adata.obsm[resp_key][:, column, :]


def gene_counts(adata: AnnData, positions, layer: str | None) -> np.ndarray:
    """Counts of the genes at ``positions`` as float64 (genes, cells), validated."""
    return gene_columns(adata, layer, np.atleast_1d(np.asarray(positions))).block(slice(None))


def fit_size_factors(adata: AnnData, params: dict, size_factors=None) -> np.ndarray:
    """The size factors of the fit, validated: given, or the ``.obs`` key it recorded
    (ones for a fit without size factors)."""
    if size_factors is not None:
        return get_size_factors(adata, size_factors)
    recorded = params["size_factors"]
    if recorded is None:
        return np.ones(adata.n_obs)
    if recorded == "array" or recorded not in adata.obs.columns:
        raise InputError(
            f"the fit used size factors {recorded!r} that are not in adata.obs: pass them "
            "with size_factors=."
        )
    return get_size_factors(adata, recorded)


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
    n_comp = fit_params(adata, key)["n_components"]
    rows = adata.var.iloc[np.atleast_1d(positions)]
    return tuple(
        np.column_stack([rows[f"{key}_{what}_{k}"] for k in range(n_comp)]).astype(float)
        for what in ("mean", "dispersion", "weight")
    )


def stored_model(adata: AnnData, key: str, model: Model = "mixture") -> StoredModel:
    """The K-component (``"mixture"``) or the one-component fit stored under ``key``."""
    params = fit_params(adata, key)
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
