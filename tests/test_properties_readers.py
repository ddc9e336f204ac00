"""Property-based tests (hypothesis): readers of a stored fit, refits, pandas alignment,
storage of the counts, views and the array estimator. See
test_properties_tools.py for the generated inputs and the oracle."""

from __future__ import annotations

import copy

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pandas.testing as pdt
from adata_helpers import assert_value_equal
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from properties_checks import (
    Problem,
    adata_problems,
    assert_only_added,
    assert_same_results,
    assert_unchanged,
    counts_of,
    counts_problems,
    entry_problems,
    fit_columns,
    fit_results,
    median_ratio,
    outcome,
    same_matrix,
    sf_problems,
)
from properties_inputs import (
    DTYPES,
    FAST,
    LAYOUTS,
    STORAGES,
    cases,
    dense,
    examples,
    one_in,
    quiet,
    stored,
)

import scmix
from scmix.models import NegativeBinomialMixture


# --------------------------------------------------------------------------------------
# the readers of a stored fit: goodness_of_fit, get.*, pl.mixture
# --------------------------------------------------------------------------------------
@given(case=cases(problems=False), data=st.data())
@examples(25)
def test_readers_of_a_fit_name_what_is_missing_and_change_nothing(case, data):
    adata = case.adata
    gene = adata.var_names[data.draw(st.integers(0, adata.n_vars - 1))]
    no_fit = [Problem(("'fit'", "fit_mixture"), key=True)]
    readers = {
        "goodness_of_fit": lambda: scmix.tl.goodness_of_fit(adata, key="fit"),
        "mixture_df": lambda: scmix.get.mixture_df(adata, key="fit"),
        "responsibilities": lambda: scmix.get.responsibilities(adata, gene, key="fit"),
        "pl.mixture": lambda: scmix.pl.mixture(adata, gene, key="fit", show=False),
    }
    for call in readers.values():
        outcome(adata, call, no_fit)

    with quiet():
        scmix.tl.fit_mixture(adata, key_added="fit", **FAST, **case.fit_kwargs())
    fitted = case.mask_sel & (counts_of(adata, case.layer) > 0).any(axis=0)
    names = adata.var_names

    # mixture_df: the fitted genes, by decreasing delta BIC
    _, _, table = outcome(adata, readers["mixture_df"], [])
    assert table.index.name == "gene"
    assert sorted(table.index) == sorted(names[fitted])
    assert list(table.columns[:3]) == ["bimodal", "delta_bic", "lrt"]
    assert (np.diff(table["delta_bic"].to_numpy()) <= 0).all()

    # responsibilities of a fitted gene; a clear error for any other
    position = names.get_loc(gene)
    problems = [] if fitted[position] else [Problem((repr(gene), "not fitted"))]
    succeeded, _, resp = outcome(adata, readers["responsibilities"], problems)
    if succeeded:
        assert list(resp.columns) == ["component_0", "component_1"]
        assert list(resp.index) == list(adata.obs_names)
        np.testing.assert_allclose(resp.sum(axis=1), 1.0, atol=1e-5)
    outcome(
        adata,
        lambda: scmix.get.responsibilities(adata, "nope", key="fit"),
        [Problem(("'nope'",), key=True)],
    )

    # pl.mixture: an Axes for a fitted gene
    sf_given = {} if case.sf_mode in ("key", "none") else {"size_factors": case.sf}
    succeeded, _, ax = outcome(
        adata,
        lambda: scmix.pl.mixture(adata, gene, key="fit", show=False),
        problems,
    )
    if succeeded:
        assert ax.get_title().startswith(gene)
        plt.close(ax.figure)

    # goodness_of_fit: the size factors given as an array were kept in .obs by the fit
    assert ("fit_size_factors" in adata.obs) == bool(sf_given)
    succeeded, before, _ = outcome(adata, readers["goodness_of_fit"], [])
    assert_only_added(before, adata, var=["fit_gof_ks", "fit_gof_pvalue"], updated=["fit"])
    # .uns["fit"] gains the settings (and lists the new columns)
    old, new = before.uns["fit"], adata.uns["fit"]
    assert set(new) - set(old) == {"goodness_of_fit"}
    for name in set(old) - {"var_columns"}:
        assert_value_equal(old[name], new[name], f"uns['fit'][{name!r}]")
    pvalue = adata.var["fit_gof_pvalue"].to_numpy(float)
    np.testing.assert_array_equal(np.isfinite(pvalue), fitted)
    assert ((pvalue[fitted] >= 0) & (pvalue[fitted] <= 1)).all()
    assert "mixture" in adata.uns["fit"]["goodness_of_fit"]

    # the one-component model, and the residuals of a gene
    succeeded, before, _ = outcome(
        adata,
        lambda: scmix.tl.goodness_of_fit(adata, key="fit", model="one_component", **sf_given),
        [],
    )
    columns = ["fit_single_gof_ks", "fit_single_gof_pvalue"]
    assert_only_added(before, adata, var=columns, updated=["fit"])
    np.testing.assert_array_equal(np.isfinite(adata.var[columns[1]].to_numpy(float)), fitted)
    problems = [] if fitted[position] else [Problem((repr(gene), "not fitted"), key=True)]
    succeeded, _, residuals = outcome(
        adata,
        lambda: scmix.get.quantile_residuals(adata, [gene], key="fit"),
        problems,
    )
    if succeeded:
        assert residuals.shape == (adata.n_obs, 1) and list(residuals.columns) == [gene]
        assert np.isfinite(residuals.to_numpy()).all()


REFIT_ERRORS = {
    "n_init": 0,
    "tol": -1.0,
    "size_factors": "nope",
    "mask_var": "nope",
    "layer": "nope",
    "key_added": "",
    "n_components": 0,
}


@given(
    case=cases(problems=False),
    k=st.sampled_from([1, 3]),
    bad=st.sampled_from(sorted(REFIT_ERRORS)),
)
@examples(20)
def test_a_failed_refit_keeps_the_results_and_a_refit_replaces_them(case, k, bad):
    adata = case.adata
    kwargs = {**FAST, **case.fit_kwargs()}
    with quiet():
        scmix.tl.fit_mixture(adata, k, **kwargs)
    # a failed refit under the same key leaves the earlier results (and the rest) as they were
    key = "'nope'" if REFIT_ERRORS[bad] == "nope" else bad
    outcome(
        adata,
        lambda: scmix.tl.fit_mixture(
            adata, **{"n_components": 2, **kwargs, bad: REFIT_ERRORS[bad]}
        ),
        [Problem((key,))],
    )
    # a refit with K = 2 and no responsibilities replaces every output of the first fit
    before = copy.deepcopy(adata)
    with quiet():
        scmix.tl.fit_mixture(adata, 2, store_responsibilities=False, **kwargs)
    kept = [c for c in before.var.columns if not c.startswith("scmix_")]
    assert sorted(adata.var.columns) == sorted(kept + fit_columns("scmix", 2))
    pdt.assert_frame_equal(adata.var[kept], before.var[kept])
    pdt.assert_frame_equal(adata.obs, before.obs)
    assert "scmix_responsibility_1" not in adata.layers
    assert adata.uns["scmix"]["n_components"] == 2
    gene = adata.var_names[np.flatnonzero(case.mask_sel)[0]]
    outcome(
        adata,
        lambda: scmix.get.responsibilities(adata, gene),
        [Problem(("scmix_responsibility_1", "store_responsibilities"), key=True)],
    )


# --------------------------------------------------------------------------------------
# (c) Series are aligned by their labels, (d) storage does not matter, (e) views
# --------------------------------------------------------------------------------------
def fit_copy(adata, **kwargs) -> dict[str, np.ndarray]:
    with quiet():
        fitted = adata.copy()
        scmix.tl.fit_mixture(fitted, **FAST, **kwargs)
    return fit_results(fitted)


@given(case=cases(problems=False), extra=st.booleans(), order=st.randoms(use_true_random=False))
@examples(30)
def test_shuffled_series_give_the_fit_of_aligned_arrays(case, extra, order):
    adata = case.adata
    kwargs = {"layer": case.layer}
    sel, sf = case.mask_sel, case.sf_values
    cells, genes = list(adata.obs_names), list(adata.var_names)
    order.shuffle(cells)
    order.shuffle(genes)
    sf_series = pd.Series(sf, index=adata.obs_names)[cells]
    mask_series = pd.Series(sel, index=adata.var_names)[genes]
    if extra:  # labels that are not cells or genes are not used
        sf_series = pd.concat([pd.Series([-1.0], index=["other"]), sf_series])
        mask_series = pd.concat([mask_series, pd.Series([True], index=["other"])])
    expected = fit_copy(adata, size_factors=sf, mask_var=sel, **kwargs)
    assert_same_results(
        expected,
        fit_copy(adata, size_factors=sf_series, mask_var=mask_series, **kwargs),
        "shuffled Series",
    )
    names = [g for g in genes if sel[adata.var_names.get_loc(g)] and g != "other"]
    assert_same_results(
        expected,
        fit_copy(adata, size_factors=sf_series, mask_var=names, **kwargs),
        "gene names in another order",
    )


@st.composite
def storages(draw):
    """(dtype, storage, in a layer, sparse layout, chunk_size) of a valid count matrix."""
    dtype = draw(st.sampled_from(DTYPES))
    kinds = ("dense",) if dtype == "float16" else STORAGES  # scipy.sparse has no float16
    storage = draw(st.sampled_from((*kinds, "dask")))
    return (
        dtype,
        storage,
        draw(st.booleans()),
        draw(st.sampled_from(LAYOUTS)) if storage in STORAGES[1:] else "canonical",
        draw(st.sampled_from([None, 1, 2])),
    )


@given(
    values=st.integers(3, 40).flatmap(
        lambda n: hnp.arrays(np.int64, (n, 4), elements=st.integers(0, 20))
    ),
    large=st.booleans(),
    variants=st.lists(storages(), min_size=2, max_size=3),
    family=st.sampled_from(["nb", "poisson"]),
    method=st.sampled_from(["library", "median_ratio"]),
)
@examples(30)
def test_storage_of_the_counts_does_not_change_the_results(values, large, variants, family, method):
    """int / uint / float16 / float32 / float64; dense, CSR / CSC (matrix or array, any
    layout) or dask; X or a layer; any chunk_size: the same counts give bitwise the same
    fit and the same size factors (a cell of counts 30000 sums to more than float16 holds)."""
    n_obs = values.shape[0]
    if large:
        values[0] = 30_000
    sf = np.linspace(0.5, 2.0, n_obs)
    zero_cells = [f"c{i}" for i in np.flatnonzero(values.sum(axis=1) == 0)]
    pp_problems = [Problem(("would be zero", repr(zero_cells[0])))] if zero_cells else []
    results = []
    for dtype, storage, in_layer, layout, chunk_size in variants:
        counts = stored(values.astype(dtype), storage, layout)
        adata = ad.AnnData(
            X=None if in_layer else counts,
            layers={"counts": counts} if in_layer else {},
            obs=pd.DataFrame({"size_factors": sf}, index=[f"c{i}" for i in range(n_obs)]),
            var=pd.DataFrame(index=[f"g{j}" for j in range(values.shape[1])]),
        )
        layer = "counts" if in_layer else None
        before = copy.deepcopy(adata)
        with quiet():
            scmix.tl.fit_mixture(adata, family=family, layer=layer, chunk_size=chunk_size, **FAST)
        assert_only_added(
            before,
            adata,
            var=fit_columns("scmix", 2),
            layers=["scmix_responsibility_1"],
            uns=["scmix"],
        )
        outcome(
            adata,
            lambda: scmix.pp.size_factors(adata, method, layer=layer, key_added="sf"),  # noqa: B023
            pp_problems,
        )
        results.append(fit_results(adata))
        if not zero_cells:
            results[-1]["sf"] = adata.obs["sf"].to_numpy()
    for variant, result in zip(variants[1:], results[1:], strict=True):
        assert_same_results(results[0], result, f"{variants[0]} vs {variant}")
    if not zero_cells:  # and they are the estimator's, computed in float64
        totals = values.sum(axis=1) if method == "library" else median_ratio(values.astype(float))
        np.testing.assert_allclose(results[0]["sf"], totals / totals.mean(), rtol=1e-12)


@given(case=cases(empty_axes=False), data=st.data())
@examples(40)
def test_a_view_fits_like_its_copy_and_leaves_its_parent_alone(case, data):
    parent = case.adata
    genes = st.integers(0, parent.n_vars - 1)
    size = 0 if one_in(data.draw, 8) else 1
    positions = data.draw(st.lists(genes, unique=True, min_size=size, max_size=4))
    view = parent[:, positions]
    assert view.is_view
    parent_before = copy.deepcopy(parent)
    with quiet():
        expected = view.copy()
    kwargs = {k: v for k, v in case.fit_kwargs().items() if k != "mask_var"}
    problems = adata_problems(view)
    if view.n_vars:
        problems += sf_problems(view, case.sf_mode, case.sf_kind, case.sf_pos)
        problems += counts_problems(view, case.layer, np.ones(view.n_vars, dtype=bool))
    succeeded, _, _ = outcome(view, lambda: scmix.tl.fit_mixture(view, **FAST, **kwargs), problems)
    assert_unchanged(parent_before, parent)
    # (a view of a masked array is a plain array: anndata drops the mask, its copy keeps it)
    masked = any(isinstance(m, np.ma.MaskedArray) for m in (parent.X, *parent.layers.values()))
    if succeeded and not masked:
        with quiet():
            scmix.tl.fit_mixture(expected, **FAST, **kwargs)
        assert_same_results(fit_results(expected), fit_results(view), "view vs copy")


# --------------------------------------------------------------------------------------
# the array estimator
# --------------------------------------------------------------------------------------
@given(case=cases(), as_frame=st.booleans())
@examples(50)
def test_estimator_fits_arrays_like_fit_mixture_or_names_the_problem(case, as_frame):
    adata = case.adata
    where = "counts" if "counts" in adata.layers else None
    X = adata.X if where is None else adata.layers["counts"]
    as_frame = as_frame and type(X) is np.ndarray
    if as_frame:  # cells named by the index; a size-factor Series is aligned on it
        X = pd.DataFrame(X, index=adata.obs_names)
    mode, kind = case.sf_mode, case.sf_kind
    sf = case.sf
    if mode == "absent_key":
        mode, sf = "none", None
    elif mode == "key":  # no AnnData here: the column as a Series, named by the cells
        sf = adata.obs["size_factors"]  # when X is a DataFrame, else by position (0 .. n-1)
        mode = "series" if as_frame else "array"
        sf = sf if as_frame else sf.reset_index(drop=True)
    if adata.n_obs == 0 or adata.n_vars == 0:
        problems = [Problem(("X", "no cells or no genes"))]
    else:
        cells = adata.obs_names if as_frame else None
        problems = entry_problems(dense(X), "X", cells)
        if isinstance(X, np.ma.MaskedArray):
            problems = [Problem(("X", "masked array"))]
        if mode.startswith("series") and not as_frame:
            problems.append(Problem(("size_factors", "no cell names")))
        else:
            problems += sf_problems(adata, mode, kind, case.sf_pos, named=as_frame)
    X_before, sf_before = copy.deepcopy(X), copy.deepcopy(sf)
    model = NegativeBinomialMixture(2, **FAST)
    succeeded, _, _ = outcome(adata, lambda: model.fit(X, size_factors=sf), problems)
    if isinstance(X, pd.DataFrame):
        pdt.assert_frame_equal(X, X_before)
    else:
        same_matrix(X_before, X, "X")
    if isinstance(sf, pd.Series):
        pdt.assert_series_equal(sf, sf_before)
    if not succeeded or adata.var_names.has_duplicates:
        return
    assert model.means_.shape == model.weights_.shape == (adata.n_vars, 2)
    values = None if mode == "none" else case.sf_values
    result = fit_copy(adata, size_factors=values, layer=where)
    for name, attribute in (("mean", "means_"), ("dispersion", "dispersions_")):
        for k in range(2):
            np.testing.assert_array_equal(
                getattr(model, attribute)[:, k], result[f"scmix_{name}_{k}"], err_msg=name
            )
    np.testing.assert_array_equal(model.converged_, result["scmix_converged"])
