"""numba kernels of the negative binomial family (:mod:`scmix._core.families.nb`):
the log-pmf, the fused E-step and the Newton M-step on (log mu, log theta)."""

from __future__ import annotations

import math

import numba
import numpy as np

from ..numerics.jit import gene_kernel, inline_jit, jit
from ..numerics.kernels import (
    add_cell_scores,
    add_weight_curvature,
    normalise,
    normalise_cells,
    normalise_two,
    row_dot,
    row_sum,
)
from ..numerics.quadrature import UNUSED, compact_cells, estimated_error
from ..numerics.special import level_ratios, lgamma_ratio, log1p, simd_log1p
from .base import MU_MIN

THETA_MIN = 1e-6
THETA_MAX = 1e8
#: Largest theta of a start (see NegativeBinomial.initial_params).
THETA_START = 100.0
_LOG_MU_MIN = math.log(MU_MIN)
_LOG_THETA_MIN = math.log(THETA_MIN)
_LOG_THETA_MAX = math.log(THETA_MAX)
#: Largest Newton step in log mu or log theta (a factor of e^3 per step).
_MAX_STEP = 3.0
_MAX_HALVINGS = 30


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


@gene_kernel
def _nb_moments(x, size_factors, resp, mu):
    """Per gene and component, ``sum_i r_i [(x_i - s_i mu)^2 - s_i mu]`` and
    ``sum_i r_i (s_i mu)^2``: the moment estimate of 1/theta is their ratio. One
    pass over the cells (numpy's version made three temporaries of
    genes x components x cells)."""
    n_genes, n_comp, n_cells = resp.shape
    excess = np.empty((n_genes, n_comp))
    scale = np.empty((n_genes, n_comp))
    for pair in numba.prange(n_genes * n_comp):
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


@gene_kernel
def _nb_log_prob(
    x, size_factors, log_size_factors, values, n_levels, level, mu, theta, active, out
):
    n_comp = mu.shape[1]
    for a in numba.prange(active.shape[0]):
        g = active[a]
        table = np.zeros(max(n_levels[g], 1))
        l1 = np.empty(x.shape[1])  # work space
        for k in range(n_comp):
            th = theta[g, k]
            _lgamma_table(values[g], n_levels[g], th, table)
            log_ratio = math.log(mu[g, k]) - math.log(th)
            _log_pmf_cells(
                x[g],
                table,
                level[g],
                size_factors,
                log_size_factors,
                mu[g, k],
                th,
                log_ratio,
                out[g, k],
                l1,
            )


@jit
def _log_pmf_cells(x, table, level, size_factors, log_size_factors, mu, th, log_ratio, out, l1):
    """``out[i] = log f(x_i | s_i mu, theta) + log x_i!`` and ``l1[i] = log(1 + s_i mu /
    theta)`` (which the derivatives use again) for every cell: :func:`_log_pmf`
    without branches (:func:`~scmix._core.numerics.special.simd_log1p`), so that LLVM
    vectorises the loop. The table is read in a loop of its own: LLVM cannot rule out
    that ``out`` overlaps what an indexed read reads, and would keep a loop with both
    scalar (11.6 against 2.7 ns a cell)."""
    for i in range(x.shape[0]):
        out[i] = table[max(level[i], 0)]
    for i in range(x.shape[0]):
        l1[i] = simd_log1p(size_factors[i] * mu / th)
        zero = -th * l1[i]
        value = out[i] + zero + x[i] * (log_size_factors[i] + log_ratio - l1[i])
        out[i] = zero if x[i] == 0.0 else value


@inline_jit
def _cell_joint(joint, xi, lev, s, log_s, mu, theta, log_mu_minus_log_th, log_weights, tables):
    """``joint[k] = log pi_k + log f_k(x) + log x!`` for one cell; returns the largest."""
    top = -np.inf
    for k in range(joint.shape[0]):
        lgamma_term = tables[k, lev] if lev >= 0 else 0.0
        joint[k] = log_weights[k] + _log_pmf(
            xi, lgamma_term, s, log_s, mu[k], theta[k], log_mu_minus_log_th[k]
        )
        top = max(top, joint[k])
    return top


@jit
def _two_on_nodes(
    count,
    lev,
    node_s,
    node_log_s,
    mu,
    theta,
    log_mu_minus_log_th,
    log_weights,
    tables,
    weights,
    low_weights,
    first,
    second,
    node_x,
    node_level,
    node_loglik,
    total,
    low_total,
    sums,
    low_sums,
):
    """Two components, one pooled count: the responsibilities at the nodes into
    ``first`` and ``second`` by vectorised loops (:func:`_log_pmf_cells` with
    every "cell" at the count), and the node sums of the degree-N and degree-N/2
    rules added to ``total`` / ``sums`` and ``low_total`` / ``low_sums``; returns
    ``(total, low_total)``. ``node_x``, ``node_level`` and ``node_loglik`` are work
    space of one entry per node."""
    node_x[:] = count
    node_level[:] = lev
    for k, out in ((0, first), (1, second)):
        _log_pmf_cells(
            node_x,
            tables[k],
            node_level,
            node_s,
            node_log_s,
            mu[k],
            theta[k],
            log_mu_minus_log_th[k],
            out,
            node_loglik,  # work space here
        )
    normalise_two(first, second, log_weights, node_loglik)
    sums[0] += row_dot(weights, first)
    sums[1] += row_dot(weights, second)
    low_sums[0] += row_dot(low_weights, first)
    low_sums[1] += row_dot(low_weights, second)
    return total + row_dot(weights, node_loglik), low_total + row_dot(low_weights, node_loglik)


@gene_kernel
def _nb_e_step(
    x,
    size_factors,
    log_size_factors,
    values,
    n_levels,
    level,
    node_size_factors,
    node_log_size_factors,
    pooled_level,
    pooled_count,
    node_weights,
    node_low_weights,
    single_cells,
    n_single,
    tolerance,
    mu,
    theta,
    log_weights,
    active,
    resp,
    loglik,
    resp_sums,
    node_resp,
    on_nodes,
):
    """The E-step fused with the log-pmf: one pass over the cells of a gene.

    Where a gene has pooled counts, the cells of each are summed on the quadrature
    nodes (:mod:`scmix._core.numerics.quadrature`; their responsibilities go to
    ``node_resp[g, k, p, n]``) and only the other cells one by one, unless the error
    estimate of the node sums exceeds ``tolerance[g]``: then every cell is summed.
    On return ``on_nodes[g]`` tells the M-step which way the gene went.
    """
    n_cells = x.shape[1]
    n_comp = mu.shape[1]
    n_nodes = node_size_factors.shape[0]
    for a in numba.prange(active.shape[0]):
        g = active[a]
        tables = np.zeros((n_comp, max(n_levels[g], 1)))
        log_mu_minus_log_th = np.empty(n_comp)
        for k in range(n_comp):
            _lgamma_table(values[g], n_levels[g], theta[g, k], tables[k])
            log_mu_minus_log_th[k] = math.log(mu[g, k]) - math.log(theta[g, k])
        joint = np.empty(n_comp)
        sums = np.zeros(n_comp)
        total = 0.0
        quadrature = pooled_level[g, 0] != UNUSED
        if quadrature:
            low_sums = np.zeros(n_comp)
            low_total = 0.0
            # work space for the nodes of each pooled count
            node_x = np.empty(n_nodes)
            node_level = np.empty(n_nodes, dtype=pooled_level.dtype)
            node_loglik = np.empty(n_nodes)
            for p in range(pooled_level.shape[1]):
                if pooled_level[g, p] == UNUSED:
                    break
                if n_comp == 2:
                    total, low_total = _two_on_nodes(
                        pooled_count[g, p],
                        pooled_level[g, p],
                        node_size_factors,
                        node_log_size_factors,
                        mu[g],
                        theta[g],
                        log_mu_minus_log_th,
                        log_weights[g],
                        tables,
                        node_weights[g, p],
                        node_low_weights[g, p],
                        node_resp[g, 0, p],
                        node_resp[g, 1, p],
                        node_x,
                        node_level,
                        node_loglik,
                        total,
                        low_total,
                        sums,
                        low_sums,
                    )
                    continue
                for n in range(n_nodes):
                    top = _cell_joint(
                        joint,
                        pooled_count[g, p],
                        pooled_level[g, p],
                        node_size_factors[n],
                        node_log_size_factors[n],
                        mu[g],
                        theta[g],
                        log_mu_minus_log_th,
                        log_weights[g],
                        tables,
                    )
                    value = normalise(joint, top)
                    w = node_weights[g, p, n]
                    w_low = node_low_weights[g, p, n]
                    total += w * value
                    low_total += w_low * value
                    for k in range(n_comp):
                        node_resp[g, k, p, n] = joint[k]
                        sums[k] += w * joint[k]
                        low_sums[k] += w_low * joint[k]
            if estimated_error(total, low_total, sums, low_sums) > tolerance[g]:
                quadrature = False
                total = 0.0
                sums[:] = 0.0
        on_nodes[g] = quadrature
        n_cells_summed = n_single[g] if quadrature else n_cells
        # component by component first (the cells' loop stays simple), then per cell
        if not quadrature:
            l1 = np.empty(n_cells)  # work space
            for k in range(n_comp):
                _log_pmf_cells(
                    x[g],
                    tables[k],
                    level[g],
                    size_factors,
                    log_size_factors,
                    mu[g, k],
                    theta[g, k],
                    log_mu_minus_log_th[k],
                    resp[g, k],
                    l1,
                )
        else:
            for k in range(n_comp):
                for t in range(n_cells_summed):
                    i = single_cells[g, t]
                    lev = level[g, i]
                    resp[g, k, i] = _log_pmf(
                        x[g, i],
                        tables[k, lev] if lev >= 0 else 0.0,
                        size_factors[i],
                        log_size_factors[i],
                        mu[g, k],
                        theta[g, k],
                        log_mu_minus_log_th[k],
                    )
        total += normalise_cells(
            resp[g], log_weights[g], single_cells[g], n_cells_summed, quadrature, sums
        )
        loglik[g] = total
        for k in range(n_comp):
            # node weights may be negative: an emptied component's sum can come out
            # at -1e-17, and the weights must stay >= 0
            resp_sums[g, k] = max(sums[k], 0.0)


@jit
def _objective(
    x, size_factors, log_size_factors, r, values, level_weight, log_mu, log_theta, terms
):
    """Q = sum_i r_i log f(x_i) (without log x!), its gradient and Hessian in (log mu, log theta).

    ``level_weight[u]`` is the summed weight of the cells whose count is
    ``values[u]``: the lgamma / digamma / trigamma terms are evaluated once per level.
    ``terms`` (6, n_cells) is work space: the cells' terms are written there by a loop
    LLVM vectorises (:func:`~scmix._core.numerics.special.simd_log1p`), then summed.
    """
    mu = math.exp(log_mu)
    th = math.exp(log_theta)
    inv_th = 1.0 / th
    log_ratio = log_mu - log_theta
    n_cells = x.shape[0]
    # one division and one log1p per cell: t = theta + m, p = theta / t
    for i in range(n_cells):
        ri = r[i]
        m = size_factors[i] * mu
        l1 = simd_log1p(m * inv_th)
        inv_t = 1.0 / (th + m)
        p = th * inv_t
        xi = x[i]
        terms[0, i] = ri * (xi * (log_size_factors[i] + log_ratio - l1) - th * l1)
        terms[1, i] = ri * (xi - m) * p
        terms[2, i] = ri * ((m - xi) * inv_t - l1)
        terms[3, i] = -ri * m * (xi + th) * p * inv_t
        terms[4, i] = ri * (m * m * inv_th + xi) * inv_t * inv_t
        terms[5, i] = ri * (xi - m) * m * inv_t * inv_t
    q = row_sum(terms[0, :n_cells])
    ga = row_sum(terms[1, :n_cells])
    gt = row_sum(terms[2, :n_cells])
    haa = row_sum(terms[3, :n_cells])
    htt = row_sum(terms[4, :n_cells])
    hat = row_sum(terms[5, :n_cells])
    # the special-function terms level by level, as increments from the level below
    # (counts are mostly consecutive integers: one log and two divisions a level)
    below = 0.0
    lg = 0.0
    dg = 0.0
    tg = 0.0
    for u in range(level_weight.shape[0]):
        gap = values[u] - below
        lg_step, dg_step, tg_step = level_ratios(gap, th + below)
        lg += lg_step
        dg += dg_step
        tg += tg_step
        below = values[u]
        w = level_weight[u]
        q += w * lg
        gt += w * dg
        htt += w * tg
    # chain rule from theta to log theta
    gb = th * gt
    hbb = th * th * htt + gb
    hab = th * hat
    return q, ga, gb, haa, hab, hbb


@gene_kernel
def _nb_m_step(
    x,
    size_factors,
    log_size_factors,
    values,
    n_levels,
    level,
    node_size_factors,
    node_log_size_factors,
    pooled_level,
    pooled_count,
    node_weights,
    node_low_weights,
    single_cells,
    n_single,
    tolerance,
    resp,
    node_resp,
    on_nodes,
    mu,
    theta,
    active,
    max_newton,
    tol,
):
    n_comp = mu.shape[1]
    for pair in numba.prange(active.shape[0] * n_comp):
        g = active[pair // n_comp]
        k = pair % n_comp
        # where the E-step summed this gene's pooled counts on the quadrature nodes,
        # so does the M-step
        xg, sg, lg, r, lv = compact_cells(
            on_nodes[g],
            x[g],
            size_factors,
            log_size_factors,
            level[g],
            single_cells[g],
            n_single[g],
            resp[g, k],
            node_size_factors,
            node_log_size_factors,
            pooled_level[g],
            pooled_count[g],
            node_weights[g],
            node_resp[g, k],
        )
        level_weight = np.zeros(n_levels[g])
        weight = 0.0
        for i in range(xg.shape[0]):
            weight += r[i]
            if lv[i] >= 0:
                level_weight[lv[i]] += r[i]
        if weight < 1e-10:
            continue  # an emptied component keeps its parameters
        vg = values[g]
        a = math.log(mu[g, k])
        b = math.log(theta[g, k])
        terms = np.empty((6, xg.shape[0]))
        q, ga, gb, haa, hab, hbb = _objective(xg, sg, lg, r, vg, level_weight, a, b, terms)
        for _ in range(max_newton):
            det = haa * hbb - hab * hab
            if haa < 0.0 and hbb < 0.0 and det > 0.0:
                da = -(hbb * ga - hab * gb) / det
                db = -(haa * gb - hab * ga) / det
            else:  # not concave here: scaled gradient ascent
                da = -ga / haa if haa < 0.0 else 0.0
                db = gb / abs(hbb) if hbb != 0.0 else 0.0
            da = min(max(da, -_MAX_STEP), _MAX_STEP)
            db = min(max(db, -_MAX_STEP), _MAX_STEP)
            # predicted gain (the Newton decrement): a relative 1e-9 is far below what
            # EM's convergence test resolves, and saves Newton steps near the optimum
            if ga * da + gb * db <= 1e-9 * (abs(q) + 1.0):
                break
            step = 1.0
            accepted = False
            a_new = a
            b_new = b
            res = (q, ga, gb, haa, hab, hbb)
            for _h in range(_MAX_HALVINGS):
                a_new = max(a + step * da, _LOG_MU_MIN)
                b_new = min(max(b + step * db, _LOG_THETA_MIN), _LOG_THETA_MAX)
                if a_new == a and b_new == b:
                    break
                res = _objective(xg, sg, lg, r, vg, level_weight, a_new, b_new, terms)
                if res[0] >= q:
                    accepted = True
                    break
                step *= 0.5
            if not accepted:
                break
            moved = max(abs(a_new - a), abs(b_new - b))
            gain = res[0] - q
            a = a_new
            b = b_new
            q, ga, gb, haa, hab, hbb = res
            if moved < tol or gain <= tol * tol * (abs(q) + 1.0):
                break
        mu[g, k] = max(math.exp(a), MU_MIN)
        # exp(log(x)) can overshoot the bound in the last bit
        theta[g, k] = min(max(math.exp(b), THETA_MIN), THETA_MAX)


@jit
def _level_tables(values, n_levels, th, lg, dg, tg):
    """Per count level ``v_u``: ``lgamma(v_u + theta) - lgamma(theta)`` and the same
    differences of digamma and trigamma, level by level as in :func:`_objective`."""
    below = 0.0
    for u in range(n_levels):
        gap = values[u] - below
        prev_lg = lg[u - 1] if u else 0.0
        prev_dg = dg[u - 1] if u else 0.0
        prev_tg = tg[u - 1] if u else 0.0
        lg_step, dg_step, tg_step = level_ratios(gap, th + below)
        lg[u] = prev_lg + lg_step
        dg[u] = prev_dg + dg_step
        tg[u] = prev_tg + tg_step
        below = values[u]


@jit
def _score_cells(x, level, size_factors, mu, th, l1, dg, tg, score, curv):
    """For every cell the derivatives of ``log f`` in ``(log mu, log theta)``, as in
    :func:`_objective`: ``score`` (2, n) and the upper triangle of ``curv`` (2, 2, n);
    ``l1[i] = log(1 + s_i mu / theta)``. The digamma / trigamma tables are read in a
    loop of their own (see :func:`_log_pmf_cells`)."""
    inv_th = 1.0 / th
    for i in range(x.shape[0]):
        score[1, i] = dg[max(level[i], 0)]
        curv[1, 1, i] = tg[max(level[i], 0)]
    for i in range(x.shape[0]):
        xi = x[i]
        m = size_factors[i] * mu
        inv_t = 1.0 / (th + m)
        p = th * inv_t
        dgv = score[1, i] if xi != 0.0 else 0.0
        tgv = curv[1, 1, i] if xi != 0.0 else 0.0
        g_theta = dgv + (m - xi) * inv_t - l1[i]
        h_theta = tgv + (m * m * inv_th + xi) * inv_t * inv_t
        score[0, i] = (xi - m) * p
        score[1, i] = th * g_theta
        curv[0, 0, i] = -m * (xi + th) * p * inv_t
        curv[0, 1, i] = th * (xi - m) * m * inv_t * inv_t
        curv[1, 1, i] = th * th * h_theta + th * g_theta


@gene_kernel
def _nb_marginal_derivatives(
    x,
    size_factors,
    log_size_factors,
    values,
    n_levels,
    level,
    node_size_factors,
    node_log_size_factors,
    pooled_level,
    pooled_count,
    node_weights,
    node_low_weights,
    single_cells,
    n_single,
    tolerance,
    on_nodes,
    mu,
    theta,
    log_weights,
    active,
    grad,
    hess,
):
    """Gradient and Hessian of each active gene's marginal log-likelihood in the
    coordinates of :func:`~scmix._core.numerics.kernels.add_cell_scores` (parameters
    ``log mu`` then ``log theta``). Where the gene's last E-step summed on the
    quadrature nodes (``on_nodes``), so do these sums."""
    n_cells = x.shape[1]
    n_comp = mu.shape[1]
    node_ones = np.ones(node_weights.shape[1:])
    for a in numba.prange(active.shape[0]):
        g = active[a]
        size = max(n_levels[g], 1)
        lg = np.zeros((n_comp, size))
        dg = np.zeros((n_comp, size))
        tg = np.zeros((n_comp, size))
        for k in range(n_comp):
            _level_tables(values[g], n_levels[g], theta[g, k], lg[k], dg[k], tg[k])
        weights = np.exp(log_weights[g])
        log_ratio = np.log(mu[g]) - np.log(theta[g])
        ones = np.ones(n_cells)
        # the cells summed one by one, then the nodes with their weights (if used)
        xg, sg, lsg, cell_weight, lv = compact_cells(
            on_nodes[g],
            x[g],
            size_factors,
            log_size_factors,
            level[g],
            single_cells[g],
            n_single[g],
            ones,
            node_size_factors,
            node_log_size_factors,
            pooled_level[g],
            pooled_count[g],
            node_weights[g],
            node_ones,
        )
        n = xg.shape[0]
        resp_cells = np.empty((n_comp, n))
        l1_cells = np.empty((n_comp, n))
        score = np.empty((n_comp, 2, n))
        curv = np.empty((n_comp, 2, 2, n))
        for k in range(n_comp):
            _log_pmf_cells(
                xg,
                lg[k],
                lv,
                sg,
                lsg,
                mu[g, k],
                theta[g, k],
                log_ratio[k],
                resp_cells[k],
                l1_cells[k],
            )
            _score_cells(
                xg, lv, sg, mu[g, k], theta[g, k], l1_cells[k], dg[k], tg[k], score[k], curv[k]
            )
        normalise_cells(resp_cells, log_weights[g], single_cells[g], n, False, np.zeros(n_comp))
        grad[g] = 0.0
        hess[g] = 0.0
        add_cell_scores(cell_weight, resp_cells, score, curv, weights, grad[g], hess[g])
        add_weight_curvature(float(n_cells), weights, hess[g])
