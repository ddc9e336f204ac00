"""Property-based tests (hypothesis): every option of the public functions, valid or
refused by name, and the smallest inputs on which the properties first failed."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from properties_checks import (
    Problem,
    assert_only_added,
    assert_unchanged,
    check_fit,
    outcome,
)
from properties_inputs import (
    FAST,
    cases,
    examples,
    quiet,
)

import scmix
from scmix.models import NegativeBinomialMixture

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
    np.array([1, 2]),
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


#: option -> (is the value valid, valid values to try besides COMMON_VALUES)
OPTIONS = {
    "n_init": (_int_at_least(1), [1, 2, np.int32(1)]),
    "max_iter": (_int_at_least(1), [3, np.int64(4)]),
    "tol": (lambda v: _real(v) and v >= 0, [0, 1e-3, np.float32(2.0)]),
    "random_state": (lambda v: v is None or (_int(v) and v >= 0), [None, 0, 7]),
    "chunk_size": (lambda v: v is None or (_int(v) and v >= 1), [None, 1, np.int64(2)]),
    "memory_budget": (lambda v: v is None or (_int(v) and v >= 1), [None, 1, 10**6]),
    "n_jobs": (lambda v: v is None or (_int(v) and (v == -1 or v >= 1)), [None, -1, 1, 2]),
    "n_components": (_int_at_least(1), [1, 2, 3]),  # and at most n_obs (>= 3 here)
    "bic_threshold": (_real, [-5.0, 0, 10]),
    "min_weight": (lambda v: _real(v) and 0 <= v <= 1, [0, 0.05, 1]),
    "n_bootstrap": (_int_at_least(0), [0, 2]),
    "bootstrap_early_stop": (_int_at_least(0), [0, 1]),
    "key_added": (lambda v: isinstance(v, str) and v != "", ["other", "2", ""]),
    "family": (_choice("nb", "poisson"), ["nb", "poisson", "NB"]),
    "store_responsibilities": (
        lambda v: isinstance(v, (bool, np.bool_)) or (isinstance(v, str) and v == "auto"),
        [True, False, "auto", "yes"],
    ),
}


def _modes_k(v) -> bool:
    """size_factor_modes: K or a non-empty list of K (n_obs >= 3 here)."""
    if isinstance(v, (list, np.ndarray)):
        return len(v) > 0 and all(_int(k) and 1 <= k <= 3 for k in v)
    return _int(v) and v >= 1


#: the options each function takes (the others of OPTIONS are fit_mixture's)
OPTIONS_OF = {
    "fit_mixture": list(OPTIONS),
    "select_n_components": ["n_init", "max_iter", "tol", "random_state", "key_added", "family"],
    "size_factor_modes": ["n_components", "n_init", "max_iter", "tol", "random_state", "key_added"],
    "NegativeBinomialMixture": [
        "n_components",
        "n_init",
        "max_iter",
        "tol",
        "random_state",
        "chunk_size",
    ],
}


def option_values(name: str):
    """Mostly valid values of the option, else any of COMMON_VALUES."""
    common = COMMON_VALUES
    if name == "store_responsibilities":  # 0 / 1 compare equal to False / True
        common = [v for v in common if not _real(v)]
    return st.sampled_from(OPTIONS[name][1]) | st.sampled_from(common)


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
    if function == "size_factor_modes" and np.ptp(case.sf_values) == 0:
        problems.append(Problem(("size_factors",), optional=True))  # one mode: may be refused
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
        return NegativeBinomialMixture(**settings_).fit(X, size_factors=case.sf_values)

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


# --------------------------------------------------------------------------------------
# the smallest inputs on which the properties above failed, pinned as plain examples
# --------------------------------------------------------------------------------------
def three_cells(size_factors, obs_names=("c0", "c1", "c2")) -> ad.AnnData:
    obs = pd.DataFrame({"size_factors": size_factors}, index=list(obs_names))
    with quiet():
        return ad.AnnData(np.array([[1], [2], [3]]), obs=obs)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda a: scmix.tl.fit_mixture(a, **FAST), id="fit_mixture"),
        pytest.param(lambda a: scmix.tl.select_n_components(a, [1, 2], **FAST), id="select"),
        pytest.param(lambda a: scmix.tl.size_factor_modes(a, 2, n_init=1), id="modes"),
    ],
)
def test_example_duplicate_cell_names_with_size_factors_from_obs(call):
    """An .obs column is aligned with the cells by construction: duplicated obs_names (not
    an error: the same fit runs with the column's values as an array) must not matter."""
    adata = three_cells([0.5, 1.0, 2.0], obs_names=("c0", "c1", "c0"))
    _, before, _ = outcome(adata, lambda: call(adata), [])
    assert len(adata.uns) == len(before.uns) + 1  # the results


def test_example_size_factor_modes_of_constant_size_factors():
    """Valid (positive, finite) size factors that are all equal: one mode, or an error
    that names size_factors, not an internal prior the function has no argument for."""
    adata = three_cells([1.0, 1.0, 1.0])
    outcome(
        adata,
        lambda: scmix.tl.size_factor_modes(adata, 2, n_init=1),
        [Problem(("size_factors",), optional=True)],
    )


@pytest.mark.parametrize(
    ("call", "option"),
    [
        pytest.param(
            lambda a: scmix.tl.size_factor_modes(a, None), "n_components", id="modes_k_none"
        ),
        pytest.param(
            lambda a: scmix.tl.fit_mixture(a, family=["nb"], **FAST), "family", id="fit_family"
        ),
        pytest.param(
            lambda a: scmix.tl.select_n_components(a, [1, 2], family=["nb"], **FAST),
            "family",
            id="select_family",
        ),
        pytest.param(
            lambda a: scmix.tl.fit_mixture(a, store_responsibilities=np.array([1, 2]), **FAST),
            "store_responsibilities",
            id="fit_store_array",
        ),
    ],
)
def test_example_option_of_a_wrong_type_is_an_input_error(call, option):
    adata = three_cells([0.5, 1.0, 2.0])
    outcome(adata, lambda: call(adata), [Problem((option,))])
