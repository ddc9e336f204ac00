"""Convergence traces and quantile-quantile plots of randomized quantile residuals."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import stats

from .._core.errors import InputKeyError
from .._fitted import Model, fit_params, fitted_gene
from ._utils import HIGHLIGHT_COLOUR, finish, new_axes

_MAX_TRACES = 20


def convergence(
    adata: AnnData,
    *,
    key: str = "scmix",
    genes=None,
    ax=None,
    show: bool | None = None,
):
    r"""The log-likelihood along the EM path of each gene (or of the cell-level fit),
    as the gap to its final value, :math:`\ell_{\text{final}} - \ell_t`, on a log scale.

    EM in scmix is monotone, so every curve decreases; SQUAREM makes them fall in
    steps. Needs ``fit_mixture(..., keep_trace=True)``. ``genes``: names to draw
    (default: the first 20 fitted genes). With the key of
    :func:`scmix.tl.size_factor_modes` it draws the ELBO of the CAVI fit instead.

    Returns
    -------
    The Axes, one line per gene (labelled with its name).
    """
    uns = adata.uns.get(key, {})
    if "elbo_trace" in uns:  # a size_factor_modes result: the CAVI ELBO
        return _draw_gaps(np.asarray(uns["elbo_trace"])[:, None], ["ELBO"], key, "ELBO", ax, show)
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
    return _draw_gaps(trace, names, key, "log-likelihood", ax, show)


def _draw_gaps(trace, names, key, what, ax, show):
    ax = new_axes(ax)
    for column, name in enumerate(names):
        path = trace[:, column]
        path = path[np.isfinite(path)]
        if path.size < 2:
            continue
        gap = path[-1] - path[:-1]
        ax.plot(np.arange(gap.size), np.maximum(gap, 1e-12), lw=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("EM point (accepted steps)" if what != "ELBO" else "CAVI iteration")
    ax.set_ylabel(f"{what} below the final value")
    ax.set_title(f"convergence (key {key!r})")
    if len(names) <= 10:
        ax.legend(frameon=False, fontsize="x-small")
    return finish(ax, show)


def qq(
    adata: AnnData,
    gene: str,
    *,
    key: str = "scmix",
    model: Model = "mixture",
    random_state: int | None = 0,
    ax=None,
    show: bool | None = None,
):
    r"""Randomized quantile residuals :math:`\Phi^{-1}(u_i)` of the gene (Dunn and Smyth
    1996; the same as :func:`scmix.tl.goodness_of_fit` with the same seed) against
    standard normal quantiles, with the identity line. Under the model the points lie
    on the line.

    Returns
    -------
    The Axes: the points (one collection) and the identity line.
    """
    from ..get import quantile_residuals

    fitted_gene(adata, gene, key)
    residuals = np.sort(
        quantile_residuals(adata, [gene], key=key, model=model, random_state=random_state)
        .to_numpy()
        .ravel()
    )
    n = residuals.size
    theoretical = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    ax = new_axes(ax)
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
    return finish(ax, show)
