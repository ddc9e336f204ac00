r"""The zero counts of a gene as a few weighted pseudo-cells.

A cell with :math:`x_{ij} = 0` enters every E- and M-step sum through a function of
its size factor alone, :math:`\sum_{i: x_{ij}=0} h(u_i)` with :math:`u_i = \log s_i`
(e.g. :math:`h = \log\sum_k \pi_k (1 + e^u\mu_k/\theta_k)^{-\theta_k}`). On sparse
genes (90% zeros) these sums are most of the work of an iteration. ``h`` is
analytic in :math:`u` (in the NB terms the nearest singularities lie at
:math:`|\mathrm{Im}\,u| = \pi`), so it is replaced by its polynomial interpolant at
the Chebyshev-Lobatto points :math:`u_0 \ldots u_N` of :math:`[\min u, \max u]`:

.. math::

    \sum_{i: x_{ij}=0} h(u_i) \approx \sum_n w_{jn} h(u_n),\qquad
    w_{jn} = \sum_{i: x_{ij}=0} \ell_n(u_i),

with :math:`\ell_n` the Lagrange basis (barycentric form). The weights are computed
once per gene; afterwards an iteration costs ``N + 1`` evaluations of ``h`` instead
of one per zero cell. The even nodes are the Chebyshev-Lobatto points of degree
``N/2``, so a second rule with weights ``w_low`` on them comes for free and
``|sum w h - sum w_low h|`` estimates the error (as in Clenshaw-Curtis
quadrature); a family falls back to the exact sum over cells wherever that
estimate exceeds its tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

#: Degree of the interpolant (N + 1 nodes); the error check uses degree N / 2.
DEGREE = 32
#: Genes with fewer zero cells than this many times the nodes are summed exactly.
MIN_ZEROS_PER_NODE = 4
#: Largest estimated error allowed, per zero cell, in the log-likelihood and in each
#: component's summed responsibility.
TOLERANCE_PER_ZERO = 1e-8


@dataclass
class ZeroQuadrature:
    """Nodes shared by a chunk's genes and each gene's weights on them."""

    size_factors: np.ndarray  # (n_nodes,) e^{u_n}
    log_size_factors: np.ndarray  # (n_nodes,)
    weights: np.ndarray  # (n_genes, n_nodes)
    low_weights: np.ndarray  # (n_genes, n_nodes), zero on the odd nodes
    use: np.ndarray  # (n_genes,) bool: genes whose zeros go through the nodes
    tolerance: np.ndarray  # (n_genes,) largest error estimate accepted

    def take(self, rows: np.ndarray) -> ZeroQuadrature:
        return ZeroQuadrature(
            self.size_factors,
            self.log_size_factors,
            self.weights[rows],
            self.low_weights[rows],
            self.use[rows],
            self.tolerance[rows],
        )


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


@numba.njit(cache=True, nogil=True)
def _zero_weights(total, basis, cells, n_nonzero):
    """``total - sum_{i non-zero} basis[i]`` per gene, cell by cell in a fixed order (a
    matrix product's summation order depends on the shapes, i.e. on the chunk)."""
    out = np.empty((n_nonzero.shape[0], total.shape[0]))
    for g in range(n_nonzero.shape[0]):
        out[g] = total
        for t in range(n_nonzero[g]):
            out[g] -= basis[cells[g, t]]
    return out


def zero_quadrature(
    cells: np.ndarray, n_nonzero: np.ndarray, size_factors: np.ndarray, degree: int = DEGREE
) -> ZeroQuadrature:
    """The :class:`ZeroQuadrature` of genes whose non-zero cells are ``cells[g, :n_nonzero[g]]``
    (as :func:`~scmix._core._kernels.nonzero_cells` gives them)."""
    u = np.log(size_factors)
    n_zero = (u.size - n_nonzero).astype(np.float64)
    low, high = float(u.min()), float(u.max())
    if high - low <= 1e-12 * max(1.0, abs(low)):
        # one size factor for every cell: the zeros are one pseudo-cell, exactly
        nodes = np.array([low])
        weights = n_zero[:, None].copy()
        low_weights = weights
    else:
        nodes = lobatto_nodes(low, high, degree)
        basis = lagrange_basis(u, nodes)
        weights = _zero_weights(basis.sum(axis=0), basis, cells, n_nonzero)
        low_weights = np.zeros_like(weights)
        basis = lagrange_basis(u, nodes[::2])
        low_weights[:, ::2] = _zero_weights(basis.sum(axis=0), basis, cells, n_nonzero)
    return ZeroQuadrature(
        np.exp(nodes),
        nodes,
        weights,
        low_weights,
        n_zero >= MIN_ZEROS_PER_NODE * nodes.size,
        TOLERANCE_PER_ZERO * n_zero,
    )
