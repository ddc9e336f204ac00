"""Colours, Axes and panel grids, and showing / saving / returning as scanpy does."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from math import ceil
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.font_manager import FontProperties
from matplotlib.transforms import ScaledTranslation

from .._core.errors import InputError
from ._labels import label_points
from ._ticks import nice_ticks

__all__ = [
    "COMPONENT_COLOURS",
    "HIGHLIGHT_COLOUR",
    "MARGINAL_COLOUR",
    "finish",
    "gene_names",
    "label_points",
    "legend_below",
    "new_axes",
    "new_panels",
    "nice_ticks",
]

#: Colours of the components (colour-blind safe, readable in print) and of the marginal.
COMPONENT_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
MARGINAL_COLOUR = "black"
HIGHLIGHT_COLOUR = "#D55E00"

#: Size of one panel made by the plots (inches), as scanpy's default figure size.
PANEL_SIZE = (5.0, 3.6)


def gene_names(gene: str | Sequence[str]) -> tuple[list[str], bool]:
    """The genes to draw and whether one name (not a list) was given."""
    if isinstance(gene, str):
        return [gene], True
    names = list(gene)
    if not names or not all(isinstance(name, str) for name in names):
        raise InputError(f"gene must be a gene name or a non-empty list of names, got {gene!r}.")
    return names, False


def new_panels(ax, n_panels: int, *, ncols: int = 4, panel_size=PANEL_SIZE):
    """Axes to draw into and whether the plot made their figure.

    With ``ax`` given (one panel only), that Axes; else a new figure (constrained
    layout, so that colour bars and outside legends get room) with ``n_panels`` Axes in
    rows of ``ncols``, the unused cells of the last row removed.
    """
    if ax is not None:
        if n_panels != 1:
            raise InputError(
                f"ax= holds one panel but {n_panels} genes were given: pass one gene, or "
                "no ax= for a grid of panels (ncols=)."
            )
        return [ax], False
    if int(ncols) < 1:
        raise InputError(f"ncols must be a positive integer, got {ncols!r}.")
    ncols = min(int(ncols), n_panels)
    nrows = ceil(n_panels / ncols)
    width, height = panel_size
    _, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    for unused in axes.ravel()[n_panels:]:
        unused.remove()
    return list(axes.ravel()[:n_panels]), True


def new_axes(ax, *, panel_size=PANEL_SIZE):
    """One Axes to draw into (``ax`` or a new figure's) and whether the plot made it."""
    axes, created = new_panels(ax, 1, panel_size=panel_size)
    return axes[0], created


def legend_below(ax, handles: list, labels: list[str], *, ncols: int = 2, fontsize="small"):
    """A legend centred under the Axes, below its x tick labels and x label, in
    ``ncols`` columns: it covers no point, and a layout engine (constrained layout)
    makes room for it. Returns the Legend."""
    rc = mpl.rcParams
    # height of the x tick labels and the x label, in points, from rcParams
    below = (
        rc["xtick.major.size"]
        + rc["xtick.major.pad"]
        + 1.3 * FontProperties(size=rc["xtick.labelsize"]).get_size_in_points()
        + rc["axes.labelpad"]
        + 1.3 * FontProperties(size=rc["axes.labelsize"]).get_size_in_points()
        + 1.0
    )
    anchor = ax.transAxes + ScaledTranslation(0.0, -below / 72.0, ax.figure.dpi_scale_trans)
    return ax.legend(
        handles,
        labels,
        frameon=False,
        fontsize=fontsize,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=anchor,
        borderaxespad=0.0,
        ncols=ncols,
    )


def _scanpy_settings():
    """scanpy's settings when scanpy is already imported (importing it costs seconds and
    its defaults are ours: show, do not save)."""
    scanpy = sys.modules.get("scanpy")
    return getattr(scanpy, "settings", None)


def _save(fig, name: str, save: bool | str) -> Path:
    """Save as scanpy does: ``{figdir}/{name}{suffix}{plot_suffix}.{format}``, the
    format taken from ``save`` when it ends in .pdf, .png or .svg."""
    import scanpy

    settings = scanpy.settings
    suffix, ext = ("", settings.file_format_figs) if save is True else (str(save), None)
    for known in (".svg", ".pdf", ".png"):
        if suffix.endswith(known):
            suffix, ext = suffix[: -len(known)], known[1:]
            break
    ext = ext or settings.file_format_figs
    path = Path(settings.figdir) / f"{name}{suffix}{settings.plot_suffix}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def finish(
    axes: list,
    *,
    created: bool,
    single: bool,
    name: str,
    show: bool | None,
    save: bool | str | None,
    return_fig: bool | None,
):
    """Save, show and return as scanpy's plots do.

    ``show=None`` shows the figure when the plot made it (no ``ax=``) and the caller
    did not ask for it with ``return_fig=True`` (and scanpy, when imported, has
    ``settings.autoshow`` on); a figure in an ``ax=`` of the caller is theirs to show.
    ``save`` (or scanpy's ``settings.autosave``) writes the figure as
    ``scanpy.pl.*(save=...)`` does; a figure made here is then closed, as scanpy closes
    it. Returns the Figure with ``return_fig=True``, else None when shown, else the
    Axes (a list of them when a list of genes was given).
    """
    fig = axes[0].figure
    settings = _scanpy_settings()
    if show is None:
        show = created and not return_fig and (settings is None or settings.autoshow)
    if save is None:
        save = bool(settings is not None and settings.autosave)
    if save:
        _save(fig, name, save)
    if show:
        plt.show()
    if save and created and not return_fig:
        plt.close(fig)
    if return_fig:
        return fig
    if show:
        return None
    return axes[0] if single else axes


#: The data of the per-gene plots (``{gene_options}``).
DOC_GENE = """\
adata
        Fitted by :func:`scmix.tl.fit_mixture` under ``key``.
    gene
        A fitted gene, or a list of them (a grid of panels, one per gene).
    key
        Key of the fit."""

#: Parameter descriptions of the Axes, grid and output options (``{show_options}``).
DOC_SHOW = """\
ax
        Draw into this Axes (one panel) instead of a new figure.
    show
        Show the figure (``plt.show()``). ``None``: when the plot made it (no
        ``ax=``) and ``return_fig`` is not set, as scanpy does (and not when scanpy is
        imported with ``scanpy.settings.autoshow = False``).
    save
        Save the figure as scanpy's plots do: ``True`` writes
        ``{scanpy.settings.figdir}/{plot}.{file_format_figs}``, a string is appended to
        the plot's name and may end with the format (``save="_ercc.pdf"``). ``None``
        follows ``scanpy.settings.autosave`` when scanpy is imported.
    return_fig
        Return the Figure (and do not show it unless ``show=True``)."""

#: Per-gene plots: the grid option as well (``{grid_options}``).
DOC_GRID = """\
ncols
        Panels per row when a list of genes is given (one panel per gene)."""

#: What the plots return (``{returns}``).
DOC_RETURNS = """\
The Figure with ``return_fig=True``; None when the figure was shown; else the Axes
    (a list of them, one per gene, when ``gene`` is a list)."""
