"""Counts against size factor, coloured by component membership."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._fitted import (
    fit_params,
    fit_size_factors,
    fitted_gene,
    gene_counts,
    stored_components,
    stored_responsibilities,
)
from .._inputs import gene_columns
from ._utils import COMPONENT_COLOURS, finish, new_axes


def responsibilities(
    adata: AnnData,
    gene: str,
    *,
    key: str = "scmix",
    size_factors=None,
    cmap: str = "viridis",
    ax=None,
    show: bool | None = None,
):
    r"""Each cell's count against its size factor, coloured by the responsibility of the
    upper component :math:`r_{i,K-1}`, with the component means :math:`s\,\mu_k` as lines
    (flat lines :math:`\mu_k` for a fit without size factors, against ``size_factors``
    when given, else each cell's total count over all genes scaled to mean 1).

    Counts that follow the size factors lie along one line whatever their level; a
    gene with two components shows two bands. Both axes are logarithmic (the count
    axis symmetric-log, so zeros stay visible). For a fit without size factors the
    component means are flat lines :math:`\mu_k`, and the x axis shows ``size_factors``
    when given, else each cell's total count over all genes (scaled to mean 1).

    Returns
    -------
    The Axes: one point collection (the cells) and one line per component
    (``"component {k}"``).
    """
    params = fit_params(adata, key)
    position = fitted_gene(adata, gene, key)
    upper = stored_responsibilities(adata, key, gene)[:, -1]
    counts = gene_counts(adata, [position], params["layer"])[0]
    n_comp = params["n_components"]
    offsets = params["size_factors"] is not None
    if offsets or size_factors is not None:
        x = fit_size_factors(adata, params, size_factors)
        label = "size factor"
    else:
        every = np.arange(adata.n_vars)
        totals = gene_columns(adata, params["layer"], every).cell_totals()
        x = totals / totals.mean()
        label = "cell total count (mean 1)"

    ax = new_axes(ax)
    points = ax.scatter(x, counts, c=upper, cmap=cmap, vmin=0, vmax=1, s=6, alpha=0.8)
    positive = x[x > 0]
    grid = np.geomspace(positive.min(), positive.max(), 50)
    means = stored_components(adata, key, position)[0][0]
    for k, mean in enumerate(means):
        ax.plot(
            grid,
            grid * mean if offsets else np.full_like(grid, mean),
            color=COMPONENT_COLOURS[k % len(COMPONENT_COLOURS)],
            lw=1.5,
            label=f"component {k}",
        )
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=-0.5)  # zeros on the axis, no empty negative half
    ax.set_xlabel(label)
    ax.set_ylabel("count")
    ax.set_title(gene)
    ax.figure.colorbar(points, ax=ax, label=f"responsibility of component {n_comp - 1}")
    ax.legend(frameon=False, fontsize="small")
    return finish(ax, show)
