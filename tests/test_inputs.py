"""Input handling of ``scmix.tl.fit_mixture`` and the array estimators.

Bad input raises a clear error that names the key and the first offending cells
or genes; the caller's data and annotations are never modified; results are
written only after the whole fit succeeded; the documented outputs are where the
contract (DESIGN.md section 2) says they are.
"""

from __future__ import annotations

import copy
import inspect
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from scipy import sparse

import scmix
import scmix._core.fit as fit_module
from scmix.models import NegativeBinomialMixture, PoissonMixture
from scmix.tl import fit_mixture

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


@pytest.fixture
def adata() -> ad.AnnData:
    return make_adata()


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
    assert list(after.layers) == list(before.layers), "layers keys changed"
    for name in before.layers:
        assert_matrix_equal(before.layers[name], after.layers[name], f"layers[{name!r}]")
    pdt.assert_frame_equal(after.obs, before.obs, obj="obs")
    pdt.assert_frame_equal(after.var[list(before.var.columns)], before.var, obj="var")
    added = [c for c in after.var.columns if c not in before.var.columns]
    assert added and all(c.startswith(f"{key}_") for c in added), added
    assert set(after.uns) - set(before.uns) == {key}
    for name in before.uns:
        assert_value_equal(before.uns[name], after.uns[name], f"uns[{name!r}]")
    assert set(after.obsm) - set(before.obsm) == {f"{key}_responsibilities"}
    for name in before.obsm:
        assert_matrix_equal(before.obsm[name], after.obsm[name], f"obsm[{name!r}]")


def assert_no_results(adata: ad.AnnData, key: str = KEY) -> None:
    assert not [c for c in adata.var.columns if c.startswith(f"{key}_")]
    assert not [c for c in adata.obs.columns if c.startswith(f"{key}_")]
    assert not [k for k in adata.obsm if k.startswith(f"{key}_")]
    assert key not in adata.uns


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


# --------------------------------------------------------------------------------------
# invalid counts
# --------------------------------------------------------------------------------------
BAD_COUNTS = [
    pytest.param(-1.0, "negative", id="negative"),
    pytest.param(1.5, "non-integer", id="non_integer"),
    pytest.param(np.nan, "NaN", id="nan"),
    pytest.param(np.inf, "infinite", id="inf"),
]
STORAGES = ["dense", "csr", "csc", "layer_dense", "layer_csr", "layer_csc"]


@pytest.mark.parametrize("where", STORAGES)
@pytest.mark.parametrize(("value", "label"), BAD_COUNTS)
def test_bad_counts_raise_value_error_naming_gene_and_cell(adata, where, value, label):
    layer = put_bad_counts(adata, where, value, cells=[7], genes=[3])
    before = copy.deepcopy(adata)
    what = "X" if layer is None else "layer 'counts'"
    pattern = rf"^{what} must .*{label}.*'gene_3'.*'cell_7'"
    with pytest.raises(ValueError, match=pattern):
        fit_mixture(adata, layer=layer, **fast())
    assert_adata_unchanged(before, adata)


@pytest.mark.parametrize("where", ["dense", "csr", "csc"])
def test_bad_counts_message_lists_first_offending_cells_and_genes(adata, where):
    cells = [150, 40, 2, 90, 60, 120, 180]
    genes = [6, 3, 3, 6, 3, 3, 6]
    layer = put_bad_counts(adata, where, -3.0, cells=cells, genes=genes)
    pattern = (
        r"7 negative value\(s\): in genes 'gene_3', 'gene_6'; "
        r"cells 'cell_2', 'cell_40', 'cell_60', 'cell_90', 'cell_120' \(and 2 more\)"
    )
    with pytest.raises(ValueError, match=pattern):
        fit_mixture(adata, layer=layer, **fast())


def test_negative_integer_counts_in_sparse_int_matrix_raise(adata):
    X = sparse.csr_matrix(adata.X)  # int64
    X.data[X.indices == 4] *= -1  # every stored count of gene_4
    adata.X = X
    before = copy.deepcopy(adata)
    with pytest.raises(ValueError, match=r"^X must .*negative.*'gene_4'"):
        fit_mixture(adata, **fast())
    assert_adata_unchanged(before, adata)


def test_bad_counts_in_masked_gene_are_named_by_var_name(adata):
    # the mask reindexes the genes: the error must still name gene_5, not position 1
    put_bad_counts(adata, "dense", np.nan, cells=[11], genes=[5])
    with pytest.raises(ValueError, match=r"NaN.*'gene_5'.*'cell_11'"):
        fit_mixture(adata, mask_var=["gene_1", "gene_5"], **fast())


def test_missing_layer_raises_key_error_naming_layer(adata):
    adata.layers["counts"] = adata.X.copy()
    before = copy.deepcopy(adata)
    with pytest.raises(KeyError, match=r"layer 'raw'.*'counts'"):
        fit_mixture(adata, layer="raw", **fast())
    assert_adata_unchanged(before, adata)


# --------------------------------------------------------------------------------------
# invalid size factors
# --------------------------------------------------------------------------------------
BAD_SIZE_FACTORS = [
    pytest.param(0.0, "zero", id="zero"),
    pytest.param(-0.5, "negative", id="negative"),
    pytest.param(np.nan, "NaN", id="nan"),
    pytest.param(np.inf, "infinite", id="inf"),
]


def test_missing_size_factor_key_raises_key_error_naming_key(adata):
    before = copy.deepcopy(adata)
    with pytest.raises(KeyError, match=r"size_factors 'sf_missing'.*adata\.obs"):
        fit_mixture(adata, size_factors="sf_missing", **fast())
    assert_adata_unchanged(before, adata)


@pytest.mark.parametrize(("value", "label"), BAD_SIZE_FACTORS)
def test_bad_size_factors_in_obs_raise_value_error_naming_key_and_cell(adata, value, label):
    adata.obs["sf"] = adata.obs["size_factors"].to_numpy()
    adata.obs.loc[["cell_13", "cell_150"], "sf"] = value
    before = copy.deepcopy(adata)
    pattern = rf"adata\.obs\['sf'\].*2 are {label}: cells 'cell_13', 'cell_150'\."
    with pytest.raises(ValueError, match=pattern):
        fit_mixture(adata, size_factors="sf", **fast())
    assert_adata_unchanged(before, adata)


@pytest.mark.parametrize(("value", "label"), BAD_SIZE_FACTORS)
def test_bad_size_factor_array_raises_value_error_naming_cell(adata, value, label):
    sf = adata.obs["size_factors"].to_numpy().copy()
    sf[42] = value
    sf_before = sf.copy()
    before = copy.deepcopy(adata)
    with pytest.raises(ValueError, match=rf"^size_factors .*1 are {label}: cells 'cell_42'\."):
        fit_mixture(adata, size_factors=sf, **fast())
    assert_adata_unchanged(before, adata)
    np.testing.assert_array_equal(sf, sf_before)


@pytest.mark.parametrize("length", [N_CELLS - 1, N_CELLS + 1])
def test_size_factor_array_of_wrong_length_raises_value_error(adata, length):
    before = copy.deepcopy(adata)
    pattern = rf"size_factors must have one value per cell \({N_CELLS}\).*\({length},\)"
    with pytest.raises(ValueError, match=pattern):
        fit_mixture(adata, size_factors=np.ones(length), **fast())
    assert_adata_unchanged(before, adata)


def test_size_factor_series_of_wrong_length_raises_value_error(adata):
    with pytest.raises(ValueError, match=r"size_factors must have one value per cell"):
        fit_mixture(adata, size_factors=pd.Series(np.ones(N_CELLS - 10)), **fast())


# --------------------------------------------------------------------------------------
# invalid n_components, mask_var
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_components", "pattern"),
    [
        (0, r"n_components must be at least 1, got 0"),
        (-2, r"n_components must be at least 1, got -2"),
        (N_CELLS + 1, rf"n_components \({N_CELLS + 1}\) cannot exceed .*cells \({N_CELLS}\)"),
        (2.0, r"n_components must be an integer"),
    ],
)
def test_invalid_n_components_raises_value_error(adata, n_components, pattern):
    before = copy.deepcopy(adata)
    with pytest.raises(ValueError, match=pattern):
        fit_mixture(adata, n_components=n_components, **fast())
    assert_adata_unchanged(before, adata)


@pytest.mark.parametrize("form", ["column", "array", "list"])
def test_mask_var_selecting_no_gene_raises_value_error(adata, form):
    adata.var["nothing"] = False
    mask = {"column": "nothing", "array": np.zeros(N_GENES, dtype=bool), "list": []}[form]
    before = copy.deepcopy(adata)
    pattern = r"mask_var 'nothing' selects no gene" if form == "column" else r"selects no gene"
    with pytest.raises(ValueError, match=pattern):
        fit_mixture(adata, mask_var=mask, **fast())
    assert_adata_unchanged(before, adata)


def test_mask_var_with_unknown_gene_names_raises_key_error_naming_them(adata):
    before = copy.deepcopy(adata)
    with pytest.raises(KeyError, match=r"not in adata\.var_names: \['ERCC-1', 'Actb'\]"):
        fit_mixture(adata, mask_var=["gene_1", "ERCC-1", "Actb"], **fast())
    assert_adata_unchanged(before, adata)


def test_mask_var_naming_missing_var_column_raises_key_error_naming_it(adata):
    before = copy.deepcopy(adata)
    with pytest.raises(KeyError, match=r"mask_var 'spike_in' is not a column of adata\.var"):
        fit_mixture(adata, mask_var="spike_in", **fast())
    assert_adata_unchanged(before, adata)


def test_boolean_mask_var_of_wrong_length_raises_value_error(adata):
    with pytest.raises(ValueError, match=rf"one entry per gene \({N_GENES}\)"):
        fit_mixture(adata, mask_var=np.ones(N_GENES - 1, dtype=bool), **fast())


def test_non_boolean_mask_var_column_raises_value_error_naming_it(adata):
    adata.var["group"] = ["a", "b"] * (N_GENES // 2)
    with pytest.raises(ValueError, match=r"mask_var column 'group' must be boolean"):
        fit_mixture(adata, mask_var="group", **fast())


# --------------------------------------------------------------------------------------
# nothing is lost
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["dense_int", "dense_float", "csr", "csc", "layer"])
def test_successful_fit_keeps_data_and_existing_annotations(storage):
    adata = make_adata()
    if storage == "dense_float":
        adata.X = adata.X.astype(np.float64)
    elif storage in ("csr", "csc"):
        adata.X = sparse.csr_matrix(adata.X) if storage == "csr" else sparse.csc_matrix(adata.X)
    elif storage == "layer":
        adata.layers["counts"] = sparse.csr_matrix(adata.X)
        adata.X = np.log1p(adata.X.astype(np.float32))
    adata.uns["note"] = {"kept": np.arange(3)}
    adata.obsm["X_pca"] = np.random.default_rng(1).normal(size=(N_CELLS, 2))
    before = copy.deepcopy(adata)
    fit_mixture(adata, layer="counts" if storage == "layer" else None, **fast())
    assert_only_results_added(before, adata)


def test_successful_fit_does_not_modify_size_factor_or_mask_arrays(adata):
    sf = adata.obs["size_factors"].to_numpy().copy()
    mask = np.zeros(N_GENES, dtype=bool)
    mask[[1, 4, 6]] = True
    sf_before, mask_before = sf.copy(), mask.copy()
    fit_mixture(adata, size_factors=sf, mask_var=mask, **fast())
    np.testing.assert_array_equal(sf, sf_before)
    np.testing.assert_array_equal(mask, mask_before)


def _failing_chunks(monkeypatch, fail_on_call: int) -> list[int]:
    """Make the engine fit chunks for real, then raise on chunk fit number ``fail_on_call``.

    fit_matrix calls fit_chunk per gene chunk, first with K=1, then with K."""
    real = fit_module.fit_chunk
    calls: list[int] = []

    def flaky(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == fail_on_call:
            raise RuntimeError("simulated failure inside the fit")
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "fit_chunk", flaky)
    return calls


@pytest.mark.parametrize("fail_on_call", [1, 4], ids=["first_chunk", "second_chunk"])
@pytest.mark.parametrize("as_sparse", [False, True], ids=["dense", "csr"])
def test_exception_mid_fit_leaves_adata_exactly_as_it_was(monkeypatch, fail_on_call, as_sparse):
    adata = make_adata(as_sparse=as_sparse)
    before = copy.deepcopy(adata)
    calls = _failing_chunks(monkeypatch, fail_on_call)
    with pytest.raises(RuntimeError, match="simulated failure"):
        fit_mixture(adata, n_components=2, chunk_size=3, **fast())
    assert calls == [1, 2, 1, 2][:fail_on_call]
    assert_adata_unchanged(before, adata)
    assert_no_results(adata)


def test_exception_mid_refit_keeps_earlier_results_under_the_same_key(monkeypatch, adata):
    # a first, successful fit with K=3; a failing refit with K=2 must neither drop the
    # stale component-2 columns nor overwrite anything of the first fit
    fit_mixture(adata, n_components=3, **fast())
    before = copy.deepcopy(adata)
    calls = _failing_chunks(monkeypatch, fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated failure"):
        fit_mixture(adata, n_components=2, mask_var=["gene_0", "gene_1"], **fast())
    assert calls == [1, 2]
    assert_adata_unchanged(before, adata)
    assert f"{KEY}_mean_2" in adata.var
    assert adata.uns[KEY]["n_components"] == 3


def test_exception_mid_fit_with_copy_leaves_input_unchanged(monkeypatch, adata):
    before = copy.deepcopy(adata)
    _failing_chunks(monkeypatch, fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated failure"):
        fit_mixture(adata, copy=True, **fast())
    assert_adata_unchanged(before, adata)
    assert_no_results(adata)


# --------------------------------------------------------------------------------------
# genes without any count
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_all_zero_genes_are_skipped_with_warning_and_nan_parameters(as_sparse, family):
    adata = make_adata()
    adata.X[:, [2, 5]] = 0
    if as_sparse:
        adata.X = sparse.csr_matrix(adata.X)  # no stored entries for the empty genes
    with pytest.warns(UserWarning, match=r"^2 of 8 genes have no non-zero count"):
        fit_mixture(adata, family=family)
    var = adata.var
    empty = var.index.isin(["gene_2", "gene_5"])
    # dispersions: see test_all_zero_genes_get_nan_dispersion
    numeric = [f"{KEY}_{p}_{k}" for p in ("mean", "weight") for k in range(2)]
    numeric += [f"{KEY}_{c}" for c in ("single_mean", *SCALAR_COLUMNS[:6])]
    assert var.loc[empty, numeric].isna().all().all()
    assert not var.loc[empty, f"{KEY}_converged"].any()
    assert not var.loc[empty, f"{KEY}_bimodal"].any()
    assert (var.loc[empty, f"{KEY}_n_iter"] == 0).all()
    # the other genes are fitted normally
    assert np.isfinite(var.loc[~empty, numeric].to_numpy(dtype=float)).all()
    assert var.loc[~empty, f"{KEY}_converged"].all()
    assert (var.loc[~empty, f"{KEY}_n_iter"] > 0).all()


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_all_zero_genes_get_nan_dispersion(family):
    adata = make_adata()
    adata.X[:, 5] = 0
    with pytest.warns(UserWarning, match=r"^1 of 8 genes have no non-zero count"):
        fit_mixture(adata, family=family, **fast())
    columns = [f"{KEY}_dispersion_0", f"{KEY}_dispersion_1", f"{KEY}_single_dispersion"]
    assert adata.var.loc["gene_5", columns].isna().all()
    assert np.isfinite(adata.var.loc["gene_4", columns].to_numpy(dtype=float)).all()


def test_all_zero_gene_count_in_warning_is_over_the_masked_genes(adata):
    adata.X[:, 3] = 0
    with pytest.warns(UserWarning, match=r"^1 of 3 genes have no non-zero count"):
        fit_mixture(adata, mask_var=["gene_0", "gene_3", "gene_7"], **fast())
    assert np.isnan(adata.var.loc["gene_3", f"{KEY}_mean_0"])
    assert np.isfinite(adata.var.loc[["gene_0", "gene_7"], f"{KEY}_mean_0"]).all()


# --------------------------------------------------------------------------------------
# copy, mask_var, .uns, .obsm, h5ad
# --------------------------------------------------------------------------------------
def test_copy_true_returns_annotated_copy_and_leaves_input_untouched(adata):
    before = copy.deepcopy(adata)
    result = fit_mixture(adata, copy=True, **fast())
    assert isinstance(result, ad.AnnData)
    assert result is not adata
    assert_adata_unchanged(before, adata)
    assert_no_results(adata)
    assert_only_results_added(before, result)


def test_copy_false_returns_none_and_annotates_in_place(adata):
    before = copy.deepcopy(adata)
    assert fit_mixture(adata, copy=False, **fast()) is None
    assert_only_results_added(before, adata)


def test_copy_true_and_false_give_the_same_results(adata):
    result = fit_mixture(adata, copy=True, **fast())
    fit_mixture(adata, **fast())
    pdt.assert_frame_equal(result.var, adata.var)
    np.testing.assert_array_equal(
        result.obsm[f"{KEY}_responsibilities"], adata.obsm[f"{KEY}_responsibilities"]
    )


SELECTED = ["gene_1", "gene_4", "gene_6"]


@pytest.mark.parametrize("form", ["var_column", "bool_array", "bool_list", "names", "index"])
def test_mask_var_forms_select_the_same_genes_and_others_get_nan(adata, form):
    in_mask = adata.var_names.isin(SELECTED)
    adata.var["chosen"] = in_mask
    mask = {
        "var_column": "chosen",
        "bool_array": in_mask,
        "bool_list": in_mask.tolist(),
        "names": ["gene_6", "gene_1", "gene_4"],  # order of the names does not matter
        "index": pd.Index(SELECTED),
    }[form]
    fit_mixture(adata, mask_var=mask, **fast())
    var = adata.var
    float_columns = [c for c in var.columns if c.startswith(KEY) and var[c].dtype.kind == "f"]
    assert len(float_columns) == 3 * 2 + 2 + 6
    assert var.loc[~in_mask, float_columns].isna().all().all()
    assert np.isfinite(var.loc[in_mask, float_columns].to_numpy()).all()
    assert not var.loc[~in_mask, f"{KEY}_converged"].any()
    assert not var.loc[~in_mask, f"{KEY}_bimodal"].any()
    assert (var.loc[~in_mask, f"{KEY}_n_iter"] == 0).all()
    assert (var.loc[in_mask, f"{KEY}_n_iter"] > 0).all()
    assert list(adata.uns[KEY]["var_names"]) == SELECTED
    assert adata.obsm[f"{KEY}_responsibilities"].shape == (N_CELLS, len(SELECTED), 2)


def test_mask_var_forms_give_identical_results(adata):
    results = []
    in_mask = adata.var_names.isin(SELECTED)
    adata.var["chosen"] = in_mask
    for mask in ("chosen", in_mask, list(reversed(SELECTED))):
        result = fit_mixture(adata, mask_var=mask, copy=True, **fast())
        results.append(result)
    for other in results[1:]:
        pdt.assert_frame_equal(other.var, results[0].var)
        np.testing.assert_array_equal(
            other.obsm[f"{KEY}_responsibilities"], results[0].obsm[f"{KEY}_responsibilities"]
        )


def test_uns_params_record_the_arguments(adata):
    adata.layers["counts"] = adata.X.copy()
    sf = adata.obs["size_factors"].to_numpy()
    fit_mixture(
        adata,
        3,
        family="poisson",
        size_factors=sf,
        layer="counts",
        mask_var=["gene_2", "gene_0"],
        n_init=2,
        max_iter=7,
        tol=1e-4,
        random_state=5,
        bic_threshold=3.0,
        min_weight=0.1,
        key_added="mix",
        store_responsibilities=True,
        keep_trace=True,
    )
    params = adata.uns["mix"]["params"]
    expected = {
        "n_components": 3,
        "family": "poisson",
        "size_factors": "array",
        "layer": "counts",
        "mask_var": ["gene_2", "gene_0"],
        "n_init": 2,
        "max_iter": 7,
        "tol": 1e-4,
        "random_state": 5,
        "bic_threshold": 3.0,
        "min_weight": 0.1,
        "key_added": "mix",
        "store_responsibilities": True,
        "keep_trace": True,
    }
    for name, value in expected.items():
        assert params[name] == value, name
    assert adata.uns["mix"]["n_components"] == 3
    assert adata.uns["mix"]["family"] == "poisson"
    assert adata.uns["mix"]["version"] == scmix.__version__


def test_uns_params_record_defaults_and_obs_key(adata):
    fit_mixture(adata, **fast())
    params = adata.uns[KEY]["params"]
    assert params["size_factors"] == "size_factors"
    assert params["layer"] is None
    assert params["mask_var"] is None
    assert params["family"] == "nb"
    assert params["n_components"] == 2
    assert params["store_responsibilities"] == "auto"


def test_uns_params_record_every_fit_argument(adata):
    fit_mixture(adata, chunk_size=3, **fast())
    params = adata.uns[KEY]["params"]
    arguments = set(inspect.signature(fit_mixture).parameters) - {"adata", "copy"}
    assert arguments <= set(params), sorted(arguments - set(params))
    assert params["chunk_size"] == 3


def test_uns_var_names_list_fitted_genes_in_obsm_order(adata):
    # n_init=1: the only start is the quantile split, so a gene's fit does not depend on
    # which other genes are fitted with it; its responsibilities must sit at its position
    options = {"max_iter": 30, "n_init": 1}
    full = fit_mixture(adata, copy=True, **options)
    chosen = ["gene_7", "gene_2", "gene_5"]
    part = fit_mixture(adata, mask_var=chosen, copy=True, **options)
    var_names = list(part.uns[KEY]["var_names"])
    assert var_names == ["gene_2", "gene_5", "gene_7"]  # .var order
    assert list(full.uns[KEY]["var_names"]) == list(adata.var_names)
    resp_full = full.obsm[f"{KEY}_responsibilities"]
    resp_part = part.obsm[f"{KEY}_responsibilities"]
    for j, gene in enumerate(var_names):
        np.testing.assert_allclose(
            resp_part[:, j, :], resp_full[:, adata.var_names.get_loc(gene), :], atol=1e-5
        )


@pytest.mark.parametrize(
    ("n_components", "mask"), [(2, None), (3, ["gene_0", "gene_3", "gene_4"]), (1, None)]
)
def test_responsibilities_shape_dtype_and_rows_sum_to_one(adata, n_components, mask):
    fit_mixture(adata, n_components=n_components, mask_var=mask, **fast())
    resp = adata.obsm[f"{KEY}_responsibilities"]
    n_fitted = N_GENES if mask is None else len(mask)
    assert resp.shape == (N_CELLS, n_fitted, n_components)
    assert resp.dtype == np.float32
    assert np.isfinite(resp).all()
    assert (resp >= 0).all()
    np.testing.assert_allclose(resp.sum(axis=2), 1.0, atol=1e-5)


def test_h5ad_round_trip_keeps_documented_outputs(adata, tmp_path):
    adata.var["chosen"] = adata.var_names.isin(SELECTED)
    fit_mixture(adata, mask_var="chosen", keep_trace=True, **fast())
    path = tmp_path / "fitted.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)

    documented = [f"{KEY}_{p}_{k}" for p in ("mean", "dispersion", "weight") for k in range(2)]
    documented += [f"{KEY}_{c}" for c in SCALAR_COLUMNS]
    for column in documented:
        assert column in back.var, column
    pdt.assert_frame_equal(back.var, adata.var)
    resp = back.obsm[f"{KEY}_responsibilities"]
    assert resp.dtype == np.float32
    np.testing.assert_array_equal(resp, adata.obsm[f"{KEY}_responsibilities"])

    uns = back.uns[KEY]
    assert list(uns["var_names"]) == SELECTED
    assert uns["version"] == scmix.__version__
    assert int(uns["n_components"]) == 2
    assert uns["family"] == "nb"
    for name, value in adata.uns[KEY]["params"].items():
        assert uns["params"][name] == value, name
    np.testing.assert_array_equal(uns["trace"], adata.uns[KEY]["trace"])


def test_h5ad_round_trip_with_gene_name_mask_and_array_size_factors(adata, tmp_path):
    sf = adata.obs["size_factors"].to_numpy()
    fit_mixture(adata, size_factors=sf, mask_var=["gene_3", "gene_1"], random_state=None, **fast())
    path = tmp_path / "fitted.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    params = back.uns[KEY]["params"]
    assert list(params["mask_var"]) == ["gene_3", "gene_1"]
    assert params["size_factors"] == "array"
    assert params["random_state"] is None
    assert list(back.uns[KEY]["var_names"]) == ["gene_1", "gene_3"]
    pdt.assert_frame_equal(back.var, adata.var)


# --------------------------------------------------------------------------------------
# the array estimators
# --------------------------------------------------------------------------------------
ESTIMATORS = [NegativeBinomialMixture, PoissonMixture]


def _counts(kind: str, value=None):
    X = make_adata().X.astype(np.float64)
    if value is not None:
        X[9, 4] = value
    if kind == "csr":
        return sparse.csr_matrix(X)
    if kind == "csc":
        return sparse.csc_matrix(X)
    return X


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
@pytest.mark.parametrize(("value", "label"), BAD_COUNTS)
def test_estimator_bad_counts_raise_value_error_naming_positions(estimator, kind, value, label):
    X = _counts(kind, value)
    X_before = copy.deepcopy(X)
    pattern = rf"{label} value.*genes at positions 4; cells at positions 9\."
    with pytest.raises(ValueError, match=pattern):
        estimator(max_iter=5, n_init=1).fit(X)
    assert_matrix_equal(X_before, X, "X")


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("value", "label"), BAD_SIZE_FACTORS)
def test_estimator_bad_size_factors_raise_value_error_naming_cell(estimator, value, label):
    sf = np.ones(N_CELLS)
    sf[17] = value
    with pytest.raises(ValueError, match=rf"1 are {label}: cells at positions 17\."):
        estimator(max_iter=5, n_init=1).fit(_counts("dense"), sf)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_size_factors_of_wrong_length_raise_value_error(estimator):
    with pytest.raises(ValueError, match=rf"one value per cell \({N_CELLS}\)"):
        estimator(max_iter=5, n_init=1).fit(_counts("dense"), np.ones(N_CELLS - 1))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(
    ("n_components", "pattern"),
    [(0, r"at least 1, got 0"), (N_CELLS + 1, rf"cannot exceed the number of cells \({N_CELLS}\)")],
)
def test_estimator_invalid_n_components_raises_value_error(estimator, n_components, pattern):
    with pytest.raises(ValueError, match=rf"n_components.*{pattern}"):
        estimator(n_components=n_components, max_iter=5, n_init=1).fit(_counts("dense"))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
def test_estimator_fit_does_not_modify_inputs(estimator, kind):
    X = _counts(kind)
    sf = make_adata().obs["size_factors"].to_numpy().copy()
    X_before, sf_before = copy.deepcopy(X), sf.copy()
    estimator(max_iter=5, n_init=1).fit(X, sf)
    assert_matrix_equal(X_before, X, "X")
    np.testing.assert_array_equal(sf, sf_before)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_skips_all_zero_columns_with_warning(estimator):
    X = _counts("dense")
    X[:, 6] = 0
    with pytest.warns(UserWarning, match=r"^1 of 8 genes have no non-zero count"):
        model = estimator().fit(X)
    assert np.isnan(model.means_[6]).all()
    assert np.isnan(model.weights_[6]).all()
    assert np.isnan(model.lower_bound_[6])
    assert not model.converged_[6]
    others = np.arange(N_GENES) != 6
    assert np.isfinite(model.means_[others]).all()
    assert model.converged_[others].all()


@pytest.mark.parametrize(
    "estimator",
    [NegativeBinomialMixture, PoissonMixture],
)
def test_estimator_all_zero_column_gets_nan_dispersion(estimator):
    X = _counts("dense")
    X[:, 6] = 0
    with pytest.warns(UserWarning, match=r"^1 of 8 genes"):
        model = estimator(max_iter=5, n_init=1).fit(X)
    assert np.isnan(model.dispersions_[6]).all()


# --------------------------------------------------------------------------------------
# import cost
# --------------------------------------------------------------------------------------
def _heavy_modules_after(statement: str) -> list[str]:
    """scanpy / matplotlib modules loaded by ``statement`` in a fresh interpreter."""
    code = (
        f"import re, sys\n{statement}\n"
        "print(' '.join(m for m in sys.modules if re.match(r'(scanpy|matplotlib)(\\.|$)', m)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_import_scmix_does_not_import_scanpy_or_matplotlib():
    assert _heavy_modules_after("import scmix") == []
    # the probe does see them when they are imported (it cannot pass vacuously)
    assert "matplotlib" in _heavy_modules_after("import matplotlib")
