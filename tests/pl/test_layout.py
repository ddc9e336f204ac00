"""What a reader sees on real fits, at 4 x 3 and 8 x 6 inches: every label of the
strongest genes drawn, no label over another label or the legend, inside the Axes, no
tick label over another, every convergence line named, components visible above the
mixture. Boxes are measured after drawing, as the figure is rendered."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

import scmix

SIZES = [(4.0, 3.0), (8.0, 6.0)]


@pytest.fixture(scope="module")
def svensson(data_dir):
    """Svensson 20312, size factors the ERCC totals per cell (mean 1); fitted without
    size factors (key "raw", the README's ERCC-00002 bimodal) and with them."""
    adata = scmix.datasets.svensson2017("20312", data_dir=data_dir)
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    adata.obs["size_factors"] = totals / totals.mean()
    expressed = np.asarray((adata.X > 0).mean(axis=0)).ravel() >= 0.1
    scmix.tl.fit_mixture(adata, size_factors=None, mask_var=expressed, key_added="raw", n_init=1)
    scmix.tl.fit_mixture(adata, mask_var=expressed, keep_trace=True, n_init=1)
    return adata


@pytest.fixture(scope="module")
def zeisel(data_dir):
    """Zeisel 2015: the 300 most expressed endogenous genes, library size factors
    (about fifty are called bimodal: a crowded plot to label)."""
    adata = scmix.datasets.zeisel2015(data_dir=data_dir)
    scmix.pp.size_factors(adata, method="library")
    mean = np.asarray(adata.X.mean(axis=0)).ravel()
    mean[adata.var["spike_in"].to_numpy()] = -1.0
    genes = list(adata.var_names[np.argsort(-mean)[:300]])
    scmix.tl.fit_mixture(adata, mask_var=genes, keep_trace=True, n_init=1)
    return adata


def _axes(size):
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    return fig, ax


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _tick_labels(axis) -> list:
    """(text, box) of the tick labels drawn on ``axis`` (major and minor, in view)."""
    low, high = sorted(axis.get_view_interval())
    drawn = []
    for locs, get_ticks in (
        (axis.get_majorticklocs(), axis.get_major_ticks),
        (axis.get_minorticklocs(), axis.get_minor_ticks),
    ):
        for loc, tick in zip(locs, get_ticks(len(locs)), strict=True):
            label = tick.label1
            inside = low - 1e-9 * abs(low) <= loc <= high + 1e-9 * abs(high)
            if inside and label.get_visible() and label.get_text():
                drawn.append((label.get_text(), label.get_window_extent()))
    return drawn


def assert_ticks_readable(ax) -> None:
    for axis in (ax.xaxis, ax.yaxis):
        labels = _tick_labels(axis)
        assert len(labels) >= 2, f"{axis.axis_name}: {len(labels)} tick labels"
        for (t1, b1), (t2, b2) in itertools.combinations(labels, 2):
            assert not _overlap(b1, b2), f"{axis.axis_name} tick labels {t1!r} and {t2!r} overlap"


def assert_labels_clear(ax) -> list[str]:
    """Visible point labels: inside the Axes, clear of each other and of the legend.
    Returns their texts."""
    frame = ax.get_window_extent()
    texts = [t for t in ax.texts if t.get_visible()]
    boxes = [Text.get_window_extent(t) for t in texts]  # the text, not its leader line
    legend = ax.get_legend().get_window_extent()
    for text, box in zip(texts, boxes, strict=True):
        name = text.get_text()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, f"{name} leaves the Axes"
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1, f"{name} leaves the Axes"
        assert not _overlap(box, legend), f"{name} is over the legend"
    for (t1, b1), (t2, b2) in itertools.combinations(zip(texts, boxes, strict=True), 2):
        assert not _overlap(b1, b2), f"labels {t1.get_text()} and {t2.get_text()} overlap"
    return [t.get_text() for t in texts]


def _strongest(adata, key, n):
    var = adata.var[adata.var[f"{key}_bimodal"].fillna(False).astype(bool)]
    return list(var[f"{key}_delta_bic"].sort_values(ascending=False, kind="stable").index[:n])


@pytest.mark.parametrize("size", SIZES, ids=["4x3", "8x6"])
@pytest.mark.parametrize("data", ["svensson", "zeisel"])
def test_bimodality_labels_every_top_gene_clear_of_the_rest(data, size, request):
    adata = request.getfixturevalue(data)
    key = "raw" if data == "svensson" else "scmix"
    fig, ax = _axes(size)
    scmix.pl.bimodality(adata, key=key, ax=ax)
    fig.canvas.draw()
    labelled = assert_labels_clear(ax)
    assert labelled == _strongest(adata, key, 10)  # all ten, the strongest first
    if data == "svensson":
        assert "ERCC-00002" in labelled  # the README's gene
    assert_ticks_readable(ax)


def test_bimodality_labels_follow_a_resize(svensson):
    """Placed again at each draw: drawn large, then shrunk, they stay clear."""
    fig, ax = _axes((8.0, 6.0))
    scmix.pl.bimodality(svensson, key="raw", ax=ax)
    fig.canvas.draw()
    fig.set_size_inches(4.0, 3.0)
    fig.canvas.draw()
    assert len(assert_labels_clear(ax)) == 10


def test_bimodality_leader_lines_only_for_moved_labels(zeisel):
    fig, ax = _axes((4.0, 3.0))
    scmix.pl.bimodality(zeisel, ax=ax)
    fig.canvas.draw()
    for text in ax.texts:
        x, y = ax.transData.transform(text.xy)
        box = Text.get_window_extent(text)
        gap = np.hypot(max(box.x0 - x, 0, x - box.x1), max(box.y0 - y, 0, y - box.y1))
        if text.arrow_patch.get_visible():  # a line only where the label is off its point
            assert gap > 6.0, text.get_text()
        else:  # next to its point (pixels at 100 dpi)
            assert gap < 10.0, text.get_text()
    assert any(t.arrow_patch.get_visible() for t in ax.texts)  # crowded: some moved


@pytest.mark.parametrize("size", SIZES, ids=["4x3", "8x6"])
@pytest.mark.parametrize("data", ["svensson", "zeisel"])
def test_responsibilities_ticks_readable_and_zeros_low(data, size, request):
    adata = request.getfixturevalue(data)
    gene = "ERCC-00002" if data == "svensson" else "Snap25"
    fig, ax = _axes(size)
    scmix.pl.responsibilities(adata, gene, ax=ax)
    fig.canvas.draw()
    assert_ticks_readable(ax)
    counts = ax.collections[0].get_offsets()[:, 1]
    # the counts fill the axis: their middle half takes at least a fifth of its height
    y = ax.transData.transform(np.column_stack([np.ones(3), np.quantile(counts, [0.25, 0.75, 0])]))
    frame = ax.get_window_extent()
    assert (y[1, 1] - y[0, 1]) >= 0.2 * frame.height
    labels = [float(text) for text, _ in _tick_labels(ax.yaxis)]
    assert all(v == int(v) for v in labels)  # counts: integer ticks
    if (counts == 0).any():
        assert 0.0 in labels and y[2, 1] >= frame.y0  # zeros drawn and labelled


@pytest.mark.parametrize("size", SIZES, ids=["4x3", "8x6"])
def test_mixture_components_drawn_over_the_mixture(svensson, size):
    fig, ax = _axes(size)
    scmix.pl.mixture(svensson, "ERCC-00002", key="raw", ax=ax)
    fig.canvas.draw()
    *components, marginal = ax.get_lines()
    assert marginal.get_label() == "mixture"
    for line in components:
        assert line.get_zorder() > marginal.get_zorder()
        assert line.get_linestyle() != "-"  # dashed: the marginal shows between dashes
    colours = {matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines()}
    assert len(colours) == len(ax.get_lines())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["cells", "mixture", "component 0", "component 1"]
    assert_ticks_readable(ax)


@pytest.mark.parametrize("size", SIZES, ids=["4x3", "8x6"])
def test_convergence_names_every_line(svensson, size):
    fig, ax = _axes(size)
    scmix.pl.convergence(svensson, ax=ax)
    fig.canvas.draw()
    lines = ax.get_lines()
    assert len(lines) == 20
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [line.get_label() for line in lines]
    styles = {(line.get_color(), str(line.get_linestyle())) for line in lines}
    assert len(styles) == 20  # each line told apart
    box, page = legend.get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    assert not _overlap(box, ax.get_window_extent())  # outside the curves
    assert not _overlap(box, ax.xaxis.label.get_window_extent())
    assert_ticks_readable(ax)
