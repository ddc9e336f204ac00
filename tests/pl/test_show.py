"""scanpy's conventions: show=None shows a figure the plot made (and returns None),
never one of the caller's; return_fig returns the Figure; save writes where scanpy
would; a list of genes draws a grid of panels in rows of ncols."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

import scmix


@pytest.fixture(scope="module")
def fitted():
    adata = scmix.datasets.demo()
    scmix.pp.size_factors(adata, method="spike_in")
    scmix.tl.fit_mixture(adata, n_init=1, keep_trace=True)
    scmix.tl.goodness_of_fit(adata)
    scmix.tl.technical_noise(adata)
    return adata


@pytest.fixture
def shown(monkeypatch):
    """Counts the calls of plt.show (a no-op under Agg: nothing to see, only to count)."""
    calls = []
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: calls.append(args))
    return calls


PLOTS = {
    "mixture": lambda adata, **kw: scmix.pl.mixture(adata, "gene_1", **kw),
    "responsibilities": lambda adata, **kw: scmix.pl.responsibilities(adata, "gene_1", **kw),
    "qq": lambda adata, **kw: scmix.pl.qq(adata, "gene_1", **kw),
    "bimodality": lambda adata, **kw: scmix.pl.bimodality(adata, **kw),
    "convergence": lambda adata, **kw: scmix.pl.convergence(adata, **kw),
    "technical_noise": lambda adata, **kw: scmix.pl.technical_noise(adata, **kw),
}


@pytest.mark.parametrize("plot", PLOTS)
def test_show_none_shows_a_figure_the_plot_made(fitted, shown, plot):
    assert PLOTS[plot](fitted) is None
    assert len(shown) == 1


@pytest.mark.parametrize("plot", PLOTS)
def test_show_none_leaves_the_callers_axes_alone(fitted, shown, plot):
    _, ax = plt.subplots()
    assert PLOTS[plot](fitted, ax=ax) is ax
    assert not shown
    assert PLOTS[plot](fitted, ax=ax, show=True) is None  # asked for: shown
    assert len(shown) == 1


def test_show_false_returns_the_axes_and_return_fig_the_figure(fitted, shown):
    ax = scmix.pl.mixture(fitted, "gene_1", show=False)
    assert ax.has_data()
    fig = scmix.pl.mixture(fitted, "gene_1", return_fig=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert not shown  # return_fig: the caller works on the figure first


@pytest.fixture
def scanpy_settings():
    """scanpy's settings, restored after the test (its properties defeat monkeypatch)."""
    import scanpy as sc

    before = (sc.settings.autoshow, sc.settings.figdir)
    yield sc.settings
    sc.settings.autoshow, sc.settings.figdir = before


def test_scanpy_autoshow_off_is_honoured(fitted, shown, scanpy_settings):
    scanpy_settings.autoshow = False
    assert scmix.pl.mixture(fitted, "gene_1") is not None
    assert not shown


def test_save_writes_where_scanpy_would(fitted, shown, tmp_path, scanpy_settings):
    scanpy_settings.figdir = tmp_path
    scmix.pl.bimodality(fitted, save="_demo.png")
    scmix.pl.technical_noise(fitted, save="_demo.pdf")
    scmix.pl.mixture(fitted, ["gene_1", "gene_2"], save=True, show=False)
    assert (tmp_path / "bimodality_demo.png").stat().st_size > 0
    assert (tmp_path / "technical_noise_demo.pdf").stat().st_size > 0
    assert (tmp_path / f"mixture.{scanpy_settings.file_format_figs}").stat().st_size > 0


@pytest.mark.parametrize("plot", ["mixture", "responsibilities", "qq"])
@pytest.mark.parametrize(("n_genes", "ncols", "rows"), [(5, 2, 3), (3, 4, 1), (1, 4, 1)])
def test_a_gene_list_draws_a_grid(fitted, plot, n_genes, ncols, rows):
    genes = list(fitted.uns["scmix"]["var_names"][:n_genes])
    draw = getattr(scmix.pl, plot)
    axes = draw(fitted, genes, ncols=ncols, show=False)
    assert isinstance(axes, list) and len(axes) == n_genes
    assert [ax.get_title().split(":")[0].split(" ")[0] for ax in axes] == genes
    fig = axes[0].figure
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == n_genes  # no empty cells left in the last row
    spec = axes[0].get_subplotspec().get_gridspec()
    assert (spec.nrows, spec.ncols) == (rows, min(ncols, n_genes))


def test_a_grid_needs_its_own_figure(fitted):
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="ax="):
        scmix.pl.mixture(fitted, ["gene_1", "gene_2"], ax=ax)
    with pytest.raises(KeyError, match="NOT_A_GENE"):  # before any figure is made
        scmix.pl.qq(fitted, ["gene_1", "NOT_A_GENE"])
    assert len(plt.get_fignums()) == 1
