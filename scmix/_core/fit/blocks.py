"""One block of genes: the one- and the K-component fit of its rows with a count.

Shared by the in-memory chunk loop (:mod:`.matrix`) and the dask tasks
(:mod:`.dask_runner`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..em.driver import ChunkFit, fit_chunk
from ..families import Family
from ..families.base import ChunkData
from ..settings import FitSettings


def fit_block(x, first_gene: int, size_factors, family, n_components, uniforms, **options):
    """Fit the genes with a count among the rows of ``x`` (genes, cells; float64), whose
    first row is gene ``first_gene`` and whose start uniforms are ``uniforms``.

    Returns ``(genes, one, fitted)`` with the fitted genes as global indices, or None
    when no row has a count.
    """
    has_counts = x.any(axis=1)
    if not has_counts.any():
        return None
    one, fitted = fit_rows(
        family,
        np.ascontiguousarray(x[has_counts]),
        size_factors,
        n_components,
        uniforms[has_counts],
        **options,
    )
    return first_gene + np.flatnonzero(has_counts), one, fitted


def fit_rows(
    family: Family,
    x: np.ndarray,
    size_factors: np.ndarray,
    n_components: int,
    uniforms: np.ndarray,
    *,
    settings: FitSettings,
    start_resp: np.ndarray | None,
) -> tuple[ChunkFit, ChunkFit]:
    """The one- and the K-component fit of the rows of ``x`` (genes, cells; float64,
    every row with a count), sharing their count levels."""
    data = ChunkData(x, size_factors)
    one = fit_chunk(
        family,
        x,
        size_factors,
        1,
        settings=replace(settings, keep_trace=settings.keep_trace and n_components == 1),
        uniforms=uniforms[:, :, :1],
        data=data,
    )
    if n_components == 1:
        return one, one
    fitted = fit_chunk(
        family,
        x,
        size_factors,
        n_components,
        settings=settings,
        uniforms=uniforms,
        single=one,
        data=data,
        start_resp=start_resp,
    )
    return one, fitted
