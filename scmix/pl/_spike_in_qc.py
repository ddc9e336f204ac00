"""Spike-in QC: per-cell capture (or spike-in totals) with the flagged cells, and the
spike-ins' observed against expected molecules with the detection curve."""

from __future__ import annotations

from typing import Literal

import numpy as np
from anndata import AnnData
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from .._core.errors import InputError, InputKeyError
from .._core.stats.modes import mixture_density
from .._docs import doc_params
from .._inputs import check_adata
from ._utils import (
    COMPONENT_COLOURS,
    DOC_SHOW,
    HIGHLIGHT_COLOUR,
    MARGINAL_COLOUR,
    PANEL_SIZE,
    finish,
    legend_below,
    new_panels,
    nice_ticks,
)

Panel = Literal["both", "cells", "spike_ins"]

#: Colour of the low-capture mode's cells: apart from the kept (blue) and flagged
#: (vermillion) cells.
LOW_MODE_COLOUR = COMPONENT_COLOURS[2]
#: Width of the marginal histogram (several modes) and of the gap before it, in inches
#: (fixed: a layout engine then makes room for it and the legend in one pass); its bins.
MARGIN_WIDTH, MARGIN_GAP, MARGIN_BINS = 0.75, 0.08, 40
#: Inches a figure made here gains for that histogram.
MARGIN_INCHES = 1.6


@doc_params(show_options=DOC_SHOW)
def spike_in_qc(
    adata: AnnData,
    *,
    key: str = "spike_in_qc",
    panel: Panel = "both",
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool | None = None,
):
    r"""The results of :func:`scmix.tl.spike_in_qc`.

    ``"cells"``: each cell's capture efficiency :math:`c_i` (log axis; the spike-in
    total :math:`t_i` when no expected molecules were given) against its spike-in
    fraction :math:`f_i`: the kept cells (blue), the cells flagged as outliers
    (``.obs[f"{key}_outlier"]``, vermillion), the threshold of the low-capture rule
    dashed and that of the high-fraction rule dotted. With several modes of the log
    capture (``.uns[key]["modes"]``):

    - when the main mode is not the lowest (its threshold above the outlier threshold,
      which is then that of a lower mode), the cells of the low-capture mode
      (``.obs[f"{key}_low_capture_mode"]``: below the main mode's threshold, above the
      outlier threshold) in green, and the main mode's threshold dash-dotted above the
      outlier threshold (dashed), the values of both in the legend. Each cell is drawn
      once: a cell of the low-capture mode flagged for its high fraction as flagged;
      the mode's legend entry counts all the cells of its ``.obs`` column and says how
      many of them are flagged (``"low-capture mode (414, 1 flagged)"``);
    - on the right, a histogram of the same log axis stacked by kept, low-capture mode
      and flagged, with the fitted mixture's density (of the log capture, in cells per
      bin) and its modes marked by triangles (their centres in the legend, the main one
      named).

    With one mode (or results without modes) the panel shows the kept and flagged cells
    and the two thresholds only. ``"spike_ins"``: each spike-in's mean count per cell
    against its expected input molecules :math:`e_j` (log-log), with the line of the
    median capture efficiency, :math:`\bar x_j = \operatorname{median}(c)\, e_j`; on
    the right axis the fraction of cells detecting it and the fitted logistic curve
    :math:`\operatorname{expit}(a + b \log_{10} e)`, the detection limit :math:`e_{50}`
    dotted. Needs expected molecules.

    Parameters
    ----------
    adata
        Holding :func:`scmix.tl.spike_in_qc` results under ``key``.
    key
        Key of the results.
    panel
        ``"both"`` (two panels side by side, the second only with expected molecules),
        ``"cells"`` or ``"spike_ins"``. With ``ax=``, one of the last two.
    {show_options}

    Returns
    -------
    The Figure with ``return_fig=True``; None when the figure was shown; else the
    Axes (a list of two with ``panel="both"`` and expected molecules). The histogram of
    the modes is ``ax.child_axes[0]`` of the cells' Axes.
    """
    check_adata(adata)
    if not isinstance(adata.uns.get(key), dict) or "outlier_rules" not in adata.uns[key]:
        raise InputKeyError(
            f"no spike-in QC under key {key!r}: run "
            f"scmix.tl.spike_in_qc(adata, key_added={key!r}) first."
        )
    if panel not in ("both", "cells", "spike_ins"):
        raise InputError(f"panel must be 'both', 'cells' or 'spike_ins', got {panel!r}.")
    result = adata.uns[key]
    has_expected = "detection" in result
    if panel == "spike_ins" and not has_expected:
        raise InputError(
            f"the spike-in QC under {key!r} has no expected molecules: run "
            "scmix.tl.spike_in_qc(adata, expected_molecules=...) for the 'spike_ins' panel."
        )
    panels = ["cells", "spike_ins"] if panel == "both" else [panel]
    if not has_expected and panel == "both":
        panels = ["cells"]
    if ax is not None and len(panels) > 1:
        raise InputError("ax= holds one panel: pass panel='cells' or panel='spike_ins'.")
    # the spike-ins' panel has its legend below: a taller figure keeps the plots' height
    width, height = PANEL_SIZE
    if "cells" in panels and (_modes(result) or {}).get("n_modes", 1) > 1:
        width += MARGIN_INCHES  # the marginal histogram of the modes
    if "spike_ins" in panels:
        height += 1.0
    axes, created = new_panels(ax, len(panels), ncols=2, panel_size=(width, height))
    for name, axis in zip(panels, axes, strict=True):
        (_cells if name == "cells" else _spike_ins)(adata, key, axis)
    return finish(
        axes,
        created=created,
        single=len(axes) == 1,
        name="spike_in_qc",
        show=show,
        save=save,
        return_fig=return_fig,
    )


def _column(adata: AnnData, name: str, where: str = "obs"):
    frame = adata.obs if where == "obs" else adata.var
    if name not in frame:
        raise InputKeyError(f"adata.{where} has no column {name!r}: rerun scmix.tl.spike_in_qc.")
    return frame[name].to_numpy()


def _cells(adata: AnnData, key: str, ax) -> None:
    result = adata.uns[key]
    rules = result["outlier_rules"]
    modes = _modes(result)
    capture = "detection" in result
    y = _column(adata, f"{key}_capture_efficiency" if capture else f"{key}_total")
    fraction = _column(adata, f"{key}_fraction")
    flagged = _column(adata, f"{key}_outlier").astype(bool)
    low, main = _thresholds(rules, modes)
    # the main mode's threshold above the outlier threshold: a low-capture mode between
    lower_mode = bool(main > low)  # False with one mode, or the main mode the lowest
    low_mode = np.zeros_like(flagged)
    if lower_mode:
        low_mode = _column(adata, f"{key}_low_capture_mode").astype(bool)
    # three disjoint groups: a flagged cell is drawn as flagged, whichever its mode
    groups = {
        "kept": ~flagged & ~low_mode,
        "low-capture mode": low_mode & ~flagged,
        "flagged": flagged,
    }
    shown = y > 0
    ax.scatter(
        fraction[shown & groups["kept"]],
        y[shown & groups["kept"]],
        s=6,
        color=COMPONENT_COLOURS[0],
        alpha=0.5,
        linewidths=0,
        label=f"kept ({int(groups['kept'].sum())})",
    )
    if lower_mode:
        both = int((low_mode & flagged).sum())
        also = f", {both} flagged" if both else ""
        ax.scatter(
            fraction[shown & groups["low-capture mode"]],
            y[shown & groups["low-capture mode"]],
            s=6,
            color=LOW_MODE_COLOUR,
            alpha=0.6,
            linewidths=0,
            label=f"low-capture mode ({int(low_mode.sum())}{also})",
        )
    ax.scatter(
        fraction[shown & flagged],
        y[shown & flagged],
        s=12,
        color=HIGHLIGHT_COLOUR,
        linewidths=0,
        label=f"flagged ({int(flagged.sum())})",
    )
    ax.set_yscale("log")
    nice_ticks(ax.yaxis)
    lines = []  # (value, style) of the horizontal lines
    if lower_mode:
        label = f"main mode's threshold ({_value(np.exp(main))})"
        lines.append((np.exp(main), dict(color=COMPONENT_COLOURS[0], ls="-.", lw=1.2, label=label)))
    if np.isfinite(low):
        label = (
            f"outlier threshold ({_value(np.exp(low))})" if lower_mode else "low-capture threshold"
        )
        lines.append((np.exp(low), dict(color="0.3", ls="--", lw=1, label=label)))
    for value, style in lines:
        ax.axhline(value, **style)
    high = rules["high_fraction"]["threshold"]
    if np.isfinite(high) and high <= 1:
        ax.axvline(high, color="0.3", ls=":", lw=1, label="high-fraction threshold")
    ax.set_xlabel("spike-in fraction of the library")
    ax.set_ylabel("capture efficiency (observed / expected)" if capture else "spike-in total")
    nmads = rules["low_capture"]["nmads"]
    ax.set_title(f"spike-in QC per cell (outliers: {nmads:g} MADs)")
    handles, labels = ax.get_legend_handles_labels()
    # outside, on the right (of the marginal): any corner inside would cover cells
    anchor = {"bbox_to_anchor": (1.01, 1.0)}
    if modes is not None and modes["n_modes"] > 1:
        more, more_labels = _marginal(ax, y, shown, groups, modes, lines)
        handles, labels = handles + more, labels + more_labels
        right = MARGIN_GAP + MARGIN_WIDTH + 0.08
        anchor = {"bbox_to_anchor": (right, 1.0), "bbox_transform": _right_of(ax)}
    ax.legend(
        handles,
        labels,
        frameon=False,
        fontsize="small",
        loc="upper left",
        borderaxespad=0.0,
        markerscale=2,
        **anchor,
    )


def _right_of(ax):
    """x in inches from the right edge of ``ax``, y in its Axes fraction."""
    inches = ax.figure.dpi_scale_trans + ScaledTranslation(1.0, 0.0, ax.transAxes)
    return blended_transform_factory(inches, ax.transAxes)


def _modes(result: dict) -> dict | None:
    """The modes of the results (None for results of a version without them)."""
    modes = result.get("modes")
    if not isinstance(modes, dict) or "n_modes" not in modes:
        return None
    return modes


def _value(value: float) -> str:
    """A threshold or mode centre on the capture (or total) scale, for a label."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.2g}"


def _thresholds(rules: dict, modes: dict | None) -> tuple[float, float]:
    """The outlier threshold T_low and the main mode's T_main, on the log scale (T_main
    NaN without modes or with the main mode the lowest: no low-capture mode)."""
    low = float(rules["low_capture"]["threshold"])
    if modes is None or modes["main"] == 0:
        return low, np.nan
    return low, float(np.asarray(modes["thresholds"])[modes["main"]])


def _marginal(ax, y, shown, groups, modes, lines) -> tuple[list, list[str]]:
    """A histogram of y on the right of the cells' Axes (same log axis), stacked by
    group, with the fitted mixture's density and its modes; the legend's handles."""
    margin = ax.inset_axes([MARGIN_GAP, 0.0, MARGIN_WIDTH, 1.0], transform=_right_of(ax), sharey=ax)
    values = y[shown]
    edges = np.geomspace(values.min(), values.max(), MARGIN_BINS + 1)
    names = [name for name, member in groups.items() if (member & shown).any()]
    colours = {"kept": COMPONENT_COLOURS[0], "low-capture mode": LOW_MODE_COLOUR}
    counts, _, _ = margin.hist(
        [y[shown & groups[name]] for name in names],
        bins=edges,
        orientation="horizontal",
        stacked=True,
        histtype="stepfilled",
        color=[colours.get(name, HIGHLIGHT_COLOUR) for name in names],
        alpha=0.45,
        linewidth=0,
    )
    top = float(np.max(counts))  # stacked: the last row is the total
    handles, labels = [], []
    mixture = modes.get("mixture")
    if isinstance(mixture, dict):
        # the density of log y times the cells per bin of log y: counts per bin
        per_bin = values.size * np.log(edges[1] / edges[0])
        grid = np.linspace(np.log(values.min()), np.log(values.max()), 400)
        args = (mixture["means"], mixture["sds"], mixture["weights"])
        density = per_bin * mixture_density(grid, *args)
        top = max(top, float(density.max()))
        (curve,) = margin.plot(density, np.exp(grid), color=MARGINAL_COLOUR, lw=1.2)
        log_centres = np.asarray(modes["log_centres"], dtype=np.float64)
        (marks,) = margin.plot(
            per_bin * mixture_density(log_centres, *args),
            np.exp(log_centres),
            ls="",
            marker="<",
            markersize=5,
            color=MARGINAL_COLOUR,
            markeredgecolor="white",
        )
        names = [
            _value(c) + (" (main)" if k == modes["main"] else "")
            for k, c in enumerate(np.asarray(modes["centres"]))
        ]
        handles += [curve, marks]
        labels += ["mixture density", "modes: " + ", ".join(names)]
    for value, style in lines:
        margin.axhline(value, **{**style, "label": None})
    margin.set_xlabel("cells", fontsize="small")
    margin.tick_params(labelleft=False, labelsize="x-small")
    margin.set_xlim(0, 1.15 * top)  # room for the marks of the modes
    # no 0 at the left edge, where it would touch the last tick label of the cells' Axes
    margin.xaxis.set_major_locator(MaxNLocator(2, integer=True, prune="lower"))
    return handles, labels


def _spike_ins(adata: AnnData, key: str, ax) -> None:
    result = adata.uns[key]
    expected = _column(adata, f"{key}_expected_molecules", "var")
    mean = _column(adata, f"{key}_mean_count", "var")
    rate = _column(adata, f"{key}_detection_rate", "var")
    known = np.isfinite(expected)
    expected, mean, rate = expected[known], mean[known], rate[known]
    positive = mean > 0
    ax.scatter(
        expected[positive],
        mean[positive],
        s=16,
        color=COMPONENT_COLOURS[0],
        label="mean count per cell",
        zorder=3,
    )
    grid = np.geomspace(expected.min() / 1.5, expected.max() * 1.5, 200)
    median_capture = result["median_capture_efficiency"]
    ax.plot(
        grid,
        median_capture * grid,
        color=COMPONENT_COLOURS[0],
        lw=1,
        ls="--",
        label=f"median capture x expected ({median_capture:.2f})",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    nice_ticks(ax.xaxis)
    nice_ticks(ax.yaxis)
    ax.set_xlabel("expected molecules per cell")
    ax.set_ylabel("mean count per cell", color=COMPONENT_COLOURS[0])
    right = ax.twinx()
    right.scatter(
        expected, rate, s=14, marker="^", color=COMPONENT_COLOURS[1], label="detected in cells"
    )
    detection = result["detection"]
    limit = detection["detection_limit"]
    if np.isfinite(limit):
        curve = 1 / (1 + np.exp(-(detection["intercept"] + detection["slope"] * np.log10(grid))))
        right.plot(grid, curve, color=COMPONENT_COLOURS[1], lw=1.5, label="logistic fit")
        right.axvline(
            limit, color=COMPONENT_COLOURS[1], ls=":", lw=1.2, label=f"detection limit {limit:.2g}"
        )
    right.set_ylim(-0.02, 1.02)
    right.set_ylabel("fraction of cells detecting it", color=COMPONENT_COLOURS[1])
    ax.set_title("spike-ins: observed vs expected")
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    # under the Axes: the points and the curve fill every corner of the panel
    legend_below(ax, handles + more, labels + more_labels, ncols=2)
