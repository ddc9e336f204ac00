"""The oracle of the property-based tests: which problems a generated input has (worked
out here, independently of scmix), and the checks of a call's outcome: the documented
result, or an InputError naming a problem with the AnnData unchanged."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas.testing as pdt
import pytest
from adata_helpers import assert_adata_unchanged, assert_matrix_equal, assert_value_equal
from hypothesis import currently_in_test_context, event
from properties_inputs import BAD_SF_TYPES, SF_LABEL, Case, dense, quiet

from scmix._core.errors import InputError, InputKeyError


# --------------------------------------------------------------------------------------
# the oracle: which problems an input has, and what an error about each must say
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """An input problem; an error about it contains every word (``key``: InputKeyError).
    ``optional``: the input is valid but unusual, the call may also succeed."""

    words: tuple[str, ...]
    key: bool = False
    optional: bool = False


def adata_problems(adata) -> list[Problem]:
    """No cells, no genes, or duplicated gene names."""
    if adata.n_obs == 0:
        return [Problem(("n_obs = 0",))]
    if adata.n_vars == 0:
        return [Problem(("n_vars = 0",))]
    names = adata.var_names
    if names.has_duplicates:
        first = names[names.duplicated()][0]
        return [Problem(("var_names", repr(first), "var_names_make_unique"))]
    return []


def entry_problems(values, what, cells=None, genes=None) -> list[Problem]:
    """Invalid counts in ``values`` (cells x genes): one problem per kind, naming the first
    offending gene and cell (by name, or by position when there are no names)."""
    with np.errstate(invalid="ignore"):
        kinds = {
            "NaN": np.isnan(values),
            "infinite": np.isinf(values),
            "negative": values < 0,
            "non-integer": np.isfinite(values) & (values != np.round(values)),
        }
    problems = []
    for label, bad in kinds.items():
        if bad.any():
            rows, cols = np.nonzero(bad)
            gene = f"at positions {cols.min()}" if genes is None else repr(str(genes[cols.min()]))
            cell = f"at positions {rows.min()}" if cells is None else repr(str(cells[rows.min()]))
            problems.append(Problem((f"{what} must", label, f"genes {gene}", f"cells {cell}")))
    return problems


def counts_problems(adata, layer, genes) -> list[Problem]:
    """A missing X or layer, or invalid counts in the ``genes`` (bool mask) used."""
    if layer is None:
        if adata.X is None:
            return [Problem(("adata.X",))]
        matrix, what = adata.X, "X"
    elif layer not in adata.layers:
        return [Problem(("layer", repr(layer)), key=True)]
    else:
        matrix, what = adata.layers[layer], f"layer {layer!r}"
    if isinstance(matrix, np.ma.MaskedArray):
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        return [Problem((where, "masked array"))]
    return entry_problems(dense(matrix)[:, genes], what, adata.obs_names, adata.var_names[genes])


def sf_problems(adata, mode: str, kind: str, pos: int, named: bool = True) -> list[Problem]:
    """Problems of size factors passed as ``mode`` holding ``kind`` values (``named``: the
    errors name cells by ``obs_names``, else by position)."""
    cell = repr(str(adata.obs_names[pos])) if named and adata.n_obs else f"at positions {pos}"
    if mode == "none":
        return []
    if mode == "absent_key":
        return [Problem(("size_factors",), key=True)]
    if mode == "short":
        return [Problem(("size_factors", "one value per cell"))]
    if mode == "masked":
        return [Problem(("size_factors", "masked array"))]
    if mode == "2d":
        return [Problem(("size_factors", "one-dimensional"))]
    problems = []
    if mode in ("series", "series_missing") and adata.obs_names.has_duplicates:
        problems.append(Problem(("size_factors",)))
    if mode == "series_missing":
        problems.append(Problem(("size_factors", "lacks")))
    elif kind == "nullable_na":
        problems.append(Problem(("size_factors", "NaN", cell)))
    elif kind in SF_LABEL:
        problems.append(Problem(("size_factors", SF_LABEL[kind], cell)))
    elif kind in BAD_SF_TYPES:
        problems.append(Problem(("size_factors", "numeric")))
    return problems


MASK_PROBLEMS = {
    "str_column": Problem(("mask_var", "'use_str'", "boolean")),
    "nullable_column_na": Problem(("mask_var", "'use_na'", "missing")),
    "nullable_series_na": Problem(("mask_var", "missing")),
    "wrong_length": Problem(("mask_var", "one entry per gene")),
    "missing_column": Problem(("mask_var", "'nope'"), key=True),
    "bool_series_missing": Problem(("mask_var", "lacks")),
    "unknown_names": Problem(("mask_var", "'nope'"), key=True),
    "positions": Problem(("mask_var", "boolean mask or gene names")),
    "nothing": Problem(("mask_var", "selects no gene")),
}


def mask_problems(case: Case) -> list[Problem]:
    if case.mask_kind in MASK_PROBLEMS:
        return [MASK_PROBLEMS[case.mask_kind]]
    series = case.mask_kind in ("bool_series", "nullable_series")
    if series and case.adata.var_names.has_duplicates:
        return [Problem(("mask_var", "not unique"))]
    return []


def fit_problems(case: Case) -> list[Problem]:
    """Every problem a fit of ``case`` may report (an error must name one of them)."""
    adata = case.adata
    if adata.n_obs == 0 or adata.n_vars == 0:
        return adata_problems(adata)
    problems = adata_problems(adata) + mask_problems(case)
    problems += sf_problems(adata, case.sf_mode, case.sf_kind, case.sf_pos)
    genes = case.mask_sel if case.mask_sel is not None else np.ones(adata.n_vars, dtype=bool)
    return problems + counts_problems(adata, case.layer, genes)


def assert_names_a_problem(error: InputError, problems: list[Problem]) -> None:
    message = str(error)
    named = [
        p
        for p in problems
        if all(w in message for w in p.words) and (not p.key or isinstance(error, InputKeyError))
    ]
    assert named, f"{type(error).__name__}({message!r}) names none of {problems}"


def outcome(adata, call, problems: list[Problem]):
    """Run ``call()``. With ``problems`` (not all optional) it must raise an InputError
    naming one of them and leave ``adata`` as it was; without, it must succeed (with only
    optional problems it may also raise an InputError naming one). Returns (succeeded, a
    deep copy of ``adata`` from before the call, the call's result)."""
    before = None if adata.is_view else copy.deepcopy(adata)
    if currently_in_test_context():  # what was generated: --hypothesis-show-statistics
        event("error expected" if problems else "success expected")
        for problem in problems:
            event(f"problem: {' '.join(problem.words[:2])}")
    if any(not p.optional for p in problems):
        with quiet(), pytest.raises(InputError) as info:
            call()
        failed(info.value, before, adata, problems)
        return False, before, None
    try:
        with quiet():
            result = call()
    except InputError as error:
        if not problems:
            raise
        failed(error, before, adata, problems)
        return False, before, None
    return True, before, result


def failed(error, before, adata, problems) -> None:
    assert_names_a_problem(error, problems)
    if before is None:  # anndata cannot deep-copy a view: it must still be one
        assert adata.is_view, "the view became an AnnData: something was written to it"
    else:
        assert_unchanged(before, adata)


# --------------------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------------------
def same_matrix(before, after, what: str) -> None:
    if before is None:
        assert after is None, f"{what} was None"
    else:
        assert_matrix_equal(before, after, what)


def assert_only_added(
    before, after, *, var=(), obs=(), obsm=(), layers=(), uns=(), updated=()
) -> None:
    """``after`` is ``before`` (a deep copy) plus exactly the named entries: data, layers,
    names, existing columns and entries (but the ``updated`` ones of .uns) unchanged."""
    assert after.shape == before.shape
    same_matrix(before.X, after.X, "X")
    assert list(after.layers)[: len(before.layers)] == list(before.layers), "layers changed"
    assert set(after.layers) - set(before.layers) == set(layers), "layers keys"
    for name in before.layers:
        same_matrix(before.layers[name], after.layers[name], f"layers[{name!r}]")
    for axis, added in (("obs", obs), ("var", var)):
        old, new = getattr(before, axis), getattr(after, axis)
        assert set(new.columns) - set(old.columns) == set(added), f"{axis} columns"
        assert list(new.columns[: len(old.columns)]) == list(old.columns), f"{axis} columns"
        pdt.assert_frame_equal(new[list(old.columns)], old, obj=axis)
    assert set(after.uns) - set(before.uns) == set(uns), "uns keys"
    for name in before.uns:
        if name not in updated:
            assert_value_equal(before.uns[name], after.uns[name], f"uns[{name!r}]")
    assert set(after.obsm) - set(before.obsm) == set(obsm), "obsm keys"
    for name in before.obsm:
        same_matrix(before.obsm[name], after.obsm[name], f"obsm[{name!r}]")


def assert_unchanged(before, after) -> None:
    assert_only_added(before, after)
    if before.X is not None:
        assert_adata_unchanged(before, after)


def fit_columns(key: str, k: int, bootstrap: bool = False) -> list[str]:
    """The documented .var outputs of fit_mixture."""
    columns = [f"{key}_{w}_{c}" for c in range(k) for w in ("mean", "dispersion", "weight")]
    scalars = ["single_mean", "single_dispersion", "loglik", "loglik_1", "bic", "bic_1"]
    scalars += ["delta_bic", "lrt", "bimodal", "converged", "n_iter"]
    scalars += ["lrt_pvalue", "lrt_padj"] if bootstrap else []
    return columns + [f"{key}_{s}" for s in scalars]


def counts_of(adata, layer) -> np.ndarray:
    return dense(adata.X if layer is None else adata.layers[layer])


def sf_columns(adata, key: str) -> list[str]:
    """The ``.obs`` column a fit writes when its size factors were an array or Series."""
    return [f"{key}_size_factors"] if adata.uns[key]["params"]["size_factors"] == "array" else []


def resp_layers(key: str, k: int) -> list[str]:
    """The documented responsibility layers of a per-gene fit."""
    return [f"{key}_responsibility_{c}" for c in range(1, k)]


def check_fit(before, adata, *, key, k, genes, layer, store=True, bootstrap=False) -> None:
    """fit_mixture's documented outputs, and nothing else added."""
    assert_only_added(
        before,
        adata,
        var=fit_columns(key, k, bootstrap),
        obs=sf_columns(adata, key),
        layers=resp_layers(key, k) if store else [],
        uns=[key],
    )
    fitted = genes & (counts_of(before, layer) > 0).any(axis=0)
    var = adata.var

    def stack(what):
        return np.column_stack([var[f"{key}_{what}_{c}"].to_numpy(float) for c in range(k)])

    mean, weight = stack("mean"), stack("weight")
    np.testing.assert_array_equal(np.isfinite(var[f"{key}_single_mean"].to_numpy(float)), fitted)
    assert np.isfinite(mean[fitted]).all() and np.isnan(mean[~fitted]).all()
    np.testing.assert_allclose(weight[fitted].sum(axis=1), 1.0, rtol=1e-9)
    assert (np.diff(mean[fitted], axis=1) >= 0).all(), "components not by increasing mean"
    assert not var[f"{key}_bimodal"].to_numpy()[~fitted].any()
    assert not var[f"{key}_converged"].to_numpy()[~fitted].any()
    assert (var[f"{key}_n_iter"].to_numpy()[~fitted] == 0).all()
    np.testing.assert_allclose(
        var[f"{key}_delta_bic"].to_numpy(float)[fitted],
        (var[f"{key}_bic_1"] - var[f"{key}_bic"]).to_numpy(float)[fitted],
        rtol=1e-9,
        atol=1e-9,
    )
    uns = adata.uns[key]
    assert list(uns["var_names"]) == list(adata.var_names[genes])
    assert uns["n_components"] == k
    if store and k > 1:
        layers = [adata.layers[name] for name in resp_layers(key, k)]
        assert all(x.shape == adata.shape and x.dtype == np.float32 for x in layers)
        upper = np.stack(layers, axis=-1)
        assert np.isnan(upper[:, ~fitted]).all()
        assert (upper[:, fitted] >= 0).all()
        assert (upper[:, fitted].sum(axis=-1) <= 1 + 1e-5).all()


def fit_results(adata, key: str = "scmix") -> dict[str, np.ndarray]:
    """Every .var output under ``key`` and the responsibilities, for exact comparisons."""
    results = {c: adata.var[c].to_numpy() for c in adata.var.columns if c.startswith(key + "_")}
    if f"{key}_responsibilities" in adata.obsm:
        results["responsibilities"] = np.asarray(adata.obsm[f"{key}_responsibilities"])
    for name in sorted(adata.layers):
        if name.startswith(f"{key}_responsibility_"):
            results[name] = np.asarray(adata.layers[name])
    return results


def assert_same_results(expected: dict, actual: dict, what: str) -> None:
    assert list(actual) == list(expected), what
    for name, values in expected.items():
        np.testing.assert_array_equal(actual[name], values, err_msg=f"{what}: {name}")


def median_ratio(counts: np.ndarray) -> np.ndarray:
    """DESeq2 poscounts, written out: exp median_j (log x_ij - sum_i' log x_i'j / n) over
    the positive x_ij of each cell."""
    logs = np.log(np.where(counts > 0, counts, 1.0))
    log_geo = logs.sum(axis=0) / counts.shape[0]
    return np.array(
        [np.exp(np.median((logs[i] - log_geo)[counts[i] > 0])) for i in range(counts.shape[0])]
    )
