"""scmix.pl.spike_in_qc: the two panels draw the stored results, into a given Axes; the
cells' panel shows the kept cells, the low-capture mode and the outliers of .obs, the
thresholds of .uns and, with several modes, a histogram marking them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb

import scmix
from scmix import InputError, InputKeyError
from scmix.pl._spike_in_qc import LOW_MODE_COLOUR
from scmix.pl._utils import COMPONENT_COLOURS, HIGHLIGHT_COLOUR


@pytest.fixture(scope="module")
def checked():
    adata = scmix.datasets.demo()
    spikes = adata.var["spike_in"].to_numpy()
    # the demo's true ERCC means per unit size factor, as if they were the input molecules
    expected = np.where(spikes, adata.var["true_mean_0"].to_numpy() * 5, np.nan)
    scmix.tl.spike_in_qc(adata, expected_molecules=expected)
    return adata


def _groups(adata, key="spike_in_qc"):
    """The kept, low-capture-mode and flagged cells of .obs (disjoint: flagged first)."""
    flagged = adata.obs[f"{key}_outlier"].to_numpy()
    low_mode = adata.obs[f"{key}_low_capture_mode"].to_numpy()
    return ~flagged & ~low_mode, low_mode & ~flagged, flagged


def _legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_both_panels(checked):
    left, right = scmix.pl.spike_in_qc(checked, show=False)
    kept, low_mode, flagged = _groups(checked)
    n_mode = int(checked.obs["spike_in_qc_low_capture_mode"].sum())
    both = n_mode - int(low_mode.sum())
    assert n_mode == checked.uns["spike_in_qc"]["n_low_capture_mode"] and both == 1
    labels = [c.get_label() for c in left.collections]
    assert labels == [
        f"kept ({kept.sum()})",
        f"low-capture mode ({n_mode}, {both} flagged)",
        f"flagged ({flagged.sum()})",
    ]
    assert left.get_yscale() == "log" and right.get_xscale() == right.get_yscale() == "log"
    twin = next(a for a in right.figure.axes if a not in (left, right))
    limit = checked.uns["spike_in_qc"]["detection"]["detection_limit"]
    curve = next(line for line in twin.get_lines() if line.get_label() == "logistic fit")
    x, y = curve.get_data()
    np.testing.assert_allclose(np.interp(np.log10(limit), np.log10(x), y), 0.5, atol=0.01)


def test_points_of_each_colour_are_the_cells_of_obs(checked):
    """Every cell once, in the colour of its group: kept (blue), low-capture mode (green,
    a flagged one as flagged), flagged (vermillion)."""
    ax = scmix.pl.spike_in_qc(checked, panel="cells", show=False)
    y = checked.obs["spike_in_qc_capture_efficiency"].to_numpy()
    colours = [COMPONENT_COLOURS[0], LOW_MODE_COLOUR, HIGHLIGHT_COLOUR]
    assert len(ax.collections) == 3 and len(set(colours)) == 3
    for points, cells, colour in zip(ax.collections, _groups(checked), colours, strict=True):
        offsets = points.get_offsets()
        assert len(offsets) == cells.sum() > 0
        np.testing.assert_allclose(np.sort(offsets[:, 1]), np.sort(y[cells]))
        np.testing.assert_allclose(points.get_facecolor()[0][:3], to_rgb(colour))
    assert sum(len(points.get_offsets()) for points in ax.collections) == checked.n_obs


def test_threshold_lines_at_the_values_of_uns(checked):
    ax = scmix.pl.spike_in_qc(checked, panel="cells", show=False)
    result = checked.uns["spike_in_qc"]
    modes = result["modes"]
    assert modes["n_modes"] == 2 and modes["main"] == 1
    lines = {line.get_label(): line for line in ax.get_lines()}
    main = np.exp(modes["thresholds"][modes["main"]])
    low = np.exp(result["outlier_rules"]["low_capture"]["threshold"])
    assert main > low
    main_line = lines[f"main mode's threshold ({main:.2g})"]
    low_line = lines[f"outlier threshold ({low:.2g})"]
    np.testing.assert_allclose(main_line.get_ydata(), [main, main])
    np.testing.assert_allclose(low_line.get_ydata(), [low, low])
    assert main_line.get_linestyle() != low_line.get_linestyle()
    high = result["outlier_rules"]["high_fraction"]["threshold"]
    np.testing.assert_allclose(lines["high-fraction threshold"].get_xdata(), [high, high])
    # the cells of the low-capture mode lie between the two lines
    y = checked.obs["spike_in_qc_capture_efficiency"].to_numpy()
    in_mode = checked.obs["spike_in_qc_low_capture_mode"].to_numpy()
    assert np.all((y[in_mode] >= low) & (y[in_mode] < main))
    assert f"main mode's threshold ({main:.2g})" in _legend_texts(ax)


def test_modes_marked_on_a_histogram_of_the_same_axis(checked):
    ax = scmix.pl.spike_in_qc(checked, panel="cells", show=False)
    modes = checked.uns["spike_in_qc"]["modes"]
    (margin,) = ax.child_axes
    assert margin.get_yscale() == "log" and margin.get_ylim() == ax.get_ylim()
    marks = next(line for line in margin.get_lines() if line.get_marker() == "<")
    np.testing.assert_allclose(marks.get_ydata(), modes["centres"])
    # the marks stand on the mixture's density, inside the histogram's range
    assert np.all(marks.get_xdata() > 0) and marks.get_xdata().max() < margin.get_xlim()[1]
    centres = ", ".join(f"{c:.2g}" for c in modes["centres"])
    assert f"modes: {centres} (main)" in _legend_texts(ax)
    # the histogram stacks every drawn cell: its total is their number
    y = checked.obs["spike_in_qc_capture_efficiency"].to_numpy()
    top = max(patch.get_path().vertices[:, 0].max() for patch in margin.patches)
    counts, _ = np.histogram(np.log(y), bins=40)
    assert top == pytest.approx(counts.max())


def test_one_mode_as_before():
    """mode_components=1: kept and flagged only, one low-capture threshold, no histogram."""
    adata = scmix.datasets.demo()
    scmix.tl.spike_in_qc(adata, mode_components=1)
    assert adata.uns["spike_in_qc"]["modes"]["n_modes"] == 1
    ax = scmix.pl.spike_in_qc(adata, show=False)
    flagged = adata.obs["spike_in_qc_outlier"].to_numpy()
    labels = [c.get_label() for c in ax.collections]
    assert labels == [f"kept ({(~flagged).sum()})", f"flagged ({flagged.sum()})"]
    low = np.exp(adata.uns["spike_in_qc"]["outlier_rules"]["low_capture"]["threshold"])
    line = next(line for line in ax.get_lines() if line.get_label() == "low-capture threshold")
    np.testing.assert_allclose(line.get_ydata(), [low, low])
    assert ax.child_axes == []
    assert _legend_texts(ax) == [
        f"kept ({(~flagged).sum()})",
        f"flagged ({flagged.sum()})",
        "low-capture threshold",
        "high-fraction threshold",
    ]


def test_main_mode_lowest_has_no_low_capture_mode():
    """Two modes, the main one the lowest (an upper mode, doublets say): no low-capture
    mode and one threshold, but the modes marked."""
    rng = np.random.default_rng(0)
    total = np.exp(np.r_[rng.normal(np.log(1000), 0.15, 480), rng.normal(np.log(4000), 0.15, 120)])
    spikes = rng.poisson(total[:, None] * rng.dirichlet(np.full(12, 5.0)))
    genes = rng.poisson(total[:, None] / 1000 * np.full(20, 50.0))
    adata = ad.AnnData(np.c_[spikes, genes].astype(np.float32))
    adata.var_names = [f"ERCC-{j}" for j in range(12)] + [f"Gene{j}" for j in range(20)]
    adata.var["spike_in"] = np.arange(32) < 12
    scmix.tl.spike_in_qc(adata)
    modes = adata.uns["spike_in_qc"]["modes"]
    assert modes["n_modes"] == 2 and modes["main"] == 0
    assert adata.uns["spike_in_qc"]["n_low_capture_mode"] == 0
    ax = scmix.pl.spike_in_qc(adata, show=False)
    texts = _legend_texts(ax)
    assert len(ax.collections) == 2 and not any("low-capture mode" in t for t in texts)
    assert "low-capture threshold" in texts and not any("main mode" in t for t in texts)
    assert len(ax.child_axes) == 1 and any(t.startswith("modes: ") for t in texts)


def test_one_panel_into_given_axes(checked):
    _, ax = plt.subplots()
    assert scmix.pl.spike_in_qc(checked, panel="cells", ax=ax) is ax
    with pytest.raises(InputError, match="ax= holds one panel"):
        scmix.pl.spike_in_qc(checked, ax=ax)


def test_without_expected_molecules_only_the_cells_panel():
    adata = scmix.datasets.demo()
    scmix.tl.spike_in_qc(adata)
    ax = scmix.pl.spike_in_qc(adata, show=False)
    assert ax.get_ylabel() == "spike-in total"
    with pytest.raises(InputError, match="no expected molecules"):
        scmix.pl.spike_in_qc(adata, panel="spike_ins", show=False)


def test_missing_results_named():
    with pytest.raises(InputKeyError, match="no spike-in QC under key 'qc'"):
        scmix.pl.spike_in_qc(scmix.datasets.demo(), key="qc")


def test_legends_cover_no_point(checked):
    """Both legends stand outside their Axes (the gallery's used to cover cells), inside
    the figure."""
    axes = scmix.pl.spike_in_qc(checked, show=False)
    fig = axes[0].figure
    fig.canvas.draw()
    inside = fig.bbox
    for ax in axes:
        legend = ax.get_legend().get_window_extent()
        for frame in [ax.get_window_extent()] + [a.get_window_extent() for a in ax.child_axes]:
            assert not legend.overlaps(frame)
            assert inside.x0 <= frame.x0 and frame.x1 <= inside.x1
        assert inside.x0 <= legend.x0 and legend.x1 <= inside.x1
        assert inside.y0 <= legend.y0 and legend.y1 <= inside.y1
    # the modes' histogram is beside the cells, not on them
    cells = axes[0]
    assert cells.child_axes[0].get_window_extent().x0 > cells.get_window_extent().x1
