"""Property-based tests (hypothesis) of the input-validation layer.

Generated AnnData objects (count dtypes, dense / CSR / CSC storage in X or a layer, one
bad entry, duplicated names, size factors and gene masks in every accepted form, shuffled
Series, views, empty axes) are fed to every public function. Each call either returns the
documented result, adding only its own keys and leaving data and annotations as they were,
or raises ``InputError`` / ``InputKeyError`` whose message names the offending argument or
key, with the AnnData bitwise unchanged. Which of the two must happen is decided by an
oracle computed here from the generated input, independently of scmix; any other exception
fails the test.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from adata_helpers import assert_adata_unchanged, assert_matrix_equal, assert_value_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse

import scmix
from scmix._core.errors import InputError, InputKeyError
from scmix.models import NegativeBinomialMixture


def examples(n: int):
    """Reproducible settings (same examples on every run, no example database)."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


FAST = {"n_init": 1, "max_iter": 5}


@contextmanager
def quiet():
    """Silence the warnings expected on generated input: genes without any count (not
    fitted), anndata's notes on duplicate names and on a view becoming an AnnData.
    Everything else keeps its filter: RuntimeWarnings from scmix stay errors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*genes have no non-zero count", UserWarning)
        warnings.filterwarnings(
            "ignore", r"(Observation|Variable) names are not unique", UserWarning
        )
        warnings.filterwarnings("ignore", category=ad.ImplicitModificationWarning)
        yield


# --------------------------------------------------------------------------------------
# generated inputs
# --------------------------------------------------------------------------------------
DTYPES = ("int64", "int32", "uint16", "float16", "float32", "float64")
BAD_ENTRIES = {"nan": np.nan, "inf": np.inf, "negative": -1.0, "fractional": 0.5}
#: size-factor kinds: valid ones, bad values (with the word the error uses), bad types
VALID_SF = ("ok", "float32", "int", "nullable_int")
SF_LABEL = {"zero": "zero", "nan": "NaN", "negative": "negative", "inf": "infinite"}
BAD_SF_TYPES = ("bool", "string", "categorical")
PANDAS_ONLY_SF = ("nullable_int", "nullable_na", "categorical")
VALID_MASKS = ("none", "column", "bool_array", "bool_series", "names")
BAD_MASKS = (
    "str_column",
    "missing_column",
    "bool_series_missing",
    "unknown_names",
    "positions",
    "nothing",
)


@dataclass
class Case:
    """A generated AnnData and the arguments that locate its counts, size factors and genes."""

    adata: ad.AnnData
    layer: str | None  # the layer= argument
    mask: object  # the mask_var= argument
    mask_kind: str
    mask_sel: np.ndarray | None  # the genes it selects (None: the mask is invalid)
    spike_kind: str  # .var["spike_in"]: bool, nullable, absent, string, nullable_na
    sf: object  # the size_factors= argument
    sf_mode: str  # key, array, series, none, series_missing, absent_key, short
    sf_kind: str  # what the size factors hold (VALID_SF, SF_LABEL, BAD_SF_TYPES, ...)
    sf_pos: int  # the cell of a bad size factor
    sf_values: np.ndarray  # the valid size factors of the cells (float64)

    def fit_kwargs(self) -> dict:
        """layer, mask_var and size_factors, the defaults left out."""
        kwargs = {}
        if self.layer is not None:
            kwargs["layer"] = self.layer
        if self.mask_kind != "none":
            kwargs["mask_var"] = self.mask
        if self.sf_mode not in ("key", "absent_key"):
            kwargs["size_factors"] = self.sf
        return kwargs

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        a = self.adata

        def kind(m):
            return "None" if m is None else f"{type(m).__name__}[{m.dtype}]"

        counts = a.X if self.layer is None or self.layer not in a.layers else a.layers[self.layer]
        with np.printoptions(threshold=10_000, linewidth=120):
            shown = "" if counts is None else f"\ncounts (cells x genes):\n{dense(counts)}"
            return (
                f"Case(AnnData {a.n_obs} x {a.n_vars}, X {kind(a.X)}, layers "
                f"{ {k: kind(v) for k, v in a.layers.items()} }\nobs_names {list(a.obs_names)}"
                f"\nvar:\n{a.var}\nobs['size_factors']: "
                f"{a.obs['size_factors'].to_numpy() if 'size_factors' in a.obs else None}"
                f"\nlayer={self.layer!r}, mask_var ({self.mask_kind})={self.mask!r}, "
                f"size_factors ({self.sf_mode}, {self.sf_kind})={self.sf!r}{shown})"
            )


def dense(matrix) -> np.ndarray:
    """A count matrix as a float64 numpy array (values as stored)."""
    matrix = matrix.toarray() if sparse.issparse(matrix) else matrix
    return np.asarray(matrix, dtype=np.float64)


def stored(values: np.ndarray, storage: str, stored_zeros: bool = False):
    """``values`` dense, or as CSR / CSC (with every zero stored explicitly if asked)."""
    if storage == "dense":
        return values
    if stored_zeros:
        rows, cols = np.indices(values.shape).reshape(2, -1)
        matrix = sparse.csr_matrix(
            (values[rows, cols], (rows, cols)), shape=values.shape, dtype=values.dtype
        )
    else:
        matrix = sparse.csr_matrix(values)
    return matrix if storage == "csr" else matrix.tocsc()


def one_in(draw, n: int, allowed: bool = True) -> bool:
    """True with probability 1/n (shrinks to False); always False unless ``allowed``."""
    return allowed and draw(st.sampled_from([False] * (n - 1) + [True]))


def sf_column(kind: str, base: np.ndarray, pos: int):
    """Size factors of the given kind built from the positive ``base``."""
    whole = np.ceil(base).astype(np.int64)
    if kind == "ok":
        return base
    if kind == "float32":
        return base.astype(np.float32)
    if kind == "int":
        return whole
    if kind == "nullable_int":
        return pd.array(whole, dtype="Int64")
    if kind == "nullable_na":
        values = pd.array(base, dtype="Float64")
        values[pos] = pd.NA
        return values
    if kind == "bool":
        return base > 1
    if kind == "string":
        return base.astype(str)
    if kind == "categorical":
        return pd.Categorical(base)
    values = base.copy()
    values[pos] = {"zero": 0.0, "nan": np.nan, "inf": np.inf, "negative": -values[pos]}[kind]
    return values


def sf_floats(kind: str, base: np.ndarray) -> np.ndarray:
    """The float64 size factors a valid kind stands for."""
    column = sf_column(kind, base, 0)
    return np.asarray(column, dtype=np.float64)


@st.composite
def counts_matrices(draw, n_obs: int, n_vars: int, problems: bool):
    """(valid integer values, the stored matrix, its dtype) with at most one bad entry."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    # scipy.sparse has no float16
    storage = "dense" if dtype == np.float16 else draw(st.sampled_from(("dense", "csr", "csc")))
    values = draw(hnp.arrays(np.int64, (n_obs, n_vars), elements=st.integers(0, 20)))
    matrix = values.astype(np.float64)
    allowed = list(BAD_ENTRIES) if dtype.kind == "f" else ["negative"] if dtype.kind == "i" else []
    if values.size and allowed and one_in(draw, 3, problems):
        bad = draw(st.sampled_from(allowed))
        i, j = draw(st.integers(0, n_obs - 1)), draw(st.integers(0, n_vars - 1))
        matrix[i, j] = BAD_ENTRIES[bad]
    stored_zeros = storage != "dense" and draw(st.booleans())
    return values, stored(matrix.astype(dtype), storage, stored_zeros)


@st.composite
def cases(draw, problems: bool = True, empty_axes: bool = True) -> Case:
    """A small AnnData with counts in X or a layer, and the arguments to use them.

    ``problems``: may hold one bad count, duplicated names, bad size factors, a bad mask,
    a wrong layer, a bad spike-in column, or (``empty_axes``) no cells or no genes.
    """
    empty = None
    if problems and empty_axes:
        empty = draw(st.sampled_from([None] * 8 + ["obs", "var"]))
    n_obs = 0 if empty == "obs" else draw(st.integers(3, 40))
    n_vars = 0 if empty == "var" else draw(st.integers(1, 6))
    values, counts = draw(counts_matrices(n_obs, n_vars, problems))

    spike = np.array(draw(st.lists(st.booleans(), min_size=n_vars, max_size=n_vars)), dtype=bool)
    var_names = [f"ERCC-{j:05d}" if s else f"g{j}" for j, s in enumerate(spike)]
    obs_names = [f"c{i}" for i in range(n_obs)]
    if n_obs >= 2 and one_in(draw, 6, problems):
        obs_names[-1] = obs_names[0]
    if n_vars >= 2 and one_in(draw, 6, problems):
        var_names[-1] = var_names[0]

    # where the counts are, and the layer argument
    in_layer = draw(st.booleans())
    layers = {"counts": counts} if in_layer else {}
    if in_layer:
        X = None if draw(st.booleans()) else (values / 2 + 0.25).astype(np.float32)
    else:
        X = counts
    layer = "counts" if in_layer else None
    if one_in(draw, 8, problems):
        layer = draw(st.sampled_from([None, "nope"] if in_layer else ["nope", "counts"]))

    # .var: spike-in flags and a gene mask column
    sel = np.array(draw(st.lists(st.booleans(), min_size=n_vars, max_size=n_vars)), dtype=bool)
    if n_vars and not sel.any():
        sel[draw(st.integers(0, n_vars - 1))] = True
    var = pd.DataFrame(
        {"gene_ids": [f"id{j}" for j in range(n_vars)], "use": sel}, index=var_names
    )
    var["use_str"] = np.where(sel, "True", "False")
    spike_kinds = ["bool", "bool", "bool", "nullable", "absent"]
    spike_kind = draw(st.sampled_from(spike_kinds + (["string", "nullable_na"] if problems else [])))
    if spike_kind == "bool":
        var["spike_in"] = spike
    elif spike_kind == "nullable":
        var["spike_in"] = pd.array(spike, dtype="boolean")
    elif spike_kind == "string":
        var["spike_in"] = spike.astype(str)
    elif spike_kind == "nullable_na":
        flags = pd.array(spike, dtype="boolean")
        if n_vars:
            flags[0] = pd.NA
        var["spike_in"] = flags

    # the gene mask argument
    mask_kind = "none"
    if n_vars:
        bad_mask = one_in(draw, 4, problems)
        mask_kind = draw(st.sampled_from(BAD_MASKS if bad_mask else ("none", *VALID_MASKS)))
    gene_order = draw(st.permutations(range(n_vars)))
    mask = {
        "none": None,
        "column": "use",
        "str_column": "use_str",
        "missing_column": "nope",
        "bool_array": sel,
        "bool_series": pd.Series(sel, index=var_names).iloc[gene_order],
        "bool_series_missing": pd.Series(sel, index=var_names).iloc[gene_order][1:],
        "names": [var_names[j] for j in gene_order if sel[j]],
        "unknown_names": [*(var_names[j] for j in gene_order if sel[j]), "nope"],
        "positions": np.flatnonzero(sel),
        "nothing": np.zeros(n_vars, dtype=bool),
    }[mask_kind]
    mask_sel = None
    if mask_kind in VALID_MASKS:
        mask_sel = sel if mask_kind != "none" else np.ones(n_vars, dtype=bool)

    # size factors: the .obs column and the argument
    base = draw(hnp.arrays(np.float64, n_obs, elements=st.floats(0.25, 4.0)))
    modes = ["key", "key", "key", "array", "array", "series", "series", "none"]
    bad_modes = ["series_missing", "absent_key", "short"]
    sf_mode = "key" if not n_obs else draw(st.sampled_from(modes + (bad_modes if problems else [])))
    sf_kind = "ok"
    if sf_mode in ("key", "array", "series"):
        bad_values = list(SF_LABEL) + list(BAD_SF_TYPES)
        valid = list(VALID_SF)
        if sf_mode == "array":
            bad_values = [k for k in bad_values if k not in PANDAS_ONLY_SF]
            valid = [k for k in valid if k not in PANDAS_ONLY_SF]
        else:
            bad_values.append("nullable_na")
        if n_obs and one_in(draw, 3, problems):
            sf_kind = draw(st.sampled_from(bad_values))
        else:
            sf_kind = draw(st.sampled_from(valid))
    sf_pos = draw(st.integers(0, n_obs - 1)) if n_obs else 0
    column = sf_column(sf_kind, base, sf_pos)
    cell_order = list(draw(st.permutations(range(n_obs))))
    obs = pd.DataFrame(
        {"batch": pd.Categorical(["a", "b"] * (n_obs // 2) + ["a"] * (n_obs % 2))},
        index=obs_names,
    )
    if sf_mode != "absent_key":
        obs["size_factors"] = column
    shuffled = pd.Series(column, index=obs_names).iloc[cell_order]
    sf = {
        "key": "size_factors",
        "absent_key": "size_factors",
        "none": None,
        "array": np.asarray(column),
        "short": base[:-1],
        "series": shuffled,
        "series_missing": shuffled.iloc[1:],
    }[sf_mode]
    sf_values = sf_floats(sf_kind if sf_kind in VALID_SF else "ok", base)

    with quiet():
        adata = ad.AnnData(X=X, obs=obs, var=var, layers=layers)
    adata.obsm["X_pca"] = np.arange(2.0 * n_obs).reshape(n_obs, 2)
    adata.uns["note"] = {"kept": np.arange(3)}
    return Case(
        adata,
        layer,
        mask,
        mask_kind,
        mask_sel,
        spike_kind,
        sf,
        sf_mode,
        sf_kind,
        sf_pos,
        sf_values,
    )


# --------------------------------------------------------------------------------------
# the oracle: which problems an input has, and what an error about each must say
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """An input problem; an error about it contains every word (``key``: InputKeyError)."""

    words: tuple[str, ...]
    key: bool = False


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
            gene = f"positions {cols.min()}" if genes is None else repr(str(genes[cols.min()]))
            cell = f"positions {rows.min()}" if cells is None else repr(str(cells[rows.min()]))
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
    return entry_problems(dense(matrix)[:, genes], what, adata.obs_names, adata.var_names[genes])


def sf_problems(adata, mode: str, kind: str, pos: int) -> list[Problem]:
    """Problems of size factors passed as ``mode`` holding ``kind`` values."""
    if mode == "none":
        return []
    if mode == "absent_key":
        return [Problem(("size_factors",), key=True)]
    if mode == "short":
        return [Problem(("size_factors", "one value per cell"))]
    problems = []
    if mode in ("series", "series_missing") and adata.obs_names.has_duplicates:
        problems.append(Problem(("size_factors", "not unique")))
    if mode == "series_missing":
        problems.append(Problem(("size_factors", "lacks")))
    elif kind == "nullable_na":
        problems.append(Problem(("size_factors", "NaN", repr(str(adata.obs_names[pos])))))
    elif kind in SF_LABEL:
        problems.append(
            Problem(("size_factors", SF_LABEL[kind], repr(str(adata.obs_names[pos]))))
        )
    elif kind in BAD_SF_TYPES:
        problems.append(Problem(("size_factors", "numeric")))
    return problems


MASK_PROBLEMS = {
    "str_column": Problem(("mask_var", "'use_str'", "boolean")),
    "missing_column": Problem(("mask_var", "'nope'"), key=True),
    "bool_series_missing": Problem(("mask_var", "lacks")),
    "unknown_names": Problem(("mask_var", "'nope'"), key=True),
    "positions": Problem(("mask_var", "boolean mask or gene names")),
    "nothing": Problem(("mask_var", "selects no gene")),
}


def mask_problems(case: Case) -> list[Problem]:
    if case.mask_kind in MASK_PROBLEMS:
        return [MASK_PROBLEMS[case.mask_kind]]
    if case.mask_kind == "bool_series" and case.adata.var_names.has_duplicates:
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
    """Run ``call()``. With ``problems`` it must raise an InputError naming one of them and
    leave ``adata`` as it was; without, it must succeed. Returns (succeeded, a deep copy
    of ``adata`` from before the call, the call's result)."""
    before = copy.deepcopy(adata)
    if problems:
        with quiet(), pytest.raises(InputError) as info:
            call()
        assert_names_a_problem(info.value, problems)
        assert_unchanged(before, adata)
        return False, before, None
    with quiet():
        result = call()
    return True, before, result


# --------------------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------------------
def same_matrix(before, after, what: str) -> None:
    if before is None:
        assert after is None, f"{what} was None"
    else:
        assert_matrix_equal(before, after, what)


def assert_only_added(before, after, *, var=(), obs=(), obsm=(), uns=()) -> None:
    """``after`` is ``before`` (a deep copy) plus exactly the named entries: data, layers,
    names, existing columns and entries bitwise unchanged."""
    assert after.shape == before.shape
    same_matrix(before.X, after.X, "X")
    assert list(after.layers) == list(before.layers), "layers keys changed"
    for name in before.layers:
        same_matrix(before.layers[name], after.layers[name], f"layers[{name!r}]")
    for axis, added in (("obs", obs), ("var", var)):
        old, new = getattr(before, axis), getattr(after, axis)
        assert set(new.columns) - set(old.columns) == set(added), f"{axis} columns"
        assert list(new.columns[: len(old.columns)]) == list(old.columns), f"{axis} columns"
        pdt.assert_frame_equal(new[list(old.columns)], old, obj=axis)
    assert set(after.uns) - set(before.uns) == set(uns), "uns keys"
    for name in before.uns:
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


def check_fit(before, adata, *, key, k, genes, layer, store=True, bootstrap=False) -> None:
    """fit_mixture's documented outputs, and nothing else added."""
    assert_only_added(
        before,
        adata,
        var=fit_columns(key, k, bootstrap),
        obsm=[f"{key}_responsibilities"] if store else [],
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
    if store:
        resp = adata.obsm[f"{key}_responsibilities"]
        assert resp.shape == (adata.n_obs, genes.sum(), k) and resp.dtype == np.float32
        inside = fitted[genes]
        np.testing.assert_allclose(resp[:, inside].sum(axis=-1), 1.0, atol=1e-5)
        assert np.isnan(resp[:, ~inside]).all()


def fit_results(adata, key: str = "scmix") -> dict[str, np.ndarray]:
    """Every .var output under ``key`` and the responsibilities, for exact comparisons."""
    results = {c: adata.var[c].to_numpy() for c in adata.var.columns if c.startswith(key + "_")}
    if f"{key}_responsibilities" in adata.obsm:
        results["responsibilities"] = np.asarray(adata.obsm[f"{key}_responsibilities"])
    return results


def assert_same_results(expected: dict, actual: dict, what: str) -> None:
    assert list(actual) == list(expected), what
    for name, values in expected.items():
        np.testing.assert_array_equal(actual[name], values, err_msg=f"{what}: {name}")


# --------------------------------------------------------------------------------------
# (a), (b): every public function, on every generated input
# --------------------------------------------------------------------------------------
@given(case=cases(), family=st.sampled_from(["nb", "poisson"]))
@examples(70)
def test_fit_mixture_gives_its_outputs_or_names_the_problem(case, family):
    adata = case.adata
    succeeded, before, _ = outcome(
        adata,
        lambda: scmix.tl.fit_mixture(adata, family=family, **FAST, **case.fit_kwargs()),
        fit_problems(case),
    )
    if succeeded:
        check_fit(before, adata, key="scmix", k=2, genes=case.mask_sel, layer=case.layer)


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


def median_ratio(counts: np.ndarray) -> np.ndarray:
    """DESeq2 poscounts, written out: exp median_j (log x_ij - sum_i' log x_i'j / n) over
    the positive x_ij of each cell."""
    logs = np.log(np.where(counts > 0, counts, 1.0))
    log_geo = logs.sum(axis=0) / counts.shape[0]
    return np.array(
        [np.exp(np.median((logs[i] - log_geo)[counts[i] > 0])) for i in range(counts.shape[0])]
    )


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


@given(case=cases(), method=st.sampled_from(["spike_in", "library", "median_ratio"]))
@examples(60)
def test_size_factors_are_the_estimator_or_name_the_problem(case, method):
    adata = case.adata
    kwargs = {"layer": case.layer}
    if case.mask_kind != "none":
        kwargs["mask_var"] = case.mask
    problems, genes = pp_problems(case, method)
    succeeded, before, _ = outcome(
        adata,
        lambda: scmix.pp.size_factors(adata, method, key_added="sf_new", **kwargs),
        problems,
    )
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
        "mixture_df": lambda: scmix.get.mixture_df(adata, "fit"),
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
        lambda: scmix.pl.mixture(adata, gene, key="fit", show=False, **sf_given),
        problems,
    )
    if succeeded:
        assert ax.get_title().startswith(gene)
        plt.close(ax.figure)

    # goodness_of_fit: needs the size factors again when the fit was given an array
    if sf_given:
        outcome(adata, readers["goodness_of_fit"], [Problem(("size_factors",))])
    succeeded, before, _ = outcome(
        adata, lambda: scmix.tl.goodness_of_fit(adata, key="fit", **sf_given), []
    )
    assert_only_added(before, adata, var=["fit_gof_ks", "fit_gof_pvalue"])
    pvalue = adata.var["fit_gof_pvalue"].to_numpy(float)
    np.testing.assert_array_equal(np.isfinite(pvalue), fitted)
    assert ((pvalue[fitted] >= 0) & (pvalue[fitted] <= 1)).all()
    assert "mixture" in adata.uns["fit"]["goodness_of_fit"]


# --------------------------------------------------------------------------------------
# (c) Series are aligned by their labels, (d) storage does not matter, (e) views
# --------------------------------------------------------------------------------------
def fit_copy(adata, **kwargs) -> dict[str, np.ndarray]:
    fitted = adata.copy()
    with quiet():
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
    """(dtype, storage, in a layer, explicit zeros, chunk_size) of a valid count matrix."""
    dtype = draw(st.sampled_from(DTYPES))
    storage = "dense" if dtype == "float16" else draw(st.sampled_from(["dense", "csr", "csc"]))
    return (
        dtype,
        storage,
        draw(st.booleans()),
        storage != "dense" and draw(st.booleans()),
        draw(st.sampled_from([None, 1, 2])),
    )


@given(
    values=st.integers(3, 40).flatmap(
        lambda n: hnp.arrays(np.int64, (n, 4), elements=st.integers(0, 20))
    ),
    variants=st.lists(storages(), min_size=2, max_size=3),
    family=st.sampled_from(["nb", "poisson"]),
)
@examples(30)
def test_storage_of_the_counts_does_not_change_the_fit(values, variants, family):
    """int / uint / float16 / float32 / float64, dense / CSR / CSC, X or a layer, any
    chunk_size: the same counts give bitwise the same fit."""
    n_obs = values.shape[0]
    sf = np.linspace(0.5, 2.0, n_obs)
    results = []
    for dtype, storage, in_layer, zeros, chunk_size in variants:
        counts = stored(values.astype(dtype), storage, zeros)
        adata = ad.AnnData(
            X=None if in_layer else counts,
            layers={"counts": counts} if in_layer else {},
            obs=pd.DataFrame({"size_factors": sf}, index=[f"c{i}" for i in range(n_obs)]),
            var=pd.DataFrame(index=[f"g{j}" for j in range(values.shape[1])]),
        )
        before = copy.deepcopy(adata)
        with quiet():
            scmix.tl.fit_mixture(
                adata,
                family=family,
                layer="counts" if in_layer else None,
                chunk_size=chunk_size,
                **FAST,
            )
        assert_only_added(
            before, adata, var=fit_columns("scmix", 2), obsm=["scmix_responsibilities"],
            uns=["scmix"],
        )
        results.append(fit_results(adata))
    for variant, result in zip(variants[1:], results[1:], strict=True):
        assert_same_results(results[0], result, f"{variants[0]} vs {variant}")


@given(case=cases(empty_axes=False), data=st.data())
@examples(40)
def test_a_view_fits_like_its_copy_and_leaves_its_parent_alone(case, data):
    parent = case.adata
    positions = data.draw(st.lists(st.integers(0, parent.n_vars - 1), unique=True, max_size=4))
    view = parent[:, positions]
    assert view.is_view
    parent_before = copy.deepcopy(parent)
    with quiet():
        expected = view.copy()
    kwargs = {k: v for k, v in case.fit_kwargs().items() if k != "mask_var"}
    problems = adata_problems(expected)
    if expected.n_vars:
        problems += sf_problems(expected, case.sf_mode, case.sf_kind, case.sf_pos)
        problems += counts_problems(expected, case.layer, np.ones(expected.n_vars, dtype=bool))
    succeeded, _, _ = outcome(view, lambda: scmix.tl.fit_mixture(view, **FAST, **kwargs), problems)
    assert_unchanged(parent_before, parent)
    if succeeded:
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
    as_frame = as_frame and not sparse.issparse(X)
    if as_frame:  # cells named by the index; a size-factor Series is aligned on it
        X = pd.DataFrame(X, index=adata.obs_names)
    mode, kind = case.sf_mode, case.sf_kind
    sf = case.sf
    if mode in ("key", "absent_key"):  # no AnnData here: the column as a Series
        mode = "series" if mode == "key" else "none"
        sf = pd.Series(adata.obs["size_factors"]) if mode == "series" else None
    if adata.n_obs == 0 or adata.n_vars == 0:
        problems = [Problem(("X", "no cells or no genes"))]
    else:
        cells = adata.obs_names if as_frame else None
        problems = entry_problems(dense(X), "X", cells)
        if mode.startswith("series") and not as_frame:
            problems.append(Problem(("size_factors", "no cells names")))
        else:
            problems += sf_problems(adata, mode, kind, case.sf_pos)
    X_before, sf_before = copy.deepcopy(X), copy.deepcopy(sf)
    model = NegativeBinomialMixture(2, **FAST)
    succeeded, _, _ = outcome(adata, lambda: model.fit(X, sf), problems)
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


# --------------------------------------------------------------------------------------
# numerical and other options
# --------------------------------------------------------------------------------------
COMMON_VALUES = [
    0,
    1,
    2,
    -1,
    2.0,
    2.5,
    0.5,
    True,
    None,
    "2",
    np.int64(2),
    np.float64(2.0),
    np.bool_(True),
    np.nan,
    np.inf,
    [2],
]


def _int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _real(v) -> bool:
    numeric = isinstance(v, (int, float, np.integer, np.floating))
    return numeric and not isinstance(v, (bool, np.bool_)) and bool(np.isfinite(v))


def _int_at_least(minimum):
    return lambda v: _int(v) and v >= minimum


def _choice(*choices):
    return lambda v: isinstance(v, str) and v in choices


#: option -> (is the value valid, extra values to try)
OPTIONS = {
    "n_init": (_int_at_least(1), []),
    "max_iter": (_int_at_least(1), []),
    "tol": (lambda v: _real(v) and v >= 0, [1e-3]),
    "random_state": (lambda v: v is None or (_int(v) and v >= 0), []),
    "chunk_size": (lambda v: v is None or (_int(v) and v >= 1), []),
    "memory_budget": (lambda v: v is None or (_int(v) and v >= 1), []),
    "n_jobs": (lambda v: v is None or (_int(v) and (v == -1 or v >= 1)), []),
    "n_components": (_int_at_least(1), [3]),  # and at most n_obs (>= 3 here)
    "bic_threshold": (_real, [-5.0]),
    "min_weight": (lambda v: _real(v) and 0 <= v <= 1, []),
    "n_bootstrap": (_int_at_least(0), []),
    "bootstrap_early_stop": (_int_at_least(0), []),
    "key_added": (lambda v: isinstance(v, str) and v != "", ["other", ""]),
    "family": (_choice("nb", "poisson"), ["nb", "poisson", "NB"]),
    "store_responsibilities": (lambda v: isinstance(v, (bool, np.bool_)) or v == "auto", ["auto"]),
}


def _modes_k(v) -> bool:
    """size_factor_modes: K or a non-empty list of K (n_obs >= 3 here)."""
    if isinstance(v, list):
        return bool(v) and all(_int(k) and 1 <= k <= 3 for k in v)
    return _int(v) and v >= 1
#: the options each function takes (the others of OPTIONS are fit_mixture's)
OPTIONS_OF = {
    "fit_mixture": list(OPTIONS),
    "select_n_components": ["n_init", "max_iter", "tol", "random_state", "key_added", "family"],
    "size_factor_modes": ["n_components", "n_init", "max_iter", "tol", "random_state", "key_added"],
    "NegativeBinomialMixture": ["n_components", "n_init", "max_iter", "tol", "random_state"]
    + ["chunk_size"],
}


def option_values(name: str):
    values = COMMON_VALUES + OPTIONS[name][1]
    if name == "store_responsibilities":  # 0 / 1 compare equal to False / True
        values = [v for v in values if not _real(v)]
    return st.sampled_from(values)


@st.composite
def option_sets(draw, function: str):
    names = draw(st.lists(st.sampled_from(OPTIONS_OF[function]), min_size=1, max_size=2))
    return {name: draw(option_values(name)) for name in dict.fromkeys(names)}


@pytest.mark.parametrize("function", list(OPTIONS_OF))
@given(case=cases(problems=False), data=st.data())
@examples(30)
def test_options_are_used_or_refused_by_name(function, case, data):
    adata = case.adata
    options = data.draw(option_sets(function), label="options")
    valid = {name: OPTIONS[name][0] for name in options}
    if function == "size_factor_modes" and "n_components" in options:
        valid["n_components"] = _modes_k
    problems = [Problem((name,)) for name, value in options.items() if not valid[name](value)]
    k = options.get("n_components", 2)
    if function == "fit_mixture" and not problems:
        if options.get("n_bootstrap", 0) and k == 1:
            problems.append(Problem(("n_bootstrap", "n_components > 1")))
    settings_ = {**FAST, **options}
    key = options.get("key_added")

    def call():
        if function == "fit_mixture":
            return scmix.tl.fit_mixture(adata, **settings_, **case.fit_kwargs())
        if function == "select_n_components":
            return scmix.tl.select_n_components(adata, [1, 2], **settings_, **case.fit_kwargs())
        if function == "size_factor_modes":
            sf = {} if case.sf_mode in ("key", "none") else {"size_factors": case.sf}
            return scmix.tl.size_factor_modes(adata, **settings_, **sf)
        X = adata.X if case.layer is None else adata.layers[case.layer]
        return NegativeBinomialMixture(**settings_).fit(X, case.sf_values)

    succeeded, before, _ = outcome(adata, call, problems)
    if not succeeded:
        return
    if function == "fit_mixture":
        store = options.get("store_responsibilities", "auto")
        check_fit(
            before,
            adata,
            key=key or "scmix",
            k=k,
            genes=case.mask_sel,
            layer=case.layer,
            store=bool(store),
            bootstrap=bool(options.get("n_bootstrap", 0)) and k > 1,
        )
    elif function == "select_n_components":
        key = key or "scmix_k"
        columns = [f"{key}_{w}_{k}" for k in (1, 2) for w in ("loglik", "bic")]
        assert_only_added(before, adata, var=[*columns, f"{key}_n_components"], uns=[key])
    elif function == "size_factor_modes":
        key = key or "size_factor_modes"
        assert_only_added(before, adata, obs=[key], obsm=[key], uns=[key])
    else:
        assert_unchanged(before, adata)
