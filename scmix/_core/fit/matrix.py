"""Fit a mixture to every gene (column) of a count matrix, chunk by chunk.

This is the one implementation behind both faces of scmix:
:func:`scmix.tl.fit_mixture` (AnnData) and the estimators in :mod:`scmix.models`.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice

import numpy as np

from ..em.driver import ChunkFit
from ..families import Family
from ..numerics.jit import announce_compilation, row_threads, worker_count
from ..settings import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_SETTINGS, DEFAULT_TOL, FitSettings
from .blocks import fit_block
from .chunks import GeneColumns, chunk_size_for, iter_chunks
from .dask_runner import fit_blocks
from .warmup import compile_in_background

__all__ = ["DEFAULT_MAX_ITER", "DEFAULT_N_INIT", "DEFAULT_TOL", "FitSettings", "fit_matrix"]

#: Counts (genes x cells) per thread below which fewer threads fit the matrix: 88
#: ERCC x 2,000 cells (Svensson) ran 1.5 times longer on two threads than on one.
MIN_ENTRIES_PER_THREAD = 1_000_000
#: Fewest genes in a chunk that threads split off (a chunk's fixed cost, the count
#: levels and the quadrature, should stay small beside its EM).
MIN_THREAD_CHUNK = 16


def is_dask(X) -> bool:
    """Is ``X`` a dask array (checked without importing dask)?"""
    return type(X).__module__.split(".")[0] == "dask"


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
    def start(
        cls, family: Family, n_components: int, n_cells: int, n_genes: int, store_resp: bool
    ) -> MixtureFit:
        """Empty results for the K- and the one-component fit, filled by :meth:`collect`."""
        result = cls.empty(family, n_components, n_genes)
        result.single = result if n_components == 1 else cls.empty(family, 1, n_genes)
        if store_resp:
            result.resp = np.full((n_cells, n_genes, n_components), np.nan, dtype=np.float32)
        return result

    def collect(self, genes, one: ChunkFit, fitted: ChunkFit, traces: list) -> None:
        """Store a block's two fits in the rows ``genes``; its trace goes to ``traces``."""
        if self.single is not self:
            self.single.fill(genes, one)
        self.fill(genes, fitted)
        if fitted.trace is not None:
            traces.append((genes, fitted.trace))

    def finish(self, traces: list, keep_trace: bool) -> MixtureFit:
        n_genes = self.loglik.size
        n_empty = int((~self.fitted).sum())
        if n_empty:
            warnings.warn(
                f"{n_empty} of {n_genes} genes have no non-zero count and were not fitted "
                "(NaN parameters, converged=False).",
                stacklevel=4,
            )
        if keep_trace:
            self.trace = _merge_traces(traces, n_genes)
        return self

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
    settings: FitSettings = DEFAULT_SETTINGS,
    store_resp: bool = True,
    progress: Callable[[int], None] | None = None,
    uniforms: np.ndarray | None = None,
    start_resp: np.ndarray | None = None,
    check: Callable | None = None,
) -> MixtureFit:
    """Fit ``n_components`` to each column of ``X`` (cells x genes; dense, CSR or CSC,
    a :class:`GeneColumns` selection of them, or a dask array).

    The one-component model is always fitted as well (``result.single``): it is
    needed for model selection and serves as one more start of the K-component
    fit. ``X`` must hold valid counts and ``size_factors`` positive finite values
    (the callers validate); ``settings`` are the starts, the stopping rule and the
    chunks (:class:`~scmix._core.fit.settings.FitSettings`). Random starts use uniforms
    drawn once per gene from ``settings.random_state``, so results do not depend on
    ``chunk_size``.
    ``progress`` is called with the number of genes finished after each chunk.
    ``uniforms`` (n_genes, max(n_init, 1), K) replaces those draws when given.
    ``start_resp`` (K, n_cells): one more start of the K-component fit from these
    responsibilities, shared by all genes (``n_init`` may then be 0).
    A dask array runs as one task per gene block (:mod:`scmix._core.fit.dask_runner`), where
    ``check(block, genes)`` validates each block's counts before it is fitted; the
    results are identical to the in-memory path.

    In memory, ``settings.n_jobs`` threads (None: one per core) fit chunks at once,
    with ``settings.memory_bytes`` of work arrays between them; the kernels release
    the GIL. Each
    gene's fit depends on its counts and uniforms only, so the results do not depend
    on ``n_jobs`` or on ``chunk_size``.
    """
    announce_compilation()
    compile_in_background(family.name)
    size_factors = np.ascontiguousarray(size_factors, dtype=np.float64)
    if isinstance(X, GeneColumns):
        n_cells, n_genes = X.n_cells, X.n_genes
    else:
        n_cells, n_genes = X.shape
    n_init, keep_trace = settings.n_init, settings.keep_trace
    n_threads = 1 if is_dask(X) else worker_count(settings.n_jobs)
    # a chunk per thread pays where each gets enough work: below that, the Python side
    # of the EM loops of two chunks (which holds the GIL) costs more than the second
    # core gains, and one chunk's kernel calls split their rows over the threads instead
    n_workers = max(1, min(n_threads, n_genes * n_cells // MIN_ENTRIES_PER_THREAD))
    chunk_size = settings.chunk_size
    if chunk_size is None:
        n_starts = 1 if n_components == 1 else n_init + 1 + (start_resp is not None)
        memory = settings.memory_bytes // n_workers
        chunk_size = chunk_size_for(n_cells, n_components, n_starts, memory)
        if n_workers > 1:
            # a few chunks per thread, so that a chunk of slow genes does not leave the
            # other threads idle at the end
            chunk_size = min(chunk_size, max(MIN_THREAD_CHUNK, -(-n_genes // (4 * n_workers))))
    if uniforms is None:
        uniforms = np.random.default_rng(settings.random_state).random(
            (n_genes, max(n_init, 1), n_components)
        )
    result = MixtureFit.start(family, n_components, n_cells, n_genes, store_resp)
    traces = []
    if is_dask(X):
        outputs = fit_blocks(
            X,
            size_factors,
            family,
            n_components,
            uniforms,
            chunk_size,
            settings=settings,
            start_resp=start_resp,
            check=check,
        )
        for genes, one, fitted in outputs:
            result.collect(genes, one, fitted, traces)
        return result.finish(traces, keep_trace)
    columns = X if isinstance(X, GeneColumns) else GeneColumns(X)

    def fit_chunk_of(chunk: slice, x: np.ndarray):
        return fit_block(
            x,
            chunk.start,
            size_factors,
            family,
            n_components,
            uniforms[chunk],
            settings=settings,
            start_resp=start_resp,
        )

    chunks = list(iter_chunks(n_genes, chunk_size))
    # blocks are read here, in this thread (a backed file is read by one thread), and
    # fitted by the pool, at most n_workers ahead of the chunk being collected
    blocks = ((chunk, columns.block(chunk)) for chunk in chunks)
    n_chunk_threads = min(n_workers, len(chunks))
    with ThreadPoolExecutor(n_chunk_threads) if n_chunk_threads > 1 else nullcontext() as pool:
        if pool is None:  # chunk after chunk in this thread, rows split over the threads
            fits = (_with_row_threads(n_threads, fit_chunk_of, *args) for args in blocks)
        else:
            fits = _in_order(pool, fit_chunk_of, blocks, n_chunk_threads)
        for chunk, fitted in zip(chunks, fits, strict=True):
            if fitted is not None:
                result.collect(*fitted, traces)
            if progress is not None:
                progress(chunk.stop)
    return result.finish(traces, keep_trace)


def _with_row_threads(n_threads: int, function, *args):
    with row_threads(n_threads):
        return function(*args)


def _in_order(pool: ThreadPoolExecutor, function, arguments, ahead: int):
    """``function(*args)`` for each of ``arguments`` (an iterator, advanced only as
    needed), run on ``pool`` with at most ``ahead`` calls submitted beyond the one
    whose result is being yielded, which keeps memory bounded; in order."""
    pending = deque(pool.submit(function, *args) for args in islice(arguments, ahead))
    try:
        while pending:
            for args in islice(arguments, 1):
                pending.append(pool.submit(function, *args))
            yield pending.popleft().result()
    finally:  # after an error, what has not started does not start
        for future in pending:
            future.cancel()


def _merge_traces(traces, n_genes: int) -> np.ndarray:
    rows = max((t.shape[0] for _, t in traces), default=0)
    merged = np.full((rows, n_genes), np.nan)
    for genes, trace in traces:
        merged[: trace.shape[0], genes] = trace
    return merged
