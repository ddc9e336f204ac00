"""Property-based tests (hypothesis) of the input-validation layer.

Generated AnnData objects (counts of any numeric dtype, dense / CSR / CSC matrices and
arrays in any layout / dask / masked, in X or a layer; one bad entry; duplicated names;
size factors, gene masks and spike-in flags in every accepted and many refused forms;
shuffled Series; views; empty axes) are fed to every public function. Each call either
returns the documented result, adding only its own keys and leaving data and annotations
as they were, or raises ``InputError`` / ``InputKeyError`` whose message names the
offending argument or key (and the first offending gene and cell), with the AnnData
bitwise unchanged. Which of the two must happen is decided by an oracle computed here
from the generated input, independently of scmix; any other exception fails the test.

Examples are derandomized (the same on every run) and small; a failure prints the
shrunk input (``Case.__repr__``). The plain tests at the end pin the inputs on which
these properties first failed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from properties_checks import (
    Problem,
    adata_problems,
    assert_only_added,
    assert_unchanged,
    check_fit,
    counts_of,
    counts_problems,
    entry_problems,
    fit_problems,
    mask_problems,
    median_ratio,
    outcome,
    sf_columns,
    sf_problems,
)
from properties_inputs import FAST, Case, cases, dense, examples

import scmix
from scmix.models import NegativeBinomialMixture


# --------------------------------------------------------------------------------------
# (a), (b): every public function, on every generated input
# --------------------------------------------------------------------------------------
@given(case=cases(), family=st.sampled_from(["nb", "poisson"]), copy_=st.booleans())
@examples(150)
def test_fit_mixture_gives_its_outputs_or_names_the_problem(case, family, copy_):
    adata = case.adata
    succeeded, before, result = outcome(
        adata,
        lambda: scmix.tl.fit_mixture(adata, family=family, copy=copy_, **FAST, **case.fit_kwargs()),
        fit_problems(case),
    )
    if not succeeded:
        return
    if copy_:  # the results are in the returned copy, the input is left alone
        assert_unchanged(before, adata)
        adata = result
    else:
        assert result is None
    check_fit(before, adata, key="scmix", k=2, genes=case.mask_sel, layer=case.layer)


@given(case=cases(), k=st.sampled_from([1, 2, 3]))
@examples(40)
def test_shared_fit_gives_cell_classes_or_names_the_problem(case, k):
    """fit_mixture(shared=True): one class per cell over the selected genes that have counts."""
    adata = case.adata
    problems = fit_problems(case)
    counts_valid = not any(w.endswith(" must") for p in problems for w in p.words)
    if adata.n_obs and adata.n_vars and case.mask_sel is not None and counts_valid:
        layer_ok = (case.layer is None and adata.X is not None) or case.layer in adata.layers
        if layer_ok and not (counts_of(adata, case.layer)[:, case.mask_sel] > 0).any():
            problems.append(Problem(("shared=True", "non-zero count")))
    succeeded, before, _ = outcome(
        adata,
        lambda: scmix.tl.fit_mixture(
            adata, k, shared=True, key_added="cells", **FAST, **case.fit_kwargs()
        ),
        problems,
    )
    if not succeeded:
        return
    columns = [f"cells_{w}_{c}" for c in range(k) for w in ("mean", "dispersion", "weight")]
    columns += ["cells_single_mean", "cells_single_dispersion", "cells_loglik_1"]
    assert_only_added(
        before,
        adata,
        var=columns,
        obs=["cells_component", *sf_columns(adata, "cells")],
        obsm=["cells_responsibilities"],
        uns=["cells"],
    )
    fitted = case.mask_sel & (counts_of(before, case.layer) > 0).any(axis=0)
    mean = adata.var["cells_mean_0"].to_numpy(float)
    np.testing.assert_array_equal(np.isfinite(mean), fitted)
    resp = adata.obsm["cells_responsibilities"]
    assert resp.shape == (adata.n_obs, k)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, atol=1e-5)
    labels = adata.obs["cells_component"]
    assert list(labels.cat.categories) == [str(c) for c in range(k)]
    np.testing.assert_array_equal(labels.to_numpy().astype(int), resp.argmax(axis=1))
    assert list(adata.uns["cells"]["var_names"]) == list(adata.var_names[fitted])


@given(case=cases())
@examples(40)
def test_select_n_components_gives_its_outputs_or_names_the_problem(case):
    adata = case.adata
    succeeded, before, _ = outcome(
        adata,
        lambda: scmix.tl.select_n_components(
            adata, [2, 1], key_added="sel", **FAST, **case.fit_kwargs()
        ),
        fit_problems(case),
    )
    if not succeeded:
        return
    columns = [f"sel_{w}_{k}" for k in (1, 2) for w in ("loglik", "bic")]
    assert_only_added(before, adata, var=[*columns, "sel_n_components"], uns=["sel"])
    fitted = case.mask_sel & (counts_of(before, case.layer) > 0).any(axis=0)
    bic = np.column_stack([adata.var[f"sel_bic_{k}"].to_numpy(float) for k in (1, 2)])
    np.testing.assert_array_equal(np.isfinite(bic).all(axis=1), fitted)
    chosen = adata.var["sel_n_components"].to_numpy()
    np.testing.assert_array_equal(chosen[fitted], 1 + np.argmin(bic[fitted], axis=1))
    assert (chosen[~fitted] == 0).all()
    assert list(adata.uns["sel"]["var_names"]) == list(adata.var_names[case.mask_sel])


def pp_problems(case: Case, method: str) -> tuple[list[Problem], np.ndarray | None]:
    """Problems of scmix.pp.size_factors(method, mask_var=case's mask if any), and the
    genes it sums over (None when that is undefined)."""
    adata = case.adata
    if adata.n_obs == 0 or adata.n_vars == 0:
        return adata_problems(adata), None
    problems = adata_problems(adata)
    genes = None
    if case.mask_kind != "none":
        problems += mask_problems(case)
        genes = case.mask_sel
    elif case.spike_kind == "absent":
        if method == "spike_in":
            problems.append(Problem(("'spike_in'",), key=True))
        else:
            genes = np.ones(adata.n_vars, dtype=bool)
    elif case.spike_kind in ("string", "nullable_na"):
        problems.append(Problem(("spike_in",)))
    else:
        flags = adata.var["spike_in"].to_numpy(dtype=bool)
        genes = flags if method == "spike_in" else ~flags
        if not genes.any():
            problems.append(Problem(("spike_in", "no ")))
            genes = None
    if genes is None:
        return problems, None
    invalid = counts_problems(adata, case.layer, genes)
    if invalid or case.layer not in (None, *adata.layers):
        return problems + invalid, None
    zero = ~(counts_of(adata, case.layer)[:, genes] > 0).any(axis=1)
    if zero.any():
        first = repr(str(adata.obs_names[np.flatnonzero(zero)[0]]))
        problems.append(Problem(("would be zero", first)))
    return problems, genes


def pp_size_factors(case: Case, method: str, key: str = "sf_new"):
    """scmix.pp.size_factors on the case's counts (and mask, if any)."""
    kwargs = {"layer": case.layer}
    if case.mask_kind != "none":
        kwargs["mask_var"] = case.mask
    return lambda: scmix.pp.size_factors(case.adata, method, key_added=key, **kwargs)


@given(case=cases(), method=st.sampled_from(["spike_in", "library", "median_ratio"]))
@examples(60)
def test_size_factors_are_the_estimator_or_name_the_problem(case, method):
    adata = case.adata
    problems, genes = pp_problems(case, method)
    succeeded, before, _ = outcome(adata, pp_size_factors(case, method), problems)
    if not succeeded:
        return
    assert_only_added(before, adata, obs=["sf_new"])
    counts = counts_of(before, case.layer)[:, genes]
    raw = median_ratio(counts) if method == "median_ratio" else counts.sum(axis=1)
    np.testing.assert_allclose(adata.obs["sf_new"].to_numpy(), raw / raw.mean(), rtol=1e-10)


@given(case=cases(), prefix=st.sampled_from(["ERCC-", "g", "MT-"]))
@examples(30)
def test_flag_spike_ins_flags_the_prefix_or_names_the_problem(case, prefix):
    adata = case.adata
    flags = np.asarray(adata.var_names.str.startswith(prefix), dtype=bool)
    problems = adata_problems(adata)
    if not problems and not flags.any():
        problems = [Problem((repr(prefix),))]
    succeeded, before, _ = outcome(
        adata, lambda: scmix.pp.flag_spike_ins(adata, prefix, key_added="flag"), problems
    )
    if succeeded:
        assert_only_added(before, adata, var=["flag"])
        assert adata.var["flag"].dtype == bool
        np.testing.assert_array_equal(adata.var["flag"].to_numpy(), flags)


@given(case=cases())
@examples(40)
def test_size_factor_modes_gives_the_modes_or_names_the_problem(case):
    adata = case.adata
    # documented: an .obs column or an array (with "none" the column holds valid values)
    mode = "key" if case.sf_mode == "none" else case.sf_mode
    kwargs = {} if mode in ("key", "absent_key") else {"size_factors": case.sf}
    problems = adata_problems(adata)
    if adata.n_obs and adata.n_vars:
        problems += sf_problems(adata, mode, case.sf_kind, case.sf_pos)
        if not problems and np.ptp(case.sf_values) == 0:  # one mode: may be refused
            problems.append(Problem(("size_factors",), optional=True))
    succeeded, before, _ = outcome(
        adata,
        lambda: scmix.tl.size_factor_modes(
            adata, 2, n_init=1, max_iter=50, key_added="modes", **kwargs
        ),
        problems,
    )
    if not succeeded:
        return
    assert_only_added(before, adata, obs=["modes"], obsm=["modes"], uns=["modes"])
    labels = adata.obs["modes"]
    assert list(labels.cat.categories) == ["0", "1"]
    resp = adata.obsm["modes"]
    assert resp.shape == (adata.n_obs, 2)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(labels.to_numpy().astype(int), resp.argmax(axis=1))
    uns = adata.uns["modes"]
    for name in ("means", "sds", "size_factors", "weights", "elbo", "converged", "params"):
        assert name in uns, name
    assert (np.diff(uns["means"]) >= 0).all(), "modes not by increasing mean"
    np.testing.assert_allclose(uns["size_factors"], np.exp(uns["means"]))


@given(case=cases(problems=False, bad_count=True))
@examples(40)
def test_one_bad_count_is_named_wherever_it_is_used(case):
    """One NaN / inf / negative / fractional count: every function that reads it refuses
    the input, naming X or the layer, the kind of value, its gene and its cell; a function
    that does not read it (the gene is outside mask_var) succeeds."""
    adata = case.adata
    calls = {
        "fit_mixture": lambda: scmix.tl.fit_mixture(adata, **FAST, **case.fit_kwargs()),
        "select_n_components": lambda: scmix.tl.select_n_components(
            adata, [1, 2], **FAST, **case.fit_kwargs()
        ),
    }
    for call in calls.values():
        outcome(adata, call, fit_problems(case))
    outcome(adata, pp_size_factors(case, "library"), pp_problems(case, "library")[0])
    X = adata.X if case.layer is None else adata.layers[case.layer]
    outcome(
        adata,
        lambda: NegativeBinomialMixture(2, **FAST).fit(X, size_factors=case.sf_values),
        entry_problems(dense(X), "X"),
    )
