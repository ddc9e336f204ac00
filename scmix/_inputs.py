"""Reading what a tool needs from an AnnData, with errors that name the key.

Nothing here writes to the AnnData.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd
from anndata import AnnData

from ._core import validation
from ._core.chunks import GeneColumns
from ._core.fit import is_dask


def get_counts(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]`` (not copied)."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty: pass layer= to name the layer that holds counts.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"layer {layer!r} is not in adata.layers (available: {sorted(adata.layers.keys())})."
        )
    return adata.layers[layer]


def gene_mask(adata: AnnData, mask_var) -> np.ndarray:
    """Boolean mask over ``adata.var_names`` from a ``.var`` column, an array or gene names."""
    n_vars = adata.n_vars
    if mask_var is None:
        mask = np.ones(n_vars, dtype=bool)
    elif isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            raise KeyError(
                f"mask_var {mask_var!r} is not a column of adata.var "
                f"(columns: {list(adata.var.columns)})."
            )
        column = adata.var[mask_var]
        if not pd.api.types.is_bool_dtype(column):
            raise ValueError(
                f"mask_var column {mask_var!r} must be boolean, got dtype {column.dtype}."
            )
        mask = column.to_numpy(dtype=bool)
    else:
        values = np.asarray(mask_var)
        if values.dtype == bool:
            if values.shape != (n_vars,):
                raise ValueError(
                    f"a boolean mask_var must have one entry per gene ({n_vars}), "
                    f"got shape {values.shape}."
                )
            mask = values
        else:
            mask = _mask_from_names(adata, values)
    if not mask.any():
        raise ValueError(f"mask_var {_short(mask_var)} selects no gene.")
    return mask


def _mask_from_names(adata: AnnData, names: Sequence[str]) -> np.ndarray:
    names = [str(n) for n in np.ravel(names)]
    index = adata.var_names
    unknown = [n for n in names if n not in index]
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise KeyError(f"mask_var names genes not in adata.var_names: {unknown[:5]}{more}.")
    return index.isin(names)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def get_size_factors(adata: AnnData, size_factors) -> np.ndarray:
    """Size factors from a ``.obs`` key, an array of length n_obs, or ``None`` (all ones)."""
    if size_factors is None:
        return np.ones(adata.n_obs)
    if isinstance(size_factors, str):
        if size_factors not in adata.obs.columns:
            raise KeyError(
                f"size_factors {size_factors!r} is not a column of adata.obs: compute it "
                "first (e.g. scmix.pp.size_factors), pass an array, or pass None for no offsets."
            )
        what = f"adata.obs[{size_factors!r}]"
        values = adata.obs[size_factors].to_numpy()
    else:
        what = "size_factors"
        values = size_factors
    return validation.check_size_factors(values, adata.n_obs, what=what, cell_names=adata.obs_names)


def describe_size_factors(size_factors) -> str | None:
    """How the size factors were given, for ``.uns[key]["params"]``."""
    if size_factors is None or isinstance(size_factors, str):
        return size_factors
    return "array"


def describe_mask(mask_var):
    if mask_var is None or isinstance(mask_var, str):
        return mask_var
    values = np.asarray(mask_var)
    return "boolean array" if values.dtype == bool else [str(v) for v in np.ravel(values)]


def fit_inputs(adata: AnnData, layer, mask_var, size_factors):
    """What a fit reads, validated: the selected gene columns, their positions in
    ``adata.var``, the size factors, and ``check`` (None, or for a dask array the
    validation each gene block runs before it is fitted: checking the whole array up
    front would read it twice). Raises before anything is computed."""
    counts = get_counts(adata, layer)
    genes = gene_mask(adata, mask_var)
    sf = get_size_factors(adata, size_factors)
    selected = np.flatnonzero(genes)
    what = "X" if layer is None else f"layer {layer!r}"
    if is_dask(counts):
        X = counts if genes.all() else counts[:, selected]
        names = np.asarray(adata.var_names[selected])
        return X, selected, sf, partial(_check_block, what=what, cells=adata.obs_names, genes=names)
    X = GeneColumns(counts, None if genes.all() else selected)
    validation.check_counts(
        X, what=what, cell_names=adata.obs_names, gene_names=adata.var_names[selected]
    )
    return X, selected, sf, None


def _check_block(block, first_gene: int, *, what, cells, genes) -> None:
    """Counts check of one gene block of a dask array (its genes named)."""
    validation.check_counts(
        block,
        what=what,
        cell_names=cells,
        gene_names=genes[first_gene : first_gene + block.shape[1]],
    )


def in_memory(X, check) -> GeneColumns:
    """The selected columns as in-memory :class:`GeneColumns` (a dask array is computed
    and checked), for the fits that need every gene at once."""
    if not is_dask(X):
        return X
    block = X.compute()
    check(block, 0)
    return GeneColumns(block)
