"""scmix.pl.technical_noise: every called gene drawn as called, the trend is a0 + a1/mu,
the CV² is the stated formula, the labels are the strongest calls, zero dispersions sit
on the axis, labels and legend cover nothing, and missing results are named."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import itertools

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.text import Text

import scmix
from scmix import InputError, InputKeyError

N_CELLS = 300


@pytest.fixture(scope="module")
def noise():
    """Simulated: 40 spike-ins on the trend 0.05 + 0.5/mu, 60 genes on it and 20 with
    extra dispersion, bimodal size factors (genes and spike-ins alike)."""
    rng = np.random.default_rng(1)
    s = np.where(rng.random(N_CELLS) < 0.5, 0.5, 2.0) * np.exp(rng.normal(0.0, 0.2, N_CELLS))
    spike_mu = np.exp(rng.uniform(np.log(0.3), np.log(500.0), 40))
    gene_mu = np.exp(rng.uniform(np.log(0.5), np.log(200.0), 80))
    gene_phi = 0.05 + 0.5 / gene_mu + np.r_[np.zeros(60), rng.uniform(0.3, 2.0, 20)]
    mu = np.r_[gene_mu, spike_mu]
    phi = np.r_[gene_phi, 0.05 + 0.5 / spike_mu]
    counts = rng.negative_binomial(1.0 / phi, 1.0 / (1.0 + s[:, None] * mu * phi))
    adata = ad.AnnData(counts.astype(np.float32))
    adata.var_names = [f"g{j}" for j in range(80)] + [f"ERCC-{j}" for j in range(40)]
    adata.var["spike_in"] = np.r_[np.zeros(80, bool), np.ones(40, bool)]
    scmix.pp.size_factors(adata, method="library")
    scmix.tl.technical_noise(adata)
    return adata


def _points(ax) -> list[np.ndarray]:
    """Offsets of the four groups: other genes, called genes, trend and other spike-ins."""
    groups = [c for c in ax.collections if c.get_gid() != "clipped" and c.get_label()[0] != "_"]
    return [np.asarray(c.get_offsets()) for c in groups[:4]]


def test_show_false_returns_the_axes_and_draws_into_a_given_one(noise):
    ax = scmix.pl.technical_noise(noise, show=False)
    assert isinstance(ax, plt.Axes)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    _, given = plt.subplots()
    assert scmix.pl.technical_noise(noise, ax=given) is given


def test_every_gene_in_its_group(noise):
    var = noise.var
    ax = scmix.pl.technical_noise(noise, show=False)
    other, called, in_trend, left_out = _points(ax)
    variable = var["noise_variable"].to_numpy()
    spike = var["spike_in"].to_numpy()
    trend_spike = var["noise_trend_spike_in"].to_numpy()
    assert 0 < variable.sum() < 80
    assert len(called) == variable.sum()
    assert len(other) == (~spike & ~variable).sum()
    assert len(in_trend) == trend_spike.sum() and len(left_out) == (spike & ~trend_spike).sum()
    order = np.argsort(called[:, 0])
    np.testing.assert_allclose(
        called[order],
        var.loc[variable, ["noise_mean", "noise_dispersion"]].sort_values("noise_mean").to_numpy(),
    )
    n_tested = int(np.isfinite(var["noise_padj"]).sum())
    assert (
        ax.get_title() == f"{variable.sum()} of {n_tested} genes above technical noise (FDR 0.05)"
    )
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"genes above technical\nnoise ({variable.sum()})" in legend


def test_trend_is_a0_plus_a1_over_mean_across_the_means(noise):
    trend = noise.uns["noise"]["trend"]
    ax = scmix.pl.technical_noise(noise, show=False)
    x, y = ax.get_lines()[0].get_data()
    np.testing.assert_allclose(y, trend["a0"] + trend["a1"] / x, rtol=1e-12)
    for point in (1.0, 10.0, 100.0):
        expected = trend["a0"] + trend["a1"] / point
        assert np.interp(np.log(point), np.log(x), np.log(y)) == pytest.approx(
            np.log(expected), abs=1e-3
        )
    means = noise.var["noise_mean"]
    assert x.min() <= means.min() and x.max() >= means.max()


def test_cv2_is_dispersion_plus_mean_inverse_size_factor_over_mean(noise):
    var, obs = noise.var, noise.obs
    ax = scmix.pl.technical_noise(noise, y="cv2", show=False)
    _, called, in_trend, _ = _points(ax)
    # called genes with the genes' size factors, trend spike-ins with their own
    for points, rows, factors in (
        (called, "noise_variable", "noise_size_factors"),
        (in_trend, "noise_trend_spike_in", "noise_spike_in_size_factors"),
    ):
        drawn = var[var[rows]]
        inverse = np.mean(1.0 / obs[factors])
        expected = drawn["noise_dispersion"] + inverse / drawn["noise_mean"]
        np.testing.assert_allclose(
            points[np.argsort(points[:, 0]), 1],
            expected.to_numpy()[np.argsort(drawn["noise_mean"])],
        )
    trend = noise.uns["noise"]["trend"]
    x, y = ax.get_lines()[0].get_data()
    inverse = np.mean(1.0 / obs["noise_size_factors"])  # the trend is drawn for the genes
    np.testing.assert_allclose(y, trend["a0"] + trend["a1"] / x + inverse / x)
    assert ax.get_ylabel() == "CV² of normalised counts"


def _expected_top(adata, n):
    var = adata.var[adata.var["noise_variable"]]
    ratio = var["noise_dispersion"] / var["noise_technical_dispersion"]
    order = np.lexsort((-ratio.to_numpy(), var["noise_padj"].to_numpy()))
    return list(var.index[order][:n])


def test_labels_are_the_strongest_calls_ties_by_ratio(noise):
    adata = noise.copy()
    var = adata.var
    called = var.index[var["noise_variable"]]
    var.loc[called[:4], "noise_padj"] = 0.0  # p-values that underflowed: ties
    ax = scmix.pl.technical_noise(adata, n_labels=6, show=False)
    labels = [t.get_text() for t in ax.texts]
    assert labels == _expected_top(adata, 6)
    ratio = (var["noise_dispersion"] / var["noise_technical_dispersion"])[labels[:4]]
    assert list(ratio) == sorted(ratio, reverse=True)
    assert not scmix.pl.technical_noise(adata, n_labels=0, show=False).texts


def test_zero_dispersion_drawn_on_the_axis_and_named(noise):
    adata = noise.copy()
    var = adata.var
    zero = var.index[~var["noise_variable"] & ~var["spike_in"]][:3]
    var.loc[zero, "noise_dispersion"] = 0.0
    ax = scmix.pl.technical_noise(adata, show=False)
    clipped = [c for c in ax.collections if c.get_gid() == "clipped"]
    assert len(clipped) == 1
    offsets = np.asarray(clipped[0].get_offsets())
    np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(var.loc[zero, "noise_mean"]))
    bottom = ax.get_ylim()[0]
    assert np.all(offsets[:, 1] > bottom) and np.all(np.isfinite(offsets))
    assert np.all(offsets[:, 1] < var["noise_dispersion"][var["noise_dispersion"] > 0].min())
    assert len(_points(ax)[0]) == (~var["noise_variable"] & ~var["spike_in"]).sum() - 3
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("0 = Poisson" in text for text in legend)


def test_no_zero_dispersion_no_floor(noise):
    ax = scmix.pl.technical_noise(noise, show=False)
    assert not [c for c in ax.collections if c.get_gid() == "clipped"]
    assert not any("Poisson" in t.get_text() for t in ax.get_legend().get_texts())


def test_scatter_band_only_when_tau_is_positive(noise):
    adata = noise.copy()
    trend = adata.uns["noise"]["trend"]
    for stored in (None, 0.0):  # not stored (older results), or no scatter
        trend.pop("scatter_sd", None)
        if stored is not None:
            trend["scatter_sd"] = stored
        ax = scmix.pl.technical_noise(adata, show=False)
        assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    trend["scatter_sd"] = 0.4
    ax = scmix.pl.technical_noise(adata, show=False)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert "τ = 0.4" in band.get_label()
    vertices = band.get_paths()[0].vertices
    x = vertices[:, 0]
    upper = trend["a0"] + trend["a1"] / x
    on_high = np.isclose(vertices[:, 1], upper * np.exp(0.8))
    on_low = np.isclose(vertices[:, 1], upper * np.exp(-0.8))
    assert on_high.sum() >= 200 and on_low.sum() >= 200 and (on_high | on_low).all()


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("size", [(4.0, 3.0), (8.0, 6.0)], ids=["4x3", "8x6"])
def test_labels_clear_and_legend_outside(noise, size):
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    scmix.pl.technical_noise(noise, ax=ax)
    fig.canvas.draw()
    frame = ax.get_window_extent()
    legend = ax.get_legend().get_window_extent()
    assert not _overlap(legend, frame)  # covers no point
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1
    texts = [t for t in ax.texts if t.get_visible()]
    assert len(texts) == 10
    boxes = [Text.get_window_extent(t) for t in texts]
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1
    for b1, b2 in itertools.combinations(boxes, 2):
        assert not _overlap(b1, b2)


def test_legend_inside_or_none(noise):
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    scmix.pl.technical_noise(noise, ax=ax, legend_loc="best")
    fig.canvas.draw()
    frame, legend = ax.get_window_extent(), ax.get_legend().get_window_extent()
    assert frame.x0 <= legend.x0 and legend.x1 <= frame.x1
    for text in ax.texts:
        assert not _overlap(Text.get_window_extent(text), legend)
    ax = scmix.pl.technical_noise(noise, legend_loc="none", show=False)
    assert ax.get_legend() is None


def test_missing_results_named(noise):
    with pytest.raises(InputKeyError, match="no technical-noise results under key 'other'"):
        scmix.pl.technical_noise(noise, key="other")
    fitted = scmix.datasets.demo()
    scmix.pp.size_factors(fitted, method="spike_in")
    scmix.tl.fit_mixture(fitted, n_init=1, key_added="noise")  # another tool's key
    with pytest.raises(InputKeyError, match=r"scmix\.tl\.technical_noise"):
        scmix.pl.technical_noise(fitted)
    adata = noise.copy()
    del adata.var["noise_padj"]
    with pytest.raises(InputKeyError, match=r"adata\.var has no column 'noise_padj'"):
        scmix.pl.technical_noise(adata)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"y": "cv"}, "y must be one of"),
        ({"n_labels": -1}, "n_labels must be at least 0"),
        ({"legend_loc": "upper left"}, "legend_loc must be one of"),
    ],
)
def test_bad_options_refused(noise, options, message):
    with pytest.raises(InputError, match=message):
        scmix.pl.technical_noise(noise, **options)


@pytest.fixture(scope="module")
def zeisel(data_dir):
    """Zeisel 2015 (1,000 genes, 57 ERCC), library size factors: 745 genes called, 56 of
    them with an adjusted p-value of 0 (the labels' ties)."""
    adata = scmix.datasets.zeisel2015(data_dir=data_dir)
    scmix.pp.size_factors(adata, method="library")
    scmix.tl.technical_noise(adata)
    return adata


@pytest.mark.parametrize("y", ["dispersion", "cv2"])
def test_zeisel_labels_the_strongest_calls_clear_of_each_other(zeisel, y):
    ax = scmix.pl.technical_noise(zeisel, y=y, show=False)
    fig = ax.figure
    fig.canvas.draw()
    texts = [t for t in ax.texts if t.get_visible()]
    assert [t.get_text() for t in texts] == _expected_top(zeisel, 10)
    boxes = [Text.get_window_extent(t) for t in texts]
    for b1, b2 in itertools.combinations(boxes, 2):
        assert not _overlap(b1, b2)
    legend = ax.get_legend().get_window_extent()
    assert not _overlap(legend, ax.get_window_extent())
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1
    assert ax.title.get_window_extent().x0 >= fig.bbox.x0  # the title fits the figure
