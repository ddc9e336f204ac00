"""scmix.pl.spike_in_qc: the two panels draw the stored results, into a given Axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import scmix
from scmix import InputError, InputKeyError


@pytest.fixture(scope="module")
def checked():
    adata = scmix.datasets.demo()
    spikes = adata.var["spike_in"].to_numpy()
    # the demo's true ERCC means per unit size factor, as if they were the input molecules
    expected = np.where(spikes, adata.var["true_mean_0"].to_numpy() * 5, np.nan)
    scmix.tl.spike_in_qc(adata, expected_molecules=expected)
    return adata


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_both_panels(checked):
    left, right = scmix.pl.spike_in_qc(checked, show=False)
    n_flagged = int(checked.obs["spike_in_qc_outlier"].sum())
    labels = [c.get_label() for c in left.collections]
    assert labels == [f"kept ({checked.n_obs - n_flagged})", f"flagged ({n_flagged})"]
    assert left.get_yscale() == "log" and right.get_xscale() == right.get_yscale() == "log"
    twin = next(a for a in right.figure.axes if a not in (left, right))
    limit = checked.uns["spike_in_qc"]["detection"]["detection_limit"]
    curve = next(line for line in twin.get_lines() if line.get_label() == "logistic fit")
    x, y = curve.get_data()
    np.testing.assert_allclose(np.interp(np.log10(limit), np.log10(x), y), 0.5, atol=0.01)


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
    for ax in axes:
        legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert not legend.overlaps(frame)
        assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1
        assert fig.bbox.y0 <= legend.y0 and legend.y1 <= fig.bbox.y1
