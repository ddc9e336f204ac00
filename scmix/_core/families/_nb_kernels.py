"""numba kernels of the negative binomial family (:mod:`scmix._core.families.nb`):
the log-pmf and the fused E-step (the M-step and the derivatives are in
:mod:`._nb_mstep`).

Every kernel takes the chunk's counts as one :class:`~scmix._core.families.base.Counts`
and its quadrature as one :class:`~scmix._core.numerics.quadrature.CountQuadrature`."""

from __future__ import annotations

import math

import numpy as np

from ..numerics.jit import inline_jit, jit
from ..numerics.kernels import most_levels, normalise, normalise_cells, normalise_two, row_dot
from ..numerics.quadrature import UNUSED, estimated_error
from ..numerics.special import lgamma_ratio, log1p, simd_log1p

THETA_MIN = 1e-6
THETA_MAX = 1e8
#: Largest theta of a start (see NegativeBinomial.initial_params).
THETA_START = 100.0


@jit
def _lgamma_table(values, n_levels, th, out):
    """``out[u] = lgamma(v_u + theta) - lgamma(theta)`` for the count levels ``v_u``.

    Level by level, each step adds ``lgamma(v_u + theta) - lgamma(v_{u-1} + theta)``,
    usually a single log."""
    below = 0.0
    running = 0.0
    for u in range(n_levels):
        running += lgamma_ratio(values[u] - below, th + below)
        below = values[u]
        out[u] = running


@jit
def _nb_moments(x, size_factors, resp, mu):
    """Per gene and component, ``sum_i r_i [(x_i - s_i mu)^2 - s_i mu]`` and
    ``sum_i r_i (s_i mu)^2``: the moment estimate of 1/theta is their ratio. One
    pass over the cells (numpy's version made three temporaries of
    genes x components x cells)."""
    n_genes, n_comp, n_cells = resp.shape
    excess = np.empty((n_genes, n_comp))
    scale = np.empty((n_genes, n_comp))
    for pair in range(n_genes * n_comp):
        g = pair // n_comp
        k = pair % n_comp
        m = mu[g, k]
        e = 0.0
        q = 0.0
        for i in range(n_cells):
            fitted = size_factors[i] * m
            d = x[g, i] - fitted
            r = resp[g, k, i]
            e += r * (d * d - fitted)
            q += r * fitted * fitted
        excess[g, k] = e
        scale[g, k] = q
    return excess, scale


@inline_jit
def _log_pmf(xi, lgamma_term, s, log_s, mu, th, log_mu_minus_log_th):
    """log f(x | s mu, theta) + log x!; ``lgamma_term`` is 0 for x = 0."""
    l1 = log1p(s * mu / th)
    if xi == 0.0:
        return -th * l1
    return lgamma_term - th * l1 + xi * (log_s + log_mu_minus_log_th - l1)


@jit
def _nb_log_prob(counts, mu, theta, active, out):
    """``out[g, k, i] = log f(x_gi | s_i mu_gk, theta_gk) + log x_gi!`` for the active genes."""
    n_comp = mu.shape[1]
    table = np.zeros(most_levels(counts.n_levels))
    l1 = np.empty(counts.x.shape[1])  # work space
    for a in range(active.shape[0]):
        g = active[a]
        for k in range(n_comp):
            th = theta[g, k]
            _lgamma_table(counts.values[g], counts.n_levels[g], th, table)
            log_ratio = math.log(mu[g, k]) - math.log(th)
            _log_pmf_cells(counts, g, table, mu[g, k], th, log_ratio, out[g, k], l1)


@jit
def _log_pmf_cells(counts, g, table, mu, th, log_ratio, out, l1):
    """Gene ``g`` of ``counts``: :func:`_log_pmf_points` of every cell."""
    _log_pmf_points(
        counts.x[g],
        table,
        counts.level[g],
        counts.size_factors,
        counts.log_size_factors,
        (mu, th, log_ratio),
        out,
        l1,
    )


@jit
def _log_pmf_points(x, table, level, size_factors, log_size_factors, component, out, l1):
    """``out[i] = log f(x_i | s_i mu, theta) + log x_i!`` and ``l1[i] = log(1 + s_i mu /
    theta)`` (which the derivatives use again) for every (pseudo-)cell, ``component =
    (mu, theta, log mu - log theta)``: :func:`_log_pmf`
    without branches (:func:`~scmix._core.numerics.special.simd_log1p`), so that LLVM
    vectorises the loop. The table is read in a loop of its own: LLVM cannot rule out
    that ``out`` overlaps what an indexed read reads, and would keep a loop with both
    scalar (11.6 against 2.7 ns a cell)."""
    mu, th, log_ratio = component
    for i in range(x.shape[0]):
        out[i] = table[max(level[i], 0)]
    for i in range(x.shape[0]):
        l1[i] = simd_log1p(size_factors[i] * mu / th)
        zero = -th * l1[i]
        value = out[i] + zero + x[i] * (log_size_factors[i] + log_ratio - l1[i])
        out[i] = zero if x[i] == 0.0 else value


@inline_jit
def _cell_joint(joint, xi, lev, s, log_s, gene, tables):
    """``joint[k] = log pi_k + log f_k(x) + log x!`` for one cell; returns the largest.
    ``gene = (mu, theta, log mu - log theta, log pi)``, each (K,)."""
    mu, theta, log_ratio, log_weights = gene
    top = -np.inf
    for k in range(joint.shape[0]):
        lgamma_term = tables[k, lev] if lev >= 0 else 0.0
        joint[k] = log_weights[k] + _log_pmf(
            xi, lgamma_term, s, log_s, mu[k], theta[k], log_ratio[k]
        )
        top = max(top, joint[k])
    return top


@jit
def _node_log1p(quad, mu, theta, out):
    """``out[k, n] = log(1 + s_n mu_k / theta_k)`` at every quadrature node, as
    :func:`_log_pmf_points` computes it: the same for every pooled count of a gene."""
    for k in range(out.shape[0]):
        m = mu[k]
        th = theta[k]
        for n in range(out.shape[1]):
            out[k, n] = simd_log1p(quad.size_factors[n] * m / th)


@jit
def _log_pmf_given_l1(x, table, level, log_size_factors, th, log_ratio, l1, out):
    """:func:`_log_pmf_points` (the same arithmetic) with ``l1`` given."""
    for i in range(x.shape[0]):
        out[i] = table[max(level[i], 0)]
    for i in range(x.shape[0]):
        zero = -th * l1[i]
        value = out[i] + zero + x[i] * (log_size_factors[i] + log_ratio - l1[i])
        out[i] = zero if x[i] == 0.0 else value


@jit
def _two_on_nodes(quad, g, p, gene, tables, node_resp, work, sums, totals):
    """Two components, pooled count ``p`` of gene ``g``: the responsibilities at the
    nodes into ``node_resp[k, p]`` by vectorised loops (:func:`_log_pmf_points` with
    every "cell" at the count), and the node sums of the degree-N and degree-N/2
    rules added to ``totals[0]`` / ``sums[0]`` and ``totals[1]`` / ``sums[1]``.
    ``work = (node_x, node_level, node_loglik, node_l1, shared)``, one entry per node
    each (``node_l1``: per component); with ``shared``, ``node_l1`` holds the
    :func:`_node_log1p` of the gene, which its pooled counts share (computed once
    rather than once per count), otherwise it is work space."""
    mu, theta, log_ratio, log_weights = gene
    node_x, node_level, node_loglik, node_l1, shared = work
    node_x[:] = quad.pooled_count[g, p]
    node_level[:] = quad.pooled_level[g, p]
    for k in range(2):
        if shared:
            _log_pmf_given_l1(
                node_x,
                tables[k],
                node_level,
                quad.log_size_factors,
                theta[k],
                log_ratio[k],
                node_l1[k],
                node_resp[k, p],
            )
            continue
        _log_pmf_points(
            node_x,
            tables[k],
            node_level,
            quad.size_factors,
            quad.log_size_factors,
            (mu[k], theta[k], log_ratio[k]),
            node_resp[k, p],
            node_l1[k],  # work space here
        )
    first = node_resp[0, p]
    second = node_resp[1, p]
    normalise_two(first, second, log_weights, node_loglik)
    for rule, weights in enumerate((quad.weights[g, p], quad.low_weights[g, p])):
        sums[rule, 0] += row_dot(weights, first)
        sums[rule, 1] += row_dot(weights, second)
        totals[rule] += row_dot(weights, node_loglik)


@jit
def _nb_e_step(counts, quad, mu, theta, log_weights, active, out, shared_l1):
    """The E-step fused with the log-pmf: one pass over the cells of a gene.

    ``out``: an :class:`~scmix._core.families.base.EStepOutput` (``nodes`` holds the
    responsibilities on the quadrature nodes, ``node_resp[g, k, p, n]``). Where a gene
    has pooled counts, the cells of each are summed on the quadrature nodes
    (:mod:`scmix._core.numerics.quadrature`) and only the other cells one by one,
    unless the error estimate of the node sums exceeds ``quad.tolerance[g]``: then
    every cell is summed. On return ``out.on_nodes[g]`` tells the M-step which way the
    gene went. ``shared_l1``: two components compute ``log(1 + s mu / theta)`` at the
    nodes once for all pooled counts (False only to time the old way, the same values).
    """
    n_cells = counts.x.shape[1]
    n_comp = mu.shape[1]
    n_nodes = quad.size_factors.shape[0]
    tables = np.zeros((n_comp, most_levels(counts.n_levels)))
    log_ratio = np.empty(n_comp)
    joint = np.empty(n_comp)
    sums = np.zeros((2, n_comp))  # by the degree-N and the degree-N/2 rule
    totals = np.zeros(2)
    node_l1 = np.empty((2, n_nodes))
    node_x, node_level = np.empty(n_nodes), np.empty(n_nodes, dtype=np.int32)
    work = (node_x, node_level, np.empty(n_nodes), node_l1, shared_l1)
    l1 = np.empty(n_cells)  # work space
    for a in range(active.shape[0]):
        g = active[a]
        for k in range(n_comp):
            _lgamma_table(counts.values[g], counts.n_levels[g], theta[g, k], tables[k])
            log_ratio[k] = math.log(mu[g, k]) - math.log(theta[g, k])
        gene = (mu[g], theta[g], log_ratio, log_weights[g])
        sums[:] = 0.0
        totals[:] = 0.0
        quadrature = quad.pooled_level[g, 0] != UNUSED
        if quadrature:
            node_resp = out.nodes[g]
            if n_comp == 2 and shared_l1:
                _node_log1p(quad, mu[g], theta[g], node_l1)
            for p in range(quad.pooled_level.shape[1]):
                if quad.pooled_level[g, p] == UNUSED:
                    break
                if n_comp == 2:
                    _two_on_nodes(quad, g, p, gene, tables, node_resp, work, sums, totals)
                    continue
                for n in range(n_nodes):
                    top = _cell_joint(
                        joint,
                        quad.pooled_count[g, p],
                        quad.pooled_level[g, p],
                        quad.size_factors[n],
                        quad.log_size_factors[n],
                        gene,
                        tables,
                    )
                    value = normalise(joint, top)
                    w = quad.weights[g, p, n]
                    w_low = quad.low_weights[g, p, n]
                    totals[0] += w * value
                    totals[1] += w_low * value
                    for k in range(n_comp):
                        node_resp[k, p, n] = joint[k]
                        sums[0, k] += w * joint[k]
                        sums[1, k] += w_low * joint[k]
            if estimated_error(totals[0], totals[1], sums[0], sums[1]) > quad.tolerance[g]:
                quadrature = False
                totals[0] = 0.0
                sums[0] = 0.0
        out.on_nodes[g] = quadrature
        n_cells_summed = quad.n_cells[g] if quadrature else n_cells
        resp = out.resp[g]
        # component by component first (the cells' loop stays simple), then per cell
        if not quadrature:
            for k in range(n_comp):
                _log_pmf_cells(
                    counts, g, tables[k], mu[g, k], theta[g, k], log_ratio[k], resp[k], l1
                )
        else:
            for k in range(n_comp):
                for t in range(n_cells_summed):
                    i = quad.cells[g, t]
                    lev = counts.level[g, i]
                    resp[k, i] = _log_pmf(
                        counts.x[g, i],
                        tables[k, lev] if lev >= 0 else 0.0,
                        counts.size_factors[i],
                        counts.log_size_factors[i],
                        mu[g, k],
                        theta[g, k],
                        log_ratio[k],
                    )
        total = totals[0] + normalise_cells(
            resp, log_weights[g], quad.cells[g], n_cells_summed, quadrature, sums[0]
        )
        out.loglik[g] = total
        for k in range(n_comp):
            # node weights may be negative: an emptied component's sum can come out
            # at -1e-17, and the weights must stay >= 0
            out.resp_sums[g, k] = max(sums[0, k], 0.0)
