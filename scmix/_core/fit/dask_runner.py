"""Gene blocks of a dask array as dask tasks (threaded scheduler or dask.distributed).

The cells of a gene must be in one block: the array is rechunked to all cells x
``chunk_size`` genes. Each task validates its block, fits it with the same engine
and the same per-gene uniforms as the in-memory path (so results are identical); the
parallelism comes from the scheduler running tasks at once.
dask is imported only here, when a dask array is given.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse

from ..families import Family
from .blocks import fit_block


def _fit_block(block, first_gene, size_factors, family, n_components, uniforms, check, options):
    """One task: :func:`~scmix._core.fit.blocks.fit_block` on a checked, densified block."""
    if check is not None:
        check(block, first_gene)
    dense = block.toarray() if sparse.issparse(block) else np.asarray(block)
    x = np.ascontiguousarray(dense.T, dtype=np.float64)
    return fit_block(x, first_gene, size_factors, family, n_components, uniforms, **options)


def fit_blocks(
    X,
    size_factors: np.ndarray,
    family: Family,
    n_components: int,
    uniforms: np.ndarray,
    chunk_size: int,
    *,
    check: Callable | None = None,
    **options,
) -> list:
    """Fit every gene block of the dask array ``X`` (cells x genes) as a dask task, on
    the current scheduler; returns the non-empty blocks' ``(genes, one, fitted)``."""
    import dask

    X = X.rechunk((X.shape[0], chunk_size))
    starts = np.concatenate([[0], np.cumsum(X.chunks[1])[:-1]])
    tasks = [
        dask.delayed(_fit_block)(
            block,
            int(start),
            size_factors,
            family,
            n_components,
            uniforms[start : start + width],
            check,
            options,
        )
        for block, start, width in zip(X.to_delayed().ravel(), starts, X.chunks[1], strict=True)
    ]
    return [output for output in dask.compute(*tasks) if output is not None]
