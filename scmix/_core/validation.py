"""Checks of array inputs, with messages that name the offending genes and cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .fit.chunks import GeneColumns, iter_chunks
from .settings import DEFAULT_MEMORY_BYTES, FitSettings

_SHOW = 5


def _first(names: Sequence[str] | None, positions: np.ndarray) -> str:
    positions = np.asarray(positions)[:_SHOW]
    if names is None:
        return ", ".join(str(int(p)) for p in positions)
    return ", ".join(repr(str(names[int(p)])) for p in positions)


def describe_positions(kind: str, names, positions: np.ndarray) -> str:
    """'genes 'a', 'b' (and 3 more)': the first offending names (or positions)."""
    more = f" (and {len(positions) - _SHOW} more)" if len(positions) > _SHOW else ""
    label = "" if names is not None else " at positions"
    return f"{kind}{label} {_first(names, positions)}{more}"


def refuse_masked(values, what: str) -> None:
    """numpy masked arrays are refused: scmix would silently use the masked values."""
    if isinstance(values, np.ma.MaskedArray):
        raise InputError(
            f"{what} is a numpy masked array: scmix does not ignore masked entries. Remove "
            "the masked cells or genes, or fill them (values.filled(...)) if they are valid."
        )


def check_counts(
    X,
    *,
    what: str = "X",
    cell_names: Sequence[str] | None = None,
    gene_names: Sequence[str] | None = None,
) -> None:
    """Raise ``ValueError`` unless X holds finite, non-negative integer counts.

    ``X`` is an array, a sparse matrix or a :class:`~scmix._core.fit.chunks.GeneColumns`
    selection (``gene_names`` then name the selected genes). Dense input is checked
    in blocks of genes, so that no full-size temporary is made. The message names
    ``what`` (e.g. ``"layer 'counts'"``), the problem and the first offending genes
    and cells.
    """
    columns = X if isinstance(X, GeneColumns) else GeneColumns(X)
    refuse_masked(columns.matrix, what)
    if columns.is_sparse:
        coo = columns.matrix.tocoo()
        _check_values(coo.data, coo.row, coo.col, what, cell_names, gene_names)
        return
    for chunk in iter_chunks(columns.n_genes, _CHECK_BLOCK):
        block = np.asarray(columns.raw_block(chunk))
        _check_values(block, None, None, what, cell_names, gene_names, offset=chunk.start)


_CHECK_BLOCK = 1024


def _check_values(values, rows, cols, what, cell_names, gene_names, offset=0) -> None:
    """Check count values; ``rows`` / ``cols`` give their positions (None: 2-D block)."""
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise InputError(f"{what} must be numeric counts, got dtype {values.dtype}.")
    if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
        signed = np.issubdtype(values.dtype, np.signedinteger)
        problems = [("negative", values < 0)] if signed else []
    else:
        with np.errstate(invalid="ignore"):
            problems = [
                ("NaN", np.isnan(values)),
                ("infinite", np.isinf(values)),
                ("negative", values < 0),
                ("non-integer", np.isfinite(values) & (values != np.round(values))),
            ]
    for label, bad in problems:
        if not bad.any():
            continue
        if rows is None:
            bad_cells, bad_genes = np.nonzero(bad)
        else:
            bad_cells, bad_genes = rows[bad], cols[bad]
        genes = np.unique(bad_genes) + offset
        cells = np.unique(bad_cells)
        raise InputError(
            f"{what} must hold non-negative integer counts, but has {int(bad.sum())} "
            f"{label} value(s): in {describe_positions('genes', gene_names, genes)}; "
            f"{describe_positions('cells', cell_names, cells)}."
        )


def check_size_factors(
    size_factors,
    n_cells: int,
    *,
    what: str = "size_factors",
    cell_names: Sequence[str] | None = None,
    align: bool = True,
) -> np.ndarray:
    """Return size factors as float64 after checking type, length, finiteness and positivity.

    A pandas Series is aligned on ``cell_names`` by its index (an error names the cells
    it lacks); without cell names its index must be the default ``0 .. n-1``.
    ``align=False``: a Series that is already in cell order (a column of ``.obs``), used
    by position. Boolean, string and masked values are refused rather than converted.
    """
    if isinstance(size_factors, pd.Series) and not align:
        size_factors = size_factors.reset_index(drop=True)
        values = numeric_vector(size_factors, what)
    else:
        values = numeric_vector(size_factors, what, labels=cell_names, kind="cells")
    if values.shape[0] != n_cells:
        raise InputError(
            f"{what} must have one value per cell ({n_cells}), got shape {values.shape}."
        )
    for label, bad in (
        ("NaN", np.isnan(values)),
        ("infinite", np.isinf(values)),
        ("zero", values == 0),
        ("negative", values < 0),
    ):
        if bad.any():
            raise InputError(
                f"{what} must be positive and finite, but {int(bad.sum())} are {label}: "
                f"{describe_positions('cells', cell_names, np.flatnonzero(bad))}."
            )
    return values


def aligned(values, labels: Sequence[str] | None, what: str, kind: str):
    """A pandas Series reindexed to ``labels`` (one entry each); other input as it is.

    Missing labels, duplicate labels, and (without ``labels``) an index that is not the
    default ``0 .. n-1`` raise :class:`InputError` naming ``what``.
    """
    if not isinstance(values, pd.Series):
        return values
    index = values.index
    if labels is None:
        if not index.equals(pd.RangeIndex(len(values))):
            raise InputError(
                f"{what} is a pandas Series with labels, but there are no {kind[:-1]} names to "
                f"align it with: pass {what}.to_numpy() to use it by position."
            )
        return values
    labels = pd.Index(labels)
    if index.has_duplicates:
        dups = index[index.duplicated()].unique()
        raise InputError(f"{what} is a pandas Series with duplicate labels: {list(dups[:_SHOW])}.")
    if labels.has_duplicates:
        dups = labels[labels.duplicated()].unique()
        raise InputError(
            f"cannot align {what} on {kind} names: they are not unique "
            f"({list(dups[:_SHOW])}); make them unique first."
        )
    missing = labels[~labels.isin(index)]
    if len(missing):
        more = f" (and {len(missing) - _SHOW} more)" if len(missing) > _SHOW else ""
        raise InputError(
            f"{what} is a pandas Series aligned on its index, which lacks {len(missing)} "
            f"{kind}: {list(missing[:_SHOW])}{more}."
        )
    return values.reindex(labels)


def numeric_vector(values, what: str, *, labels=None, kind: str = "cells") -> np.ndarray:
    """A 1-D float64 copy of numeric (not boolean, string or masked) values."""
    values = aligned(values, labels, what, kind)
    refuse_masked(values, what)
    if isinstance(values, (pd.Series, pd.Index)):
        dtype = values.dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            raise InputError(f"{what} must be numeric, got dtype {dtype}.")
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        array = np.asarray(values)
        if array.dtype.kind not in "iuf":
            raise InputError(f"{what} must be numeric, got dtype {array.dtype}.")
        array = array.astype(np.float64)
    if array.ndim != 1:
        raise InputError(f"{what} must be one-dimensional, got shape {array.shape}.")
    return array


def check_n_components(n_components, n_cells: int) -> int:
    """K must be an integer with 1 <= K <= n_cells."""
    n_components = check_int(n_components, "n_components", minimum=1)
    if n_components > n_cells:
        raise InputError(
            f"n_components ({n_components}) cannot exceed the number of cells ({n_cells})."
        )
    return n_components


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value, name: str, *, minimum: int = 1) -> int:
    """An integer (not a bool, not a float such as 2.0 or 2.5) of at least ``minimum``."""
    if not _is_integer(value):
        raise InputError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value!r}.")
    return int(value)


def check_real(
    value, name: str, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """A finite real number (not a bool) in [minimum, maximum]."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if ok:
        ok = bool(np.isfinite(value))
        ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        limits = ((">=", minimum), ("<=", maximum))
        where = " and ".join(f"{sign} {bound:g}" for sign, bound in limits if bound is not None)
        raise InputError(f"{name} must be a finite number {where}".rstrip() + f", got {value!r}.")
    return float(value)


def check_tol(tol) -> float:
    return check_real(tol, "tol", minimum=0.0)


def check_random_state(value):
    """``None`` or a non-negative integer seed (what numpy's SeedSequence takes)."""
    if value is None:
        return None
    if not _is_integer(value) or value < 0:
        raise InputError(
            f"random_state must be None or a non-negative integer seed, got {value!r}."
        )
    return int(value)


def check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise InputError(f"{name} must be one of {listed}, got {value!r}.")
    return value


def check_key(value, name: str = "key_added") -> str:
    """A key under which results are written: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{name} must be a non-empty string, got {value!r}.")
    return value


def check_fit_options(
    *,
    n_init,
    max_iter,
    tol,
    random_state,
    chunk_size=None,
    memory_budget=None,
    n_jobs=None,
    allow_no_start: bool = False,
) -> FitSettings:
    """Validate the numerical options of an EM fit, in one place, for every entry point.

    Returns them as the :class:`~scmix._core.fit.settings.FitSettings` that the
    engine takes (``memory_bytes`` from ``memory_budget``). ``allow_no_start``:
    ``n_init=0`` is allowed (a fit started from given responsibilities only).
    """
    return FitSettings(
        n_init=check_int(n_init, "n_init", minimum=0 if allow_no_start else 1),
        max_iter=check_int(max_iter, "max_iter"),
        tol=check_tol(tol),
        random_state=check_random_state(random_state),
        chunk_size=None if chunk_size is None else check_int(chunk_size, "chunk_size"),
        memory_bytes=DEFAULT_MEMORY_BYTES
        if memory_budget is None
        else check_int(memory_budget, "memory_budget"),
        n_jobs=n_jobs
        if n_jobs is None or (_is_integer(n_jobs) and n_jobs == -1)
        else check_int(n_jobs, "n_jobs"),
    )


def check_design(matrix: np.ndarray, columns: list[str]) -> None:
    """The intercept and the design columns must be linearly independent; otherwise name
    the first column that the earlier ones (and the intercept) already explain."""
    full = np.column_stack([np.ones(matrix.shape[0]), matrix])
    scale = np.linalg.norm(full, axis=0)
    full = full / np.where(scale > 0, scale, 1.0)
    if np.linalg.matrix_rank(full) == full.shape[1]:
        return
    for stop in range(2, full.shape[1] + 1):
        if np.linalg.matrix_rank(full[:, :stop]) < stop:
            culprit = columns[stop - 2]
            earlier = columns[: stop - 2]
            raise InputError(
                f"the covariates are not of full rank: design column {culprit!r} is a linear "
                f"combination of the intercept{' and ' + str(earlier) if earlier else ''} "
                "(a constant column, collinear columns, or a level confounded with another "
                "covariate); drop or merge covariates."
            )


def check_covariates(covariates, n_cells: int) -> np.ndarray:
    """A design matrix of covariates (cells, p) given as an array: numeric, finite,
    one row per cell, of full rank with the intercept; returned as float64."""
    refuse_masked(covariates, "covariates")
    values = np.asarray(covariates)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] != n_cells:
        raise InputError(
            f"covariates must have one row per cell ({n_cells}), got shape {values.shape}."
        )
    if values.dtype.kind not in "biuf":
        raise InputError(f"covariates must be numeric, got dtype {values.dtype}.")
    values = values.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise InputError(
            f"covariates have {int(bad.sum())} non-finite values (first: cell {row}, "
            f"column {column})."
        )
    check_design(values, [f"column {c}" for c in range(values.shape[1])])
    return values
