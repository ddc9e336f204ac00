"""Spike-in QC: per-cell capture (or spike-in totals) with the flagged cells, and the
spike-ins' observed against expected molecules with the detection curve."""

from __future__ import annotations

from typing import Literal

import numpy as np
from anndata import AnnData

from .._core.errors import InputError, InputKeyError
from .._docs import doc_params
from .._inputs import check_adata
from ._utils import (
    COMPONENT_COLOURS,
    DOC_SHOW,
    HIGHLIGHT_COLOUR,
    PANEL_SIZE,
    finish,
    legend_below,
    new_panels,
    nice_ticks,
)

Panel = Literal["both", "cells", "spike_ins"]


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
    fraction :math:`f_i`, the cells flagged as outliers highlighted and the thresholds of
    the two rules dashed. ``"spike_ins"``: each spike-in's mean count per cell against
    its expected input molecules :math:`e_j` (log-log), with the line of the median
    capture efficiency, :math:`\bar x_j = \operatorname{median}(c)\, e_j`; on the right
    axis the fraction of cells detecting it and the fitted logistic curve
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
    Axes (a list of two with ``panel="both"`` and expected molecules).
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
    tall = (width, height + 1.0) if "spike_ins" in panels else PANEL_SIZE
    axes, created = new_panels(ax, len(panels), ncols=2, panel_size=tall)
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
    capture = "detection" in result
    y = _column(adata, f"{key}_capture_efficiency" if capture else f"{key}_total")
    fraction = _column(adata, f"{key}_fraction")
    flagged = _column(adata, f"{key}_outlier").astype(bool)
    shown = y > 0
    ax.scatter(
        fraction[shown & ~flagged],
        y[shown & ~flagged],
        s=6,
        color=COMPONENT_COLOURS[0],
        alpha=0.5,
        linewidths=0,
        label=f"kept ({int((~flagged).sum())})",
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
    low = rules["low_capture"]["threshold"]
    if np.isfinite(low):
        ax.axhline(np.exp(low), color="0.3", ls="--", lw=1, label="low-capture threshold")
    high = rules["high_fraction"]["threshold"]
    if np.isfinite(high) and high <= 1:
        ax.axvline(high, color="0.3", ls=":", lw=1, label="high-fraction threshold")
    ax.set_xlabel("spike-in fraction of the library")
    ax.set_ylabel("capture efficiency (observed / expected)" if capture else "spike-in total")
    nmads = rules["low_capture"]["nmads"]
    ax.set_title(f"spike-in QC per cell (outliers: {nmads:g} MADs)")
    # outside, on the right: any corner inside would cover cells of a full panel
    ax.legend(
        frameon=False,
        fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        markerscale=2,
    )


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
