"""Every fitted gene: evidence for K components against expression."""

from __future__ import annotations

from typing import Literal

import numpy as np
from anndata import AnnData

from .._core.errors import InputError, InputKeyError
from .._docs import doc_params
from .._fitted import fit_params, require_per_gene
from ._utils import (
    DOC_SHOW,
    HIGHLIGHT_COLOUR,
    finish,
    label_points,
    new_axes,
    nice_ticks,
)


@doc_params(show_options=DOC_SHOW)
def bimodality(
    adata: AnnData,
    *,
    key: str = "scmix",
    score: Literal["delta_bic", "pvalue"] = "delta_bic",
    alpha: float = 0.05,
    n_labels: int = 10,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool | None = None,
):
    r"""Evidence for K components of every fitted gene against its mean expression (the
    one-component mean per unit size factor, log scale).

    ``score="delta_bic"``: :math:`\mathrm{BIC}_1 - \mathrm{BIC}_K` (symmetric-log axis,
    since it spans from negative values to thousands), the genes called bimodal
    highlighted and the threshold dashed (when the fit called genes by delta BIC; with
    ``call="padj"`` the highlighted genes are its calls, without a line).
    ``score="pvalue"``: :math:`-\log_{10}` of the p-value of the LRT
    (``fit_mixture(..., pvalues="fast" | "bootstrap")``), the genes with a
    Benjamini-Hochberg adjusted value below ``alpha`` highlighted; for the bootstrap the
    lowest possible value, :math:`-\log_{10}(1/(B+1))`, is dashed.

    The ``n_labels`` highlighted genes with the strongest evidence are labelled, the
    strongest first, each at the nearest place (on rings of growing radius around its
    point) where it overlaps no other label, not the legend and no labelled point,
    stays inside the Axes and covers few other points; a label moved away from its
    point gets a thin leader line. Places are chosen when the figure is drawn, so they
    hold after ``tight_layout``, a new figure size or dpi. The legend goes to the
    corner or side covering the fewest points.

    Parameters
    ----------
    adata
        Fitted per gene by :func:`scmix.tl.fit_mixture` under ``key``.
    key
        Key of the fit.
    score
        ``"delta_bic"`` or ``"pvalue"`` (needs ``fit_mixture(..., pvalues=...)``).
    alpha
        Level of the Benjamini-Hochberg adjusted p-values (``score="pvalue"``).
    n_labels
        Number of highlighted genes labelled, the strongest evidence first.
    {show_options}

    Returns
    -------
    The Figure with ``return_fig=True``; None when the figure was shown; else the
    Axes: its two point collections are labelled ``"not bimodal"`` and ``"bimodal"``
    (``"not significant"`` / ``"significant"`` for p-values), the labels are in
    ``ax.texts``, the strongest first.
    """
    params = fit_params(adata, key)
    require_per_gene(adata, key, "pl.bimodality")
    if score not in ("delta_bic", "pvalue"):
        raise InputError(f"score must be 'delta_bic' or 'pvalue', got {score!r}.")
    var = adata.var
    fitted = var[f"{key}_loglik"].notna().to_numpy()
    mean = var[f"{key}_single_mean"].to_numpy(dtype=float)[fitted]
    names = var.index[fitted]
    if score == "delta_bic":
        value = var[f"{key}_delta_bic"].to_numpy(dtype=float)[fitted]
        highlight = var[f"{key}_bimodal"].to_numpy(dtype=bool)[fitted]
        by_bic = params.get("call", "bic") == "bic"
        labels, line = ("not bimodal", "bimodal"), params["bic_threshold"] if by_bic else None
        ylabel = "ΔBIC (1 vs K components)"
    else:
        if f"{key}_lrt_pvalue" not in var:
            raise InputKeyError(
                f"no LRT p-values under key {key!r}: run scmix.tl.fit_mixture(adata, "
                f"key_added={key!r}, pvalues='fast') first."
            )
        value = -np.log10(var[f"{key}_lrt_pvalue"].to_numpy(dtype=float)[fitted])
        highlight = var[f"{key}_lrt_padj"].to_numpy(dtype=float)[fitted] < alpha
        labels, line = ("not significant", "significant"), None
        method = params.get("pvalues") or "bootstrap"
        if method == "bootstrap":  # its floor, 1 / (B + 1)
            line = np.log10(params["n_bootstrap"] + 1)
        ylabel = f"-log10 p-value of the LRT ({method})"

    ax, created = new_axes(ax)
    ax.scatter(mean[~highlight], value[~highlight], s=12, color="0.55", label=labels[0])
    ax.scatter(mean[highlight], value[highlight], s=16, color=HIGHLIGHT_COLOUR, label=labels[1])
    if line is not None:
        ax.axhline(line, color="0.3", ls="--", lw=0.8)
    ax.set_xscale("log")
    nice_ticks(ax.xaxis)
    if score == "delta_bic":
        ax.set_yscale("symlog", linthresh=10.0)
        nice_ticks(ax.yaxis)  # -10, 0, 10, 100, 1000 rather than powers of ten
    ax.margins(y=0.08)  # room above the strongest genes for their labels
    ax.set_xlabel("mean count / size factor (one component)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{int(highlight.sum())} of {int(fitted.sum())} genes {labels[1]} (key {key!r})")
    top = np.flatnonzero(highlight)[np.argsort(-value[highlight], kind="stable")][:n_labels]
    legend = ax.legend(frameon=False, fontsize="small")
    label_points(ax, mean[top], value[top], names[top], legend=legend, fontsize="x-small")
    return finish(
        [ax],
        created=created,
        single=True,
        name="bimodality",
        show=show,
        save=save,
        return_fig=return_fig,
    )
