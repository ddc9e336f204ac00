"""Histogram of a gene's counts with the fitted mixture over it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from anndata import AnnData
from scipy import stats

from .._core.errors import InputError
from .._docs import doc_params
from .._fitted import (
    fit_params,
    fit_size_factors,
    fitted_gene,
    gene_counts,
    gene_exposures,
    stored_components,
)
from ._utils import (
    COMPONENT_COLOURS,
    DOC_GENE,
    DOC_GRID,
    DOC_RETURNS,
    DOC_SHOW,
    MARGINAL_COLOUR,
    finish,
    gene_names,
    new_panels,
)

_MAX_BINS = 60


def cell_pmf(values, size_factors, mean, dispersion) -> np.ndarray:
    """P(x = v) for each cell (rows) and integer v (columns): NB of mean ``s_i * mean``
    and dispersion phi (Poisson at phi = 0)."""
    m = size_factors[:, None] * mean
    if dispersion > 0:
        theta = 1.0 / dispersion
        return stats.nbinom.pmf(values[None, :], theta, theta / (theta + m))
    return stats.poisson.pmf(values[None, :], m)


def component_pmfs(values, size_factors, means, dispersions, weights) -> np.ndarray:
    r"""Average over cells of each weighted component's pmf at integer ``values``:
    :math:`\frac1n \sum_i \pi_k f(v \mid s_i \mu_k, \phi_k)`, shape (K, len(values)).

    With offsets every cell has its own mixture; the marginal is their average, not
    the mixture at one typical size factor.
    """
    out = np.empty((len(means), values.size))
    for k, (mu, phi, pi) in enumerate(zip(means, dispersions, weights, strict=True)):
        out[k] = pi * cell_pmf(values, size_factors, mu, phi).mean(axis=0)
    return out


def _binned_counts(counts, sf, means, dispersions, weights, top):
    """Count scale: integer-aligned bins; observed and model mass per unit count."""
    top = int(np.ceil(top))
    edges = np.unique(np.round(np.linspace(0, top + 1, min(top + 1, _MAX_BINS) + 1)))
    widths = np.diff(edges)
    observed = np.histogram(counts[counts < edges[-1]], edges)[0] / counts.size / widths
    values = np.arange(edges[-1])
    pmfs = component_pmfs(values, sf, means, dispersions, weights)
    bin_of = np.searchsorted(edges, values, side="right") - 1
    model = np.stack([np.bincount(bin_of, weights=p, minlength=widths.size) for p in pmfs])
    return edges, observed, model / widths, edges[:-1] + (widths - 1) / 2


def _binned_normalised(counts, sf, means, dispersions, weights, top):
    """Scale x / s: cell i's probability of count v sits at v / s_i; both binned alike."""
    edges = np.linspace(0.0, top, _MAX_BINS + 1)
    widths = np.diff(edges)
    y = counts / sf
    observed = np.histogram(y[y < edges[-1]], edges)[0] / counts.size / widths
    values = np.arange(int(np.ceil(top * sf.max())) + 1)
    model = np.zeros((len(means), widths.size))
    where = np.searchsorted(edges, values[None, :] / sf[:, None], side="right") - 1
    inside = where < widths.size
    for k, (mu, phi, pi) in enumerate(zip(means, dispersions, weights, strict=True)):
        pmf = cell_pmf(values, sf, mu, phi)
        model[k] = np.bincount(where[inside], weights=pi * pmf[inside], minlength=widths.size)
    return edges, observed, model / counts.size / widths, edges[:-1] + widths / 2


@doc_params(
    gene_options=DOC_GENE, show_options=DOC_SHOW, grid_options=DOC_GRID, returns=DOC_RETURNS
)
def mixture(
    adata: AnnData,
    gene: str | Sequence[str],
    *,
    key: str = "scmix",
    scale: Literal["counts", "normalised"] = "counts",
    size_factors=None,
    max_count: float | None = None,
    ncols: int = 4,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool | None = None,
):
    r"""The gene's counts (histogram, fraction of cells) with the fitted mixture.

    Draws the marginal distribution :math:`\frac1n\sum_i\sum_k \pi_k f(v\mid s_i\mu_k,\phi_k)`
    (thick grey-black line, underneath) and each weighted component on top of it
    (coloured, dashed, so that a component equal to the marginal where the others
    vanish stays visible), averaged over the cells' size factors as the model is: with
    offsets every cell has its own mixture, and the curve is their average, not the
    mixture at one typical size factor.

    Parameters
    ----------
    {gene_options}
    scale
        ``"counts"``: raw counts, in integer-aligned bins when their range is wide;
        ``"normalised"``: counts / size factor, where the components of a gene whose
        bimodality comes from the size factors merge into one peak.
    size_factors
        Other size factors than the fit's (read from ``.obs``: the key the fit was
        given, or the ``{key}_size_factors`` it wrote for an array).
    max_count
        Right end of the x axis (default: the 99.5th percentile, at least 10 counts).
    {grid_options}
    {show_options}

    Returns
    -------
    {returns} Each Axes holds bars of the cells and the lines ``"component {k}"``
    (added first) and ``"mixture"`` (added last); the legend lists the cells, the
    mixture and the components. The title gives delta BIC and the call (per-gene fits).
    """
    if scale not in ("counts", "normalised"):
        raise InputError(f"scale must be 'counts' or 'normalised', got {scale!r}.")
    names, single = gene_names(gene)
    params = fit_params(adata, key)
    positions = [fitted_gene(adata, name, key) for name in names]  # errors before drawing
    sf = fit_size_factors(adata, params, size_factors)
    axes, created = new_panels(ax, len(names), ncols=ncols)
    for name, position, panel in zip(names, positions, axes, strict=True):
        exposure = gene_exposures(adata, key, sf, position)[0]
        _draw_mixture(adata, name, position, panel, key, params, exposure, scale, max_count)
    return finish(
        axes,
        created=created,
        single=single,
        name="mixture",
        show=show,
        save=save,
        return_fig=return_fig,
    )


def _draw_mixture(adata, gene, position, ax, key, params, sf, scale, max_count) -> None:
    counts = gene_counts(adata, [position], params["layer"])[0]
    row = adata.var.iloc[position]
    n_comp = params["n_components"]
    means, dispersions, weights = (c[0] for c in stored_components(adata, key, position))

    shown = counts if scale == "counts" else counts / sf
    top = max_count if max_count is not None else max(10.0, np.quantile(shown, 0.995))
    binning = _binned_counts if scale == "counts" else _binned_normalised
    edges, observed, model, centres = binning(counts, sf, means, dispersions, weights, top)

    bars = ax.bar(
        edges[:-1],
        observed,
        width=np.diff(edges),
        align="edge",
        color="0.85",
        edgecolor="0.65",
        linewidth=0.5,
        label="cells",
    )
    # the components on top of the marginal (zorder), dashed and coloured: where one
    # component carries all the mass it coincides with the marginal and would vanish
    components = [
        ax.plot(
            centres,
            model[k],
            ls=(0, (4, 1.5)),
            color=COMPONENT_COLOURS[k % len(COMPONENT_COLOURS)],
            lw=1.6,
            zorder=3,
            label=f"component {k}",
        )[0]
        for k in range(n_comp)
    ]
    (marginal,) = ax.plot(
        centres,
        model.sum(axis=0),
        "-",
        color=MARGINAL_COLOUR,
        alpha=0.55,
        lw=3.0,
        zorder=2.5,
        label="mixture",
    )
    ax.set_xlim(edges[0] - (0.5 if scale == "counts" else 0.0), edges[-1])
    covariates = bool(params.get("covariates"))
    if scale == "counts":
        offsets = [
            *(["size factors"] if params["size_factors"] is not None else []),
            *(["covariate effects"] if covariates else []),
        ]
        ax.set_xlabel(f"count ({' and '.join(offsets)} as offsets)" if offsets else "count")
        ax.set_ylabel("fraction of cells per count")
    else:
        # with covariates each cell's count is divided by its fitted multiplier
        ax.set_xlabel(
            "count / (size factor x covariate effect)" if covariates else "count / size factor"
        )
        ax.set_ylabel("density")
    if params.get("shared"):
        ax.set_title(f"{gene} (cell-level classes, key {key!r})")
    else:
        call = "bimodal" if row[f"{key}_bimodal"] else "not bimodal"
        ax.set_title(f"{gene}: ΔBIC = {row[f'{key}_delta_bic']:.1f} ({call})")
    ax.legend(handles=[bars, marginal, *components], frameon=False, fontsize="small")
