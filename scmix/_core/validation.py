"""Checks of array inputs, with messages that name the offending genes and cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .chunks import GeneColumns, iter_chunks

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


def check_counts(
    X,
    *,
    what: str = "X",
    cell_names: Sequence[str] | None = None,
    gene_names: Sequence[str] | None = None,
) -> None:
    """Raise ``ValueError`` unless X holds finite, non-negative integer counts.

    ``X`` is an array, a sparse matrix or a :class:`~scmix._core.chunks.GeneColumns`
    selection (``gene_names`` then name the selected genes). Dense input is checked
    in blocks of genes, so that no full-size temporary is made. The message names
    ``what`` (e.g. ``"layer 'counts'"``), the problem and the first offending genes
    and cells.
    """
    columns = X if isinstance(X, GeneColumns) else GeneColumns(X)
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
        raise ValueError(f"{what} must be numeric counts, got dtype {values.dtype}.")
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
        raise ValueError(
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
) -> np.ndarray:
    """Return size factors as float64 after checking length, finiteness and positivity."""
    try:
        values = np.asarray(size_factors, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numeric.") from None
    if values.ndim != 1 or values.shape[0] != n_cells:
        raise ValueError(
            f"{what} must have one value per cell ({n_cells}), got shape {values.shape}."
        )
    for label, bad in (
        ("NaN", np.isnan(values)),
        ("infinite", np.isinf(values)),
        ("zero", values == 0),
        ("negative", values < 0),
    ):
        if bad.any():
            raise ValueError(
                f"{what} must be positive and finite, but {int(bad.sum())} are {label}: "
                f"{describe_positions('cells', cell_names, np.flatnonzero(bad))}."
            )
    return values


def check_n_components(n_components, n_cells: int) -> int:
    """K must be an integer with 1 <= K <= n_cells."""
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
        raise ValueError(f"n_components must be an integer, got {n_components!r}.")
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}.")
    if n_components > n_cells:
        raise ValueError(
            f"n_components ({n_components}) cannot exceed the number of cells ({n_cells})."
        )
    return int(n_components)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_tol(tol) -> float:
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a non-negative number, got {tol!r}.")
    return float(tol)
