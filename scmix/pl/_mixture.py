"""Histogram of a gene's counts with the fitted mixture over it."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import stats

from .._fitted import fit_params, fit_size_factors, fitted_gene, gene_counts
from ._utils import COMPONENT_COLOURS, MARGINAL_COLOUR, finish, new_axes

_MAX_BINS = 60


def component_pmfs(values, size_factors, means, dispersions, weights) -> np.ndarray:
    r"""Average over cells of each weighted component's pmf at integer ``values``:
    :math:`\frac1n \sum_i \pi_k f(v \mid s_i \mu_k, \phi_k)`, shape (K, len(values)).

    With offsets every cell has its own mixture; the marginal is their average, not
    the mixture at one typical size factor.
    """
    out = np.empty((len(means), values.size))
    v = values[None, :]
    for k, (mu, phi, pi) in enumerate(zip(means, dispersions, weights, strict=True)):
        m = size_factors[:, None] * mu
        if phi > 0:
            theta = 1.0 / phi
            pmf = stats.nbinom.pmf(v, theta, theta / (theta + m))
        else:
            pmf = stats.poisson.pmf(v, m)
        out[k] = pi * pmf.mean(axis=0)
    return out


def mixture(
    adata: AnnData,
    gene: str,
    *,
    key: str = "scmix",
    size_factors=None,
    max_count: float | None = None,
    ax=None,
    show: bool | None = None,
):
    r"""The gene's counts (histogram, fraction of cells) with the fitted mixture.

    Draws the marginal distribution :math:`\frac1n\sum_i\sum_k \pi_k f(v\mid s_i\mu_k,\phi_k)`
    (black) and each weighted component (coloured), averaged over the cells' size
    factors as the model is; counts are binned in integer-aligned bins when their
    range is wide, and the curves are averaged over the same bins. The title gives
    delta BIC and the call.

    Parameters
    ----------
    adata
        Fitted by :func:`scmix.tl.fit_mixture` under ``key``.
    gene
        A fitted gene.
    size_factors
        Only needed when the fit was given an array instead of a ``.obs`` key.
    max_count
        Right end of the x axis (default: the 99.5th percentile of the counts, at least 10).
    ax, show
        Draw into this Axes; call ``plt.show()`` when ``show`` is true.

    Returns
    -------
    The Axes; its lines are labelled ``"mixture"`` and ``"component {k}"``.
    """
    params = fit_params(adata, key)
    position = fitted_gene(adata, gene, key)
    counts = gene_counts(adata, [position], params["layer"])[0]
    sf = fit_size_factors(adata, params, size_factors)
    row = adata.var.iloc[position]
    n_comp = params["n_components"]
    means = [row[f"{key}_mean_{k}"] for k in range(n_comp)]
    dispersions = [row[f"{key}_dispersion_{k}"] for k in range(n_comp)]
    weights = [row[f"{key}_weight_{k}"] for k in range(n_comp)]

    top = max_count if max_count is not None else max(10.0, np.quantile(counts, 0.995))
    top = int(np.ceil(top))
    edges = np.unique(np.round(np.linspace(0, top + 1, min(top + 1, _MAX_BINS) + 1)))
    widths = np.diff(edges)
    shown = counts[counts < edges[-1]]
    observed = np.histogram(shown, edges)[0] / counts.size / widths

    values = np.arange(edges[-1])
    pmfs = component_pmfs(values, sf, means, dispersions, weights)
    bin_of = np.searchsorted(edges, values, side="right") - 1
    binned = np.stack([np.bincount(bin_of, weights=p, minlength=widths.size) for p in pmfs])
    binned /= widths
    centres = edges[:-1] + (widths - 1) / 2

    ax = new_axes(ax)
    ax.bar(
        edges[:-1],
        observed,
        width=widths,
        align="edge",
        color="0.8",
        edgecolor="0.6",
        linewidth=0.5,
        label="cells",
    )
    for k in range(n_comp):
        ax.plot(
            centres,
            binned[k],
            "-",
            color=COMPONENT_COLOURS[k % len(COMPONENT_COLOURS)],
            lw=1.5,
            label=f"component {k}",
        )
    ax.plot(centres, binned.sum(axis=0), "-", color=MARGINAL_COLOUR, lw=1.8, label="mixture")
    ax.set_xlim(edges[0] - 0.5, edges[-1])
    ax.set_xlabel("count" if params["size_factors"] is None else "count (size factors as offsets)")
    ax.set_ylabel("fraction of cells per count")
    delta = row[f"{key}_delta_bic"]
    call = "bimodal" if row[f"{key}_bimodal"] else "not bimodal"
    ax.set_title(f"{gene}: ΔBIC = {delta:.1f} ({call})")
    ax.legend(frameon=False, fontsize="small")
    return finish(ax, show)
