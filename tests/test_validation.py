"""The validation layer (``scmix._inputs``, ``scmix._core.validation``): inputs that real
notebooks produce are either read as a pandas user expects or refused with a message that
names the problem, and the caller's AnnData is left as it was. One test (or a few) per case
of issue 16, each failing on the code before it.
"""

from __future__ import annotations

import copy
import re
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from adata_helpers import N_CELLS, N_GENES, assert_adata_unchanged, fast, make_adata
from scipy import sparse

import scmix
from scmix import InputError, InputKeyError
from scmix.models import NegativeBinomialMixture

RESULTS = ["scmix_mean_0", "scmix_mean_1", "scmix_loglik", "scmix_delta_bic", "scmix_bimodal"]


@pytest.fixture
def adata():
    return make_adata()


def _shuffled(values, index, seed=0) -> pd.Series:
    order = np.random.default_rng(seed).permutation(len(index))
    return pd.Series(np.asarray(values)[order], index=np.asarray(index)[order])


def _results(adata, columns=RESULTS) -> pd.DataFrame:
    return adata.var[columns].copy()


# --------------------------------------------------------------------------------------
# 1. pandas Series are aligned on their index
# --------------------------------------------------------------------------------------
def test_size_factor_series_is_aligned_on_obs_names(adata):
    sf = adata.obs["size_factors"].to_numpy()
    by_array = scmix.tl.fit_mixture(adata, size_factors=sf, copy=True, **fast())
    shuffled = _shuffled(sf, adata.obs_names)
    assert not np.array_equal(shuffled.to_numpy(), sf)  # by position it would differ
    by_series = scmix.tl.fit_mixture(adata, size_factors=shuffled, copy=True, **fast())
    pd.testing.assert_frame_equal(_results(by_series), _results(by_array))


def test_size_factor_series_with_other_labels_is_refused(adata):
    before = copy.deepcopy(adata)
    unrelated = pd.Series(np.ones(N_CELLS), index=[f"barcode_{i}" for i in range(N_CELLS)])
    with pytest.raises(InputError, match=r"size_factors is a pandas Series .* lacks 200 cells"):
        scmix.tl.fit_mixture(adata, size_factors=unrelated, **fast())
    assert_adata_unchanged(before, adata)


def test_every_tool_aligns_size_factor_series(adata):
    sf = adata.obs["size_factors"].to_numpy()
    shuffled = _shuffled(sf, adata.obs_names)
    for run in (
        lambda s: scmix.tl.select_n_components(adata, [1, 2], size_factors=s, copy=True, **fast()),
        lambda s: scmix.tl.fit_mixture(adata, shared=True, size_factors=s, copy=True, **fast()),
    ):
        a, b = run(sf), run(shuffled)
        pd.testing.assert_frame_equal(b.var, a.var)
    modes_array = scmix.tl.size_factor_modes(adata, size_factors=sf, copy=True)
    modes_series = scmix.tl.size_factor_modes(adata, size_factors=shuffled, copy=True)
    np.testing.assert_array_equal(
        modes_series.obsm["size_factor_modes"], modes_array.obsm["size_factor_modes"]
    )


def test_estimator_aligns_series_on_the_dataframe_index(adata):
    X = pd.DataFrame(adata.X, index=adata.obs_names, columns=adata.var_names)
    sf = adata.obs["size_factors"]
    by_array = NegativeBinomialMixture(**fast()).fit(X.to_numpy(), size_factors=sf.to_numpy())
    by_series = NegativeBinomialMixture(**fast()).fit(
        X, size_factors=_shuffled(sf, adata.obs_names)
    )
    np.testing.assert_array_equal(by_series.means_, by_array.means_)
    with pytest.raises(InputError, match="no cell names to align it with"):
        NegativeBinomialMixture(**fast()).fit(
            X.to_numpy(), size_factors=_shuffled(sf, adata.obs_names)
        )


def test_boolean_mask_series_is_aligned_on_var_names(adata):
    mask = np.zeros(N_GENES, dtype=bool)
    mask[[1, 2, 5]] = True
    by_array = scmix.tl.fit_mixture(adata, mask_var=mask, copy=True, **fast())
    series = _shuffled(mask, adata.var_names, seed=3)
    by_series = scmix.tl.fit_mixture(adata, mask_var=series, copy=True, **fast())
    assert list(by_series.uns["scmix"]["var_names"]) == ["gene_1", "gene_2", "gene_5"]
    pd.testing.assert_frame_equal(_results(by_series), _results(by_array))


# --------------------------------------------------------------------------------------
# 2-3. flags must be boolean, size factors numeric
# --------------------------------------------------------------------------------------
def test_string_spike_in_flags_are_refused():
    adata = scmix.datasets.demo()
    adata.var["spike_in"] = adata.var["spike_in"].astype(str)  # "True" / "False"
    before = copy.deepcopy(adata)
    with pytest.raises(InputError, match=r"adata.var\['spike_in'\].* must be boolean.*'True'"):
        scmix.pp.size_factors(adata, method="spike_in")
    assert_adata_unchanged(before, adata)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [(lambda n: np.array(["20312"] * n), "object"), (lambda n: np.ones(n, dtype=bool), "bool")],
    ids=["strings", "booleans"],
)
def test_size_factor_column_must_be_numeric(adata, values, dtype):
    adata.obs["sample"] = values(N_CELLS)
    before = copy.deepcopy(adata)
    with pytest.raises(
        InputError, match=rf"adata.obs\['sample'\] must be numeric, got dtype {dtype}"
    ):
        scmix.tl.fit_mixture(adata, size_factors="sample", **fast())
    assert_adata_unchanged(before, adata)
    with pytest.raises(InputError, match="size_factors must be numeric"):
        scmix.tl.fit_mixture(adata, size_factors=values(N_CELLS), **fast())


# --------------------------------------------------------------------------------------
# 4. totals in float64
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [None, "counts"])
def test_size_factors_of_float16_counts_are_summed_in_float64(layer):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 2000, size=(30, 60)).astype(np.float16)  # totals ~ 60,000
    counts[:10] *= 2  # totals above 65,504, the largest float16
    adata = ad.AnnData(counts, layers={"counts": counts})  # scipy.sparse has no float16
    scmix.pp.size_factors(adata, method="library", layer=layer)
    totals = counts.astype(np.float64).sum(axis=1)
    assert np.isfinite(adata.obs["size_factors"]).all()
    np.testing.assert_allclose(adata.obs["size_factors"], totals / totals.mean(), rtol=1e-12)


# --------------------------------------------------------------------------------------
# 5. numeric options, in one place
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("chunk_size", -1, "chunk_size must be at least 1, got -1"),
        ("chunk_size", 0, "chunk_size must be at least 1, got 0"),
        ("chunk_size", 2.5, "chunk_size must be an integer, got 2.5"),
        ("n_init", 2.0, "n_init must be an integer"),
        ("max_iter", True, "max_iter must be an integer"),
        ("tol", float("nan"), "tol must be a finite number >= 0"),
        ("memory_budget", -5, "memory_budget must be at least 1"),
        ("n_jobs", 0, "n_jobs must be at least 1"),
        ("n_bootstrap", -1, "n_bootstrap must be at least 0"),
        ("bootstrap_early_stop", 1.5, "bootstrap_early_stop must be an integer"),
        ("bic_threshold", float("inf"), "bic_threshold must be a finite number"),
        ("min_weight", 2, "min_weight must be a finite number >= 0 and <= 1"),
        ("random_state", "abc", "random_state must be None or a non-negative integer"),
        ("random_state", -1, "random_state must be None or a non-negative integer"),
    ],
)
def test_numeric_options_are_checked_before_the_fit(adata, option, value, message):
    before = copy.deepcopy(adata)
    with pytest.raises(InputError, match=re.escape(message)):
        scmix.tl.fit_mixture(adata, **{**fast(), option: value})
    assert_adata_unchanged(before, adata)


@pytest.mark.parametrize(
    "run",
    [
        lambda a: scmix.tl.select_n_components(a, [1, 2], n_init=0),
        lambda a: scmix.tl.size_factor_modes(a, random_state="abc"),
        lambda a: scmix.tl.goodness_of_fit(a, random_state=1.5),
        lambda a: NegativeBinomialMixture(chunk_size=-1).fit(a.X),
    ],
    ids=["select", "modes", "gof", "estimator"],
)
def test_every_entry_point_checks_its_options(run):
    adata = make_adata()
    scmix.tl.fit_mixture(adata, **fast())
    before = copy.deepcopy(adata)
    with pytest.raises(InputError, match="must be"):
        run(adata)
    assert_adata_unchanged(before, adata)


# --------------------------------------------------------------------------------------
# 6. duplicate gene names
# --------------------------------------------------------------------------------------
def test_duplicate_var_names_are_refused_by_name(adata):
    adata.var_names = ["gene_0", "gene_1", "gene_1", "gene_3", "gene_4", "gene_5", "gene_5", "x"]
    before = copy.deepcopy(adata)
    pattern = r"var_names are not unique: \['gene_1', 'gene_5'\].*var_names_make_unique"
    with pytest.raises(InputError, match=pattern):
        scmix.tl.fit_mixture(adata, **fast())
    assert_adata_unchanged(before, adata)


def test_tools_on_a_fit_refuse_names_made_duplicate_later(adata):
    scmix.tl.fit_mixture(adata, **fast())
    adata.var_names = ["g"] * N_GENES
    for run in (
        lambda: scmix.get.mixture_df(adata),
        lambda: scmix.pl.mixture(adata, "g", show=False),
        lambda: scmix.tl.goodness_of_fit(adata),
    ):
        with pytest.raises(InputError, match="var_names_make_unique"):
            run()


# --------------------------------------------------------------------------------------
# 7. goodness_of_fit reads its inputs through the same checks
# --------------------------------------------------------------------------------------
def test_goodness_of_fit_checks_size_factors_and_counts(adata):
    scmix.tl.fit_mixture(adata, **fast())
    adata.obs.loc["cell_4", "size_factors"] = 0.0
    before = copy.deepcopy(adata)
    with pytest.raises(InputError, match=r"size_factors'\] must be positive .*zero.*'cell_4'"):
        scmix.tl.goodness_of_fit(adata)
    assert_adata_unchanged(before, adata)

    adata.obs.loc["cell_4", "size_factors"] = 1.0
    X = adata.X.astype(np.float64)
    X[2, 5] = -1
    adata.X = X
    with pytest.raises(InputError, match=r"X must hold non-negative integer counts.*'gene_5'"):
        scmix.tl.goodness_of_fit(adata)
    with pytest.raises(InputError, match="must be positive"):
        scmix.tl.goodness_of_fit(adata, size_factors=np.zeros(N_CELLS))


# --------------------------------------------------------------------------------------
# 8. a key owns its columns by exact name
# --------------------------------------------------------------------------------------
def test_refit_after_concat_removes_the_old_components(adata):
    scmix.tl.fit_mixture(adata, 3, **fast())
    joined = ad.concat([adata[:100], adata[100:]], merge="same")  # .uns is dropped
    assert "scmix_mean_2" in joined.var and "scmix" not in joined.uns
    scmix.tl.fit_mixture(joined, 2, **fast())
    assert "scmix_mean_2" not in joined.var
    table = scmix.get.mixture_df(joined)
    assert {"mean_0", "mean_1"} <= set(table.columns) and "mean_2" not in table.columns


def test_keys_sharing_a_prefix_stay_apart(adata):
    scmix.tl.fit_mixture(adata, **fast())
    scmix.tl.fit_mixture(adata, 3, key_added="scmix_mean", **fast())
    table = scmix.get.mixture_df(adata, key="scmix")
    assert not [c for c in table.columns if c.startswith("mean_mean") or c == "mean_loglik"]
    assert sorted(c for c in table.columns if c.startswith("mean_")) == ["mean_0", "mean_1"]
    scmix.tl.fit_mixture(adata, **fast())  # a refit of "scmix" keeps "scmix_mean"'s columns
    assert "scmix_mean_mean_2" in adata.var and "scmix_mean_loglik" in adata.var


# --------------------------------------------------------------------------------------
# 9-10. masked arrays, backed sparse data
# --------------------------------------------------------------------------------------
def test_masked_arrays_are_refused(adata):
    X = np.ma.masked_array(adata.X.astype(float), mask=np.zeros(adata.shape, dtype=bool))
    X[3, 2] = 1e6
    X.mask[3, 2] = True
    adata.X = X
    with pytest.raises(InputError, match="masked array"):
        scmix.tl.fit_mixture(adata, **fast())
    with pytest.raises(InputError, match="masked array"):
        NegativeBinomialMixture(**fast()).fit(X)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_backed_sparse_counts_are_read_in_blocks(tmp_path, monkeypatch, fmt):
    import scmix._inputs as inputs

    adata = make_adata(as_sparse=True)
    adata.X = sparse.csr_matrix(adata.X) if fmt == "csr" else sparse.csc_matrix(adata.X)
    adata.write_h5ad(tmp_path / "counts.h5ad")
    monkeypatch.setattr(inputs, "_BACKED_ROWS", 64)  # several blocks of cells
    backed = ad.read_h5ad(tmp_path / "counts.h5ad", backed="r")
    mask = ["gene_0", "gene_3", "gene_6"]
    scmix.tl.fit_mixture(backed, mask_var=mask, **fast())
    in_memory = scmix.tl.fit_mixture(adata, mask_var=mask, copy=True, **fast())
    pd.testing.assert_frame_equal(_results(backed), _results(in_memory))


# --------------------------------------------------------------------------------------
# 14. smaller messages
# --------------------------------------------------------------------------------------
def test_empty_axes_are_named_without_numpy_warnings(adata):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=r"adata has no cells \(n_obs = 0\)"):
            scmix.tl.fit_mixture(adata[:0].copy(), **fast())
        with pytest.raises(InputError, match=r"adata has no genes \(n_vars = 0\)"):
            scmix.tl.fit_mixture(adata[:, :0].copy(), **fast())
        with pytest.raises(InputError, match="adata has no cells"):
            scmix.pp.size_factors(adata[:0].copy(), method="library")


def test_nullable_mask_with_missing_values(adata):
    adata.var["keep"] = pd.array([True, None] * (N_GENES // 2), dtype="boolean")
    with pytest.raises(InputError, match=r"mask_var column 'keep' has 4 missing value\(s\)"):
        scmix.tl.fit_mixture(adata, mask_var="keep", **fast())


def test_integer_positions_are_not_gene_names(adata):
    with pytest.raises(InputError, match=r"boolean mask or gene names.*var_names\[positions\]"):
        scmix.tl.fit_mixture(adata, mask_var=np.array([0, 3]), **fast())


@pytest.mark.parametrize(
    "run",
    [
        lambda a: scmix.tl.select_n_components(a, [1, 2], key_added=""),
        lambda a: scmix.tl.fit_mixture(a, key_added=""),
        lambda a: scmix.tl.size_factor_modes(a, key_added=""),
        lambda a: scmix.pp.size_factors(a, method="library", key_added=""),
        lambda a: scmix.pp.flag_spike_ins(a, prefix="gene_", key_added=""),
    ],
)
def test_empty_keys_are_refused(adata, run):
    before = copy.deepcopy(adata)
    with pytest.raises(InputError, match="key_added must be a non-empty string"):
        run(adata)
    assert_adata_unchanged(before, adata)


def test_missing_keys_are_key_errors_with_plain_messages(adata):
    with pytest.raises(InputKeyError) as error:
        scmix.tl.fit_mixture(adata, layer="spliced")
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)
    assert str(error.value).startswith("layer 'spliced' is not in adata.layers")


# --------------------------------------------------------------------------------------
# the writer: all or nothing
# --------------------------------------------------------------------------------------
def test_a_write_failing_midway_restores_every_part(adata, monkeypatch):
    """If storing ``.uns`` fails after ``.var``, ``.obs`` and ``.obsm`` were assigned, all
    of them go back to what they were: they never disagree."""
    import scmix.tl._write as write

    scmix.tl.fit_mixture(adata, 3, **fast())  # an earlier fit, to be replaced
    before = copy.deepcopy(adata)
    earlier = adata.uns["scmix"]
    original = write._set_entries

    def fails_on_uns(mapping, entries):
        if mapping is adata.uns and entries.get("scmix", earlier) is not earlier:
            raise MemoryError("simulated failure while storing the new .uns")
        original(mapping, entries)

    monkeypatch.setattr(write, "_set_entries", fails_on_uns)
    with pytest.raises(MemoryError):
        scmix.tl.fit_mixture(adata, 2, **fast())
    assert_adata_unchanged(before, adata)
