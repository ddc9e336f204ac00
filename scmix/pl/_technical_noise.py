"""Genes above the spike-ins' technical noise: every gene's dispersion (or CV²) against
its mean, with the spike-ins, the technical trend fitted on them and the genes called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from anndata import AnnData
from matplotlib.lines import Line2D

from .._core import validation
from .._core.errors import InputError, InputKeyError
from .._docs import doc_params
from .._inputs import bool_column, check_adata
from ._ticks import number_label
from ._utils import (
    COMPONENT_COLOURS,
    DOC_SHOW,
    HIGHLIGHT_COLOUR,
    MARGINAL_COLOUR,
    PANEL_SIZE,
    finish,
    label_points,
    new_axes,
    nice_ticks,
)

Y = Literal["dispersion", "cv2"]

SPIKE_IN_COLOUR = COMPONENT_COLOURS[0]
GENE_COLOUR = "0.6"
#: Beyond this many genes, their points are drawn as an image in vector output.
_RASTERIZE_ABOVE = 2000


@dataclass
class NoiseResults:
    """What the plot draws, read from the results of :func:`scmix.tl.technical_noise`:
    per gene (all of ``.var``) and the trend's coefficients."""

    names: np.ndarray
    mean: np.ndarray
    dispersion: np.ndarray
    technical: np.ndarray
    padj: np.ndarray
    variable: np.ndarray
    spike_in: np.ndarray
    trend_spike_in: np.ndarray
    a0: float
    a1: float
    scatter_sd: float | None
    fdr: float
    min_mean: float
    #: mean of 1 / s over the cells, gene and spike-in size factors
    inverse_sf: float
    inverse_spike_sf: float

    def poisson(self, mean: np.ndarray, spike_in: np.ndarray | bool) -> np.ndarray:
        """The Poisson term of the CV² of normalised counts, mean(1/s) / mean."""
        inverse = np.where(spike_in, self.inverse_spike_sf, self.inverse_sf)
        return inverse / mean

    def trend(self, mean: np.ndarray) -> np.ndarray:
        """The technical dispersion :math:`a_0 + a_1/\\mu`."""
        return self.a0 + self.a1 / mean


def noise_results(adata: AnnData, key: str) -> NoiseResults:
    """The results of :func:`scmix.tl.technical_noise` under ``key``; a clear
    InputKeyError when they are not there (or incomplete)."""
    check_adata(adata)
    validation.check_key(key, "key")
    run = f"run scmix.tl.technical_noise(adata, key_added={key!r}) first"
    result = adata.uns.get(key)
    if not isinstance(result, dict) or "trend" not in result:
        raise InputKeyError(f"no technical-noise results under key {key!r}: {run}.")

    def column(frame, name: str, where: str) -> np.ndarray:
        if name not in frame:
            raise InputKeyError(f"adata.{where} has no column {name!r}: {run}.")
        return frame[name].to_numpy()

    var, obs = adata.var, adata.obs
    params = result.get("params", {})
    spike_key = params.get("spike_in", "spike_in")
    if spike_key not in var:
        raise InputKeyError(
            f"adata.var has no column {spike_key!r}, the spike-in flags the results under "
            f"{key!r} were computed with: restore it or {run}."
        )
    gene_sf = column(obs, f"{key}_size_factors", "obs").astype(float)
    spike_sf = column(obs, f"{key}_spike_in_size_factors", "obs").astype(float)
    trend = result["trend"]
    tau = trend.get("scatter_sd")
    tau = float(tau) if tau is not None and np.isfinite(tau) and tau > 0 else None
    return NoiseResults(
        names=var.index.to_numpy(dtype=str),
        mean=column(var, f"{key}_mean", "var").astype(float),
        dispersion=column(var, f"{key}_dispersion", "var").astype(float),
        technical=column(var, f"{key}_technical_dispersion", "var").astype(float),
        padj=column(var, f"{key}_padj", "var").astype(float),
        variable=column(var, f"{key}_variable", "var").astype(bool),
        spike_in=bool_column(var, spike_key, f"adata.var[{spike_key!r}] (the spike-in flags)"),
        trend_spike_in=column(var, f"{key}_trend_spike_in", "var").astype(bool),
        a0=float(trend["a0"]),
        a1=float(trend["a1"]),
        scatter_sd=tau,
        fdr=float(params.get("fdr", 0.05)),
        min_mean=float(params.get("min_mean", 1.0)),
        inverse_sf=float(np.mean(1.0 / gene_sf)),
        inverse_spike_sf=float(np.mean(1.0 / spike_sf)),
    )


def strongest(results: NoiseResults, n: int) -> np.ndarray:
    """Positions of the ``n`` strongest called genes: smallest adjusted p-value first,
    ties (p-values that underflow to 0) broken by the larger dispersion / trend ratio."""
    called = np.flatnonzero(results.variable & ~results.spike_in)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = results.dispersion[called] / results.technical[called]
    order = np.lexsort((-np.nan_to_num(ratio, nan=-np.inf), results.padj[called]))
    return called[order][:n]


def _floor(trend: np.ndarray, values: np.ndarray) -> float | None:
    """The bottom of a dispersion axis, when some ``values`` lie below it: the power of
    ten at or below a tenth of the lowest technical dispersion drawn (dispersions far
    below the spike-ins' noise are indistinguishable from Poisson, and 0 is one)."""
    lowest = trend.min()
    if not lowest > 0:  # no trend to measure by: below the smallest positive value
        positive = values[values > 0]
        if positive.size == 0:
            return 1e-3
        lowest = positive.min()
    floor = 10.0 ** np.floor(np.log10(lowest / 10.0))
    return floor if (values < floor).any() else None


@doc_params(show_options=DOC_SHOW)
def technical_noise(
    adata: AnnData,
    *,
    key: str = "noise",
    y: Y = "dispersion",
    n_labels: int = 10,
    legend_loc: Literal["right margin", "best", "none"] = "right margin",
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool | None = None,
):
    r"""Genes above the technical noise of the spike-ins (:func:`scmix.tl.technical_noise`).

    Every gene's fitted mean :math:`\hat\mu_j` (counts in an average cell, size factor 1)
    against its variability, log-log: the genes not called (grey), the genes called
    above technical noise (``{key}_variable``, highlighted), the spike-ins the trend
    was fitted on (filled diamonds) and those left out of it for a mean below
    ``min_mean`` (hollow), and the technical trend
    :math:`\phi_{\mathrm{tech}}(\mu) = a_0 + a_1/\mu` over the range of means. When
    the results hold the spike-ins' scatter :math:`\tau` (the SD of
    :math:`\log(\hat\phi_j / \phi_{\mathrm{tech}}(\hat\mu_j))` over the spike-ins
    beyond NB sampling), the band :math:`\phi_{\mathrm{tech}}\,e^{\pm 2\tau}` is
    shaded: where about 95% of spike-ins would fall.

    ``y="dispersion"``: the NB dispersion :math:`\hat\phi_j` (variance
    :math:`\mu + \phi\mu^2`). A dispersion of 0 (Poisson) cannot go on a log axis:
    dispersions below the bottom of the axis, a power of ten at or below a tenth of
    the lowest trend value drawn (0 included), are drawn on it as downward triangles,
    named so in the legend. ``y="cv2"``: the squared coefficient of variation of the
    normalised counts :math:`x_{ij}/s_i` under the fitted model,

    .. math:: \mathrm{CV}^2_j = \hat\phi_j + \frac{\overline{1/s}}{\hat\mu_j},
       \qquad \overline{1/s} = \frac1n \sum_i \frac{1}{s_i},

    with the gene size factors (``.obs["{key}_size_factors"]``) for genes and the
    spike-in ones (``.obs["{key}_spike_in_size_factors"]``) for spike-ins; the trend
    and band are those of the genes, :math:`\phi_{\mathrm{tech}}(\mu) +
    \overline{1/s}/\mu`, and the spike-ins' own curve is dotted when their
    :math:`\overline{1/s}` differs by more than 5%.

    The ``n_labels`` strongest called genes (smallest adjusted p-value, ties broken
    by the larger ratio :math:`\hat\phi_j / \phi_{\mathrm{tech}}(\hat\mu_j)`) are
    labelled with their names, placed as in :func:`scmix.pl.bimodality` (no label over
    another, leader lines for labels moved away).

    Parameters
    ----------
    adata
        Holding :func:`scmix.tl.technical_noise` results under ``key``.
    key
        Key of the results (``key_added`` of :func:`scmix.tl.technical_noise`).
    y
        ``"dispersion"`` or ``"cv2"``.
    n_labels
        Number of called genes labelled, the strongest first.
    legend_loc
        ``"right margin"``: outside the Axes, on the right, where it covers no point (a
        figure made here is wider for it); ``"best"``: inside, in the corner or side
        that covers the fewest points (for small Axes); ``"none"``.
    {show_options}

    Returns
    -------
    The Figure with ``return_fig=True``; None when the figure was shown; else the
    Axes. Its first four point collections are, in this order, the other genes, the
    genes above technical noise, the spike-ins in the trend and those left out of it,
    labelled with their counts (points below the axis are extra collections whose
    ``gid`` is ``"clipped"``); the trend is the first of ``ax.get_lines()``; the labels
    are in ``ax.texts``, the strongest first.

    Raises
    ------
    InputKeyError
        No results under ``key`` (or a column of them missing).
    InputError
        ``y``, ``n_labels`` or ``legend_loc`` malformed.
    """
    r = noise_results(adata, key)
    validation.check_choice(y, "y", ("dispersion", "cv2"))
    validation.check_choice(legend_loc, "legend_loc", ("right margin", "best", "none"))
    n_labels = validation.check_int(n_labels, "n_labels", minimum=0)
    shown = np.isfinite(r.mean) & (r.mean > 0) & np.isfinite(r.dispersion)
    if not shown.any():
        raise InputError(f"no gene under key {key!r} has a fitted mean and dispersion to draw.")
    value = r.dispersion.copy()
    if y == "cv2":
        value = value + r.poisson(np.where(shown, r.mean, 1.0), r.spike_in)
    grid = np.geomspace(r.mean[shown].min() / 1.2, r.mean[shown].max() * 1.2, 200)
    floor = _floor(r.trend(grid), value[shown]) if y == "dispersion" else None

    width, height = PANEL_SIZE
    if legend_loc == "right margin":  # a figure made here is wider for the legend
        width += 2.6
    ax, created = new_axes(ax, panel_size=(width, height + 0.8))
    genes, spikes = shown & ~r.spike_in, shown & r.spike_in
    called = genes & r.variable
    masks = [genes & ~r.variable, called, spikes & r.trend_spike_in, spikes & ~r.trend_spike_in]
    names = [
        "other genes ({:,})",
        "genes above technical\nnoise ({:,})",
        "spike-ins in the trend ({})",
        f"spike-ins left out of it\n(mean < {r.min_mean:g}; {{}})",
    ]
    for mask, name, style in zip(masks, names, _STYLES, strict=True):
        _scatter(ax, r.mean, value, mask, name.format(int(mask.sum())), style, floor)
    _trend(ax, r, grid, y)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if floor is not None:
        ax.set_ylim(bottom=floor / 1.3)
    nice_ticks(ax.xaxis)
    nice_ticks(ax.yaxis)
    ax.set_xlabel("mean count μ in an average cell (fitted)")
    ax.set_ylabel(
        "dispersion φ (variance μ + φμ²)" if y == "dispersion" else "CV² of normalised counts"
    )
    tested = ~r.spike_in & np.isfinite(r.padj)
    ax.set_title(
        f"{int(called.sum()):,} of {int(tested.sum()):,} genes above technical noise "
        f"(FDR {r.fdr:g})"
    )
    legend = _legend(ax, floor, legend_loc)
    top = strongest(r, n_labels)
    label_points(
        ax,
        r.mean[top],
        value[top],
        r.names[top],
        legend=legend if legend_loc == "best" else None,
        fontsize="x-small",
    )
    return finish(
        [ax],
        created=created,
        single=True,
        name="technical_noise",
        show=show,
        save=save,
        return_fig=return_fig,
    )


#: The four groups of points: other genes, called genes, spike-ins in the trend and
#: left out of it (hollow).
_STYLES = (
    {"s": 6, "color": GENE_COLOUR, "alpha": 0.8, "linewidths": 0, "zorder": 3.5},
    {"s": 9, "color": HIGHLIGHT_COLOUR, "alpha": 0.85, "linewidths": 0, "zorder": 3},
    {"s": 22, "marker": "D", "color": SPIKE_IN_COLOUR, "linewidths": 0, "zorder": 4},
    {
        "s": 22,
        "marker": "D",
        "facecolors": "none",
        "edgecolors": SPIKE_IN_COLOUR,
        "linewidths": 1.0,
        "zorder": 4,
    },
)


def _scatter(ax, x, y, mask, label: str, style: dict, floor: float | None) -> None:
    """One group of points; with a ``floor``, those below it as downward triangles on
    it (a collection of their own, ``gid="clipped"``, not in the legend)."""
    above = mask if floor is None else mask & (y >= floor)
    many = int(above.sum()) > _RASTERIZE_ABOVE
    ax.scatter(x[above], y[above], label=label, rasterized=many, **style)
    below = mask & (y < floor) if floor is not None else np.zeros_like(mask)
    if below.any():
        clipped = {k: v for k, v in style.items() if k not in ("marker", "s", "alpha")}
        size = max(1.5 * style["s"], 16.0)
        ax.scatter(
            x[below], np.full(int(below.sum()), floor), marker="v", s=size, gid="clipped", **clipped
        )


def _trend(ax, r: NoiseResults, grid: np.ndarray, y: str) -> None:
    """The technical trend over ``grid`` (the first line of the Axes), the spike-ins'
    own CV² curve when it differs, and the band of the spike-ins' scatter."""
    poisson = r.poisson(grid, False) if y == "cv2" else 0.0
    ax.plot(
        grid,
        r.trend(grid) + poisson,
        color=MARGINAL_COLOUR,
        lw=1.5,
        zorder=3.2,
        label=_trend_label(r, y),
    )
    if y == "cv2" and abs(r.inverse_spike_sf / r.inverse_sf - 1.0) > 0.05:
        ax.plot(
            grid,
            r.trend(grid) + r.poisson(grid, True),
            color=SPIKE_IN_COLOUR,
            lw=1.2,
            ls=":",
            zorder=3.2,
            label="the same with the\nspike-ins' size factors",
        )
    if r.scatter_sd:  # None (not stored) or 0: no band
        low, high = (r.trend(grid) * np.exp(sign * 2.0 * r.scatter_sd) for sign in (-1.0, 1.0))
        ax.fill_between(
            grid,
            low + poisson,
            high + poisson,
            color=SPIKE_IN_COLOUR,
            alpha=0.15,
            linewidth=0,
            zorder=1,
            label=f"spike-ins' scatter around\nit (±2τ, τ = {r.scatter_sd:.2g})",
        )


def _legend(ax, floor: float | None, loc: str):
    """The legend, with an entry for the points drawn on the floor; outside on the
    right (``"right margin"``), inside (``"best"``: placed by :func:`label_points`) or
    none."""
    if loc == "none":
        return None
    handles, labels = ax.get_legend_handles_labels()
    if floor is not None:
        handles.append(Line2D([], [], ls="", marker="v", color="0.35", markersize=5))
        labels.append(f"φ below {number_label(floor)} (0 = Poisson),\ndrawn on the axis")
    if loc == "best":  # small: it has to fit among the points
        return ax.legend(handles, labels, frameon=False, fontsize="x-small", markerscale=1.5)
    return ax.legend(
        handles,
        labels,
        frameon=False,
        fontsize="small",
        markerscale=1.5,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
    )


def _trend_label(r: NoiseResults, y: str) -> str:
    trend = f"{r.a0:.2g} + {r.a1:.2g}/μ"
    if y == "cv2":
        return f"technical noise:\n{trend} + Poisson"
    return f"technical noise:\nφ = {trend}"
