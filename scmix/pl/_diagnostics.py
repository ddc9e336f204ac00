"""Convergence traces and quantile-quantile plots of randomized quantile residuals."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from anndata import AnnData
from matplotlib.font_manager import FontProperties
from scipy import stats

from .._core.errors import InputKeyError
from .._docs import doc_params
from .._fitted import Model, fit_params, fitted_gene
from ._utils import (
    DOC_GENE,
    DOC_GRID,
    DOC_RETURNS,
    DOC_SHOW,
    HIGHLIGHT_COLOUR,
    PANEL_SIZE,
    finish,
    gene_names,
    legend_below,
    new_axes,
    new_panels,
)

_MAX_TRACES = 20
#: Line styles that, with the 10 colours of the colour cycle, tell 40 lines apart.
_LINE_STYLES = ("-", (0, (4, 1.5)), (0, (1, 1)), (0, (5, 1, 1, 1)))


@doc_params(show_options=DOC_SHOW)
def convergence(
    adata: AnnData,
    *,
    key: str = "scmix",
    genes: str | Sequence[str] | None = None,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool | None = None,
):
    r"""The log-likelihood along the EM path of each gene (or of the cell-level fit),
    as the gap to its final value, :math:`\ell_{\text{final}} - \ell_t`, on a log scale.

    EM in scmix is monotone, so every curve decreases; SQUAREM makes them fall in
    steps. Needs ``fit_mixture(..., keep_trace=True)``. ``genes``: names to draw
    (default: the first 20 fitted genes). With the key of
    :func:`scmix.tl.size_factor_modes` it draws the ELBO of the CAVI fit instead.

    Every line is named in a legend outside the Axes, on the right, in as many
    columns as its height needs; the lines differ in colour and, beyond the ten colours
    of the colour cycle, in dash pattern (40 lines are told apart).

    Parameters
    ----------
    adata
        Fitted under ``key`` with ``keep_trace=True``, or holding
        :func:`scmix.tl.size_factor_modes` results under ``key``.
    key
        Key of the fit.
    genes
        Fitted genes to draw (default: the first 20).
    {show_options}

    Returns
    -------
    The Figure with ``return_fig=True``; None when the figure was shown; else the
    Axes, one line per gene (labelled with its name).
    """
    uns = adata.uns.get(key, {})
    if "elbo_trace" in uns:  # a size_factor_modes result: the CAVI ELBO
        elbo = np.asarray(uns["elbo_trace"])[:, None]
        return _draw_gaps(elbo, ["ELBO"], key, "ELBO", ax, show, save, return_fig)
    fit_params(adata, key)
    if "trace" not in uns:
        raise InputKeyError(
            f"no log-likelihood trace under key {key!r}: run fit_mixture(..., "
            f"key_added={key!r}, keep_trace=True)."
        )
    trace = np.asarray(uns["trace"], dtype=float)
    if trace.ndim == 1:  # cell-level fit: one trace
        trace, names = trace[:, None], ["all genes"]
    else:
        names = list(uns["var_names"])
        if genes is not None:
            wanted = [genes] if isinstance(genes, str) else list(genes)
            missing = [g for g in wanted if g not in names]
            if missing:
                raise InputKeyError(f"genes not fitted under key {key!r}: {missing[:5]}.")
            columns = [names.index(g) for g in wanted]
        else:
            columns = list(range(min(_MAX_TRACES, len(names))))
        trace, names = trace[:, columns], [names[c] for c in columns]
    return _draw_gaps(trace, names, key, "log-likelihood", ax, show, save, return_fig)


def _outside_legend(ax, fontsize: str = "x-small") -> None:
    """A legend of every line outside the Axes: on the right in one column when that
    column fits the height of the Axes, else below it in as many columns as its width
    holds (a small figure keeps the width of its curves)."""
    lines = ax.get_lines()
    size = FontProperties(size=fontsize).get_size_in_points()
    position = ax.get_position()
    # the layout will take the title's and x label's room from the Axes: some slack
    height = 0.85 * position.height * ax.figure.get_figheight() * 72.0
    width = 0.95 * position.width * ax.figure.get_figwidth() * 72.0
    row = size * (1.0 + mpl.rcParams["legend.labelspacing"])
    if len(lines) * row <= height:
        ax.legend(
            frameon=False,
            fontsize=fontsize,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
        )
        return
    longest = max(len(line.get_label()) for line in lines)
    entry = size * (0.6 * longest + mpl.rcParams["legend.handlelength"] + 1.5)
    ncols = max(1, min(len(lines), int(width // entry)))
    legend_below(ax, *ax.get_legend_handles_labels(), ncols=ncols, fontsize=fontsize)


def _draw_gaps(trace, names, key, what, ax, show, save, return_fig):
    # the legend stands outside the Axes: a figure made here is wider for it
    width, height = PANEL_SIZE
    ax, created = new_axes(ax, panel_size=(width + 1.4 * (len(names) > 1), height))
    colours = mpl.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for column, name in enumerate(names):
        path = trace[:, column]
        path = path[np.isfinite(path)]
        if path.size < 2:
            continue
        gap = path[-1] - path[:-1]
        style = _LINE_STYLES[(column // len(colours)) % len(_LINE_STYLES)]
        colour = colours[column % len(colours)]
        ax.plot(
            np.arange(gap.size), np.maximum(gap, 1e-12), lw=1.2, ls=style, color=colour, label=name
        )
    ax.set_yscale("log")
    ax.set_xlabel("EM point (accepted steps)" if what != "ELBO" else "CAVI iteration")
    ax.set_ylabel(f"{what}\nbelow the final value")  # two lines: short Axes stay labelled
    ax.set_title(f"convergence (key {key!r})")
    if len(names) == 1:
        ax.legend(frameon=False, fontsize="x-small", loc="upper right")
    else:
        _outside_legend(ax)
    return finish(
        [ax],
        created=created,
        single=True,
        name="convergence",
        show=show,
        save=save,
        return_fig=return_fig,
    )


@doc_params(
    gene_options=DOC_GENE, show_options=DOC_SHOW, grid_options=DOC_GRID, returns=DOC_RETURNS
)
def qq(
    adata: AnnData,
    gene: str | Sequence[str],
    *,
    key: str = "scmix",
    model: Model = "mixture",
    random_state: int | None = 0,
    ncols: int = 4,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool | None = None,
):
    r"""Randomized quantile residuals :math:`\Phi^{-1}(u_i)` of the gene (Dunn and Smyth
    1996; the same as :func:`scmix.tl.goodness_of_fit` with the same seed) against
    standard normal quantiles, with the identity line. Under the model the points lie
    on the line.

    Parameters
    ----------
    {gene_options}
    model
        ``"mixture"`` (K components) or ``"one_component"``.
    random_state
        Seed of the randomization (of the discrete counts' quantiles).
    {grid_options}
    {show_options}

    Returns
    -------
    {returns} Each Axes holds the points (one collection) and the identity line.
    """
    from ..get import quantile_residuals

    names, single = gene_names(gene)
    for name in names:  # errors before drawing
        fitted_gene(adata, name, key)
    axes, created = new_panels(ax, len(names), ncols=ncols)
    for name, panel in zip(names, axes, strict=True):
        residuals = np.sort(
            quantile_residuals(adata, [name], key=key, model=model, random_state=random_state)
            .to_numpy()
            .ravel()
        )
        _draw_qq(adata, name, panel, residuals, key, model)
    return finish(
        axes,
        created=created,
        single=single,
        name="qq",
        show=show,
        save=save,
        return_fig=return_fig,
    )


def _draw_qq(adata, gene, ax, residuals, key, model) -> None:
    n = residuals.size
    theoretical = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    ax.scatter(theoretical, residuals, s=5, color="0.3")
    low, high = theoretical[0], theoretical[-1]
    ax.plot([low, high], [low, high], color=HIGHLIGHT_COLOUR, lw=1.2, label="identity")
    ax.set_xlabel("standard normal quantile")
    ax.set_ylabel("randomized quantile residual")
    column = f"{key}_gof_pvalue" if model == "mixture" else f"{key}_single_gof_pvalue"
    suffix = ""
    if column in adata.var and np.isfinite(adata.var.loc[gene, column]):
        suffix = f", KS p = {adata.var.loc[gene, column]:.2g}"
    label = "K components" if model == "mixture" else "one component"
    ax.set_title(f"{gene} ({label}{suffix})")
