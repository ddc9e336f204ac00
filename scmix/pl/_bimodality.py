"""Every fitted gene: evidence for K components against expression."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._fitted import fit_params, require_per_gene
from ._utils import HIGHLIGHT_COLOUR, finish, new_axes


def bimodality(
    adata: AnnData,
    *,
    key: str = "scmix",
    n_labels: int = 10,
    ax=None,
    show: bool | None = None,
):
    r"""Delta BIC (:math:`\mathrm{BIC}_1 - \mathrm{BIC}_K`) of every fitted gene against
    its mean expression (the one-component mean per unit size factor, log scale).

    Genes called bimodal are highlighted; the ``n_labels`` genes with the largest
    delta BIC among them are labelled; a dashed line marks the threshold. The y axis
    is symmetric-log, since delta BIC spans from negative values to thousands.

    Returns
    -------
    The Axes; its two point collections are labelled ``"not bimodal"`` and ``"bimodal"``.
    """
    params = fit_params(adata, key)
    require_per_gene(adata, key, "pl.bimodality")
    var = adata.var
    fitted = var[f"{key}_loglik"].notna().to_numpy()
    mean = var[f"{key}_single_mean"].to_numpy(dtype=float)[fitted]
    delta = var[f"{key}_delta_bic"].to_numpy(dtype=float)[fitted]
    called = var[f"{key}_bimodal"].to_numpy(dtype=bool)[fitted]
    names = var.index[fitted]

    ax = new_axes(ax)
    ax.scatter(mean[~called], delta[~called], s=12, color="0.55", label="not bimodal")
    ax.scatter(mean[called], delta[called], s=16, color=HIGHLIGHT_COLOUR, label="bimodal")
    ax.axhline(params["bic_threshold"], color="0.3", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=10.0)
    for i in np.flatnonzero(called)[np.argsort(-delta[called])][:n_labels]:
        ax.annotate(
            names[i],
            (mean[i], delta[i]),
            fontsize="x-small",
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("mean count per unit size factor (one component)")
    ax.set_ylabel("ΔBIC (1 vs K components)")
    ax.set_title(f"{int(called.sum())} of {int(fitted.sum())} genes bimodal (key {key!r})")
    ax.legend(frameon=False, fontsize="small")
    return finish(ax, show)
