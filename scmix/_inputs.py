"""The one validation layer between an AnnData and the engine.

Every public entry point (``pp``, ``tl``, ``get``, ``pl``, the CLI) reads what it needs
from an AnnData through these functions, so that each kind of input (the AnnData itself,
counts, size factors, gene masks, boolean flags, keys) is checked in exactly one place.
Problems raise :class:`~scmix._core.errors.InputError` (or ``InputKeyError``) naming the
argument or key. Nothing here writes to the AnnData.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._core import validation
from ._core.errors import InputError, InputKeyError
from ._core.fit.chunks import GeneColumns
from ._core.fit.matrix import is_dask

_SHOW = 5
#: Cells read at a time from a backed sparse matrix.
_BACKED_ROWS = 4096


def check_adata(adata) -> AnnData:
    """An AnnData with cells, genes and unique gene names."""
    if not isinstance(adata, AnnData):
        raise InputError(f"adata must be an AnnData, got {type(adata).__name__}.")
    if adata.n_obs == 0:
        raise InputError("adata has no cells (n_obs = 0).")
    if adata.n_vars == 0:
        raise InputError("adata has no genes (n_vars = 0).")
    names = adata.var_names
    if names.has_duplicates:
        duplicated = names[names.duplicated()].unique()
        raise InputError(
            f"adata.var_names are not unique: {_listed(duplicated)} occur more than once. "
            "Run adata.var_names_make_unique() first."
        )
    return adata


def get_counts(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]`` (not copied; backed sparse data stays on disk)."""
    if layer is None:
        counts = adata.X
        if counts is None:
            raise InputError("adata.X is empty: pass layer= to name the layer that holds counts.")
    else:
        if not isinstance(layer, str):
            raise InputError(f"layer must be a layer name (a string) or None, got {layer!r}.")
        if layer not in adata.layers:
            raise InputKeyError(
                f"layer {layer!r} is not in adata.layers (available: {sorted(adata.layers)})."
            )
        counts = adata.layers[layer]
    # named as the user reaches it: where the array lives, not what it holds
    validation.refuse_masked(counts, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    return counts


def is_backed_sparse(counts) -> bool:
    """An anndata on-disk sparse matrix (``read_h5ad(..., backed="r")`` with sparse X)?"""
    return type(counts).__module__.startswith("anndata") and getattr(counts, "format", None) in (
        "csr",
        "csc",
    )


def read_columns(counts, positions: np.ndarray):
    """The columns ``positions`` of a backed sparse matrix, read into memory (CSC) cell
    block by cell block; any other matrix is returned as it is."""
    if not is_backed_sparse(counts):
        return counts
    if counts.format == "csc":
        return sparse.csc_matrix(counts[:, positions])
    n_cells = counts.shape[0]
    blocks = [
        counts[start : min(start + _BACKED_ROWS, n_cells)][:, positions]
        for start in range(0, n_cells, _BACKED_ROWS)
    ]
    return sparse.vstack(blocks, format="csc")


def gene_columns(adata: AnnData, layer: str | None, positions: np.ndarray) -> GeneColumns:
    """The counts of the genes at ``positions``, validated, as :class:`GeneColumns`."""
    counts = get_counts(adata, layer)
    if is_backed_sparse(counts):
        columns = GeneColumns(read_columns(counts, positions))
    else:
        every = np.array_equal(positions, np.arange(adata.n_vars))
        columns = GeneColumns(counts, None if every else positions)
    validation.check_counts(
        columns,
        what=_counts_name(layer),
        cell_names=adata.obs_names,
        gene_names=adata.var_names[positions],
    )
    return columns


def _counts_name(layer: str | None) -> str:
    return "X" if layer is None else f"layer {layer!r}"


def bool_column(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """A boolean column of ``.obs`` / ``.var`` as a numpy bool array; strings such as
    ``"True"``, numbers and missing values are refused (they would all read as True)."""
    values = frame[column]
    if not pd.api.types.is_bool_dtype(values.dtype):
        raise InputError(
            f"{what} must be boolean, got dtype {values.dtype}"
            + (
                " (strings such as 'True' / 'False' are not flags: convert with == 'True')."
                if values.dtype == object
                else "."
            )
        )
    if values.isna().any():
        raise InputError(
            f"{what} has {int(values.isna().sum())} missing value(s) (<NA>): fill them "
            "first, e.g. with .fillna(False)."
        )
    return values.to_numpy(dtype=bool)


def gene_mask(adata: AnnData, mask_var) -> np.ndarray:
    """Boolean mask over ``adata.var_names`` from a ``.var`` column, a boolean array or
    Series (a Series aligned on ``var_names``), or gene names."""
    if mask_var is None:
        mask = np.ones(adata.n_vars, dtype=bool)
    elif isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            raise InputKeyError(
                f"mask_var {mask_var!r} is not a column of adata.var "
                f"(columns: {list(adata.var.columns)})."
            )
        mask = bool_column(adata.var, mask_var, f"mask_var column {mask_var!r}")
    else:
        mask = _mask_from_values(adata, mask_var)
    if not mask.any():
        which = f" {mask_var!r}" if isinstance(mask_var, str) else ""
        raise InputError(f"mask_var{which} selects no gene (of {adata.n_vars}).")
    return mask


def _mask_from_values(adata: AnnData, mask_var) -> np.ndarray:
    validation.refuse_masked(mask_var, "mask_var")
    if isinstance(mask_var, pd.Series) and pd.api.types.is_bool_dtype(mask_var.dtype):
        values = validation.aligned(mask_var, adata.var_names, "mask_var", "genes")
        if values.isna().any():
            raise InputError(
                f"mask_var has {int(values.isna().sum())} missing value(s) (<NA>): fill them first."
            )
        return values.to_numpy(dtype=bool)
    values = np.asarray(mask_var)
    if values.dtype == bool:
        if values.shape != (adata.n_vars,):
            raise InputError(
                f"a boolean mask_var must have one entry per gene ({adata.n_vars}), "
                f"got shape {values.shape}."
            )
        return values
    if values.size and values.dtype.kind not in "USO":
        raise InputError(
            f"mask_var must be a boolean mask or gene names, got values of dtype {values.dtype}"
            " (for positions use adata.var_names[positions])."
        )
    names = [str(n) for n in np.ravel(values)]
    unknown = [n for n in names if n not in adata.var_names]
    if unknown:
        raise InputKeyError(f"mask_var names genes not in adata.var_names: {_listed(unknown)}.")
    return adata.var_names.isin(names)


def _listed(values) -> str:
    values = list(values)
    more = f" (and {len(values) - _SHOW} more)" if len(values) > _SHOW else ""
    return f"{values[:_SHOW]}{more}"


def get_size_factors(adata: AnnData, size_factors) -> np.ndarray:
    """Size factors from a ``.obs`` key, an array of length n_obs, a pandas Series (aligned
    on ``obs_names``) or ``None`` (all ones); numeric, positive and finite."""
    if size_factors is None:
        return np.ones(adata.n_obs)
    if isinstance(size_factors, str):
        if size_factors not in adata.obs.columns:
            raise InputKeyError(
                f"size_factors {size_factors!r} is not a column of adata.obs: compute it "
                "first (e.g. scmix.pp.size_factors), pass an array, or pass None for no offsets."
            )
        column = adata.obs[size_factors]  # in cell order already: not aligned again
        return validation.check_size_factors(
            column,
            adata.n_obs,
            what=f"adata.obs[{size_factors!r}]",
            cell_names=adata.obs_names,
            align=False,
        )
    return validation.check_size_factors(
        size_factors, adata.n_obs, what="size_factors", cell_names=adata.obs_names
    )


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
    check_adata(adata)
    counts = get_counts(adata, layer)
    genes = gene_mask(adata, mask_var)
    sf = get_size_factors(adata, size_factors)
    selected = np.flatnonzero(genes)
    if is_dask(counts):
        X = counts if genes.all() else counts[:, selected]
        names = np.asarray(adata.var_names[selected])
        check = partial(_check_block, what=_counts_name(layer), cells=adata.obs_names, genes=names)
        return X, selected, sf, check
    return gene_columns(adata, layer, selected), selected, sf, None


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
