"""Covariates as a design matrix: indicators against a reference level, numeric columns as
given, and a clear error for every design the model cannot fit."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scmix import InputError, InputKeyError
from scmix._design import covariate_design, covariate_names


def _adata(**columns) -> ad.AnnData:
    n = len(next(iter(columns.values())))
    adata = ad.AnnData(np.zeros((n, 1)))
    adata.obs_names = [f"c{i}" for i in range(n)]
    for name, values in columns.items():
        adata.obs[name] = values
    return adata


def test_categorical_columns_become_indicators_against_the_first_level():
    batch = pd.Categorical(["b", "a", "c", "a", "b", "c"], categories=["b", "a", "c"])
    design = covariate_design(_adata(batch=batch), "batch")
    assert design.columns == ["batch_a", "batch_c"] and design.references == {"batch": "b"}
    np.testing.assert_array_equal(design.matrix[:, 0], [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(design.matrix[:, 1], [0, 0, 1, 0, 0, 1])


def test_strings_take_sorted_levels_and_numbers_are_used_as_given():
    adata = _adata(donor=["y", "x", "y", "x", "z", "z"], depth=[1.5, 2.0, 0.5, 3.0, 1.0, 2.5])
    design = covariate_design(adata, ["donor", "depth"])
    assert design.columns == ["donor_y", "donor_z", "depth"]
    assert design.references == {"donor": "x"}
    np.testing.assert_array_equal(design.matrix[:, 2], adata.obs["depth"])
    assert design.describe()["covariates"] == ["donor", "depth"]


def test_no_covariates_is_no_design():
    assert covariate_design(_adata(a=[1, 2]), None) is None
    assert covariate_design(_adata(a=[1, 2]), []) is None


@pytest.mark.parametrize(
    ("columns", "covariates", "error", "words"),
    [
        ({"a": [0, 1, 2]}, "nope", InputKeyError, ["'nope'", "adata.obs"]),
        ({"a": [0, 1, 2]}, 3, InputError, ["covariates must be"]),
        ({"a": [0, 1, 2]}, ["a", "a"], InputError, ["twice"]),
        ({"a": [0.0, np.nan, 2.0]}, "a", InputError, ["'a'", "missing", "c1"]),
        ({"a": ["x", None, "y"]}, "a", InputError, ["'a'", "missing", "c1"]),
        ({"a": [0.0, np.inf, 2.0]}, "a", InputError, ["'a'", "non-finite", "c1"]),
        ({"a": ["x", "x", "x"]}, "a", InputError, ["'a'", "single level"]),
        (
            {"a": pd.Categorical(["x", "y", "x"], categories=["x", "y", "z"])},
            "a",
            InputError,
            ["'a'", "without cells", "'z'", "remove_unused_categories"],
        ),
        ({"a": [2.0, 2.0, 2.0]}, "a", InputError, ["full rank", "'a'", "intercept"]),
        (
            {"a": [1.0, 2.0, 3.0, 4.0], "b": [2.0, 4.0, 6.0, 8.0]},
            ["a", "b"],
            InputError,
            ["full rank", "'b'", "['a']"],
        ),
        (
            # individual is nested in batch: one level of it is a sum of batch indicators
            {"batch": ["p", "p", "q", "q", "r", "r"], "donor": ["x", "x", "x", "x", "y", "y"]},
            ["batch", "donor"],
            InputError,
            ["full rank", "'donor_y'"],
        ),
    ],
)
def test_bad_designs_are_named(columns, covariates, error, words):
    adata = _adata(**columns)
    with pytest.raises(error) as info:
        covariate_design(adata, covariates)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_covariate_names_accepts_a_name_or_a_list():
    assert covariate_names("batch") == ["batch"]
    assert covariate_names(("a", "b")) == ["a", "b"]
