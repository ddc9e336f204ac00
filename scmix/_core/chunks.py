"""Gene chunks of a dense or sparse count matrix, as float64 ``(genes, cells)`` blocks.

Only one chunk is ever dense: memory is bounded by the chunk, not by the matrix.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import sparse

#: Default working-memory budget of one chunk.
DEFAULT_MEMORY_BYTES = 256 * 2**20


def chunk_size_for(
    n_cells: int, n_components: int, memory_bytes: int = DEFAULT_MEMORY_BYTES
) -> int:
    """Genes per chunk so that a chunk's arrays fit in ``memory_bytes``.

    Per gene the engine holds the counts, the (K, cells) responsibility buffer and
    k-means temporaries of about the same size: roughly ``8 * n_cells * (2K + 4)`` bytes.
    """
    per_gene = 8 * n_cells * (2 * n_components + 4)
    return max(1, int(memory_bytes // per_gene))


def as_column_sliceable(X):
    """A form of X whose gene (column) slices are cheap: CSC for sparse input."""
    if sparse.issparse(X):
        return X.tocsc() if X.format != "csc" else X
    return X


def dense_chunk(X, genes: np.ndarray) -> np.ndarray:
    """Counts of ``genes`` (column indices) as a C-contiguous float64 (genes, cells) array."""
    block = X[:, genes]
    if sparse.issparse(block):
        block = block.toarray()
    return np.ascontiguousarray(np.asarray(block, dtype=np.float64).T)


def iter_chunks(n_genes: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_size`` genes."""
    for start in range(0, n_genes, chunk_size):
        yield slice(start, min(start + chunk_size, n_genes))
