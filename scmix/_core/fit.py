"""Fit a mixture to every gene (column) of a count matrix, chunk by chunk.

This is the one implementation behind both faces of scmix:
:func:`scmix.tl.fit_mixture` (AnnData) and the estimators in :mod:`scmix.models`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .chunks import GeneColumns, chunk_size_for, iter_chunks
from .em import ChunkFit, fit_chunk
from .families import Family
from .families.base import ChunkData


@dataclass
class MixtureFit:
    """Per-gene results for all ``n_genes`` columns; genes without any count have
    ``fitted=False``, NaN parameters and ``converged=False``."""

    family: Family
    n_components: int
    params: dict[str, np.ndarray]  # each (n_genes, K), components by increasing mean
    weights: np.ndarray  # (n_genes, K)
    loglik: np.ndarray  # (n_genes,)
    converged: np.ndarray  # (n_genes,) bool
    n_iter: np.ndarray  # (n_genes,)
    fitted: np.ndarray  # (n_genes,) bool
    resp: np.ndarray | None = None  # (n_cells, n_genes, K) float32
    trace: np.ndarray | None = None  # (points, n_genes), see run_em
    single: MixtureFit | None = None  # the one-component fit (itself when K = 1)

    @classmethod
    def empty(cls, family: Family, n_components: int, n_genes: int) -> MixtureFit:
        shape = (n_genes, n_components)
        return cls(
            family,
            n_components,
            {name: np.full(shape, np.nan) for name in family.param_names},
            np.full(shape, np.nan),
            np.full(n_genes, np.nan),
            np.zeros(n_genes, dtype=bool),
            np.zeros(n_genes, dtype=np.int64),
            np.zeros(n_genes, dtype=bool),
        )

    def fill(self, genes: np.ndarray, chunk: ChunkFit) -> None:
        """Copy a chunk's results into the rows ``genes``."""
        for name in self.params:
            self.params[name][genes] = chunk.params[name]
        self.weights[genes] = chunk.weights
        self.loglik[genes] = chunk.loglik
        self.converged[genes] = chunk.converged
        self.n_iter[genes] = chunk.n_iter
        self.fitted[genes] = True
        if self.resp is not None:
            self.resp[:, genes, :] = chunk.resp.transpose(2, 0, 1)

    @property
    def dispersion(self) -> np.ndarray:
        """phi = 1/theta per gene and component (0 for Poisson-like)."""
        return self.family.dispersion(self.params)


def fit_matrix(
    X,
    size_factors: np.ndarray,
    *,
    family: Family,
    n_components: int,
    n_init: int,
    max_iter: int,
    tol: float,
    random_state: int | None,
    chunk_size: int | None = None,
    store_resp: bool = True,
    keep_trace: bool = False,
    accelerate: bool = True,
    progress: Callable[[int], None] | None = None,
    uniforms: np.ndarray | None = None,
    start_resp: np.ndarray | None = None,
) -> MixtureFit:
    """Fit ``n_components`` to each column of ``X`` (cells x genes; dense, CSR or CSC,
    or a :class:`GeneColumns` selection of them).

    The one-component model is always fitted as well (``result.single``): it is
    needed for model selection and serves as one more start of the K-component
    fit. ``X`` must hold valid counts and ``size_factors`` positive finite values
    (the callers validate). Random starts use uniforms drawn once per gene from
    ``random_state``, so results do not depend on ``chunk_size``.
    ``progress`` is called with the number of genes finished after each chunk.
    ``uniforms`` (n_genes, max(n_init, 1), K) replaces those draws when given.
    ``start_resp`` (K, n_cells): one more start of the K-component fit from these
    responsibilities, shared by all genes (``n_init`` may then be 0).
    """
    columns = X if isinstance(X, GeneColumns) else GeneColumns(X)
    n_cells, n_genes = columns.n_cells, columns.n_genes
    size_factors = np.ascontiguousarray(size_factors, dtype=np.float64)
    if chunk_size is None:
        n_starts = 1 if n_components == 1 else n_init + 1 + (start_resp is not None)
        chunk_size = chunk_size_for(n_cells, n_components, n_starts)
    if uniforms is None:
        uniforms = np.random.default_rng(random_state).random(
            (n_genes, max(n_init, 1), n_components)
        )
    result = MixtureFit.empty(family, n_components, n_genes)
    single = result if n_components == 1 else MixtureFit.empty(family, 1, n_genes)
    result.single = single
    if store_resp:
        result.resp = np.full((n_cells, n_genes, n_components), np.nan, dtype=np.float32)
    traces = []
    options = dict(n_init=n_init, max_iter=max_iter, tol=tol, accelerate=accelerate)

    for chunk in iter_chunks(n_genes, chunk_size):
        x = columns.block(chunk)
        has_counts = x.any(axis=1)
        genes = np.arange(chunk.start, chunk.stop)[has_counts]
        if genes.size:
            x = np.ascontiguousarray(x[has_counts])
            data = ChunkData(x, size_factors)
            one = fit_chunk(
                family,
                x,
                size_factors,
                1,
                uniforms=uniforms[genes, :, :1],
                keep_trace=keep_trace and n_components == 1,
                data=data,
                **options,
            )
            fitted = (
                one
                if n_components == 1
                else fit_chunk(
                    family,
                    x,
                    size_factors,
                    n_components,
                    uniforms=uniforms[genes],
                    keep_trace=keep_trace,
                    single=one,
                    data=data,
                    start_resp=start_resp,
                    **options,
                )
            )
            if single is not result:
                single.fill(genes, one)
            result.fill(genes, fitted)
            if keep_trace:
                traces.append((genes, fitted.trace))
        if progress is not None:
            progress(chunk.stop)

    n_empty = int((~result.fitted).sum())
    if n_empty:
        warnings.warn(
            f"{n_empty} of {n_genes} genes have no non-zero count and were not fitted "
            "(NaN parameters, converged=False).",
            stacklevel=3,
        )
    if keep_trace:
        result.trace = _merge_traces(traces, n_genes)
    return result


def _merge_traces(traces, n_genes: int) -> np.ndarray:
    rows = max((t.shape[0] for _, t in traces), default=0)
    merged = np.full((rows, n_genes), np.nan)
    for genes, trace in traces:
        merged[: trace.shape[0], genes] = trace
    return merged
