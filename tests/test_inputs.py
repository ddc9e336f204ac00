"""Input handling of ``scmix.tl.fit_mixture`` and the array estimators.

Bad input raises a clear error that names the key and the first offending cells
or genes; the caller's data and annotations are never modified; results are
written only after the whole fit succeeded; genes without counts are skipped.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from adata_helpers import (
    KEY,
    N_CELLS,
    N_GENES,
    SCALAR_COLUMNS,
    assert_adata_unchanged,
    assert_matrix_equal,
    assert_no_results,
    assert_only_results_added,
    fast,
    make_adata,
    put_bad_counts,
)
from scipy import sparse

import scmix._core.fit.blocks as fit_module
from scmix.models import NegativeBinomialMixture, PoissonMixture
from scmix.tl import fit_mixture

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
    # a Series is aligned on obs_names: one of the wrong length lacks cells
    short = pd.Series(np.ones(N_CELLS - 10), index=adata.obs_names[:-10])
    with pytest.raises(ValueError, match=r"size_factors is a pandas Series .* lacks 10 cells"):
        fit_mixture(adata, size_factors=short, **fast())
    with pytest.raises(ValueError, match=r"size_factors must have one value per cell"):
        fit_mixture(adata, size_factors=np.ones(N_CELLS - 10), **fast())


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
        # one thread: chunk after chunk, so that the calls made before the failure are known
        fit_mixture(adata, n_components=2, chunk_size=3, n_jobs=1, **fast())
    assert calls == [1, 2, 1, 2][:fail_on_call]
    assert_adata_unchanged(before, adata)
    assert_no_results(adata)


@pytest.mark.parametrize("fail_on_call", [1, 4], ids=["first_chunk", "second_chunk"])
def test_exception_in_a_thread_stops_the_fit_and_leaves_adata_as_it_was(monkeypatch, fail_on_call):
    adata = make_adata()
    before = copy.deepcopy(adata)
    calls = _failing_chunks(monkeypatch, fail_on_call)
    with pytest.raises(RuntimeError, match="simulated failure"):
        fit_mixture(adata, n_components=2, chunk_size=1, n_jobs=2, **fast())
    # the chunks that had not started when it failed were not fitted (2 calls a chunk)
    assert len(calls) < 2 * adata.n_vars
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
        estimator(max_iter=5, n_init=1).fit(_counts("dense"), size_factors=sf)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_size_factors_of_wrong_length_raise_value_error(estimator):
    with pytest.raises(ValueError, match=rf"one value per cell \({N_CELLS}\)"):
        estimator(max_iter=5, n_init=1).fit(_counts("dense"), size_factors=np.ones(N_CELLS - 1))


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
    estimator(max_iter=5, n_init=1).fit(X, size_factors=sf)
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
