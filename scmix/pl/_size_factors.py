"""The distribution of the log size factors with their fitted modes."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import stats

from .._core.errors import InputKeyError
from .._docs import doc_params
from .._inputs import check_adata, get_size_factors
from ._utils import COMPONENT_COLOURS, DOC_SHOW, MARGINAL_COLOUR, finish, new_axes


@doc_params(show_options=DOC_SHOW)
def size_factors(
    adata: AnnData,
    *,
    key: str = "size_factor_modes",
    bins: int = 50,
    ax=None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool | None = None,
):
    r"""Histogram (density) of :math:`\log s_i` with the modes found by
    :func:`scmix.tl.size_factor_modes`: each mode's weighted normal density
    :math:`\bar\pi_k N(\log s \mid m_k, \sigma_k^2)` (posterior means of the weights,
    means and variances) and their sum.

    Parameters
    ----------
    adata
        Holding :func:`scmix.tl.size_factor_modes` results under ``key``.
    key
        Key of the modes.
    bins
        Bins of the histogram.
    {show_options}

    Returns
    -------
    The Figure with ``return_fig=True``; None when the figure was shown; else the
    Axes, with lines ``"mode {k}"`` (K of them) and ``"mixture"``.
    """
    check_adata(adata)
    if key not in adata.uns or "means" not in adata.uns[key]:
        raise InputKeyError(
            f"no size-factor modes under key {key!r}: run "
            f"scmix.tl.size_factor_modes(adata, key_added={key!r}) first."
        )
    modes = adata.uns[key]
    column = modes["params"]["size_factors"]
    if column not in adata.obs:
        raise InputKeyError(f"the size factors {column!r} of the fit are not in adata.obs.")
    log_sf = np.log(get_size_factors(adata, column))
    ax, created = new_axes(ax)
    ax.hist(log_sf, bins=bins, density=True, color="0.8", edgecolor="0.6", linewidth=0.5)
    grid = np.linspace(log_sf.min() - 0.5, log_sf.max() + 0.5, 400)
    total = np.zeros_like(grid)
    for k, (m, sd, w) in enumerate(
        zip(modes["means"], modes["sds"], modes["weights"], strict=True)
    ):
        density = w * stats.norm.pdf(grid, m, sd)
        total += density
        ax.plot(
            grid,
            density,
            color=COMPONENT_COLOURS[k % len(COMPONENT_COLOURS)],
            lw=1.5,
            label=f"mode {k}: s = {np.exp(m):.2f}, weight {w:.2f}",
        )
    ax.plot(grid, total, color=MARGINAL_COLOUR, lw=1.8, label="mixture")
    ax.set_xlabel(f"log size factor (.obs[{column!r}])")
    ax.set_ylabel("density")
    ax.set_title(f"{len(modes['means'])} size-factor modes (CAVI)")
    ax.legend(frameon=False, fontsize="small", loc="upper left")
    return finish(
        [ax],
        created=created,
        single=True,
        name="size_factors",
        show=show,
        save=save,
        return_fig=return_fig,
    )
