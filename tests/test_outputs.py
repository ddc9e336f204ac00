"""Outputs of ``scmix.tl.fit_mixture`` where the contract (DESIGN.md section 2) puts
them: copy semantics, mask forms, ``.uns`` params, responsibilities, h5ad round trip,
and the import cost of ``import scmix``.
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
from adata_helpers import (
    KEY,
    N_CELLS,
    N_GENES,
    SCALAR_COLUMNS,
    assert_adata_unchanged,
    assert_no_results,
    assert_only_results_added,
    fast,
    stored_resp,
)

import scmix
from scmix.tl import fit_mixture


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
    np.testing.assert_array_equal(stored_resp(result), stored_resp(adata))


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
    layer = adata.layers[f"{KEY}_responsibility_1"]
    assert layer.shape == (N_CELLS, N_GENES)
    assert np.isnan(layer[:, ~in_mask]).all() and np.isfinite(layer[:, in_mask]).all()


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
            other.layers[f"{KEY}_responsibility_1"], results[0].layers[f"{KEY}_responsibility_1"]
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


def test_uns_var_names_list_fitted_genes_and_layers_keep_each_at_its_position(adata):
    # n_init=1: the only start is the quantile split, so a gene's fit does not depend on
    # which other genes are fitted with it; its responsibilities must sit at its position
    options = {"max_iter": 30, "n_init": 1}
    full = fit_mixture(adata, copy=True, **options)
    chosen = ["gene_7", "gene_2", "gene_5"]
    part = fit_mixture(adata, mask_var=chosen, copy=True, **options)
    var_names = list(part.uns[KEY]["var_names"])
    assert var_names == ["gene_2", "gene_5", "gene_7"]  # .var order
    assert list(full.uns[KEY]["var_names"]) == list(adata.var_names)
    resp_full = full.layers[f"{KEY}_responsibility_1"]
    resp_part = part.layers[f"{KEY}_responsibility_1"]
    for gene in var_names:
        column = adata.var_names.get_loc(gene)
        np.testing.assert_allclose(resp_part[:, column], resp_full[:, column], atol=1e-5)


@pytest.mark.parametrize(
    ("n_components", "mask"), [(2, None), (3, ["gene_0", "gene_3", "gene_4"]), (1, None)]
)
def test_responsibility_layers_shape_dtype_and_probabilities(adata, n_components, mask):
    fit_mixture(adata, n_components=n_components, mask_var=mask, **fast())
    layers = sorted(name for name in adata.layers if name.startswith(f"{KEY}_responsibility"))
    # K - 1 layers: component 0 is one minus the others (K = 1 has nothing to store)
    assert layers == [f"{KEY}_responsibility_{k}" for k in range(1, n_components)]
    fitted = adata.var_names.isin(mask if mask is not None else adata.var_names)
    for name in layers:
        assert adata.layers[name].shape == (N_CELLS, N_GENES)
        assert adata.layers[name].dtype == np.float32
        assert np.isnan(adata.layers[name][:, ~fitted]).all()
    for gene in adata.var_names[fitted]:
        resp = scmix.get.responsibilities(adata, gene, key=KEY).to_numpy()
        assert resp.shape == (N_CELLS, n_components)
        assert np.isfinite(resp).all() and (resp >= -1e-6).all()
        np.testing.assert_allclose(resp.sum(axis=1), 1.0, atol=1e-6)
    if n_components == 1:
        np.testing.assert_array_equal(resp, 1.0)


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
    resp = back.layers[f"{KEY}_responsibility_1"]
    assert resp.dtype == np.float32
    np.testing.assert_array_equal(resp, adata.layers[f"{KEY}_responsibility_1"])

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
    # the size factors given as an array travel with the fit: its readers need no argument
    np.testing.assert_array_equal(back.obs[f"{KEY}_size_factors"], sf)
    scmix.tl.goodness_of_fit(back, key=KEY)
    scmix.tl.goodness_of_fit(adata, key=KEY, size_factors=sf)
    np.testing.assert_array_equal(back.var[f"{KEY}_gof_ks"], adata.var[f"{KEY}_gof_ks"])
    # and losing them is a clear error, not a silent refit with ones
    del back.obs[f"{KEY}_size_factors"]
    with pytest.raises(KeyError, match=f"{KEY}_size_factors.*size_factors="):
        scmix.tl.goodness_of_fit(back, key=KEY)


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


def test_simulate_fit_mixture_round_trip():
    """simulate() stores the truth where fit_mixture writes its estimates: they agree."""
    adata = scmix.datasets.simulate(
        n_cells=2000,
        n_genes=12,
        n_components=2,
        fold_change=5.0,
        weights=[0.4, 0.6],
        dispersion=[0.02, 0.1],
        as_sparse=True,
        random_state=8,
    )
    adata.var_names = [f"g{j}" for j in range(adata.n_vars)]
    scmix.tl.fit_mixture(adata, n_components=2)
    var = adata.var
    assert var["scmix_converged"].all() and var["scmix_bimodal"].all()
    for k in range(2):
        np.testing.assert_allclose(var[f"scmix_mean_{k}"], var[f"true_mean_{k}"], rtol=0.08)
        np.testing.assert_allclose(var[f"scmix_weight_{k}"], var[f"true_weight_{k}"], atol=0.04)
    # the dispersion of the larger component is pinned down within a factor of two
    ratio = var["scmix_dispersion_1"] / var["true_dispersion_1"]
    assert ratio.between(0.5, 2.0).all()
    # most cells are assigned to their true component
    resp = stored_resp(adata, "scmix")
    agreement = (resp.argmax(axis=2) == adata.obsm["true_component"]).mean()
    assert agreement > 0.85
