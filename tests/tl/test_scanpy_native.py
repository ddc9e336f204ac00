"""Results that flow into scanpy: responsibility layers, size factors that travel with the
fit, scanpy's log lines and n_jobs, and AnnData subsets of a fitted object."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import anndata as ad
import matplotlib
import numpy as np
import pytest
import scanpy as sc

import scmix
from scmix import _scanpy
from scmix._core.validation import check_fit_options
from scmix.tl import _fit_mixture

matplotlib.use("Agg")
import matplotlib.pyplot as plt

FAST = {"n_init": 2, "max_iter": 200}


@pytest.fixture
def fitted():
    adata = scmix.datasets.simulate(n_cells=300, n_genes=6, random_state=3)
    adata.var_names = [f"g{j}" for j in range(adata.n_vars)]
    scmix.tl.fit_mixture(adata, mask_var=["g1", "g2", "g4"], **FAST)
    return adata


@pytest.fixture
def scanpy_log():
    """scanpy's log lines at verbosity "hint", captured; the settings restored after."""
    verbosity, logfile = sc.settings.verbosity, sc.settings.logfile
    buffer = io.StringIO()
    sc.settings.logfile = buffer
    sc.settings.verbosity = "hint"
    yield buffer
    sc.settings.verbosity = verbosity
    sc.settings.logfile = logfile


# --------------------------------------------------------------------------------------
# layers that scanpy reads
# --------------------------------------------------------------------------------------
def test_scanpy_reads_the_responsibility_layer(fitted):
    gene = "g2"
    want = scmix.get.responsibilities(fitted, gene)["component_1"].to_numpy()
    got = sc.get.obs_df(fitted, keys=[gene], layer="scmix_responsibility_1")[gene].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-7)
    # and an embedding coloured by it draws those values, cell by cell
    fitted.obsm["X_umap"] = np.random.default_rng(0).normal(size=(fitted.n_obs, 2))
    ax = sc.pl.umap(
        fitted, color=gene, layer="scmix_responsibility_1", sort_order=False, show=False
    )
    np.testing.assert_allclose(ax.collections[0].get_array(), want, atol=1e-7)
    plt.close("all")
    # genes outside the fit are NaN, not a made-up probability
    assert np.isnan(sc.get.obs_df(fitted, keys=["g0"], layer="scmix_responsibility_1")).all(None)


def test_gene_and_cell_subsets_keep_the_responsibilities_aligned(fitted):
    full = scmix.get.responsibilities(fitted, "g4")
    genes = fitted[:, ["g4", "g0"]].copy()  # reordered, one fitted gene left
    np.testing.assert_array_equal(scmix.get.responsibilities(genes, "g4"), full)
    cells = fitted[::3].copy()
    with pytest.warns(UserWarning, match="100 cells but the fit under key 'scmix' was made on 300"):
        part = scmix.get.responsibilities(cells, "g4")
    np.testing.assert_array_equal(part, full.iloc[::3])
    # a gene that the subset dropped: an error naming it, not "not in list"
    with pytest.raises(KeyError, match=r"'g1' is not in adata\.var_names"):
        scmix.get.responsibilities(genes, "g1")


def test_the_cell_subset_warning_points_at_the_callers_line(fitted):
    cells = fitted[:50].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scmix.pl.responsibilities(cells, "g1", show=False)
    plt.close("all")
    ours = [w for w in caught if "was made on 300" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert ours[0].filename == __file__


def test_lost_var_columns_are_named(fitted):
    del fitted.var["scmix_single_mean"]
    with pytest.raises(KeyError, match=r"lost its \.var columns.*scmix_single_mean"):
        scmix.get.mixture_df(fitted)


def test_a_refit_removes_the_layers_it_does_not_write_again(fitted):
    scmix.tl.fit_mixture(fitted, 3, **FAST)
    assert {"scmix_responsibility_1", "scmix_responsibility_2"} <= set(fitted.layers)
    scmix.tl.fit_mixture(fitted, 2, **FAST)
    assert [name for name in fitted.layers if name.startswith("scmix_")] == [
        "scmix_responsibility_1"
    ]
    scmix.tl.fit_mixture(fitted, 2, store_responsibilities=False, **FAST)
    assert not [name for name in fitted.layers if name.startswith("scmix_")]
    # a cell-level fit stores its classes in .obsm and no layer either
    scmix.tl.fit_mixture(fitted, 3, **FAST)
    scmix.tl.fit_mixture(fitted, 2, shared=True, **FAST)
    assert not [name for name in fitted.layers if name.startswith("scmix_")]
    assert fitted.obsm["scmix_responsibilities"].shape == (fitted.n_obs, 2)


def test_auto_limit_counts_the_layers_and_warns_at_the_callers_line(monkeypatch):
    adata = scmix.datasets.simulate(n_cells=100, n_genes=4, random_state=1)
    # one layer of 100 x 4 float32 is 1,600 bytes
    monkeypatch.setattr(_fit_mixture, "RESPONSIBILITIES_AUTO_LIMIT", 1_599)
    with pytest.warns(UserWarning, match="1 layer\\(s\\) of 100 cells x 4 genes") as caught:
        scmix.tl.fit_mixture(adata, **FAST)
    assert caught[0].filename == __file__
    assert "scmix_responsibility_1" not in adata.layers
    monkeypatch.setattr(_fit_mixture, "RESPONSIBILITIES_AUTO_LIMIT", 1_600)
    scmix.tl.fit_mixture(adata, **FAST)
    assert "scmix_responsibility_1" in adata.layers


# --------------------------------------------------------------------------------------
# size factors that travel with the fit
# --------------------------------------------------------------------------------------
def test_array_size_factors_survive_a_write_and_read(tmp_path):
    adata = scmix.datasets.simulate(n_cells=300, n_genes=4, random_state=2)
    sf = adata.obs.pop("size_factors").to_numpy()
    scmix.tl.fit_mixture(adata, size_factors=sf, **FAST)
    path = tmp_path / "fit.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obs["scmix_size_factors"], sf)
    gene = back.var_names[0]
    # the readers find them without being told: the plots draw the fitted model
    ax = scmix.pl.responsibilities(back, gene, show=False)
    np.testing.assert_array_equal(np.sort(ax.collections[0].get_offsets()[:, 0]), np.sort(sf))
    scmix.pl.mixture(back, gene, show=False)
    plt.close("all")
    np.testing.assert_array_equal(
        scmix.get.quantile_residuals(back, [gene]),
        scmix.get.quantile_residuals(adata, [gene], size_factors=sf),
    )


def test_size_factors_from_obs_are_not_copied(fitted):
    assert "scmix_size_factors" not in fitted.obs
    assert fitted.uns["scmix"]["params"]["size_factors"] == "size_factors"


def test_a_refit_from_its_own_size_factor_column_keeps_it():
    adata = scmix.datasets.simulate(n_cells=200, n_genes=3, random_state=4)
    sf = adata.obs["size_factors"].to_numpy()
    scmix.tl.fit_mixture(adata, size_factors=sf, **FAST)
    scmix.tl.fit_mixture(adata, size_factors="scmix_size_factors", **FAST)
    np.testing.assert_array_equal(adata.obs["scmix_size_factors"], sf)


# --------------------------------------------------------------------------------------
# scanpy's logging and n_jobs
# --------------------------------------------------------------------------------------
def test_tools_log_at_scanpys_verbosity(fitted, scanpy_log):
    scmix.tl.fit_mixture(fitted, mask_var=["g1", "g2"], **FAST)
    scmix.tl.goodness_of_fit(fitted)
    lines = scanpy_log.getvalue().splitlines()
    assert lines[0] == "fitting K=2 nb mixtures to 2 genes"
    assert lines[1].startswith("    finished (0:00:")
    assert lines[2:6] == [
        "--> added",
        "    'scmix_*' columns (adata.var)",
        "    'scmix' (adata.uns)",
        "    'scmix_responsibility_1' (adata.layers)",
    ]
    assert "testing the mixture fits of 2 genes" in lines
    assert "    'scmix_gof_pvalue' (adata.var)" in lines


def test_nothing_is_logged_at_scanpys_default_verbosity(fitted, scanpy_log):
    sc.settings.verbosity = "warning"
    scmix.tl.fit_mixture(fitted, **FAST)
    scmix.pp.size_factors(fitted, "library", key_added="library")
    assert scanpy_log.getvalue() == ""


def test_info_without_hints_at_verbosity_info(fitted, scanpy_log):
    sc.settings.verbosity = "info"
    scmix.pp.flag_spike_ins(fitted, prefix="g")
    assert scanpy_log.getvalue().splitlines() == ["flagged 6 spike-ins (names starting with 'g')"]


def test_without_scanpy_nothing_imports_it_or_prints():
    code = (
        "import sys, scmix\n"
        "a = scmix.datasets.simulate(n_cells=100, n_genes=2, random_state=0)\n"
        "scmix.tl.fit_mixture(a, n_init=1)\n"
        "print('scanpy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]
    assert "fitting" not in result.stderr


def test_n_jobs_none_follows_scanpy_settings(monkeypatch):
    seen = []
    real = _fit_mixture.fit_matrix

    def spy(*args, settings, **kwargs):
        seen.append(settings.n_jobs)
        return real(*args, settings=settings, **kwargs)

    monkeypatch.setattr(_fit_mixture, "fit_matrix", spy)
    adata = scmix.datasets.simulate(n_cells=100, n_genes=2, random_state=0)
    original = sc.settings.n_jobs
    try:
        sc.settings.n_jobs = 2
        scmix.tl.fit_mixture(adata, n_init=1)
        scmix.tl.fit_mixture(adata, n_init=1, n_jobs=1)  # an explicit value wins
        sc.settings.n_jobs = 1  # scanpy's default: scmix keeps its own (every core)
        scmix.tl.fit_mixture(adata, n_init=1)
    finally:
        sc.settings.n_jobs = original
    assert seen[:2] == [2, 1]
    assert _scanpy.default_n_jobs(None) is None  # scanpy's 1: scmix's default, a core each
    own = check_fit_options(n_init=1, max_iter=10, tol=1e-6, random_state=0, n_jobs=None)
    assert seen[2] == own.n_jobs
