"""Counts against size factor, coloured by component membership."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from .._docs import doc_params
from .._fitted import (
    fit_params,
    fit_size_factors,
    fitted_gene,
    gene_counts,
    gene_exposures,
    stored_components,
    stored_responsibilities,
)
from .._inputs import gene_columns
from ._utils import (
    COMPONENT_COLOURS,
    DOC_GENE,
    DOC_GRID,
    DOC_RETURNS,
    DOC_SHOW,
    finish,
    gene_names,
    new_panels,
    nice_ticks,
)


def count_offset(counts: np.ndarray) -> float:
    r"""The :math:`c` of the count axis :math:`\log_{10}(x + c)`: 0 (a plain log axis)
    when no cell has a zero count, else half the 5th percentile of the positive counts,
    at least 1. So zeros sit just below the smallest counts, and a gene counted in the
    hundreds is not squeezed into the top of an axis that starts at 0 (as with
    :math:`\log(1 + x)` or a symmetric-log axis of threshold 1)."""
    positive = counts[counts > 0]
    if positive.size == counts.size or positive.size == 0:
        return 0.0
    return max(1.0, 0.5 * float(np.quantile(positive, 0.05)))


def _count_axis(ax, counts: np.ndarray) -> None:
    """Log axis for counts, shifted by :func:`count_offset` when there are zeros."""
    c = count_offset(counts)
    if c == 0.0:
        ax.set_yscale("log")
    else:
        ax.set_yscale(
            "function",
            functions=(
                lambda y: np.log10(np.maximum(y + c, 1e-300)),
                lambda u: 10.0**u - c,
            ),
        )
    nice_ticks(ax.yaxis, integer=True)
    if c > 0:  # zeros on the axis, no room below them
        ax.set_ylim(bottom=-0.1 * c)


@doc_params(
    gene_options=DOC_GENE, show_options=DOC_SHOW, grid_options=DOC_GRID, returns=DOC_RETURNS
)
def responsibilities(
    adata: AnnData,
    gene: str | Sequence[str],
    *,
    key: str = "scmix",
    size_factors=None,
    cmap: str = "viridis",
    ncols: int = 4,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool | None = None,
):
    r"""Each cell's count against its size factor, coloured by the responsibility of the
    upper component :math:`r_{i,K-1}`, with the component means :math:`s\,\mu_k` as lines.

    Counts that follow the size factors lie along one line whatever their level; a
    gene with two components shows two bands. Both axes are logarithmic; when some
    cells have no count the count axis is :math:`\log_{10}(x + c)` with :math:`c` half
    the 5th percentile of the positive counts (at least 1), so that the zeros show
    just below the smallest counts without squeezing the rest. Tick labels are plain
    numbers (1, 2, 5, 10, ...), as many as fit. For a fit without size factors the
    component means are flat lines :math:`\mu_k`, and the x axis shows
    ``size_factors`` when given, else each cell's total count over all genes (scaled
    to mean 1).

    Parameters
    ----------
    {gene_options}
    size_factors
        Other size factors than the fit's (read from ``.obs``: the key the fit was
        given, or the ``{key}_size_factors`` it wrote for an array), or, for a fit
        without size factors, values to spread its cells along.
    cmap
        Colour map of the responsibilities.
    {grid_options}
    {show_options}

    Returns
    -------
    {returns} Each Axes holds one point collection (the cells) and one line per
    component (``"component {k}"``).
    """
    names, single = gene_names(gene)
    params = fit_params(adata, key)
    positions = [fitted_gene(adata, name, key) for name in names]  # errors before drawing
    covariates = bool(params.get("covariates"))
    offsets = params["size_factors"] is not None or covariates
    if offsets or size_factors is not None:
        x = fit_size_factors(adata, params, size_factors)
        # with covariates each gene has its own: s_i exp(z_i' gamma_j), set per panel
        label = "size factor x covariate effect" if covariates else "size factor"
    else:
        every = np.arange(adata.n_vars)
        totals = gene_columns(adata, params["layer"], every).cell_totals()
        x = totals / totals.mean()
        label = "cell total count (mean 1)"
    n_comp = params["n_components"]
    axes, created = new_panels(ax, len(names), ncols=ncols)
    for name, position, panel in zip(names, positions, axes, strict=True):
        cells = gene_exposures(adata, key, x, position)[0] if covariates else x
        upper = stored_responsibilities(adata, key, name)[:, -1]
        counts = gene_counts(adata, [position], params["layer"])[0]
        points = panel.scatter(cells, counts, c=upper, cmap=cmap, vmin=0, vmax=1, s=6, alpha=0.8)
        positive = cells[cells > 0]
        grid = np.geomspace(positive.min(), positive.max(), 50)
        means = stored_components(adata, key, position)[0][0]
        for k, mean in enumerate(means):
            panel.plot(
                grid,
                grid * mean if offsets else np.full_like(grid, mean),
                color=COMPONENT_COLOURS[k % len(COMPONENT_COLOURS)],
                lw=1.5,
                label=f"component {k}",
            )
        panel.set_xscale("log")
        nice_ticks(panel.xaxis)
        _count_axis(panel, counts)
        panel.set_xlabel(label)
        panel.set_ylabel("count")
        panel.set_title(name)
        panel.figure.colorbar(points, ax=panel, label=f"responsibility of component {n_comp - 1}")
        panel.legend(frameon=False, fontsize="small")
    return finish(
        axes,
        created=created,
        single=single,
        name="responsibilities",
        show=show,
        save=save,
        return_fig=return_fig,
    )
