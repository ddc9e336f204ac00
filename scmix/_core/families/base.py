"""The interface between the EM driver and a distribution family.

A family knows its log-pmf and its M-step; the driver (:mod:`scmix._core.em.driver`)
knows neither. Arrays of a gene chunk, all float64 and C-contiguous:

They travel together in a :class:`ChunkData`:

* ``x``: counts, shape ``(n_genes, n_cells)`` (genes first, so that the loop over
  cells of one gene reads contiguous memory);
* ``size_factors`` and ``log_size_factors``: shape ``(n_cells,)``;
* ``resp`` / ``out``: shape ``(n_genes, n_components, n_cells)``;
* parameters: a dict of arrays of shape ``(n_genes, n_components)``;
* ``active``: int64 indices of the genes still iterating. Kernels touch only
  those rows, which is how converged genes leave the computation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln

from ..numerics.jit import over_rows
from ..numerics.kernels import count_levels, e_step, log_factorial_sums, weighted_rate
from ..numerics.quadrature import CountQuadrature, count_quadrature

#: Means are kept above this floor so that log(mu) stays finite.
MU_MIN = 1e-10


class Counts(NamedTuple):
    """A chunk's counts as the kernels take them (one argument): the counts, the size
    factors and their logs, and the count levels of
    :func:`~scmix._core.numerics.kernels.count_levels`."""

    x: np.ndarray  # (n_genes, n_cells) float64
    size_factors: np.ndarray  # (n_cells,)
    log_size_factors: np.ndarray  # (n_cells,)
    values: np.ndarray  # (n_genes, n_levels_max) the distinct non-zero counts
    n_levels: np.ndarray  # (n_genes,) int64
    level: np.ndarray  # (n_genes, n_cells) int32, -1 for a zero count


class EStepOutput(NamedTuple):
    """What a family's fused E-step kernel writes, per row (one argument)."""

    resp: np.ndarray  # (n_rows, K, n_cells)
    loglik: np.ndarray  # (n_rows,)
    resp_sums: np.ndarray  # (n_rows, K)
    nodes: np.ndarray  # the family's per-row sums on the quadrature nodes
    on_nodes: np.ndarray  # (n_rows,) bool: did the row's sums use the nodes


class CountTable(NamedTuple):
    """Counts (genes, cells) with their distinct values, for terms that depend on a
    cell only through its count (lgamma, digamma, trigamma): evaluated once per value
    (``values``, genes x levels, 0 first) and read back through ``index``."""

    x: np.ndarray  # (genes, cells) float64
    values: np.ndarray  # (genes, n_levels + 1): 0, then the distinct non-zero counts
    index: np.ndarray  # (genes, cells) into values
    log_factorial: np.ndarray  # (genes, cells): log x!

    @classmethod
    def of(cls, x: np.ndarray) -> CountTable:
        x = np.ascontiguousarray(x, dtype=np.float64)
        distinct, _, level = count_levels(x)
        values = np.column_stack([np.zeros(x.shape[0]), distinct])
        index = level.astype(np.intp) + 1
        return cls(x, values, index, np.take_along_axis(gammaln(values + 1.0), index, axis=1))

    def take(self, rows) -> CountTable:
        return CountTable(
            self.x[rows], self.values[rows], self.index[rows], self.log_factorial[rows]
        )


@dataclass
class ChunkData:
    """The counts of a gene chunk with what the kernels derive from them once."""

    x: np.ndarray  # (n_genes, n_cells) float64
    size_factors: np.ndarray  # (n_cells,)

    @cached_property
    def log_size_factors(self) -> np.ndarray:
        return np.log(self.size_factors)

    @cached_property
    def levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values, n_levels, level)`` of :func:`~scmix._core.numerics.kernels.count_levels`:
        the distinct non-zero counts per gene and each cell's index into them."""
        return count_levels(self.x)

    @cached_property
    def counts(self) -> Counts:
        """The counts with their levels, as the kernels take them."""
        return Counts(self.x, self.size_factors, self.log_size_factors, *self.levels)

    @cached_property
    def quadrature(self) -> CountQuadrature:
        """Cells sharing a count as weighted nodes (:mod:`scmix._core.numerics.quadrature`)."""
        return count_quadrature(*self.levels, self.size_factors)

    @cached_property
    def log_factorial_sums(self) -> np.ndarray:
        """``sum_i log(x_ij!)`` per gene, shape (n_genes,)."""
        return log_factorial_sums(*self.levels)

    def take(self, rows: np.ndarray) -> ChunkData:
        """The chunk's rows ``rows`` (genes may repeat, one row per start); what was
        derived from the counts is taken along, not derived again."""
        if rows.size == self.x.shape[0] and (rows == np.arange(rows.size)).all():
            return self  # every row once, in order (a single start): nothing to copy
        taken = ChunkData(self.x[rows], self.size_factors)
        taken.levels = tuple(a[rows] for a in self.levels)
        taken.quadrature = self.quadrature.take(rows)
        return taken

    def pooling(self, on_nodes: np.ndarray | None) -> tuple[CountQuadrature, np.ndarray]:
        """The quadrature the kernels use and, per row, whether its sums go over the
        nodes (``on_nodes``, as the family's last E-step left it); ``None`` (no E-step
        state): nothing is pooled, every cell is summed."""
        if on_nodes is None:
            n_rows = self.x.shape[0]
            return CountQuadrature.none(n_rows), np.zeros(n_rows, dtype=bool)
        return self.quadrature, on_nodes

    @property
    def n_cells(self) -> int:
        return self.x.shape[1]


class Family(ABC):
    """A count distribution with mean ``s_i * mu_jk`` and per-component parameters."""

    #: Short name used in the public API (``family="nb"``).
    name: str
    #: Names of the per-component parameter arrays; ``"mu"`` comes first.
    param_names: tuple[str, ...]
    #: The family's code in the kernels of the fits with covariates
    #: (:mod:`scmix._core.families._glm_cells`).
    glm_kind: int

    @property
    def n_free_params(self) -> int:
        """Free parameters per component (the weights are counted by the caller)."""
        return len(self.param_names)

    def log_prob_constant(self, data: ChunkData) -> np.ndarray:
        """Per-gene term of the log-likelihood that no parameter changes.

        ``log_prob`` leaves out ``-log(x_ij!)``, which is the same for every
        component; the driver adds ``-sum_i log(x_ij!)`` to each gene's total.
        """
        return -data.log_factorial_sums

    def initial_params(self, data: ChunkData, resp) -> dict[str, np.ndarray]:
        """Parameters from (hard or soft) starting responsibilities, by moments. A
        component without any responsibility (k-means++ on a gene with few distinct
        values can leave a group empty) starts at the gene's overall rate."""
        mu = weighted_rate(data.x, data.size_factors, resp)
        empty = ~np.isfinite(mu)
        if empty.any():
            overall = data.x.sum(axis=1) / data.size_factors.sum()
            mu[empty] = np.broadcast_to(overall[:, None], mu.shape)[empty]
        np.maximum(mu, MU_MIN, out=mu)
        return {"mu": mu}

    def params_from_summary(self, mean: np.ndarray, dispersion: np.ndarray) -> dict:
        """Parameters from the reported mean and dispersion phi (as in ``.var``)."""
        return {"mu": mean}

    def clip_params(self, params, genes) -> None:
        """Bring ``params[...][genes]`` back into their allowed range (after extrapolation)."""
        params["mu"][genes] = np.maximum(params["mu"][genes], MU_MIN)

    @abstractmethod
    def log_prob(self, data: ChunkData, params, active, out) -> None:
        """Write ``log f(x_ij | s_i mu_jk, ...) + log(x_ij!)`` into ``out[active]``."""

    def new_state(self, data: ChunkData, n_components: int):
        """Per-row scratch that :meth:`e_step` fills for :meth:`m_step` (None: nothing)."""
        return None

    def e_step(
        self, data: ChunkData, params, log_weights, active, resp, loglik, resp_sums, state=None
    ) -> None:
        """E-step of the rows ``active``: the responsibilities into ``resp[active]``,
        ``sum_i log sum_k pi_k f`` (without the ``log x!`` terms) into ``loglik[active]``
        and ``sum_i r_ijk`` into ``resp_sums[active]`` (as :func:`e_step`).

        With a ``state`` (from :meth:`new_state`) a family may sum the cells sharing a
        frequent count on quadrature nodes (:mod:`scmix._core.numerics.quadrature`), leaving
        ``resp`` of those cells unset and what its M-step needs in ``state``; without
        one every cell is summed and every ``resp`` set.
        """
        self.log_prob(data, params, active, resp)
        over_rows(
            lambda rows: e_step(resp, log_weights, rows, loglik, resp_sums),
            active,
            work=active.size * resp[0].size,
        )

    @abstractmethod
    def m_step(self, data: ChunkData, resp, params, active, state=None) -> None:
        """Update ``params[...][active]`` in place so that the expected
        complete-data log-likelihood ``sum_i r_ijk log f(x_ij | ...)`` does not decrease.

        ``state``: what the E-step at the current parameters left, or None."""

    def log_bounds(self) -> dict[str, tuple[float, float]]:
        """The range of each parameter's log (as :meth:`clip_params` enforces)."""
        return {"mu": (float(np.log(MU_MIN)), np.inf)}

    @property
    def has_newton(self) -> bool:
        """Whether the family supplies :meth:`marginal_derivatives`."""
        return type(self).marginal_derivatives is not Family.marginal_derivatives

    def marginal_derivatives(self, data: ChunkData, params, log_weights, active, state, grad, hess):
        """Gradient ``grad[active]`` (rows, P) and Hessian ``hess[active]`` (rows, P, P)
        of the marginal log-likelihood in the weight logits and the log-parameters,
        laid out as in :func:`~scmix._core.numerics.kernels.add_cell_scores`; ``state`` as the
        last :meth:`e_step` left it (None: every cell). Used by the Newton finish of
        :mod:`scmix._core.em.newton`; a family without it is fitted by EM alone."""
        raise NotImplementedError

    @abstractmethod
    def cdf(self, x: np.ndarray, mean: np.ndarray, params: dict) -> np.ndarray:
        """P(X <= x) for counts ``x`` with mean ``mean`` (both (genes, cells)) and the
        component's other parameters in ``params`` (arrays broadcasting against them)."""

    @abstractmethod
    def sample(self, mean: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
        """Counts drawn with mean ``mean`` (genes, cells), other parameters as in ``cdf``."""

    @abstractmethod
    def dispersion(self, params) -> np.ndarray:
        """phi = 1 / theta, shape ``(n_genes, n_components)``; 0 means Poisson."""
