"""Gene chunks of a dense or sparse count matrix, as float64 ``(genes, cells)`` blocks.

Only one chunk is ever dense: memory is bounded by the chunk, not by the matrix.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import sparse

from ..settings import DEFAULT_MEMORY_BYTES


def chunk_size_for(
    n_cells: int, n_components: int, n_starts: int = 1, memory_bytes: int = DEFAULT_MEMORY_BYTES
) -> int:
    """Genes per chunk so that a chunk's arrays fit in ``memory_bytes``.

    All starts of a gene run side by side: per gene and start the engine holds the
    counts, their level index, the cells not pooled on quadrature nodes and the
    (K, cells) responsibility buffer, plus one more buffer for the starts and the
    final E-step: about ``8 * n_cells * (n_starts * (K + 3) + K + 5)`` bytes.
    """
    per_gene = 8 * n_cells * (n_starts * (n_components + 3) + n_components + 5)
    return max(1, int(memory_bytes // per_gene))


class GeneColumns:
    """The selected gene columns of a cells x genes count matrix, read chunk by chunk.

    Sparse input is copied once into CSC form (selected genes only), so that
    each chunk is a cheap column slice; dense input is not copied: each chunk
    takes its columns from the caller's array.
    """

    def __init__(self, X, genes: np.ndarray | None = None):
        if sparse.issparse(X):
            if genes is not None:
                X = X[:, genes]
            self.matrix = sparse.csc_matrix(X)
            self.genes = None
        else:
            self.matrix = X
            self.genes = None if genes is None else np.asarray(genes)
        self.n_cells = X.shape[0]
        self.n_genes = X.shape[1] if self.genes is None else self.genes.size

    @property
    def is_sparse(self) -> bool:
        return sparse.issparse(self.matrix)

    def raw_block(self, chunk: slice):
        """Columns of ``chunk`` (positions among the selected genes), in the input's dtype."""
        columns = chunk if self.genes is None else self.genes[chunk]
        return self.matrix[:, columns]

    def cell_totals(self) -> np.ndarray:
        """Each cell's total over the selected genes, summed in float64 (float16 or
        int8 counts would overflow in their own type)."""
        if self.is_sparse:
            return np.asarray(self.matrix.sum(axis=1, dtype=np.float64)).ravel()
        total = np.zeros(self.n_cells)
        for chunk in iter_chunks(self.n_genes, 1024):
            total += np.asarray(self.raw_block(chunk)).sum(axis=1, dtype=np.float64)
        return total

    def block(self, chunk: slice) -> np.ndarray:
        """Counts of ``chunk`` as a C-contiguous float64 (genes, cells) array."""
        block = self.raw_block(chunk)
        if sparse.issparse(block):
            block = block.toarray()
        return np.ascontiguousarray(np.asarray(block, dtype=np.float64).T)


def iter_chunks(n_genes: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_size`` genes."""
    for start in range(0, n_genes, chunk_size):
        yield slice(start, min(start + chunk_size, n_genes))
