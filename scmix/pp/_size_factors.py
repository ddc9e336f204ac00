"""Spike-in flags and size factors, written to ``.var`` / ``.obs``."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._core.errors import InputError, InputKeyError
from .._core.validation import check_choice, check_key, describe_positions
from .._inputs import bool_column, check_adata, gene_columns, gene_mask
from .._scanpy import added, info

Method = Literal["spike_in", "library", "median_ratio"]


def flag_spike_ins(adata: AnnData, prefix: str = "ERCC-", *, key_added: str = "spike_in") -> None:
    """Flag the spike-in genes: ``.var[key_added]`` is True where the name starts with ``prefix``.

    Raises ``ValueError`` when no gene name starts with ``prefix``.
    """
    check_adata(adata)
    check_key(key_added)
    if not isinstance(prefix, str) or not prefix:
        raise InputError(f"prefix must be a non-empty string, got {prefix!r}.")
    flags = np.asarray(adata.var_names.str.startswith(prefix), dtype=bool)
    if not flags.any():
        raise InputError(
            f"no gene name starts with {prefix!r} (first names: {list(adata.var_names[:3])})."
        )
    adata.var[key_added] = flags
    info(f"flagged {int(flags.sum())} spike-ins (names starting with {prefix!r})")
    added([(f"'{key_added}'", "adata.var")])


def size_factors(
    adata: AnnData,
    method: Method = "spike_in",
    *,
    mask_var: str | np.ndarray | list[str] | None = None,
    layer: str | None = None,
    key_added: str = "size_factors",
    exclude_zero: bool = False,
) -> None:
    r"""Per-cell size factors, scaled to mean 1, in ``.obs[key_added]``.

    ``"spike_in"``
        :math:`s_i \propto \sum_{j \in S} x_{ij}` over the spike-in genes S
        (``mask_var``, by default the ``.var["spike_in"]`` column), as scran's
        ``computeSpikeFactors``.
    ``"library"``
        :math:`s_i \propto \sum_{j \notin S} x_{ij}`: total counts of the other genes
        (``mask_var`` selects the genes to sum instead, when given).
    ``"median_ratio"``
        DESeq2's estimator in its ``"poscounts"`` form, defined when many counts are
        zero: with :math:`\log g_j = \frac1n \sum_i \log x_{ij}` over the cells where
        :math:`x_{ij} > 0` counted against all n cells,
        :math:`s_i \propto \operatorname{median}_{j: x_{ij} > 0} x_{ij} / g_j`
        (genes: ``mask_var``, by default all non-spike-in genes).

    Every method is scaled so that the factors have mean 1; their ratios are those of
    the estimator. A cell whose factor would be zero (no counts in the genes used)
    raises a ``ValueError`` naming it, unless ``exclude_zero=True``: such cells are
    then removed from ``adata`` (in place, as ``scanpy.pp.filter_cells``) with a warning
    that counts them.
    """
    check_adata(adata)
    check_choice(method, "method", ("spike_in", "library", "median_ratio"))
    check_key(key_added)
    genes = _genes_for(adata, method, mask_var)
    columns = gene_columns(adata, layer, np.flatnonzero(genes))
    if method == "median_ratio":
        raw = _median_ratio(columns.raw_block(slice(None)))
    else:
        raw = columns.cell_totals()
    zero = ~(raw > 0)
    if zero.any():
        where = describe_positions("cells", adata.obs_names, np.flatnonzero(zero))
        if not exclude_zero:
            raise InputError(
                f"size factors by {method!r} would be zero for {int(zero.sum())} cells "
                f"(no counts in the {int(genes.sum())} genes used): {where}. "
                "Remove them, or pass exclude_zero=True."
            )
        warnings.warn(
            f"removed {int(zero.sum())} cells whose size factor would be zero: {where}.",
            stacklevel=2,
        )
        adata._inplace_subset_obs(~zero)
        raw = raw[~zero]
    adata.obs[key_added] = raw / raw.mean()
    added([(f"'{key_added}', size factors by {method!r} (mean 1)", "adata.obs")])


def _genes_for(adata: AnnData, method: str, mask_var) -> np.ndarray:
    if mask_var is not None:
        return gene_mask(adata, mask_var)
    if "spike_in" not in adata.var.columns:
        if method == "spike_in":
            raise InputKeyError(
                "adata.var has no 'spike_in' column: run scmix.pp.flag_spike_ins first, "
                "or pass mask_var."
            )
        return np.ones(adata.n_vars, dtype=bool)
    spike = bool_column(adata.var, "spike_in", "adata.var['spike_in'] (the spike-in flags)")
    chosen = spike if method == "spike_in" else ~spike
    if not chosen.any():
        kind = "spike-in" if method == "spike_in" else "non-spike-in"
        raise InputError(f"no {kind} gene in adata.var['spike_in'] for method {method!r}.")
    return chosen


def _median_ratio(X) -> np.ndarray:
    """DESeq2 ``poscounts``: exp of the median over a cell's positive counts of
    log x_ij - log g_j, with log g_j = sum of the logs of gene j's positive counts / n.

    Works on the non-zero entries only (CSR), so sparse input is never densified.
    """
    csr = sparse.csr_matrix(X, dtype=np.float64)
    csr.eliminate_zeros()
    n_cells, n_genes = csr.shape
    logs = np.log(csr.data)
    log_geo = np.bincount(csr.indices, weights=logs, minlength=n_genes) / n_cells
    ratios = logs - log_geo[csr.indices]
    factors = np.zeros(n_cells)
    for i in range(n_cells):
        row = ratios[csr.indptr[i] : csr.indptr[i + 1]]
        if row.size:
            factors[i] = np.exp(np.median(row))
    return factors
