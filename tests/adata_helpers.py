"""Small AnnData fixtures and comparison helpers shared by the input and output tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pandas.testing as pdt
from scipy import sparse

import scmix

N_CELLS = 200
N_GENES = 8
KEY = "scmix"

# Per-gene outputs of fit_mixture that do not depend on K (DESIGN.md section 2).
SCALAR_COLUMNS = [
    "loglik",
    "loglik_1",
    "bic",
    "bic_1",
    "delta_bic",
    "lrt",
    "bimodal",
    "converged",
    "n_iter",
]


# --------------------------------------------------------------------------------------
# data and helpers
# --------------------------------------------------------------------------------------
def make_adata(*, as_sparse: bool = False) -> ad.AnnData:
    """200 cells x 8 genes of simulated counts, size factors in .obs["size_factors"]."""
    return scmix.datasets.simulate(
        n_cells=N_CELLS, n_genes=N_GENES, random_state=0, as_sparse=as_sparse
    )


def fast(**kwargs):
    """Fit options for tests where convergence does not matter."""
    return {"max_iter": 5, "n_init": 1, **kwargs}


def assert_matrix_equal(before, after, what: str) -> None:
    """Exactly the same matrix: type, format, dtype, shape, structure and values (NaN == NaN)."""
    assert type(after) is type(before), f"{what}: type {type(before)} became {type(after)}"
    assert after.shape == before.shape, f"{what}: shape changed"
    assert after.dtype == before.dtype, f"{what}: dtype {before.dtype} became {after.dtype}"
    if sparse.issparse(before):
        assert after.format == before.format, f"{what}: format changed"
        for part in ("indptr", "indices", "data"):
            assert np.array_equal(getattr(before, part), getattr(after, part), equal_nan=True), (
                f"{what}: sparse {part} changed"
            )
    else:
        np.testing.assert_array_equal(np.asarray(after), np.asarray(before), err_msg=what)


def assert_value_equal(before, after, what: str) -> None:
    """Recursive equality of .uns-like values (dicts, arrays, frames, scalars)."""
    if isinstance(before, dict):
        assert isinstance(after, dict), what
        assert list(after) == list(before), f"{what}: keys changed"
        for name in before:
            assert_value_equal(before[name], after[name], f"{what}[{name!r}]")
    elif isinstance(before, pd.DataFrame):
        pdt.assert_frame_equal(after, before, obj=what)
    elif isinstance(before, np.ndarray) or sparse.issparse(before):
        assert_matrix_equal(before, after, what)
    else:
        assert type(after) is type(before), what
        assert after == before or (after != after and before != before), what


def assert_adata_unchanged(before: ad.AnnData, after: ad.AnnData) -> None:
    """``after`` holds exactly what ``before`` (a deep copy taken earlier) held."""
    assert after.shape == before.shape
    assert_matrix_equal(before.X, after.X, "X")
    assert list(after.layers) == list(before.layers), "layers keys changed"
    for name in before.layers:
        assert_matrix_equal(before.layers[name], after.layers[name], f"layers[{name!r}]")
    pdt.assert_frame_equal(after.obs, before.obs, obj="obs")
    pdt.assert_frame_equal(after.var, before.var, obj="var")
    assert list(after.uns) == list(before.uns), "uns keys changed"
    for name in before.uns:
        assert_value_equal(before.uns[name], after.uns[name], f"uns[{name!r}]")
    assert list(after.obsm) == list(before.obsm), "obsm keys changed"
    for name in before.obsm:
        assert_matrix_equal(before.obsm[name], after.obsm[name], f"obsm[{name!r}]")


def assert_only_results_added(before: ad.AnnData, after: ad.AnnData, key: str = KEY) -> None:
    """A successful fit kept data and annotations, and added only ``{key}`` outputs."""
    assert_matrix_equal(before.X, after.X, "X")
    assert list(after.layers)[: len(before.layers)] == list(before.layers), "layers changed"
    for name in before.layers:
        assert_matrix_equal(before.layers[name], after.layers[name], f"layers[{name!r}]")
    pdt.assert_frame_equal(after.obs[list(before.obs.columns)], before.obs, obj="obs")
    assert set(after.obs.columns) - set(before.obs.columns) <= {f"{key}_size_factors"}
    pdt.assert_frame_equal(after.var[list(before.var.columns)], before.var, obj="var")
    added = [c for c in after.var.columns if c not in before.var.columns]
    assert added and all(c.startswith(f"{key}_") for c in added), added
    assert set(after.uns) - set(before.uns) == {key}
    for name in before.uns:
        assert_value_equal(before.uns[name], after.uns[name], f"uns[{name!r}]")
    assert set(after.layers) - set(before.layers) == {f"{key}_responsibility_1"}
    assert set(after.obsm) == set(before.obsm)
    for name in before.obsm:
        assert_matrix_equal(before.obsm[name], after.obsm[name], f"obsm[{name!r}]")


def assert_no_results(adata: ad.AnnData, key: str = KEY) -> None:
    assert not [c for c in adata.var.columns if c.startswith(f"{key}_")]
    assert not [c for c in adata.obs.columns if c.startswith(f"{key}_")]
    assert not [k for k in adata.obsm if k.startswith(f"{key}_")]
    assert not [k for k in adata.layers if k.startswith(f"{key}_")]
    assert key not in adata.uns


def stored_resp(adata: ad.AnnData, key: str = KEY) -> np.ndarray:
    """The per-gene responsibilities (cells, fitted genes, K) rebuilt from the layers
    ``{key}_responsibility_{k}`` (k >= 1) directly, not through scmix's readers."""
    n_comp = adata.uns[key]["n_components"]
    columns = adata.var_names.get_indexer(adata.uns[key]["var_names"])
    upper = np.stack(
        [
            np.asarray(adata.layers[f"{key}_responsibility_{k}"])[:, columns]
            for k in range(1, n_comp)
        ],
        axis=-1,
    )
    return np.concatenate([1 - upper.sum(axis=-1, keepdims=True), upper], axis=-1)


def put_bad_counts(adata: ad.AnnData, where: str, value, cells, genes) -> str | None:
    """Write ``value`` at (cells[i], genes[i]) of X or a layer, in the given storage.

    Returns the layer to fit (``None`` for X).
    """
    counts = np.asarray(adata.X, dtype=np.float64).copy()
    counts[cells, genes] = value
    if where.endswith("csr"):
        counts = sparse.csr_matrix(counts)
    elif where.endswith("csc"):
        counts = sparse.csc_matrix(counts)
    if where.startswith("layer"):
        adata.layers["counts"] = counts
        return "counts"
    adata.X = counts
    return None


def split_settings(options: dict) -> dict:
    """Keyword options of the engine's fit functions with those of a
    :class:`~scmix._core.settings.FitSettings` gathered into ``settings``."""
    from dataclasses import fields

    from scmix._core.settings import FitSettings

    names = {field.name for field in fields(FitSettings)}
    settings = FitSettings(**{k: v for k, v in options.items() if k in names})
    return {"settings": settings, **{k: v for k, v in options.items() if k not in names}}


def fit_matrix(X, size_factors, **options):
    """:func:`scmix._core.fit.matrix.fit_matrix` with its settings as keywords."""
    from scmix._core.fit import matrix

    return matrix.fit_matrix(X, size_factors, **split_settings(options))


def fit_chunk(family, x, size_factors, n_components, **options):
    """:func:`scmix._core.em.driver.fit_chunk` with its settings as keywords."""
    from scmix._core.em import driver

    return driver.fit_chunk(family, x, size_factors, n_components, **split_settings(options))
