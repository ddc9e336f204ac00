"""scmix.pl: the plots draw what they claim, into a given Axes, with clear errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

import scmix
from scmix._fitted import stored_responsibilities
from scmix.pl._mixture import component_pmfs


@pytest.fixture(scope="module")
def fitted():
    adata = scmix.datasets.demo()
    scmix.pp.size_factors(adata, method="spike_in")
    scmix.tl.fit_mixture(adata, n_components=2, n_init=1)
    return adata


def test_mixture_draws_k_components_and_the_marginal(fitted):
    ax = scmix.pl.mixture(fitted, "gene_1", show=False)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["component 0", "component 1", "mixture"]
    marginal = ax.get_lines()[2].get_ydata()
    parts = sum(line.get_ydata() for line in ax.get_lines()[:2])
    np.testing.assert_allclose(marginal, parts)
    assert "ΔBIC" in ax.get_title() and "(bimodal)" in ax.get_title()


def test_mixture_into_given_axes(fitted):
    _, (left, right) = plt.subplots(1, 2)
    assert scmix.pl.mixture(fitted, "ERCC-00002", ax=right) is right
    assert not left.get_lines()


def test_component_pmfs_are_the_cell_average():
    """The curve is the average over cells of each cell's mixture pmf; it sums to 1."""
    sf = np.array([0.5, 2.0])
    values = np.arange(400)
    pmfs = component_pmfs(values, sf, [5.0, 40.0], [0.1, 0.0], [0.3, 0.7])
    np.testing.assert_allclose(pmfs.sum(), 1.0, atol=1e-9)
    from scipy import stats

    expected = 0.7 * np.mean([stats.poisson.pmf(7, s * 40.0) for s in sf])
    np.testing.assert_allclose(pmfs[1, 7], expected)


def test_bimodality_highlights_the_bimodal_genes(fitted):
    ax = scmix.pl.bimodality(fitted, show=False)
    collections = {c.get_label(): c for c in ax.collections}
    n_bimodal = int(fitted.var["scmix_bimodal"].sum())
    assert len(collections["bimodal"].get_offsets()) == n_bimodal
    assert len(collections["not bimodal"].get_offsets()) == fitted.n_vars - n_bimodal
    labelled = {text.get_text() for text in ax.texts}
    assert labelled == set(fitted.var_names[fitted.var["scmix_bimodal"]])


@pytest.mark.parametrize("method", ["fast", "bootstrap"])
def test_bimodality_of_pvalues_highlights_the_adjusted_calls(method):
    adata = scmix.datasets.demo()
    scmix.pp.size_factors(adata, method="spike_in")
    two_component = [f"gene_{i}" for i in range(1, 9)]
    adata = adata[:, list(adata.var_names[:16]) + two_component].copy()
    options = {"n_bootstrap": 99} if method == "bootstrap" else {}
    scmix.tl.fit_mixture(adata, n_init=1, pvalues=method, call="padj", **options)
    ax = scmix.pl.bimodality(adata, score="pvalue", show=False)
    significant = adata.var["scmix_lrt_padj"] < 0.05
    collections = {c.get_label(): c for c in ax.collections}
    assert len(collections["significant"].get_offsets()) == significant.sum() > 0
    assert method in ax.get_ylabel()
    floor = [line.get_ydata()[0] for line in ax.get_lines()]
    # the bootstrap's floor -log10(1 / (B + 1)) is dashed; the fast p-values have none
    assert floor == ([2.0] if method == "bootstrap" else [])
    # called by padj: the delta-BIC view highlights those calls, without the BIC line
    ax = scmix.pl.bimodality(adata, show=False)
    collections = {c.get_label(): c for c in ax.collections}
    assert len(collections["bimodal"].get_offsets()) == adata.var["scmix_bimodal"].sum()
    assert ax.get_lines() == []


def test_bimodality_labels_do_not_overlap(fitted):
    """Bimodal genes at almost the same place get labels that overlap neither each
    other nor the legend, all inside the Axes; the strongest is labelled first, at
    its point's upper right."""
    adata = fitted.copy()
    var = adata.var
    crowd = var.index[:8]
    var["scmix_bimodal"] = var.index.isin(crowd)
    var.loc[crowd, "scmix_single_mean"] = 5.0 * (1.0 + 1e-3 * np.arange(8))
    var.loc[crowd, "scmix_delta_bic"] = 200.0 - np.arange(8)
    ax = scmix.pl.bimodality(adata, show=False)
    ax.figure.canvas.draw()  # labels are placed when drawn
    boxes = [Text.get_window_extent(text) for text in ax.texts if text.get_visible()]
    assert len(boxes) >= 4  # some fit around the crowd
    frame = ax.get_window_extent()
    legend = ax.get_legend().get_window_extent()
    for i, box in enumerate(boxes):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1
        assert not box.overlaps(legend)
        assert not any(box.overlaps(other) for other in boxes[:i])
    first = ax.texts[0]
    assert first.get_text() == crowd[0]
    assert first.get_ha() == "left" and first.get_va() == "bottom"


def test_errors_name_what_to_run(fitted):
    with pytest.raises(KeyError, match="fit_mixture"):
        scmix.pl.bimodality(fitted, key="other")
    with pytest.raises(KeyError, match="NOT_A_GENE"):
        scmix.pl.mixture(fitted, "NOT_A_GENE")
    partial = fitted.copy()
    scmix.tl.fit_mixture(partial, mask_var=["gene_1"], key_added="one", n_init=1)
    with pytest.raises(ValueError, match="not fitted"):
        scmix.pl.mixture(partial, "gene_2", key="one")


@pytest.fixture(scope="module")
def traced():
    adata = scmix.datasets.demo()
    scmix.pp.size_factors(adata, method="spike_in")
    scmix.tl.fit_mixture(adata, n_init=1, keep_trace=True)
    scmix.tl.goodness_of_fit(adata)
    return adata


def test_responsibilities_colours_cells_and_draws_each_component(traced):
    ax = scmix.pl.responsibilities(traced, "gene_3", show=False)
    (points,) = ax.collections
    assert len(points.get_offsets()) == traced.n_obs
    column = traced.var_names.get_loc("gene_3")
    np.testing.assert_allclose(
        points.get_array(), traced.layers["scmix_responsibility_1"][:, column]
    )
    assert [line.get_label() for line in ax.get_lines()] == ["component 0", "component 1"]


def test_convergence_draws_decreasing_gaps(traced):
    ax = scmix.pl.convergence(traced, genes=["gene_1", "ERCC-00002"], show=False)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["gene_1", "ERCC-00002"]
    for line in lines:
        assert np.all(np.diff(line.get_ydata()) <= 1e-9)


def test_convergence_needs_a_trace(fitted):
    with pytest.raises(KeyError, match="keep_trace=True"):
        scmix.pl.convergence(fitted)


def test_qq_points_and_title(traced):
    ax = scmix.pl.qq(traced, "ERCC-00002", show=False)
    (points,) = ax.collections
    assert len(points.get_offsets()) == traced.n_obs
    assert "KS p =" in ax.get_title()
    ax = scmix.pl.qq(traced, "gene_1", model="one_component", show=False)
    assert "one component" in ax.get_title()


# -- every plot on fitted real data ----------------------------------------------------


@pytest.fixture(scope="module")
def svensson_fitted(svensson_20312):
    adata = svensson_20312.copy()
    expressed = np.asarray((adata.X > 0).mean(axis=0)).ravel() >= 0.1
    scmix.tl.fit_mixture(adata, size_factors=None, mask_var=expressed, key_added="raw")
    scmix.tl.fit_mixture(adata, mask_var=expressed, keep_trace=True, n_init=1)
    scmix.tl.size_factor_modes(adata)
    return adata


def test_mixture_scales_on_real_data(svensson_fitted):
    _, (left, right) = plt.subplots(1, 2)
    assert scmix.pl.mixture(svensson_fitted, "ERCC-00002", key="raw", ax=left) is left
    assert "(bimodal)" in left.get_title()
    scmix.pl.mixture(svensson_fitted, "ERCC-00002", scale="normalised", ax=right)
    assert right.get_xlabel() == "count / size factor"
    # the model's density integrates to about the share of cells shown
    line = right.get_lines()[-1]
    width = np.diff(line.get_xdata())[0]
    assert 0.95 < line.get_ydata().sum() * width <= 1.0 + 1e-9
    with pytest.raises(ValueError, match="scale"):
        scmix.pl.mixture(svensson_fitted, "ERCC-00002", scale="log")


def test_every_plot_runs_on_real_data(svensson_fitted):
    adata = svensson_fitted
    gene = "ERCC-00002"
    assert len(
        scmix.pl.bimodality(adata, key="raw", show=False).collections[1].get_offsets()
    ) == int(adata.var["raw_bimodal"].sum())
    assert len(scmix.pl.responsibilities(adata, gene, show=False).get_lines()) == 2
    assert len(scmix.pl.convergence(adata, genes=[gene], show=False).get_lines()) == 1
    assert len(scmix.pl.convergence(adata, key="size_factor_modes", show=False).get_lines()) == 1
    assert len(scmix.pl.size_factors(adata, show=False).get_lines()) == 3
    assert len(scmix.pl.qq(adata, gene, show=False).collections) == 1
    with pytest.raises(ValueError, match="not fitted"):
        scmix.pl.mixture(adata, "ERCC-00085")  # outside the mask


def test_plots_on_a_cell_level_fit_and_without_offsets(svensson_fitted):
    adata = svensson_fitted.copy()
    expressed = list(adata.uns["scmix"]["var_names"])
    scmix.tl.fit_mixture(adata, shared=True, size_factors=None, mask_var=expressed, key_added="c")
    assert "cell-level" in scmix.pl.mixture(adata, "ERCC-00002", key="c", show=False).get_title()
    ax = scmix.pl.responsibilities(adata, "ERCC-00002", key="c", show=False)
    np.testing.assert_allclose(
        ax.collections[0].get_array(), stored_responsibilities(adata, "c")[:, 1]
    )
    assert ax.get_xlabel() == "cell total count (mean 1)"
    flat = ax.get_lines()[0].get_ydata()
    assert np.all(flat == flat[0])  # no offsets: flat component means
    with pytest.raises(ValueError, match="cell-level"):
        scmix.pl.bimodality(adata, key="c")
    table = scmix.get.mixture_df(adata, key="c")
    assert table.columns[0] == "log2_fold_change" and len(table) == len(expressed)
    scmix.tl.goodness_of_fit(adata, key="c")
    assert adata.var.loc[expressed, "c_gof_pvalue"].notna().all()


def test_every_plot_draws_into_a_given_axes(svensson_fitted):
    adata = svensson_fitted
    calls = {
        "mixture": lambda ax: scmix.pl.mixture(adata, "ERCC-00002", ax=ax),
        "bimodality": lambda ax: scmix.pl.bimodality(adata, ax=ax),
        "responsibilities": lambda ax: scmix.pl.responsibilities(adata, "ERCC-00002", ax=ax),
        "convergence": lambda ax: scmix.pl.convergence(adata, ax=ax),
        "size_factors": lambda ax: scmix.pl.size_factors(adata, ax=ax),
        "qq": lambda ax: scmix.pl.qq(adata, "ERCC-00002", ax=ax),
    }
    _, axes = plt.subplots(2, 3)
    for (name, call), ax in zip(calls.items(), axes.ravel(), strict=True):
        assert call(ax) is ax, name
        assert ax.has_data(), name
    assert len(plt.get_fignums()) == 1  # no figure of their own


def test_unknown_gene_is_named(svensson_fitted):
    for plot in (scmix.pl.mixture, scmix.pl.responsibilities, scmix.pl.qq):
        with pytest.raises(KeyError, match="NOT_A_GENE"):
            plot(svensson_fitted, "NOT_A_GENE")
