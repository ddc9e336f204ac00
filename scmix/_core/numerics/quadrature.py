r"""Cells sharing a count, summed as a few weighted pseudo-cells.

A cell with count :math:`x_{ij} = v` enters every E- and M-step sum through a
function of its size factor alone, :math:`\sum_{i: x_{ij}=v} h_v(u_i)` with
:math:`u_i = \log s_i` (e.g. for the zeros
:math:`h_0 = \log\sum_k \pi_k (1 + e^u\mu_k/\theta_k)^{-\theta_k}`). On sparse genes
(90% zeros, most of the rest ones) these sums are most of the work of an
iteration. :math:`h_v` is analytic in :math:`u` (the NB terms are singular only at
:math:`|\mathrm{Im}\,u| = \pi`), so it is replaced by its polynomial interpolant at
the Chebyshev-Lobatto points :math:`u_0 \ldots u_N` of :math:`[\min u, \max u]`:

.. math::

    \sum_{i: x_{ij}=v} h_v(u_i) \approx \sum_n w_{jvn} h_v(u_n),\qquad
    w_{jvn} = \sum_{i: x_{ij}=v} \ell_n(u_i),

with :math:`\ell_n` the Lagrange basis (barycentric form). Per gene, the (at most
``MAX_POOLED``) counts shared by enough cells are pooled this way where that leaves
few cells (``POOLED_COST``), and the other cells are summed one by one; the weights
are computed once per chunk, after which an iteration costs ``N + 1`` evaluations
per pooled count instead of one per cell.
The even nodes are the Chebyshev-Lobatto points of degree ``N/2``, so a second rule
with weights ``w_low`` on them comes for free and ``|sum w h - sum w_low h|``
estimates the error (as in Clenshaw-Curtis quadrature); a family sums every cell
of a gene wherever that estimate exceeds its tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .jit import gene_kernel, jit

#: Degree of the interpolant (N + 1 nodes); the error check uses degree N / 2. The
#: check is pessimistic (it is about the error of the degree-N/2 rule): with N = 32,
#: size factors spanning a factor of 60 (Svensson's ERCC totals) failed it
#: on 17 of 73 ERCC with pooled counts (at the fitted parameters), which were then
#: summed cell by cell; with N = 64 on 4 of 74.
DEGREE = 64
#: A count is pooled when at least this many cells per node share it (130 cells).
MIN_CELLS_PER_NODE = 2
#: Most counts pooled per gene.
MAX_POOLED = 4
#: A gene is pooled only where POOLED_COST x (its other cells + its nodes) is below
#: its cells: per iteration (E- and M-step), a cell or node of a pooled gene costs
#: about twice a cell of the vectorised loop over every cell (the E-step takes the
#: other cells one by one; 2,000 simulated genes x 2,000 cells, single thread: 39 ns
#: a cell and 23 ns a node against 12 ns a cell in the E-step, 14 ns a cell or node
#: in the M-step).
POOLED_COST = 2.2
#: Largest estimated error allowed, per pooled cell, in the log-likelihood and in each
#: component's summed responsibility.
TOLERANCE_PER_CELL = 1e-8
#: ``pooled_level`` of an unused slot (-1 is the zero count, as in ``count_levels``).
UNUSED = -2


@dataclass
class CountQuadrature:
    """Nodes shared by a chunk's genes; per gene the pooled counts, their weights on
    the nodes, and the cells summed one by one."""

    size_factors: np.ndarray  # (n_nodes,) e^{u_n}
    log_size_factors: np.ndarray  # (n_nodes,)
    pooled_level: np.ndarray  # (n_genes, MAX_POOLED) int32: -1 zero, u level u, UNUSED
    pooled_count: np.ndarray  # (n_genes, MAX_POOLED) the count of each pooled slot
    weights: np.ndarray  # (n_genes, MAX_POOLED, n_nodes)
    low_weights: np.ndarray  # (n_genes, MAX_POOLED, n_nodes), zero on the odd nodes
    cells: np.ndarray  # (n_genes, n_cells) int32: the cells summed one by one, first
    n_cells: np.ndarray  # (n_genes,) how many
    tolerance: np.ndarray  # (n_genes,) largest error estimate accepted

    @classmethod
    def none(cls, n_genes: int) -> CountQuadrature:
        """No count pooled: every cell of every gene is summed one by one."""
        return cls(
            np.ones(1),
            np.zeros(1),
            np.full((n_genes, 1), UNUSED, dtype=np.int32),
            np.zeros((n_genes, 1)),
            np.zeros((n_genes, 1, 1)),
            np.zeros((n_genes, 1, 1)),
            np.zeros((n_genes, 1), dtype=np.int32),
            np.zeros(n_genes, dtype=np.int64),
            np.zeros(n_genes),
        )

    def arrays(self) -> tuple:
        """The fields in the order the kernels take them."""
        return (self.size_factors, self.log_size_factors, *(getattr(self, n) for n in _PER_GENE))

    def take(self, rows: np.ndarray) -> CountQuadrature:
        return CountQuadrature(
            self.size_factors,
            self.log_size_factors,
            *(getattr(self, name)[rows] for name in _PER_GENE),
        )


_PER_GENE = (
    "pooled_level",
    "pooled_count",
    "weights",
    "low_weights",
    "cells",
    "n_cells",
    "tolerance",
)


@jit
def estimated_error(total, low_total, sums, low_sums) -> float:
    """Error estimate of a gene's node sums: how far the degree-N/2 rule's
    log-likelihood and summed responsibilities lie from the degree-N rule's."""
    error = abs(total - low_total)
    for k in range(sums.shape[0]):
        error += abs(sums[k] - low_sums[k])
    return error


def lobatto_nodes(low: float, high: float, degree: int) -> np.ndarray:
    """Chebyshev-Lobatto points of ``[low, high]``, from ``high`` down to ``low``."""
    return 0.5 * (low + high) + 0.5 * (high - low) * np.cos(np.pi * np.arange(degree + 1) / degree)


def lagrange_basis(points: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """``ell_n(points)``, shape (points, nodes), for Chebyshev-Lobatto ``nodes``, by the
    barycentric formula (weights (-1)^n, halved at both ends)."""
    degree = nodes.size - 1
    bary = (-1.0) ** np.arange(degree + 1)
    bary[[0, -1]] *= 0.5
    diff = points[:, None] - nodes[None, :]
    hit = diff == 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = bary[None, :] / diff
        basis = terms / terms.sum(axis=1, keepdims=True)
    on_node = hit.any(axis=1)
    basis[on_node] = hit[on_node].astype(np.float64)
    return basis


@jit
def _add_row(target, row, sign):
    """``target += sign * row``: a loop of its own, which LLVM vectorises (checking
    at run time that the two do not overlap)."""
    for n in range(target.shape[0]):
        target[n] += sign * row[n]


@gene_kernel
def _pool(values, n_levels, level, basis, low_basis, min_cells, tolerance_per_cell):
    # every cell's basis rows, summed in one expression: in the parallel build, a
    # loop adding row by row started a parallel region for each cell (3x slower)
    total = basis.sum(axis=0)
    low_total = low_basis.sum(axis=0)
    n_genes, n_cells = level.shape
    n_nodes = basis.shape[1]
    pooled_level = np.full((n_genes, MAX_POOLED), UNUSED, dtype=np.int32)
    pooled_count = np.zeros((n_genes, MAX_POOLED))
    weights = np.zeros((n_genes, MAX_POOLED, n_nodes))
    low_weights = np.zeros((n_genes, MAX_POOLED, n_nodes))
    cells = np.zeros((n_genes, n_cells), dtype=np.int32)
    n_single = np.zeros(n_genes, dtype=np.int64)
    tolerance = np.zeros(n_genes)
    for g in numba.prange(n_genes):
        # cells per count: slot 0 is the zero count, slot u + 1 level u
        sizes = np.zeros(n_levels[g] + 1)
        for i in range(n_cells):
            sizes[level[g, i] + 1] += 1.0
        slot = np.full(n_levels[g] + 1, -1)
        order = np.argsort(-sizes, kind="mergesort")
        n_pooled = 0
        pooled_cells = 0.0
        while n_pooled < min(MAX_POOLED, order.shape[0]) and sizes[order[n_pooled]] >= min_cells:
            pooled_cells += sizes[order[n_pooled]]
            n_pooled += 1
        # pooled, the E-step takes the other cells one by one and pays for every
        # node: worth it only where those are few (see POOLED_COST)
        if POOLED_COST * (n_cells - pooled_cells + n_nodes * n_pooled) >= n_cells:
            n_pooled = 0
        for p in range(n_pooled):
            c = order[p]
            slot[c] = p
            pooled_level[g, p] = c - 1
            pooled_count[g, p] = 0.0 if c == 0 else values[g, c - 1]
            tolerance[g] += tolerance_per_cell * sizes[c]
        # a count's weights are the sum of its cells' basis rows; where most cells
        # are zeros, the zeros' as all cells' minus the others'
        zero_slot = slot[0]
        by_difference = zero_slot >= 0 and sizes[0] > 0.5 * n_cells
        if by_difference:
            weights[g, zero_slot] = total
            low_weights[g, zero_slot] = low_total
        t = 0
        for i in range(n_cells):
            p = slot[level[g, i] + 1]
            if p < 0:
                cells[g, t] = i
                t += 1
            if by_difference and level[g, i] >= 0:
                _add_row(weights[g, zero_slot], basis[i], -1.0)
                _add_row(low_weights[g, zero_slot], low_basis[i], -1.0)
            if p >= 0 and not (by_difference and p == zero_slot):
                _add_row(weights[g, p], basis[i], 1.0)
                _add_row(low_weights[g, p], low_basis[i], 1.0)
        n_single[g] = t
    return pooled_level, pooled_count, weights, low_weights, cells, n_single, tolerance


def count_quadrature(
    values: np.ndarray,
    n_levels: np.ndarray,
    level: np.ndarray,
    size_factors: np.ndarray,
    degree: int = DEGREE,
) -> CountQuadrature:
    """The :class:`CountQuadrature` of genes with the count levels of
    :func:`~scmix._core.numerics.kernels.count_levels`."""
    u = np.log(size_factors)
    low, high = float(u.min()), float(u.max())
    if high - low <= 1e-12 * max(1.0, abs(low)):
        # one size factor for every cell: cells sharing a count are one pseudo-cell
        nodes = np.array([low])
        basis = low_basis = np.ones((u.size, 1))
    else:
        nodes = lobatto_nodes(low, high, degree)
        basis = lagrange_basis(u, nodes)
        low_basis = np.zeros_like(basis)
        low_basis[:, ::2] = lagrange_basis(u, nodes[::2])
    pooled = _pool(
        values,
        n_levels,
        level,
        basis,
        low_basis,
        MIN_CELLS_PER_NODE * nodes.size,
        TOLERANCE_PER_CELL,
        work=level.size,
    )
    return CountQuadrature(np.exp(nodes), nodes, *pooled)


@jit
def compact_cells(
    on_nodes,
    x,
    size_factors,
    log_size_factors,
    level,
    cells,
    n_cells,
    resp,
    node_s,
    node_log_s,
    pooled_level,
    pooled_count,
    node_weights,
    node_resp,
):
    """One gene's cells ``cells[:n_cells]`` followed by the quadrature nodes of each
    pooled count as pseudo-cells with weights ``node_weights * node_resp`` (``resp``
    for the cells): ``(x, s, log s, weight, level)``, contiguous, for the loops of
    the M-step and of the derivatives. Where the gene's last E-step did not use the
    nodes (``on_nodes`` False), its cells as they are: every cell, weight ``resp``."""
    if not on_nodes:
        return x, size_factors, log_size_factors, resp, level
    n_nodes = node_s.shape[0]
    n_pooled = 0
    while n_pooled < pooled_level.shape[0] and pooled_level[n_pooled] != UNUSED:
        n_pooled += 1
    size = n_cells + n_pooled * n_nodes
    xs = np.empty(size)
    ss = np.empty(size)
    ls = np.empty(size)
    rs = np.empty(size)
    lv = np.empty(size, dtype=level.dtype)
    for t in range(n_cells):
        i = cells[t]
        xs[t] = x[i]
        ss[t] = size_factors[i]
        ls[t] = log_size_factors[i]
        rs[t] = resp[i]
        lv[t] = level[i]
    t = n_cells
    for p in range(n_pooled):
        for n in range(n_nodes):
            xs[t] = pooled_count[p]
            ss[t] = node_s[n]
            ls[t] = node_log_s[n]
            rs[t] = node_weights[p, n] * node_resp[p, n]
            lv[t] = pooled_level[p]
            t += 1
    return xs, ss, ls, rs, lv
