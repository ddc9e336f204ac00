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

from typing import NamedTuple

import numpy as np

from .jit import jit
from .kernels import most_levels

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


class CountQuadrature(NamedTuple):
    """Nodes shared by a chunk's genes; per gene the pooled counts, their weights on
    the nodes, and the cells summed one by one. A namedtuple: the kernels take it
    whole."""

    size_factors: np.ndarray  # (n_nodes,) e^{u_n}
    log_size_factors: np.ndarray  # (n_nodes,)
    pooled_level: np.ndarray  # (n_genes, MAX_POOLED) int32: -1 zero, u level u, UNUSED
    pooled_count: np.ndarray  # (n_genes, MAX_POOLED) the count of each pooled slot
    weights: np.ndarray  # (n_genes, MAX_POOLED, n_nodes)
    low_weights: np.ndarray  # (n_genes, MAX_POOLED, n_nodes), zero on the odd nodes
    cells: np.ndarray  # (n_genes, n_cells) int32: the cells summed one by one, first
    n_cells: np.ndarray  # (n_genes,) int64, how many
    tolerance: np.ndarray  # (n_genes,) largest error estimate accepted

    @classmethod
    def empty(cls, n_genes: int, n_cells: int, n_nodes: int, n_pooled: int) -> CountQuadrature:
        """Nothing pooled yet (every slot ``UNUSED``), nodes to be set."""
        return cls(
            np.ones(n_nodes),
            np.zeros(n_nodes),
            np.full((n_genes, n_pooled), UNUSED, dtype=np.int32),
            np.zeros((n_genes, n_pooled)),
            np.zeros((n_genes, n_pooled, n_nodes)),
            np.zeros((n_genes, n_pooled, n_nodes)),
            np.zeros((n_genes, n_cells), dtype=np.int32),
            np.zeros(n_genes, dtype=np.int64),
            np.zeros(n_genes),
        )

    @classmethod
    def none(cls, n_genes: int) -> CountQuadrature:
        """No count pooled: every cell of every gene is summed one by one."""
        return cls.empty(n_genes, 1, 1, 1)

    def take(self, rows: np.ndarray) -> CountQuadrature:
        return CountQuadrature(
            self.size_factors,
            self.log_size_factors,
            *(getattr(self, name)[rows] for name in _PER_GENE),
        )


_PER_GENE = CountQuadrature._fields[2:]


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


@jit
def _pool(values, n_levels, level, basis, low_basis, totals, min_cells, tolerance_per_cell, quad):
    """Fill ``quad`` (:meth:`CountQuadrature.empty`) for every gene: the largest
    (at most ``MAX_POOLED``) counts shared by ``min_cells`` cells or more, where
    pooling them pays (``POOLED_COST``), their weights (sums of their cells' basis rows;
    ``totals`` holds the sums over every cell), the other cells and the tolerance."""
    n_genes, n_cells = level.shape
    n_slots = most_levels(n_levels) + 1
    sizes = np.zeros(n_slots)  # cells per count: slot 0 is the zero count, slot u + 1 level u
    slot = np.empty(n_slots, dtype=np.int64)
    chosen = np.empty(MAX_POOLED, dtype=np.int64)
    for g in range(n_genes):
        n_here = n_levels[g] + 1
        sizes[:n_here] = 0.0
        slot[:n_here] = -1
        for i in range(n_cells):
            sizes[level[g, i] + 1] += 1.0
        # the largest counts first, the smaller slot first on ties (a stable sort's order)
        n_pooled = 0
        pooled_cells = 0.0
        while n_pooled < min(MAX_POOLED, n_here):
            best = -1
            for c in range(n_here):
                if slot[c] < 0 and (best < 0 or sizes[c] > sizes[best]):
                    best = c
            if sizes[best] < min_cells:
                break
            slot[best] = n_pooled
            chosen[n_pooled] = best
            pooled_cells += sizes[best]
            n_pooled += 1
        # pooled, the E-step takes the other cells one by one and pays for every
        # node: worth it only where those are few (see POOLED_COST)
        if POOLED_COST * (n_cells - pooled_cells + basis.shape[1] * n_pooled) >= n_cells:
            for p in range(n_pooled):
                slot[chosen[p]] = -1
            n_pooled = 0
        for p in range(n_pooled):
            c = chosen[p]
            quad.pooled_level[g, p] = c - 1
            quad.pooled_count[g, p] = 0.0 if c == 0 else values[g, c - 1]
            quad.tolerance[g] += tolerance_per_cell * sizes[c]
        # a count's weights are the sum of its cells' basis rows; where most cells
        # are zeros, the zeros' as all cells' minus the others'
        zero_slot = slot[0]
        by_difference = zero_slot >= 0 and sizes[0] > 0.5 * n_cells
        if by_difference:
            for n in range(totals.shape[1]):
                quad.weights[g, zero_slot, n] = totals[0, n]
                quad.low_weights[g, zero_slot, n] = totals[1, n]
        t = 0
        for i in range(n_cells):
            p = slot[level[g, i] + 1]
            if p < 0:
                quad.cells[g, t] = i
                t += 1
            if by_difference and level[g, i] >= 0:
                _add_row(quad.weights[g, zero_slot], basis[i], -1.0)
                _add_row(quad.low_weights[g, zero_slot], low_basis[i], -1.0)
            if p >= 0 and not (by_difference and p == zero_slot):
                _add_row(quad.weights[g, p], basis[i], 1.0)
                _add_row(quad.low_weights[g, p], low_basis[i], 1.0)
        quad.n_cells[g] = t


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
    n_genes, n_cells = level.shape
    quad = CountQuadrature.empty(n_genes, n_cells, nodes.size, MAX_POOLED)
    quad.size_factors[:] = np.exp(nodes)
    quad.log_size_factors[:] = nodes
    totals = np.stack([basis.sum(axis=0), low_basis.sum(axis=0)])
    _pool(
        values,
        n_levels,
        level,
        basis,
        low_basis,
        totals,
        MIN_CELLS_PER_NODE * nodes.size,
        TOLERANCE_PER_CELL,
        quad,
    )
    return quad


@jit
def unit_weights(quad, n_cells):
    """Weight 1 for each of ``n_cells`` cells and for each node of every pooled slot
    (``(n_cells,)`` and ``(MAX_POOLED, n_nodes)``): each counted once, as the sums of the
    derivatives take them (:func:`compact_cells`). Filled by loops: ``np.ones`` compiles
    machinery of its own."""
    ones = np.empty(n_cells)
    for i in range(n_cells):
        ones[i] = 1.0
    n_pooled, n_nodes = quad.weights.shape[1:]
    node_ones = np.empty((n_pooled, n_nodes))
    for p in range(n_pooled):
        for n in range(n_nodes):
            node_ones[p, n] = 1.0
    return ones, node_ones


@jit
def compact_cells(on_nodes, counts, quad, g, resp, node_resp):
    """Gene ``g``'s cells ``quad.cells[g, :n]`` followed by the quadrature nodes of
    each pooled count as pseudo-cells with weights ``quad.weights[g] * node_resp``
    (``resp`` for the cells): ``(x, s, log s, weight, level)``, contiguous, for the
    loops of the M-step and of the derivatives. Where the gene's last E-step did not
    use the nodes (``on_nodes`` False), its cells as they are: every cell, weight
    ``resp``. ``counts``: a :class:`~scmix._core.families.base.Counts`."""
    x = counts.x[g]
    level = counts.level[g]
    if not on_nodes:
        return x, counts.size_factors, counts.log_size_factors, resp, level
    pooled_level = quad.pooled_level[g]
    n_nodes = quad.size_factors.shape[0]
    n_pooled = 0
    while n_pooled < pooled_level.shape[0] and pooled_level[n_pooled] != UNUSED:
        n_pooled += 1
    n_cells = quad.n_cells[g]
    size = n_cells + n_pooled * n_nodes
    xs = np.empty(size)
    ss = np.empty(size)
    ls = np.empty(size)
    rs = np.empty(size)
    lv = np.empty(size, dtype=level.dtype)
    for t in range(n_cells):
        i = quad.cells[g, t]
        xs[t] = x[i]
        ss[t] = counts.size_factors[i]
        ls[t] = counts.log_size_factors[i]
        rs[t] = resp[i]
        lv[t] = level[i]
    t = n_cells
    for p in range(n_pooled):
        for n in range(n_nodes):
            xs[t] = quad.pooled_count[g, p]
            ss[t] = quad.size_factors[n]
            ls[t] = quad.log_size_factors[n]
            rs[t] = quad.weights[g, p, n] * node_resp[p, n]
            lv[t] = pooled_level[p]
            t += 1
    return xs, ss, ls, rs, lv
