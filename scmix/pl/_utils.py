"""What every plot needs: the fit stored under a key, the gene's counts, an Axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from scipy import sparse

#: Colours of the components (colour-blind safe, readable in print) and of the marginal.
COMPONENT_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
MARGINAL_COLOUR = "black"
HIGHLIGHT_COLOUR = "#D55E00"


def fit_params(adata: AnnData, key: str) -> dict:
    """``adata.uns[key]["params"]`` of a fit_mixture run, or a KeyError saying what to run."""
    if key not in adata.uns or "params" not in adata.uns[key]:
        raise KeyError(
            f"no scmix fit under key {key!r} (adata.uns[{key!r}] is missing): run "
            f"scmix.tl.fit_mixture(adata, key_added={key!r}) first."
        )
    return adata.uns[key]["params"]


def fitted_gene(adata: AnnData, gene: str, key: str) -> int:
    """Index of a gene that the fit under ``key`` covers."""
    if gene not in adata.var_names:
        raise KeyError(f"gene {gene!r} is not in adata.var_names.")
    position = adata.var_names.get_loc(gene)
    if not np.isfinite(adata.var[f"{key}_loglik"].iloc[position]):
        raise ValueError(
            f"gene {gene!r} was not fitted under key {key!r} (outside mask_var, or no counts)."
        )
    return position


def gene_counts(adata: AnnData, position: int, layer: str | None) -> np.ndarray:
    matrix = adata.X if layer is None else adata.layers[layer]
    column = matrix[:, position]
    column = column.toarray() if sparse.issparse(column) else np.asarray(column)
    return column.ravel().astype(np.float64)


def fit_size_factors(adata: AnnData, params: dict, size_factors) -> np.ndarray:
    """The size factors of the fit: given, or the ``.obs`` key it recorded (ones for None)."""
    if size_factors is not None:
        return np.asarray(size_factors, dtype=float)
    recorded = params["size_factors"]
    if recorded is None:
        return np.ones(adata.n_obs)
    if recorded == "array" or recorded not in adata.obs.columns:
        raise ValueError(
            f"the fit used size factors {recorded!r} that are not in adata.obs: pass them "
            "with size_factors=."
        )
    return adata.obs[recorded].to_numpy(dtype=float)


def new_axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.6))
    return ax


def finish(ax, show: bool | None):
    """Show the figure when asked; always return the Axes."""
    if show:
        plt.show()
    return ax
