r"""Covariates of a fit: ``.obs`` columns turned into a design matrix, checked once.

For cell i the covariate row :math:`z_i` multiplies the mean of every component of a
gene by :math:`\exp(z_i^\top \gamma_j)`. A categorical column (category, string or
boolean dtype) with levels :math:`\ell_0, \ell_1, \dots` becomes indicator columns of
:math:`\ell_1, \dots` against the reference level :math:`\ell_0` (the first category,
or the first in sorted order), as R's treatment contrasts and flexmix / glmGamPoi
designs do; a numeric column is used as it is (not centred or scaled), so its
coefficient is the change of the log mean per unit. There is no intercept column: the
component means :math:`\mu_{jk}` are the means at the reference levels and zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData

from ._core.errors import InputError, InputKeyError
from ._core.validation import check_design, describe_positions


@dataclass(frozen=True)
class Design:
    """A design matrix (cells x columns, float64) with the names of its columns."""

    matrix: np.ndarray
    columns: list[str]  # "{obs column}_{level}" for indicators, the column name otherwise
    covariates: list[str]  # the .obs columns, in the order given
    references: dict[str, str] = field(default_factory=dict)  # categorical -> reference

    def describe(self) -> dict:
        """What ``.uns[key]["params"]`` records of the design."""
        return {
            "covariates": list(self.covariates),
            "design_columns": list(self.columns),
            "reference_levels": dict(self.references),
        }


def covariate_names(covariates) -> list[str]:
    """``covariates`` (None, a column name or a list of them) as a list of names."""
    if covariates is None:
        return []
    names = [covariates] if isinstance(covariates, str) else covariates
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InputError(
            f"covariates must be None, an .obs column name or a list of them, got {covariates!r}."
        )
    if len(set(names)) != len(names):
        raise InputError(f"covariates lists a column twice: {list(names)}.")
    return list(names)


def covariate_design(adata: AnnData, covariates) -> Design | None:
    """The design of ``covariates`` (``.obs`` columns), or None for no covariates.

    Raises an :class:`~scmix.InputError` naming the column (and cells or levels) for a
    missing column, missing or non-finite values, a categorical column with one level
    or a level without cells, and a design that is not of full rank together with the
    intercept (a constant numeric column, collinear columns, a level confounded with
    another covariate).
    """
    names = covariate_names(covariates)
    if not names:
        return None
    blocks, columns, references = [], [], {}
    for name in names:
        if name not in adata.obs.columns:
            raise InputKeyError(
                f"covariate {name!r} is not a column of adata.obs "
                f"(columns: {list(adata.obs.columns)[:10]})."
            )
        values = adata.obs[name]
        _check_present(values, name, adata.obs_names)
        if _is_categorical(values):
            block, levels = _indicators(values, name)
            references[name] = levels[0]
            columns += [f"{name}_{level}" for level in levels[1:]]
        else:
            block = _numeric(values, name, adata.obs_names)
            columns.append(name)
        blocks.append(block)
    matrix = np.column_stack(blocks).astype(np.float64)
    check_design(matrix, columns)
    return Design(matrix, columns, names, references)


def _is_categorical(values: pd.Series) -> bool:
    return (
        isinstance(values.dtype, pd.CategoricalDtype)
        or values.dtype.kind in "bOSU"
        or (pd.api.types.is_string_dtype(values.dtype))
    )


def _check_present(values: pd.Series, name: str, cell_names) -> None:
    missing = values.isna().to_numpy()
    if missing.any():
        where = describe_positions("cells", cell_names, np.flatnonzero(missing))
        raise InputError(
            f"covariate {name!r} has {int(missing.sum())} missing values: {where}. "
            "Fill them or remove those cells."
        )


def _indicators(values: pd.Series, name: str) -> tuple[np.ndarray, list[str]]:
    """Indicator columns of every level but the first (the reference)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = [str(c) for c in values.cat.categories]
        codes = values.cat.codes.to_numpy()
    else:
        labels = values.astype(str).to_numpy()
        levels = sorted(set(labels))
        codes = np.searchsorted(np.asarray(levels), labels)
    counts = np.bincount(codes, minlength=len(levels))
    empty = [level for level, n in zip(levels, counts, strict=True) if n == 0]
    if empty:
        raise InputError(
            f"covariate {name!r} has levels without cells: {empty[:5]}; drop them with "
            f"adata.obs[{name!r}] = adata.obs[{name!r}].cat.remove_unused_categories()."
        )
    if len(levels) < 2:
        raise InputError(
            f"covariate {name!r} has a single level ({levels[0]!r}): it cannot be told "
            "apart from the component means; leave it out."
        )
    return (codes[:, None] == np.arange(1, len(levels))[None, :]).astype(np.float64), levels


def _numeric(values: pd.Series, name: str, cell_names) -> np.ndarray:
    try:
        array = values.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"covariate {name!r} is neither numeric nor categorical (dtype {values.dtype})."
        ) from None
    bad = ~np.isfinite(array)
    if bad.any():
        where = describe_positions("cells", cell_names, np.flatnonzero(bad))
        raise InputError(f"covariate {name!r} has non-finite values: {where}.")
    return array[:, None]


def stored_design(obs: pd.DataFrame, params: dict) -> np.ndarray:
    """The design matrix of a stored fit (``params`` of ``.uns[key]``) for the cells of
    ``obs``, rebuilt from its recorded columns and reference levels: it holds on a cell
    subset, where a level may have lost its cells, as long as the ``.obs`` columns
    remain (a KeyError names a missing one)."""
    references = dict(params.get("reference_levels") or {})
    columns = []
    for name in params["design_columns"]:
        covariate = next(
            (c for c in params["covariates"] if name == c or name.startswith(f"{c}_")), None
        )
        if covariate is None or covariate not in obs.columns:
            raise InputKeyError(
                f"the fit's covariate for design column {name!r} is not in adata.obs "
                f"(covariates {list(params['covariates'])})."
            )
        values = obs[covariate]
        if covariate in references:
            level = name[len(covariate) + 1 :]
            columns.append((values.astype(str) == level).to_numpy(dtype=np.float64))
        else:
            columns.append(values.to_numpy(dtype=np.float64))
    return np.column_stack(columns)
