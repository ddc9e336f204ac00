"""numba kernels of the negative binomial family's M-step (Newton steps on
``(log mu, log theta)``) and of the derivatives of its marginal log-likelihood (the
Newton finish of :mod:`scmix._core.em.newton`)."""

from __future__ import annotations

import math

import numpy as np

from ..numerics.jit import jit
from ..numerics.kernels import add_cell_scores, add_weight_curvature, normalise_cells, row_sum
from ..numerics.quadrature import compact_cells, unit_weights
from ..numerics.special import level_ratios, simd_log1p
from ._nb_kernels import THETA_MAX, THETA_MIN, _log_pmf_points
from .base import MU_MIN

_LOG_MU_MIN = math.log(MU_MIN)
_LOG_THETA_MIN = math.log(THETA_MIN)
_LOG_THETA_MAX = math.log(THETA_MAX)
#: Largest Newton step in log mu or log theta (a factor of e^3 per step).
_MAX_STEP = 3.0
_MAX_HALVINGS = 30


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


@jit
def _nb_m_step(counts, quad, resp, node_resp, on_nodes, mu, theta, active, newton):
    """Newton steps on ``Q(log mu, log theta)`` (:func:`_objective`) for every active
    gene and component, each kept only where Q does not decrease; ``newton =
    (max_newton, tol)``. Where the E-step summed a gene's pooled counts on the
    quadrature nodes (``on_nodes``), so does the M-step."""
    max_newton, tol = newton
    n_comp = mu.shape[1]
    for pair in range(active.shape[0] * n_comp):
        g = active[pair // n_comp]
        k = pair % n_comp
        # where the E-step summed this gene's pooled counts on the quadrature nodes,
        # so does the M-step
        xg, sg, lg, r, lv = compact_cells(on_nodes[g], counts, quad, g, resp[g, k], node_resp[g, k])
        level_weight = np.zeros(counts.n_levels[g])
        weight = 0.0
        for i in range(xg.shape[0]):
            weight += r[i]
            if lv[i] >= 0:
                level_weight[lv[i]] += r[i]
        if weight < 1e-10:
            continue  # an emptied component keeps its parameters
        vg = counts.values[g]
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


@jit
def _nb_marginal_derivatives(counts, quad, on_nodes, mu, theta, log_weights, active, grad, hess):
    """Gradient and Hessian of each active gene's marginal log-likelihood in the
    coordinates of :func:`~scmix._core.numerics.kernels.add_cell_scores` (parameters
    ``log mu`` then ``log theta``). Where the gene's last E-step summed on the
    quadrature nodes (``on_nodes``), so do these sums."""
    n_cells = counts.x.shape[1]
    n_comp = mu.shape[1]
    ones, node_ones = unit_weights(quad, n_cells)
    weights = np.empty(n_comp)
    log_ratio = np.empty(n_comp)
    for a in range(active.shape[0]):
        g = active[a]
        size = max(counts.n_levels[g], 1)
        lg = np.zeros((n_comp, size))
        dg = np.zeros((n_comp, size))
        tg = np.zeros((n_comp, size))
        for k in range(n_comp):
            _level_tables(counts.values[g], counts.n_levels[g], theta[g, k], lg[k], dg[k], tg[k])
        for k in range(n_comp):
            weights[k] = math.exp(log_weights[g, k])
            log_ratio[k] = math.log(mu[g, k]) - math.log(theta[g, k])
        # the cells summed one by one, then the nodes with their weights (if used)
        xg, sg, lsg, cell_weight, lv = compact_cells(on_nodes[g], counts, quad, g, ones, node_ones)
        n = xg.shape[0]
        resp_cells = np.empty((n_comp, n))
        l1_cells = np.empty((n_comp, n))
        score = np.empty((n_comp, 2, n))
        curv = np.empty((n_comp, 2, 2, n))
        for k in range(n_comp):
            _log_pmf_points(
                xg,
                lg[k],
                lv,
                sg,
                lsg,
                (mu[g, k], theta[g, k], log_ratio[k]),
                resp_cells[k],
                l1_cells[k],
            )
            _score_cells(
                xg, lv, sg, mu[g, k], theta[g, k], l1_cells[k], dg[k], tg[k], score[k], curv[k]
            )
        normalise_cells(resp_cells, log_weights[g], quad.cells[g], n, False, np.zeros(n_comp))
        grad[g] = 0.0
        hess[g] = 0.0
        add_cell_scores(cell_weight, resp_cells, score, curv, weights, grad[g], hess[g])
        add_weight_curvature(float(n_cells), weights, hess[g])
